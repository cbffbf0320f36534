from tests.apps.djangochecks.base import *  # noqa: F401,F403

USE_X_FORWARDED_HOST = False
