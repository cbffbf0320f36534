from tests.apps.djangochecks.base import *  # noqa: F401,F403

FORCE_SCRIPT_NAME = "/webapps"
