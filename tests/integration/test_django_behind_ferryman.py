"""A real Django project (tests/apps/djangoproj) under gunicorn behind a real ferryman: HTTP and HTTPS
listeners (trustme), an htpasswd route, signed forwarding or trusted proxies.

What the public URL implies is what Django says: request.user is the htpasswd user,
get_host()/is_secure()/build_absolute_uri()/REMOTE_ADDR/reverse() are the public ones under /webapps
and /public, a login form POST over HTTPS passes CSRF, and a request sent straight to the app server
with a forged Remote-User and a forged signature is nobody. `manage.py ferryman_doctor` agrees, and
explains what is wrong with a deliberately misconfigured project.

Sources: docs/configuration.md (trusted_proxies, signing, route auth) and the demo in README.md; Django's
documentation of RemoteUserMiddleware/RemoteUserBackend, CSRF (Origin checking) and
HttpRequest.build_absolute_uri.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from ferryman.testing import Chain, Route, start_chain
from tests.support import REPO

pytestmark = pytest.mark.integration

APP = "tests.apps.djangoproj.wsgi:application"
SETTINGS = "tests.apps.djangoproj.settings"
USERS = {"alice": "wonderland"}
CLIENT = "127.0.0.2"  # a client address distinct from ferryman's 127.0.0.1, so REMOTE_ADDR tells them apart


def manage(*args: str, env: dict[str, str], check: bool = True) -> subprocess.CompletedProcess[str]:
    full = dict(os.environ)
    full["PYTHONPATH"] = str(REPO) + os.pathsep + full.get("PYTHONPATH", "")
    full["DJANGO_SETTINGS_MODULE"] = SETTINGS
    full.pop("FERRYMAN_TRUSTED_PROXIES", None)
    full.update(env)
    done = subprocess.run([sys.executable, "-m", "django", *args], cwd=REPO, env=full, capture_output=True,
                          text=True, timeout=120)
    if check and done.returncode != 0:
        raise AssertionError(f"manage.py {' '.join(args)} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
    return done


@pytest.fixture(scope="module")
def database(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A migrated SQLite database with a Django user for the login form (bob) and nobody else."""
    db = tmp_path_factory.mktemp("djangoproj") / "db.sqlite3"
    env = {"DJANGOPROJ_DB": str(db), "FERRYMAN_TRUSTED_PROXIES": "127.0.0.1"}
    manage("migrate", "-v0", env=env)
    manage("shell", "-c", "from django.contrib.auth.models import User; "
                          "User.objects.create_user('bob', password='builder-pass-1'); "
                          "User.objects.create_superuser('root', password='root-pass-1')", env=env)
    return db


def start(database: Path, signing: bool, **env: str) -> Chain:
    return start_chain(APP, routes=[Route("/webapps", listener="https", auth=True), Route("/public")],
                       mount="/webapps", users=USERS, signing=signing, health="/webapps/ferryman/health/",
                       env={"DJANGOPROJ_DB": str(database), **env}, ready_path="/webapps/ferryman/health/",
                       cwd=REPO)


@pytest.fixture(scope="module", params=["signed", "trusted-proxy"])
def chain(request: pytest.FixtureRequest, database: Path) -> Iterator[Chain]:
    c = start(database, signing=request.param == "signed")
    yield c
    c.stop()


def test_the_htpasswd_user_is_the_django_user_and_everything_is_public_over_https(chain: Chain) -> None:
    client = chain.client("https", source=CLIENT)
    r = client.get("/webapps/whoami/", auth=("alice", "wonderland"))
    assert r.status == 200, r.text
    seen = r.json()
    origin = chain.origin("https")
    assert seen == {
        "user": "alice", "host": chain.authority("https"), "is_secure": True,
        "absolute_uri": f"{origin}/webapps/whoami/", "root_uri": f"{origin}/",
        "remote_addr": CLIENT, "reverse": "/webapps/whoami/", "path": "/webapps/whoami/",
        "port": str(chain.ports["https"]),
    }


def test_the_htpasswd_route_refuses_anonymous_requests(chain: Chain) -> None:
    assert chain.client("https").get("/webapps/whoami/").status == 401


@pytest.mark.parametrize("listener", ["http", "https"])
def test_under_public_urls_and_redirects_carry_the_public_prefix_and_no_user(chain: Chain, listener: str) -> None:
    client = chain.client(listener, source=CLIENT)
    seen = client.get("/public/whoami/").json()
    assert seen["user"] is None
    assert seen["is_secure"] is (listener == "https")
    assert seen["absolute_uri"] == f"{chain.origin(listener)}/public/whoami/"
    assert seen["reverse"] == "/public/whoami/" and seen["remote_addr"] == CLIENT
    redirect = client.get("/public/go/")
    assert redirect.status == 302 and redirect.headers["location"] == "/public/whoami/"
    assert chain.is_public(redirect.headers["location"])


def test_a_login_form_post_over_https_passes_csrf_and_logs_in(chain: Chain) -> None:
    client = chain.client("https")
    form = client.get("/public/login/")
    assert form.status == 200
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', form.text)
    assert token is not None and "csrftoken" in client.cookies
    r = client.post("/public/login/", {"csrfmiddlewaretoken": token.group(1), "username": "bob",
                                       "password": "builder-pass-1"})
    assert r.status == 302, r.text[:2000]
    assert r.headers["location"] == "/public/whoami/"
    assert client.get("/public/whoami/").json()["user"] == "bob"


def test_the_admin_login_works_under_the_second_prefix_over_https(chain: Chain) -> None:
    client = chain.client("https")
    form = client.get("/public/admin/login/?next=/public/admin/")
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', form.text)
    assert form.status == 200 and token is not None
    r = client.post("/public/admin/login/?next=/public/admin/", {
        "csrfmiddlewaretoken": token.group(1), "username": "root", "password": "root-pass-1",
        "next": "/public/admin/"})
    assert r.status == 302 and r.headers["location"] == "/public/admin/", r.text[:2000]
    home = client.get("/public/admin/")
    assert home.status == 200 and "Site administration" in home.text
    assert 'href="/public/admin/logout/"' in home.text or 'action="/public/admin/logout/"' in home.text


def test_a_post_with_a_foreign_origin_is_still_refused(chain: Chain) -> None:
    client = chain.client("https")
    form = client.get("/public/login/")
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', form.text)
    assert token is not None
    r = client.post("/public/login/", {"csrfmiddlewaretoken": token.group(1), "username": "bob",
                                       "password": "builder-pass-1"},
                    headers={"Origin": "https://evil.example", "Referer": "https://evil.example/"})
    assert r.status == 403


def test_a_request_straight_to_the_app_server_cannot_claim_a_user_or_an_address(chain: Chain) -> None:
    forged_signature = ("v1;kid=00000000;ts=1;nonce=x;for=10.9.9.9;host=www.example.test;proto=https;port=443;"
                        "prefix=%2Fwebapps;method=GET;user=alice;sig=AAAA")
    headers = {"Host": "127.0.0.1", "Remote-User": "alice", "X-Remote-User": "alice",
               "X-Forwarded-For": "10.9.9.9", "X-Forwarded-Host": "www.example.test",
               "X-Forwarded-Proto": "https", "Ferryman-Signature": forged_signature}
    source = "127.0.0.1" if chain.signing_key else CLIENT  # trusted-proxy mode trusts 127.0.0.1 itself
    r = chain.direct("GET", "/webapps/whoami/", headers, source=source)
    assert r.status == 200, r.text
    seen = r.json()
    assert seen["user"] is None
    assert seen["remote_addr"] == source
    assert seen["host"] == "127.0.0.1" and seen["is_secure"] is False


def test_a_stolen_valid_signature_cannot_be_replayed_to_the_app_server(database: Path) -> None:
    """The app's own logs might show a signed header; replaying it straight to the app server fails
    (nonce already seen), and moving it to another method fails too."""
    c = start(database, signing=True)
    try:
        sig = c.client("https").get("/webapps/ferryman/diagnose/", auth=("alice", "wonderland"))
        assert sig.status == 200
        from ferryman.core.forwarded import ForwardedFacts
        from ferryman.core.signing import sign
        import time
        value = sign(c.signing_key.encode(), ForwardedFacts("10.9.9.9", "www.example.test", "https", 443,  # type: ignore[union-attr]
                                                            "/webapps", "alice", "GET"),
                     now=time.time(), nonce=b"replayed-nonce").decode()
        first = c.direct("GET", "/webapps/whoami/", {"Host": "127.0.0.1", "Ferryman-Signature": value})
        again = c.direct("GET", "/webapps/whoami/", {"Host": "127.0.0.1", "Ferryman-Signature": value})
        assert first.json()["user"] == "alice"  # the key holder can sign: that is what a key is
        assert again.json()["user"] is None and again.json()["remote_addr"] == "127.0.0.1"
        assert "replayed" in c.log("app")
    finally:
        c.stop()


def test_ferrymans_health_checks_reach_the_health_view_with_the_public_host(chain: Chain) -> None:
    r = chain.direct("GET", "/webapps/ferryman/health/", {"Host": "www.example.test"})
    assert r.status == 200 and r.json() == {"status": "ok", "database": "ok", "migrations": "ok",
                                           "draining": False}
    assert "-> unhealthy" not in chain.log("ferryman") and "DisallowedHost" not in chain.log("app")


def doctor(chain: Chain, url_path: str, listener: str, *extra: str, **env: str) -> subprocess.CompletedProcess[str]:
    app_env = {"FERRYMAN_PUBLIC_URLS": ",".join(chain.public_urls()), **env}
    if chain.signing_key:
        app_env.setdefault("FERRYMAN_SIGNING_KEY", chain.signing_key)
    else:
        app_env.setdefault("FERRYMAN_TRUSTED_PROXIES", "127.0.0.1")
    return manage("ferryman_doctor", chain.url(listener, url_path), "--connect",
                  f"127.0.0.1:{chain.ports[listener]}", "--cafile", str(chain.ca_file), *extra, env=app_env,
                  check=False)


def test_ferryman_doctor_passes_through_the_real_chain(chain: Chain) -> None:
    ok = doctor(chain, "/webapps", "https", "--user", "alice", "--password", "wonderland")
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "all as the public URL implies" in ok.stdout and "MISMATCH" not in ok.stdout
    public = doctor(chain, "/public", "http")
    assert public.returncode == 0, public.stdout + public.stderr


def test_ferryman_doctor_fails_on_a_misconfigured_app_and_says_why(ferryman_chain, database: Path) -> None:  # noqa: ANN001
    """FORCE_SCRIPT_NAME and Django's plain WSGI entry point (what a mod_wsgi project brings along)."""
    chain = ferryman_chain("tests.apps.djangoproj.wsgi:plain", routes=["/public"], mount="/webapps",
                           env={"DJANGOPROJ_DB": str(database), "DJANGOPROJ_MISCONFIGURED": "1"}, cwd=REPO,
                           ready_path="/webapps/ferryman/health/")
    bad = doctor(chain, "/public", "https", DJANGOPROJ_MISCONFIGURED="1")
    assert bad.returncode == 1, bad.stdout + bad.stderr
    out = bad.stdout
    assert re.search(r"^host\s+127\.0\.0\.1:\d+\s+www\.example\.test:\d+\s+MISMATCH", out, re.M), out
    assert re.search(r"^script_name\s+/webapps\s+/public\s+MISMATCH", out, re.M), out
    assert "FORCE_SCRIPT_NAME = '/webapps' overrides the public prefix: remove it" in out
    assert "serve the app with ferryman.django.wsgi/asgi" in out
    assert "mismatch(es)" in bad.stderr


def test_django_under_uvicorn_sees_the_same_truth_through_ferryman_asgi(ferryman_chain, database: Path) -> None:  # noqa: ANN001
    pytest.importorskip("uvicorn")
    chain = ferryman_chain("tests.apps.djangoproj.asgi:application", server="uvicorn",
                           routes=[Route("/webapps", listener="https", auth=True), Route("/public")],
                           mount="/webapps", users=USERS, env={"DJANGOPROJ_DB": str(database)}, cwd=REPO,
                           ready_path="/webapps/ferryman/health/")
    seen = chain.client("https", source=CLIENT).get("/webapps/whoami/", auth=("alice", "wonderland")).json()
    origin = chain.origin("https")
    assert (seen["user"], seen["host"], seen["is_secure"], seen["remote_addr"]) == (
        "alice", chain.authority("https"), True, CLIENT)
    assert seen["absolute_uri"] == f"{origin}/webapps/whoami/" and seen["reverse"] == "/webapps/whoami/"
    public = chain.client("http").get("/public/whoami/").json()
    assert public["reverse"] == "/public/whoami/" and public["is_secure"] is False and public["user"] is None
    forged = chain.direct("GET", "/webapps/whoami/", {"Host": "127.0.0.1", "Remote-User": "alice",
                                                      "X-Forwarded-For": "10.9.9.9"})
    assert forged.json()["user"] is None and forged.json()["remote_addr"] == "127.0.0.1"


def test_ferryman_doctor_names_the_keys_when_the_app_has_another_key(ferryman_chain, database: Path) -> None:  # noqa: ANN001
    from ferryman.core.signing import key_id
    wrong = "not-the-key-ferryman-signs-with-0123456789"
    chain = ferryman_chain(APP, routes=["/public"], mount="/webapps", cwd=REPO,
                           env={"DJANGOPROJ_DB": str(database), "FERRYMAN_SIGNING_KEY": wrong},
                           ready_path="/webapps/ferryman/health/")
    r = chain.client("https").get("/public/whoami/")
    assert r.status == 200 and r.json()["host"] == "127.0.0.1:%d" % chain.app_port  # served, but as a direct request
    bad = doctor(chain, "/public", "https", FERRYMAN_SIGNING_KEY=wrong)
    assert bad.returncode == 2, bad.stdout + bad.stderr
    assert "answered 404" in bad.stderr, bad.stderr
    assert f"this app accepts signing keys {key_id(wrong.encode())}" in bad.stderr, bad.stderr
    assert "signed with an unknown key (kid %s)" % key_id(chain.signing_key.encode()) in chain.log("app")  # type: ignore[union-attr]
