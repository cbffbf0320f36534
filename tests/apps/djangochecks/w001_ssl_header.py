from tests.apps.djangochecks.base import *  # noqa: F401,F403

SECURE_PROXY_SSL_HEADER = None
