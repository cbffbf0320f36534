"""ferryman's own faults are ferryman's: an exception in its code is never blamed on a backend or a client.

A real ferryman runs in this process (its loop in a thread, real sockets on 127.0.0.1) with one of its own
functions replaced by one that raises: the answer is 500 (or a cut connection once the head is out), the
traceback reaches the error log, the member is not counted as failing, and the access log records the status
the client really got.
"""

from __future__ import annotations

import asyncio
import logging
import tempfile
import threading
from pathlib import Path

import pytest

from ferryman.config.loader import load_config_text
from ferryman.plan import compile_plan
from ferryman.server import app
from ferryman.server.runtime import ListenerRuntime, RouteRuntime
from tests.support import ClientConn, RawBackend, config, keep_alive_handler, wait_until

pytestmark = pytest.mark.integration


class InProcess:
    """ferryman serving `toml` on its own event loop in a thread of this process."""

    def __init__(self, toml: str) -> None:
        self._tmp = tempfile.TemporaryDirectory(prefix="ferryman-inproc-")
        self.plan = compile_plan(load_config_text(toml, "ferryman.toml", Path(self._tmp.name)))
        self.loop = asyncio.new_event_loop()
        self.running: app.Running | None = None
        started = threading.Event()

        def main() -> None:
            asyncio.set_event_loop(self.loop)

            async def go() -> None:
                self.running = await app.start(self.plan)
                started.set()

            self.loop.run_until_complete(go())
            self.loop.run_forever()

        self.thread = threading.Thread(target=main, daemon=True)
        self.thread.start()
        assert started.wait(10), "in-process ferryman did not start"

    @property
    def port(self) -> int:
        assert self.running is not None
        return self.running.server.listeners[0].port

    def close(self) -> None:
        assert self.running is not None
        fut = asyncio.run_coroutine_threadsafe(self.running.stop(1.0), self.loop)
        fut.result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()
        self._tmp.cleanup()


class Captured(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def text(self) -> str:
        return "\n".join(self.format(r) for r in self.records)


def _inject(monkeypatch, where: str, fault: str) -> None:
    """Make one of ferryman's own functions raise: `where` is the request or the response side."""
    def boom(*args, **kwargs):
        raise RuntimeError(fault)

    cls, name = {"response": (RouteRuntime, "rewrite_response"), "request": (ListenerRuntime, "is_vouched")}[where]
    monkeypatch.setattr(cls, name, boom)


def _toml(backend: RawBackend, access: Path) -> str:
    return config([backend.url("/m")], "/p", pool_options="passive = { fails = 1 }",
                  listener_options=f'access_log = {{ path = "{access}" }}')


@pytest.mark.parametrize("where", ["response", "request"])
def test_an_exception_in_ferryman_gets_500_a_traceback_and_no_blame_on_the_member(monkeypatch, where):
    with RawBackend(keep_alive_handler(lambda c, r: c.respond(302, headers={"Location": "/m/next"},
                                                              body=b""))) as backend, \
            tempfile.TemporaryDirectory() as tmp:
        access = Path(tmp) / "access.log"
        handler = Captured()
        handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
        logger = logging.getLogger("ferryman")
        logger.addHandler(handler)
        old = logger.level
        logger.setLevel(logging.INFO)
        srv = InProcess(_toml(backend, access))
        try:
            fault = f"injected {where} fault"
            _inject(monkeypatch, where, fault)
            with ClientConn(srv.port) as c:
                c.send(b"GET /p/x HTTP/1.1\r\nHost: t\r\nX-Unusual: 1\r\n\r\n")
                r = c.read_response()
            assert r.status == 500
            assert len(r.body) < 2048 and fault.encode() not in r.body
            wait_until(lambda: "Traceback" in handler.text() and fault in handler.text(), 10, 0.01,
                       "no traceback in the error log")
            text = handler.text()
            assert "ejected" not in text and "malformed" not in text, text
            wait_until(lambda: any(" 500 " in ln for ln in access.read_text().splitlines())
                       if access.exists() else False, 10, 0.01, "the access log did not record the 500")
            assert not any(" 302 " in ln or " 400 " in ln for ln in access.read_text().splitlines())
            # the member was not put out: with the fault gone it serves at once
            monkeypatch.undo()
            with ClientConn(srv.port) as c:
                assert c.request("GET", "/p/y").status == 302
        finally:
            srv.close()
            logger.removeHandler(handler)
            logger.setLevel(old)
