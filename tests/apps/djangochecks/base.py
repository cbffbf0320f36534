"""Settings that pass every ferryman check; each other module here breaks exactly one."""

import os

SECRET_KEY = "djangochecks-test"
DEBUG = False
FERRYMAN_PUBLIC_URLS = ["https://www.example.com/webapps", "https://www.example.com/public"]
FERRYMAN_TRUSTED_PROXIES = ["127.0.0.1"]
ALLOWED_HOSTS = ["www.example.com"]
CSRF_TRUSTED_ORIGINS = ["https://www.example.com"]
USE_X_FORWARDED_HOST = True
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
INSTALLED_APPS = ["django.contrib.auth", "django.contrib.contenttypes", "django.contrib.sessions",
                  "django.contrib.sites", "ferryman.django"]
SITE_ID = 1
MIDDLEWARE = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "ferryman.django.middleware.ProxyRemoteUserMiddleware",
]
AUTHENTICATION_BACKENDS = ["django.contrib.auth.backends.RemoteUserBackend"]
ROOT_URLCONF = "ferryman.django.urls"
DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3",
                         "NAME": os.environ.get("DJANGOCHECKS_DB", ":memory:")}}
DEFAULT_AUTO_FIELD = "django.db.models.AutoField"
USE_TZ = True
FERRYMAN_DRAIN_FILE = os.environ.get("DJANGOCHECKS_DRAIN") or None
