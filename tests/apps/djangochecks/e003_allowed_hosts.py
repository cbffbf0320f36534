from tests.apps.djangochecks.base import *  # noqa: F401,F403

ALLOWED_HOSTS = ["app1.internal", "127.0.0.1"]
