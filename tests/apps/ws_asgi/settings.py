"""Django settings for the WebSocket test app: no database, no sessions, nothing but URL routing."""

SECRET_KEY = "ferryman-websocket-tests"
DEBUG = False
ALLOWED_HOSTS = ["*"]
INSTALLED_APPS = ["channels"]
MIDDLEWARE: list[str] = []
ROOT_URLCONF = "tests.apps.ws_asgi.urls"
DATABASES: dict[str, dict[str, str]] = {}
USE_TZ = True
ASGI_APPLICATION = "tests.apps.ws_asgi.asgi.application"
LOGGING_CONFIG = None
