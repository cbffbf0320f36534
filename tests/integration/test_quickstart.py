"""The README's run command works: two gunicorn apps and ferryman, the classic Apache topology on one machine."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tests.support import ClientConn, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]


def _get(path: str):  # noqa: ANN202
    with ClientConn(8080) as c:
        return c.request("GET", path, host="127.0.0.1:8080")


def test_the_quickstart_serves_both_prefixes_balances_and_rewrites_then_stops_cleanly():
    taken = [p for p in QUICKSTART_PORTS if not _nothing_listens(p)]
    if taken:
        pytest.skip(f"another program listens on the quickstart's port(s) {taken}")
    proc = subprocess.Popen([sys.executable, str(REPO / "examples" / "quickstart.py")], cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        def up() -> bool:
            try:
                return _get("/webapps/").status == 200
            except OSError:
                return False

        wait_until(up, timeout=60, interval=0.2)
        served = {_get("/webapps/").json()["served_by"] for _ in range(4)}
        assert served == {"http-1", "http-2"}
        seen = _get("/public/x?y=1").json()
        assert (seen["path"], seen["query"]) == ("/webapps/x", "y=1")
        assert seen["x_forwarded"]["x-forwarded-prefix"] == "/public"
        login = _get("/public/login")
        assert login.status == 302
        assert login.header("location") == "http://127.0.0.1:8080/public/"
        assert "Path=/public" in login.header("set-cookie")
    finally:
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0, out


QUICKSTART_PORTS = (8080, 9001, 9002)


def _nothing_listens(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
    except ConnectionRefusedError:
        return True
    except OSError:
        return False
    return False


class _Impostor(BaseHTTPRequestHandler):
    """Another program on a port the quickstart needs: it answers like an app server would."""

    def do_GET(self) -> None:  # noqa: N802
        body = json.dumps({"served_by": "http-1", "x_forwarded": {"x-forwarded-prefix": "/public"}}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.mark.parametrize(("port", "who"), [(8080, "ferryman"), (9001, "app server http-1")],
                         ids=["ferryman-port", "app-port"])
def test_the_quickstart_fails_with_the_reason_when_a_port_it_needs_is_taken_and_stops_what_it_started(port, who):
    taken = [p for p in QUICKSTART_PORTS if not _nothing_listens(p)]
    if taken:
        pytest.skip(f"another program listens on the quickstart's port(s) {taken}")
    impostor = ThreadingHTTPServer(("127.0.0.1", port), _Impostor)
    threading.Thread(target=impostor.serve_forever, daemon=True).start()
    try:
        run = subprocess.run([sys.executable, str(REPO / "examples" / "quickstart.py")], cwd=REPO,
                             env=dict(os.environ, FERRYMAN_QUICKSTART_ONCE="1"), capture_output=True, text=True,
                             timeout=120)
    finally:
        impostor.shutdown()
        impostor.server_close()
    assert run.returncode == 1, run.stdout + run.stderr
    assert "ferryman is up" not in run.stdout
    [failed] = [ln for ln in run.stderr.splitlines() if ln.startswith("quickstart failed: ")]
    assert failed.startswith(f"quickstart failed: {who}"), failed
    assert str(port) in failed and "exited with status" in failed
    if port == 8080:
        assert "listener http cannot listen on 127.0.0.1:8080: the address is already in use" in failed
    # what it started is stopped: every port it used is free again
    wait_until(lambda: all(_nothing_listens(p) for p in QUICKSTART_PORTS if p != port), timeout=30)
