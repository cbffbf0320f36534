"""A Django project served behind ferryman in the integration tests (it grows into the demo).

Configured from the environment, so one project serves every test setup:
DJANGOPROJ_DB (SQLite file), FERRYMAN_TRUSTED_PROXIES (comma list), FERRYMAN_SIGNING_KEY (the key),
FERRYMAN_PUBLIC_URLS (comma list), as ferryman.testing sets them; DJANGOPROJ_MISCONFIGURED=1 (the settings of a classic
deployment that forgot what a proxy changes: no forwarded settings, FORCE_SCRIPT_NAME).
"""

import os

BASE_DIR = os.path.dirname(os.path.abspath(__file__))
SECRET_KEY = "djangoproj-test-secret-not-for-production"
DEBUG = False

FERRYMAN_PUBLIC_URLS = [u for u in os.environ.get("FERRYMAN_PUBLIC_URLS", "").split(",") if u]
FERRYMAN_TRUSTED_PROXIES = [p for p in os.environ.get("FERRYMAN_TRUSTED_PROXIES", "").split(",") if p]
FERRYMAN_SIGNING_KEYS = ["env:FERRYMAN_SIGNING_KEY"] if os.environ.get("FERRYMAN_SIGNING_KEY") else []
FERRYMAN_MOUNT = os.environ.get("FERRYMAN_MOUNT", "")
FERRYMAN_MEMBER_NAME = os.environ.get("DJANGOPROJ_MEMBER") or None

_hosts = sorted({u.split("://", 1)[1].split("/", 1)[0].rsplit(":", 1)[0] for u in FERRYMAN_PUBLIC_URLS})
ALLOWED_HOSTS = _hosts + ["127.0.0.1"]
CSRF_TRUSTED_ORIGINS = sorted({u.split("/", 3)[0] + "//" + u.split("/", 3)[2] for u in FERRYMAN_PUBLIC_URLS})
USE_X_FORWARDED_HOST = True
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")

INSTALLED_APPS = [
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.admin",
    "ferryman.django",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "ferryman.django.middleware.ProxyRemoteUserMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
]

AUTHENTICATION_BACKENDS = [
    "django.contrib.auth.backends.RemoteUserBackend",
    "django.contrib.auth.backends.ModelBackend",
]

ROOT_URLCONF = "tests.apps.djangoproj.urls"
WSGI_APPLICATION = "tests.apps.djangoproj.wsgi.application"
TEMPLATES = [{
    "BACKEND": "django.template.backends.django.DjangoTemplates",
    "DIRS": [os.path.join(BASE_DIR, "templates")],
    "APP_DIRS": True,
    "OPTIONS": {"context_processors": [
        "django.template.context_processors.request",
        "django.contrib.auth.context_processors.auth",
        "django.contrib.messages.context_processors.messages",
    ]},
}]
DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3",
                         "NAME": os.environ.get("DJANGOPROJ_DB", os.path.join(BASE_DIR, "db.sqlite3"))}}
DEFAULT_AUTO_FIELD = "django.db.models.AutoField"
USE_TZ = True
STATIC_URL = "static/"
LOGIN_REDIRECT_URL = "whoami"

if os.environ.get("DJANGOPROJ_MISCONFIGURED"):
    # what a project moved from mod_wsgi often still says: Django reads nothing a proxy sends
    USE_X_FORWARDED_HOST = False
    SECURE_PROXY_SSL_HEADER = None
    FORCE_SCRIPT_NAME = "/webapps"
    WSGI_APPLICATION = "tests.apps.djangoproj.wsgi.plain"
