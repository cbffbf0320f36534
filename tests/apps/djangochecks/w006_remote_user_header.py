from tests.apps.djangochecks.base import *  # noqa: F401,F403

MIDDLEWARE = MIDDLEWARE[:3] + ["tests.apps.djangochecks.legacy.HttpRemoteUserMiddleware"]
