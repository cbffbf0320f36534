from tests.apps.djangochecks.base import *  # noqa: F401,F403

SESSION_COOKIE_PATH = "/webapps"
