"""Settings of the demo project, read from the environment that `ferryman demo` sets.

The app servers sit behind ferryman, which authenticates users on one prefix (they arrive as
``Remote-User``), says the public scheme, host, port and prefix in ``X-Forwarded-*`` and keeps each
browser on one app server. Every app server shares the same database and MEDIA_ROOT, so a user who
is moved to another app server keeps their session and files.
"""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import parse_qsl, unquote, urlsplit

import django

BASE_DIR = Path(__file__).resolve().parent.parent
STATE_DIR = Path(os.environ.get("FERRYMAN_DEMO_STATE") or Path.cwd() / ".ferryman-demo").resolve()

SECRET_KEY = os.environ.get("FERRYMAN_DEMO_SECRET_KEY") or "insecure-demo-key-run-it-through-ferryman-demo"
DEBUG = os.environ.get("FERRYMAN_DEMO_DEBUG") == "1"
ALLOWED_HOSTS = [h for h in os.environ.get("FERRYMAN_DEMO_ALLOWED_HOSTS",
                                           "127.0.0.1,localhost,[::1]").split(",") if h]

#: Which app server this process is, for the page that shows who answered.
DEMO_SERVER = os.environ.get("FERRYMAN_DEMO_SERVER", "app")
DEMO_ROUTE = os.environ.get("FERRYMAN_DEMO_ROUTE", "-")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "ferryman.django",        # system checks for a project behind ferryman, health and diagnose views
    "showcase",
]

# What ferryman.django believes: requests from ferryman on this machine (the app servers listen on
# 127.0.0.1 only). ferryman.django.wsgi then sets REMOTE_ADDR, host, scheme, port and SCRIPT_NAME from
# X-Forwarded-*, and ProxyRemoteUserMiddleware logs in the user ferryman authenticated.
FERRYMAN_TRUSTED_PROXIES = ["127.0.0.1", "::1"]
FERRYMAN_PUBLIC_URLS = [u for u in os.environ.get("FERRYMAN_DEMO_PUBLIC_URLS", "").split(",") if u]
FERRYMAN_MEMBER_NAME = f"{DEMO_SERVER} (route {DEMO_ROUTE})"
USE_X_FORWARDED_HOST = True
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
CSRF_TRUSTED_ORIGINS = sorted({u.split("/", 3)[0] + "//" + u.split("/", 3)[2] for u in FERRYMAN_PUBLIC_URLS})

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "ferryman.django.middleware.ProxyRemoteUserMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

AUTHENTICATION_BACKENDS = [
    "django.contrib.auth.backends.RemoteUserBackend",   # /webapps on HTTPS: ferryman's htpasswd
    "django.contrib.auth.backends.ModelBackend",        # /public: Django's own login form
]

ROOT_URLCONF = "demo_site.urls"
WSGI_APPLICATION = "demo_site.wsgi.application"

TEMPLATES = [{
    "BACKEND": "django.template.backends.django.DjangoTemplates",
    "DIRS": [],
    "APP_DIRS": True,
    "OPTIONS": {"context_processors": [
        "django.template.context_processors.request",
        "django.contrib.auth.context_processors.auth",
        "django.contrib.messages.context_processors.messages",
        "showcase.views.demo_context",
    ]},
}]


def database(url: str) -> dict[str, object]:
    """A Django DATABASES entry from ``postgresql://user:password@host:port/name?option=value``."""
    parts = urlsplit(url)
    if parts.scheme not in ("postgres", "postgresql"):
        raise ValueError(f"{url!r} is not a postgresql:// URL")
    options = dict(parse_qsl(parts.query))
    return {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": unquote(parts.path.lstrip("/")) or "postgres",
        "USER": unquote(parts.username or ""),
        "PASSWORD": unquote(parts.password or ""),
        "HOST": options.pop("host", parts.hostname or ""),
        "PORT": str(parts.port or ""),
        "OPTIONS": options,
        "CONN_MAX_AGE": 60,
    }


if os.environ.get("FERRYMAN_DEMO_DATABASE"):
    DATABASES = {"default": database(os.environ["FERRYMAN_DEMO_DATABASE"])}
else:
    # Four app server processes share one file: WAL and a generous lock timeout keep writers waiting
    # for each other instead of failing with "database is locked".
    _sqlite_options: dict[str, object] = {"timeout": 20, "init_command": "PRAGMA journal_mode=WAL;"}
    if django.VERSION >= (5, 1):
        _sqlite_options["transaction_mode"] = "IMMEDIATE"
    DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": STATE_DIR / "db.sqlite3",
                             "OPTIONS": _sqlite_options}}

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
LANGUAGE_CODE = "en"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

# The app is mounted at /webapps on every app server; ferryman rewrites these cookie paths to the
# public prefix (/public), as Apache's ProxyPassReverseCookiePath does. FERRYMAN_MEMBER_PATH tells
# ferryman.django's checks so (W004).
SESSION_COOKIE_PATH = "/webapps"
CSRF_COOKIE_PATH = "/webapps"
FERRYMAN_MEMBER_PATH = "/webapps"

LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "index"
LOGOUT_REDIRECT_URL = "index"

# Static files are served by the app itself (the demo has no web server of its own for them);
# their URLs follow the public prefix of each request (see showcase.storage).
STATIC_URL = "static/"
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "showcase.storage.PrefixStaticFilesStorage"},
}
MEDIA_ROOT = Path(os.environ.get("FERRYMAN_DEMO_MEDIA") or STATE_DIR / "media")
MEDIA_URL = "/media/"  # served by the front end's static route, not by the app servers
FILE_UPLOAD_MAX_MEMORY_SIZE = 1 << 20
DATA_UPLOAD_MAX_MEMORY_SIZE = 10 << 20

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": "WARNING"},
}
