from tests.apps.djangochecks.base import *  # noqa: F401,F403

FERRYMAN_TRUSTED_PROXIES = []
