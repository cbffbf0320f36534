"""ferryman.django's system checks: one misconfigured settings module per check (tests/apps/djangochecks),
each run by `manage.py check` in its own process; the correct module passes.

Source: Django's documentation of the settings concerned (ALLOWED_HOSTS, CSRF_TRUSTED_ORIGINS,
SECURE_PROXY_SSL_HEADER, USE_X_FORWARDED_HOST, SESSION_COOKIE_PATH, FORCE_SCRIPT_NAME,
RemoteUserMiddleware, django.contrib.sites), docs/django.md.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support import REPO

SCRIPT = r"""
import sys
import django
django.setup()
from django.core.management import call_command
from django.core.management.base import SystemCheckError
site = sys.argv[1]
if site != "-":
    call_command("migrate", verbosity=0)
    from django.contrib.sites.models import Site
    if site != "default":
        Site.objects.filter(pk=1).update(domain=site)
try:
    call_command("check")
    print("CHECK PASSED")
except SystemCheckError as e:
    print(e)
"""


def run_check(module: str, tmp_path: Path, site: str = "-") -> str:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    env["DJANGO_SETTINGS_MODULE"] = f"tests.apps.djangochecks.{module}"
    env["DJANGOCHECKS_DB"] = str(tmp_path / "db.sqlite3")
    done = subprocess.run([sys.executable, "-c", SCRIPT, site], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=120)
    return done.stdout + done.stderr


def test_the_correct_settings_pass_every_check(tmp_path: Path) -> None:
    out = run_check("correct", tmp_path, site="www.example.com")
    assert "CHECK PASSED" in out and "ferryman." not in out, out


def test_a_cookie_path_on_the_member_path_passes_when_ferryman_rewrites_it(tmp_path: Path) -> None:
    out = run_check("w004_member_path_ok", tmp_path, site="www.example.com")
    assert "CHECK PASSED" in out and "ferryman.W004" not in out, out


@pytest.mark.parametrize("module,check_id,words", [
    ("e001_no_trust", "ferryman.E001", ["FERRYMAN_TRUSTED_PROXIES and FERRYMAN_SIGNING_KEYS are both empty",
                                        'Set FERRYMAN_TRUSTED_PROXIES = ["127.0.0.1"]']),
    ("e002_short_key", "ferryman.E002", ["signing key 0 is 8 bytes", "16 or more"]),
    ("e003_allowed_hosts", "ferryman.E003", ["'www.example.com'", "not in ALLOWED_HOSTS",
                                             "Add 'www.example.com' to ALLOWED_HOSTS"]),
    ("w001_ssl_header", "ferryman.W001", ["SECURE_PROXY_SSL_HEADER is None",
                                          "Set SECURE_PROXY_SSL_HEADER = ('HTTP_X_FORWARDED_PROTO', 'https')"]),
    ("w002_csrf_origin", "ferryman.W002", ["https://www.example.com is not in CSRF_TRUSTED_ORIGINS",
                                           "Add 'https://www.example.com' to CSRF_TRUSTED_ORIGINS"]),
    ("w003_forwarded_host", "ferryman.W003", ["USE_X_FORWARDED_HOST is off", "Set USE_X_FORWARDED_HOST = True"]),
    ("w004_cookie_path", "ferryman.W004", ["SESSION_COOKIE_PATH is '/webapps'", "https://www.example.com/public",
                                           'Set SESSION_COOKIE_PATH = "/"']),
    ("w005_force_script_name", "ferryman.W005", ["FORCE_SCRIPT_NAME is '/webapps'",
                                                 "even under https://www.example.com/public",
                                                 "Remove FORCE_SCRIPT_NAME"]),
    ("w006_remote_user_header", "ferryman.W006", ["reads HTTP_REMOTE_USER",
                                                  "ferryman.django.middleware.ProxyRemoteUserMiddleware"]),
    ("w007_no_backend", "ferryman.W007", ["no RemoteUserBackend",
                                          "Add 'django.contrib.auth.backends.RemoteUserBackend'"]),
    ("w009_no_public_urls", "ferryman.W009", ["FERRYMAN_PUBLIC_URLS is empty"]),
])
def test_each_misconfiguration_is_reported_with_its_id_and_fix(module: str, check_id: str, words: list[str],
                                                                 tmp_path: Path) -> None:
    out = run_check(module, tmp_path)
    assert f"({check_id})" in out, out
    for word in words:
        assert word in out, out
    others = {line.split("(", 1)[1].split(")", 1)[0] for line in out.splitlines() if "(ferryman." in line}
    assert others == {check_id}, out  # one broken setting, one message


def test_a_site_that_does_not_name_the_public_host_is_reported(tmp_path: Path) -> None:
    out = run_check("w008_site", tmp_path, site="default")  # migrate leaves Django's example.com
    assert "(ferryman.W008)" in out and "'example.com'" in out and "'www.example.com'" in out, out


def test_without_trust_settings_the_middleware_and_the_wsgi_entry_refuse_to_start(tmp_path: Path) -> None:
    code = ("import django; django.setup()\n"
            "from django.core.exceptions import ImproperlyConfigured\n"
            "from ferryman.django.conf import proxy_headers\n"
            "from ferryman.django.middleware import ProxyRemoteUserMiddleware\n"
            "try:\n    ProxyRemoteUserMiddleware(lambda r: None)\nexcept ImproperlyConfigured as e:\n"
            "    print('middleware:', e)\n"
            "from ferryman.django.wsgi import get_wsgi_application\n"
            "try:\n    get_wsgi_application()\nexcept ImproperlyConfigured as e:\n    print('wsgi:', e)\n")
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    env["DJANGO_SETTINGS_MODULE"] = "tests.apps.djangochecks.e001_no_trust"
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=60)
    assert "middleware: ferryman: FERRYMAN_TRUSTED_PROXIES and FERRYMAN_SIGNING_KEYS are both empty" in done.stdout, \
        done.stdout + done.stderr
    assert "wsgi: ferryman: FERRYMAN_TRUSTED_PROXIES" in done.stdout
