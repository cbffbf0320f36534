from tests.apps.djangochecks.base import *  # noqa: F401,F403


