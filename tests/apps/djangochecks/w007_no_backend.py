from tests.apps.djangochecks.base import *  # noqa: F401,F403

AUTHENTICATION_BACKENDS = ["django.contrib.auth.backends.ModelBackend"]
