"""`ferryman demo` end to end: the processes it starts, what it refuses, and a real browser using it.

The browser tests drive Debian's headless chromium with Selenium through the front end, over HTTPS:
htpasswd login reaching Django as the remote user, Django's own login form and the admin login under
/public (CSRF over HTTPS, cookie paths rewritten), an upload into the shared MEDIA_ROOT, and a session
that sticks to one app server and survives that app server being stopped. Screenshots of each page are
written to test-artifacts/demo/. They run once on SQLite and once on a local PostgreSQL.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import signal
import socket
import ssl
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import EPHEMERAL, DemoRun, alive
from tests.support import REPO, free_port, require_module, require_program, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.slow]

PROJECT = REPO / "ferryman" / "demo" / "project"


def fetch(url: str, ca: str, user: str | None = None, password: str | None = None,
          data: bytes | None = None, headers: dict[str, str] | None = None) -> tuple[int, Any, bytes]:
    """(status, headers, body) of one request, TLS verified against the demo's CA; no redirects followed."""
    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args, **kwargs):  # noqa: ANN002, ANN003, ANN201
            return None

    ctx = ssl.create_default_context(cafile=ca)
    opener = urllib.request.build_opener(urllib.request.HTTPSHandler(context=ctx), NoRedirect())
    req = urllib.request.Request(url, data=data, headers=dict(headers or {}))
    if user:
        req.add_header("Authorization", "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode())
    try:
        with opener.open(req, timeout=30) as r:
            return r.status, r.headers, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read()


def refuses(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return False
    except OSError:
        return True


# --------------------------------------------------------------------------------------------------
# What it refuses, before anything starts


def test_a_port_in_use_is_named_with_the_option_that_changes_it_and_nothing_starts(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        run = DemoRun(tmp_path / "state", "--http-port", str(port), "--https-port", "0",
                      "--app-http-ports", "0,0", "--app-https-ports", "0,0")
        assert run.wait_exit(60) == 1
    out = run.output()
    assert f"port {port} on 127.0.0.1 (front end HTTP) is already in use" in out
    assert "choose another with --http-port PORT (0: any free port)" in out
    assert "nothing was started" in out
    assert not list((tmp_path / "state" / "logs").glob("*.log")), "a process was started"


def test_an_unreachable_database_gets_a_clear_message_and_a_clean_exit(tmp_path: Path) -> None:
    port = free_port()
    run = DemoRun(tmp_path / "state", *EPHEMERAL, "--database", f"postgresql://demo:secret@127.0.0.1:{port}/demo")
    assert run.wait_exit(60) == 1
    out = run.output()
    assert f"cannot reach the database postgresql://127.0.0.1:{port}/demo" in out
    assert "secret" not in out, "the password was printed"
    assert "Traceback" not in out
    assert not list((tmp_path / "state" / "logs").glob("app-*.log"))


def test_a_missing_project_file_is_named(tmp_path: Path) -> None:
    project = tmp_path / "project"
    shutil.copytree(PROJECT, project, ignore=shutil.ignore_patterns("__pycache__"))
    (project / "showcase" / "views.py").unlink()
    run = DemoRun(tmp_path / "state", *EPHEMERAL, "--project", str(project))
    assert run.wait_exit(60) == 1
    assert f"{project / 'showcase' / 'views.py'} is missing" in run.output()


def test_a_broken_project_file_is_named_with_the_error(tmp_path: Path) -> None:
    project = tmp_path / "project"
    shutil.copytree(PROJECT, project, ignore=shutil.ignore_patterns("__pycache__"))
    settings = project / "demo_site" / "settings.py"
    settings.write_text(settings.read_text() + "\ndef broken(:\n")
    run = DemoRun(tmp_path / "state", *EPHEMERAL, "--project", str(project))
    assert run.wait_exit(90) == 1
    out = run.output()
    assert "setting up the database with the project" in out
    assert str(settings) in out and "SyntaxError" in out
    assert "ferryman demo is up" not in out


def test_a_state_directory_that_is_a_file_is_named(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.write_text("not a directory")
    run = DemoRun(state, *EPHEMERAL)
    assert run.wait_exit(60) == 1
    assert f"the state directory {state} is not a directory" in run.output()


def test_a_damaged_certificate_in_the_state_directory_is_named(tmp_path: Path) -> None:
    state = tmp_path / "state"
    (state / "certs").mkdir(parents=True)
    for name in ("ca.pem", "front.pem", "front-key.pem", "app.pem", "app-key.pem"):
        (state / "certs" / name).write_text("garbage")
    run = DemoRun(state, *EPHEMERAL)
    assert run.wait_exit(60) == 1
    assert f"{state / 'certs' / 'ca.pem'} is unusable" in run.output()


def processes_mentioning(text: str) -> list[int]:
    """Pids of live processes whose command line contains `text`."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            try:
                if text.encode() in (entry / "cmdline").read_bytes() and alive(int(entry.name)):
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


def test_an_app_server_that_cannot_start_is_reported_and_nothing_is_left_running(tmp_path: Path) -> None:
    project = tmp_path / "project"
    shutil.copytree(PROJECT, project, ignore=shutil.ignore_patterns("__pycache__"))
    wsgi = project / "demo_site" / "wsgi.py"
    wsgi.write_text(wsgi.read_text() + "\nraise RuntimeError('the app cannot start')\n")
    run = DemoRun(tmp_path / "state", *EPHEMERAL, "--project", str(project))
    assert run.wait_exit(120) == 1
    out = run.output()
    assert "exited with status" in out and "before it was ready" in out
    assert "the app cannot start" in out
    assert "is up" not in out
    assert processes_mentioning(str(project)) == []


# --------------------------------------------------------------------------------------------------
# Up, answering, and gone after SIGTERM or Ctrl-C


def test_ctrl_c_while_starting_stops_what_was_already_started(tmp_path: Path) -> None:
    project = tmp_path / "project"
    shutil.copytree(PROJECT, project, ignore=shutil.ignore_patterns("__pycache__"))
    run = DemoRun(tmp_path / "state", *EPHEMERAL, "--project", str(project))
    wait_until(lambda: "starting app server app-2" in run.output() or run.proc.poll() is not None, 120, 0.01,
               "the app servers never started")
    os.killpg(run.proc.pid, signal.SIGINT)
    assert run.wait_exit(60) == 0, run.output()
    out = run.output()
    assert "ferryman demo: stopping" in out and "is up" not in out
    assert processes_mentioning(str(project)) == []


def test_ctrl_c_stops_every_process_the_demo_started(tmp_path: Path) -> None:
    run = DemoRun(tmp_path / "state", *EPHEMERAL)
    try:
        info = run.wait_up()
    finally:
        os.killpg(run.proc.pid, signal.SIGINT)  # what a terminal does: the demo's group only
        status = run.stop(signal.SIGINT)
    assert status == 0, run.output()
    assert "everything it started is stopped" in run.output()
    assert [pid for pid in run.pids() if alive(pid)] == []
    assert refuses(info["front_end"]["https_port"])
    assert not (tmp_path / "state" / "run" / "demo.json").exists()


@pytest.fixture(scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def demo(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory):
    """A running demo on ephemeral ports; on teardown SIGTERM must stop it and every process it started."""
    args = list(EPHEMERAL)
    if request.param == "postgres":
        from ferryman.demo.postgres import find_tool

        for tool in ("initdb", "pg_ctl"):
            require_program(tool, path=find_tool(tool))
        require_module("psycopg")
        args.append("--postgres")
    run = DemoRun(tmp_path_factory.mktemp(f"demo-{request.param}") / "state", *args)
    try:
        run.wait_up()
        yield run
    finally:
        status = run.stop(signal.SIGTERM)
        assert status == 0, run.output()
        left = [pid for pid in run.pids() if alive(pid)]
        assert not left, f"processes left behind: {left}"
        if request.param == "postgres" and run.info:
            data = Path(run.info["postgres_data"])
            assert not (data / "postmaster.pid").exists(), "PostgreSQL left running"
            if run.state not in data.parents:  # the cluster moved out of a state directory closed to its user
                shutil.rmtree(data.parent)


def test_every_public_url_answers_and_the_app_sees_the_public_request(demo: DemoRun) -> None:
    info = demo.info
    ca = info["ca"]
    https = info["urls"]["https_webapps"]
    status, headers, _ = fetch(https, ca)
    assert status == 401 and 'realm="ferryman demo"' in headers.get("WWW-Authenticate", "")
    status, _, body = fetch(https + "whoami.json", ca, info["user"], info["password"])
    seen = json.loads(body)
    port = info["front_end"]["https_port"]
    assert status == 200
    assert (seen["user"], seen["staff"], seen["scheme"], seen["port"], seen["host"], seen["script_name"]) == \
        ("demo", True, "https", str(port), f"127.0.0.1:{port}", "/webapps")
    assert seen["client"] == "127.0.0.1"
    status, _, body = fetch(info["urls"]["http_public"] + "whoami.json", ca, headers={"Remote-User": "demo"})
    seen = json.loads(body)
    assert status == 200 and seen["user"] is None, "a client-sent Remote-User reached Django"
    assert (seen["scheme"], seen["script_name"]) == ("http", "/public")


def test_a_post_without_the_csrf_token_is_refused(demo: DemoRun) -> None:
    url = demo.info["urls"]["https_public"] + "accounts/login/"
    status, _, _ = fetch(url, demo.info["ca"], data=b"username=demo&password=x",
                         headers={"Content-Type": "application/x-www-form-urlencoded", "Origin": url[:url.index("/public")]})
    assert status == 403


# --------------------------------------------------------------------------------------------------
# A real browser


@pytest.fixture(scope="module")
def browser(demo: DemoRun):
    """Headless chromium (Debian's, with its chromedriver), accepting the demo's self-made CA."""
    chromium = require_program("chromium")
    driver_path = require_program("chromedriver")
    require_module("selenium")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for arg in ("--headless=new", "--disable-dev-shm-usage", "--window-size=1100,900", "--disable-gpu",
                "--no-first-run", "--password-store=basic"):
        options.add_argument(arg)
    if os.geteuid() == 0:
        options.add_argument("--no-sandbox")
    options.accept_insecure_certs = True  # the demo's CA is not in chromium's store
    driver = webdriver.Chrome(options=options, service=Service(executable_path=driver_path))
    driver.set_page_load_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()


def text(driver, element_id: str) -> str:
    from selenium.webdriver.common.by import By

    return driver.find_element(By.ID, element_id).text


def shot(driver, artifacts: Path, name: str) -> Path:
    path = artifacts / f"{name}.png"
    assert driver.save_screenshot(str(path)), f"no screenshot {path}"
    return path


def with_credentials(url: str, user: str, password: str) -> str:
    scheme, rest = url.split("://", 1)
    return f"{scheme}://{user}:{password}@{rest}"


@pytest.mark.browser
def test_the_htpasswd_user_reaches_django_as_remote_user_and_is_staff(demo: DemoRun, browser,
                                                                        artifacts: Path) -> None:
    info = demo.info
    port = info["front_end"]["https_port"]
    browser.get(with_credentials(info["urls"]["https_webapps"], info["user"], info["password"]))
    shot(browser, artifacts, "webapps-remote-user")
    assert text(browser, "seen-user") == "demo (staff) via RemoteUserBackend"
    assert text(browser, "seen-scheme") == "https"
    assert text(browser, "seen-port") == str(port)
    assert text(browser, "seen-host") == f"127.0.0.1:{port}"
    assert text(browser, "seen-script-name") == "/webapps"
    assert text(browser, "seen-client") == "127.0.0.1"
    browser.get(info["urls"]["https_webapps"] + "admin/")
    shot(browser, artifacts, "webapps-admin")
    assert "Site administration" in browser.page_source
    assert browser.current_url == info["urls"]["https_webapps"] + "admin/"


@pytest.mark.browser
def test_django_login_form_and_admin_login_work_under_public_over_https(demo: DemoRun, browser,
                                                                         artifacts: Path) -> None:
    from selenium.webdriver.common.by import By

    info = demo.info
    public = info["urls"]["https_public"]
    browser.get(public + "accounts/login/")
    shot(browser, artifacts, "public-login-form")
    browser.find_element(By.ID, "id_username").send_keys(info["user"])
    browser.find_element(By.ID, "id_password").send_keys(info["password"])
    browser.find_element(By.ID, "login-submit").click()
    wait_until(lambda: browser.current_url == public, 30, 0.05, f"not redirected to {public}: {browser.current_url}")
    shot(browser, artifacts, "public-logged-in")
    assert text(browser, "seen-user") == "demo (staff) via ModelBackend"
    assert text(browser, "seen-script-name") == "/public"
    assert text(browser, "seen-scheme") == "https"
    cookies = {c["name"]: c for c in browser.get_cookies()}
    assert cookies["sessionid"]["path"] == "/public", "the member's cookie path /webapps was not rewritten"
    assert cookies["csrftoken"]["path"] == "/public"

    browser.find_element(By.ID, "logout").click()
    wait_until(lambda: browser.find_elements(By.ID, "login"), 30, 0.05, "not logged out")
    browser.get(public + "admin/")
    assert browser.current_url == public + "admin/login/?next=/public/admin/"
    shot(browser, artifacts, "public-admin-login")
    browser.find_element(By.ID, "id_username").send_keys(info["user"])
    browser.find_element(By.ID, "id_password").send_keys(info["password"])
    browser.find_element(By.CSS_SELECTOR, "input[type=submit]").click()
    wait_until(lambda: browser.current_url == public + "admin/", 30, 0.05, f"admin login failed: {browser.current_url}")
    shot(browser, artifacts, "public-admin")
    assert "Site administration" in browser.page_source
    assert "CSRF verification failed" not in browser.page_source


@pytest.mark.browser
def test_an_upload_lands_in_the_shared_media_directory_and_is_served(demo: DemoRun, browser, artifacts: Path,
                                                                     tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By

    public = demo.info["urls"]["https_public"]
    upload = tmp_path / "hello-ferryman.txt"
    upload.write_bytes(b"uploaded through ferryman\n" * 100)
    browser.get(public + "upload/")
    browser.find_element(By.NAME, "file").send_keys(str(upload))
    browser.find_element(By.ID, "upload-submit").click()
    wait_until(lambda: "stored uploads/hello-ferryman" in browser.page_source, 30, 0.05, "no upload message")
    shot(browser, artifacts, "upload")
    stored = list((Path(demo.info["media"]) / "uploads").glob("hello-ferryman*.txt"))
    assert stored and stored[0].read_bytes() == upload.read_bytes()
    browser.find_element(By.LINK_TEXT, stored[0].name).click()
    wait_until(lambda: "uploaded through ferryman" in browser.page_source, 30, 0.05, "uploaded file not served")
    origin = public.split("/public/")[0]
    url = origin + f"/media/uploads/{stored[0].name}"
    assert browser.current_url == url  # the front end's static route, not an app server

    # the same file with a client: served by ferryman (no app server header), ranges and revalidation work
    ca = demo.info["ca"]
    status, headers, body = fetch(url, ca)
    assert status == 200 and body == upload.read_bytes()
    assert headers["Content-Type"] == "text/plain; charset=utf-8" and headers["X-Content-Type-Options"] == "nosniff"
    status, headers, part = fetch(url, ca, headers={"Range": "bytes=0-24"})
    assert status == 206 and part == b"uploaded through ferryman"
    assert headers["Content-Range"] == f"bytes 0-24/{len(body)}"
    status, _, again = fetch(url, ca, headers={"If-None-Match": headers["ETag"]})
    assert status == 304 and again == b""


@pytest.mark.browser
def test_a_session_sticks_to_one_app_server_and_survives_losing_it(demo: DemoRun, browser,
                                                                    artifacts: Path) -> None:
    from selenium.webdriver.common.by import By

    info = demo.info
    public = info["urls"]["https_public"]
    browser.get(public)
    if not browser.find_elements(By.ID, "logout"):
        browser.get(public + "accounts/login/")
        browser.find_element(By.ID, "id_username").send_keys(info["user"])
        browser.find_element(By.ID, "id_password").send_keys(info["password"])
        browser.find_element(By.ID, "login-submit").click()
        wait_until(lambda: browser.current_url == public, 30, 0.05, "login failed")
    servers = []
    for _ in range(6):
        browser.get(public)
        servers.append(text(browser, "server"))
    assert len(set(servers)) == 1, f"page loads went to {servers}"
    first = servers[0]
    session = text(browser, "seen-session").split(",")[0]
    visits = int(text(browser, "seen-session").rsplit(" ", 1)[1])
    shot(browser, artifacts, f"sticky-{first}")

    app = info["app_servers"][first]
    for pid in app["pids"]:
        os.killpg(pid, signal.SIGTERM)
    wait_until(lambda: refuses(app["http_port"]) and refuses(app["https_port"]), 30, 0.05,
               f"{first} still accepts connections")

    browser.get(public)
    shot(browser, artifacts, "after-failover")
    second = text(browser, "server")
    assert second != first
    assert text(browser, "seen-user") == "demo (staff) via ModelBackend", "the session was lost"
    assert text(browser, "seen-session") == f"{session}, visit {visits + 1}"
    for _ in range(3):
        browser.get(public)
        assert text(browser, "server") == second
    wait_until(lambda: f"{first} (http) exited" in demo.output(), 30, 0.1, "the demo did not report the loss")


@pytest.mark.postgres
def test_a_given_postgresql_server_is_migrated_and_used(tmp_path: Path) -> None:
    from ferryman.demo.postgres import LocalPostgres, find_tool

    for tool in ("initdb", "pg_ctl"):
        require_program(tool, path=find_tool(tool))
    server = LocalPostgres(tmp_path / "pg", free_port(), tmp_path / "pg.log")
    server.start()
    try:
        run = DemoRun(tmp_path / "state", *EPHEMERAL, "--database", server.url)
        try:
            info = run.wait_up()
            assert f"database: checking 127.0.0.1:{server.port}/ferryman_demo" in run.output()
            status, _, body = fetch(info["urls"]["https_webapps"] + "whoami.json", info["ca"], info["user"],
                                    info["password"])
            assert status == 200 and json.loads(body)["user"] == "demo"
            import psycopg

            with psycopg.connect(server.url) as conn:
                row = conn.execute("SELECT is_staff FROM auth_user WHERE username = 'demo'").fetchone()
            assert row == (True,)
        finally:
            assert run.stop() == 0
    finally:
        server.stop()
        if server.directory != tmp_path / "pg":
            shutil.rmtree(server.directory)
