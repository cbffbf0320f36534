from tests.apps.djangochecks.base import *  # noqa: F401,F403

# The cookie Path is the member URL's path, which ferryman rewrites onto each public prefix.
SESSION_COOKIE_PATH = "/webapps"
CSRF_COOKIE_PATH = "/webapps"
FERRYMAN_MEMBER_PATH = "/webapps"
