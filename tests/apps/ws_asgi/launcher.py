"""`AsgiMember`: one uvicorn process serving the WebSocket test app on an ephemeral 127.0.0.1 port.

The listening socket is bound here (port 0) and handed to uvicorn (`--fd`), so there is no window in which
another process can take the port; the member is ready once GET /ready answers 200 with its name.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

from tests.support import LOOPBACK, REPO, MemberProcess, wait_until


class AsgiMember(MemberProcess):
    """uvicorn serving tests.apps.ws_asgi.asgi:application as member `name` (reported by /ready and ws/who).

    `.url(prefix)` is a member URL such as http://127.0.0.1:PORT/webapps; `.kill()` is SIGKILL (the port
    refuses afterwards: nothing else holds the socket); `.stop()` is SIGTERM."""

    def __init__(self, name: str, ready_timeout: float = 30, ws_max_size: int = 32 << 20):
        self.name = name
        self.host = LOOPBACK
        self._tmp = tempfile.TemporaryDirectory(prefix="asgi-member-")
        self.log_path = Path(self._tmp.name) / "uvicorn.log"
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, 0))
        sock.listen(128)
        self.port = sock.getsockname()[1]
        env = dict(os.environ)
        env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
        env.update(WS_MEMBER_NAME=name, WS_MEMBER_PORT=str(self.port),
                   DJANGO_SETTINGS_MODULE="tests.apps.ws_asgi.settings")
        args = [sys.executable, "-m", "uvicorn", "tests.apps.ws_asgi.asgi:application",
                "--fd", str(sock.fileno()), "--ws", "websockets-sansio", "--ws-max-size", str(ws_max_size),
                "--ws-ping-interval", "0", "--lifespan", "off", "--no-proxy-headers", "--no-access-log",
                "--log-level", "warning", "--timeout-graceful-shutdown", "2"]
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(args, cwd=REPO, env=env, stdin=subprocess.DEVNULL, stdout=log,
                                         stderr=subprocess.STDOUT, pass_fds=(sock.fileno(),),
                                         start_new_session=True)
        sock.close()  # uvicorn holds the only copy now: once it dies, the port refuses
        try:
            wait_until(self._ready, ready_timeout, 0.05, f"uvicorn member {name} not ready")
        except BaseException:
            self.kill()
            raise RuntimeError(f"uvicorn member {name} did not start; log:\n{self.log()}") from None

    def _ready(self) -> bool:
        if self.proc.poll() is not None:
            raise RuntimeError(f"uvicorn exited with {self.proc.returncode}; log:\n{self.log()}")
        return self.get("/ready") is not None

    def get(self, path: str) -> dict | None:
        """GET path straight from the member (not through ferryman): its JSON answer, or None."""
        try:
            c = http.client.HTTPConnection(self.host, self.port, timeout=5)
            try:
                c.request("GET", path)
                r = c.getresponse()
                body = r.read()
            finally:
                c.close()
        except OSError:
            return None
        return json.loads(body) if r.status == 200 else None

    def running(self) -> bool:
        return self.proc.poll() is None

    def kill(self) -> None:
        """SIGKILL the whole process group and reap it."""
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(10)

    def stop(self, timeout: float = 10) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
