from tests.apps.djangochecks.base import *  # noqa: F401,F403

CSRF_TRUSTED_ORIGINS = ["http://www.example.com"]
