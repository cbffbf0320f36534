"""The README's run command works: two gunicorn apps and ferryman, the seed topology on one machine."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support import ClientConn, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]


def _get(path: str):  # noqa: ANN202
    with ClientConn(8080) as c:
        return c.request("GET", path, host="127.0.0.1:8080")


def test_the_quickstart_serves_both_prefixes_balances_and_rewrites_then_stops_cleanly():
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
