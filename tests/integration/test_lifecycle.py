"""Process lifecycle: graceful SIGTERM/SIGINT, start-up failures, and `ferryman check` on good and bad files.

Rules: SIGTERM/SIGINT stop accepting at once and let in-flight requests finish within shutdown_timeout
(invariant 9 of docs/request-safety.md); a configuration error is `file:line: key: what is wrong`, exit 2.
"""

from __future__ import annotations

import re
import signal
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from tests.support import (
    REPO,
    ClientConn,
    Ferryman,
    RawBackend,
    build_request,
    config,
    ferryman_check,
    wait_until,
)

pytestmark = pytest.mark.integration


def accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


def _slow_handler(conn, sock):
    """Read one request, wait until the test releases the backend, then answer."""
    if conn.read_request() is not None:
        conn.hold(60)
        conn.respond(200, body=b"finished")


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_stop_signal_stops_accepting_lets_the_in_flight_request_finish_and_exits_0(sig):
    with RawBackend(_slow_handler) as backend, Ferryman(config([backend.url("/m")], "/p")) as f, \
            ClientConn(f.port(), timeout=30) as client:
        client.send(build_request("GET", "/p/slow"))
        wait_until(lambda: backend.requests, 10)           # the request is in flight at the backend
        port = f.port()
        f.signal(sig)
        wait_until(lambda: not accepts(port), 10)          # new connections are refused at once
        assert f.running()                                 # ...while the in-flight request is still pending
        backend.release.set()
        r = client.read_response()
        assert (r.status, r.body, r.complete) == (200, b"finished", True)
        assert f.wait_exit(30) == 0
        assert not client.read_until_close()               # nothing after the answer, then closed


def test_sigterm_with_only_idle_keepalive_connections_exits_0_without_waiting_for_the_shutdown_timeout():
    with RawBackend.respond(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok") as backend, \
            Ferryman(config([backend.url("/m")], "/p", top='shutdown_timeout = "60s"')) as f, \
            ClientConn(f.port()) as idle:
        assert idle.request("GET", "/p/x").status == 200   # the connection is now idle, kept alive
        code = f.stop(signal.SIGTERM, timeout=30)          # 30 s guard < the 60 s shutdown_timeout
        assert code == 0
        assert idle.is_closed_by_peer(10)


def test_an_in_flight_request_outliving_shutdown_timeout_does_not_keep_ferryman_running():
    with RawBackend(_slow_handler) as backend, \
            Ferryman(config([backend.url("/m")], "/p", top='shutdown_timeout = "1s"')) as f, \
            ClientConn(f.port(), timeout=30) as client:
        client.send(build_request("GET", "/p/slow"))
        wait_until(lambda: backend.requests, 10)
        code = f.stop(signal.SIGTERM, timeout=30)
        assert code == 0
        # the client never gets a complete 200 it could mistake for the backend's answer
        try:
            r = client.read_response()
            assert not (r.status == 200 and r.complete)
        except EOFError:
            pass


def test_a_listener_port_already_in_use_makes_run_exit_1_with_a_message():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        toml = config(["http://127.0.0.1:9/m"], "/p", bind=f"127.0.0.1:{port}")
        with tempfile.TemporaryDirectory() as d:
            (Path(d) / "ferryman.toml").write_text(toml)
            proc = subprocess.run([sys.executable, "-m", "ferryman", "run", "-c", "ferryman.toml"], cwd=d,
                                  capture_output=True, text=True, timeout=30, env=_env())
    assert proc.returncode == 1
    assert str(port) in proc.stderr


def test_run_with_an_invalid_config_exits_2_and_listens_nowhere():
    toml = config(["htp://x"], "/p")
    with tempfile.TemporaryDirectory() as d:
        (Path(d) / "ferryman.toml").write_text(toml)
        proc = subprocess.run([sys.executable, "-m", "ferryman", "run", "-c", "ferryman.toml"], cwd=d,
                              capture_output=True, text=True, timeout=30, env=_env())
    assert proc.returncode == 2
    assert "listening on" not in proc.stderr
    assert "htp://x" in proc.stderr


def _env():
    import os
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    return env


# --------------------------------------------------------------------------------------------------
# ferryman check

GOOD = """\
[[listener]]
name = "http"
bind = "127.0.0.1:8080"

[[listener]]
name = "internal"
bind = "127.0.0.1:8081"

[pool.django-http]
sticky = "sessionid"
members = [
  { url = "http://127.0.0.1:9001/webapps", route = "http-1" },
  { url = "http://127.0.0.1:9002/webapps", route = "http-2", weight = 2 },
]

[[route]]
listener = "http"
path = "/webapps"
pool = "django-http"

[[route]]
path = "/public"
pool = "django-http"
"""


def test_check_on_a_good_config_exits_0_and_names_its_listeners_and_pools():
    proc = ferryman_check(GOOD)
    assert proc.returncode == 0, proc.stderr
    for name in ("http", "internal", "django-http", "/webapps", "/public", "127.0.0.1:8080"):
        assert name in proc.stdout, name


def test_check_starts_nothing_even_on_a_port_that_is_taken():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        proc = ferryman_check(GOOD.replace("127.0.0.1:8080", f"127.0.0.1:{port}"))
    assert proc.returncode == 0, proc.stderr


BAD = """\
[[listener]]
name = "http"
bnd = "127.0.0.1:8080"

[pool.app]
retry = 60
members = [
  { url = "htp://x" },
]

[[route]]
path = "/webapps"
pool = "app"
"""


def test_check_on_a_bad_config_exits_2_naming_file_line_and_key_for_every_problem():
    proc = ferryman_check(BAD)
    assert proc.returncode == 2
    err = proc.stderr
    assert re.search(r"(^|/)ferryman\.toml:3: listener\[0\]\.bnd: .*did you mean 'bind'", err, re.M), err
    assert re.search(r"(^|/)ferryman\.toml:6: pool\.app\.retry: .*\"60s\"", err, re.M), err
    assert re.search(r"(^|/)ferryman\.toml:8: pool\.app\.members\[0\]\.url: 'htp://x' is not an http\(s\) URL",
                     err, re.M), err
    assert "valid" not in proc.stdout


def test_check_reports_a_toml_syntax_error_with_its_line():
    proc = ferryman_check('[[listener]]\nname = "http"\nbind = "127.0.0.1:0\n')
    assert proc.returncode == 2
    assert re.search(r"(^|/)ferryman\.toml:3: TOML syntax error", proc.stderr, re.M), proc.stderr


def test_check_reports_a_route_to_an_unknown_pool_and_listener():
    bad = GOOD + '\n[[route]]\nlistener = "nope"\npath = "/x"\npool = "missing"\n'
    proc = ferryman_check(bad)
    assert proc.returncode == 2
    assert "missing" in proc.stderr
    assert "nope" in proc.stderr
    assert re.search(r"ferryman\.toml:\d+: route\[2\]", proc.stderr), proc.stderr
