"""ferryman.server.prober against real sockets: a tiny asyncio HTTP responder on 127.0.0.1:0 whose answer
each test switches (200 / 500 / close / hang / body), a `Prober` over duck-typed pool and member objects,
and a real `MemberHealth`.

Sources: HAProxy `fall`/`rise`/`inter` (a server goes down after `fall` consecutive failed checks and up after
`rise` passing ones; checks every `inter`), Apache mod_proxy_hcheck (hcfails/hcpasses/hcinterval),
docs/configuration.md (`pool.NAME.health`: request shape; transitions are logged). Waits poll the health state
with a deadline (a hang guard, not a measurement); the only sleeps are the 50 ms check intervals the
configuration sets.
"""

from __future__ import annotations

import asyncio
import logging
import random
import socket
import ssl
from types import SimpleNamespace

import pytest
import trustme

from ferryman.config.schema import HealthCheck
from ferryman.core.health import MemberHealth
from ferryman.server.prober import Prober, check_request, parse_expect

pytestmark = pytest.mark.integration

DEADLINE = 10.0  # hang guard only


class Responder:
    """An HTTP/1.1 server whose answer is `mode`: "200", "500", "close" (read the request, close), "hang"
    (never answer), "chunked" (200 with a chunked body). Records every request head."""

    def __init__(self, ssl_ctx: ssl.SSLContext | None = None) -> None:
        self.mode = "200"
        self.body = b"OK"
        self.requests: list[bytes] = []
        self.ssl_ctx = ssl_ctx
        self.server: asyncio.Server | None = None
        self.port = 0

    async def __aenter__(self) -> Responder:
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", 0, ssl=self.ssl_ctx)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.server is not None
        self.server.close()
        try:
            await asyncio.wait_for(self.server.wait_closed(), 1)
        except TimeoutError:  # a "hang" connection may still be open; it is dropped with the loop
            pass

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            mode = self.mode
            head = await reader.readuntil(b"\r\n\r\n")
            self.requests.append(head)
            if mode == "close":
                return
            if mode == "hang":
                await asyncio.sleep(3600)
            elif mode == "chunked":
                half = len(self.body) // 2
                parts = [self.body[:half], self.body[half:]]
                chunks = b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in parts if p)
                writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + chunks + b"0\r\n\r\n")
            else:
                status = int(mode)
                writer.write(b"HTTP/1.1 %d X\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s"
                             % (status, len(self.body), self.body))
            await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.CancelledError):
            pass
        finally:
            writer.close()


class RecordingHealth(MemberHealth):
    """A real MemberHealth that also records every check result it is fed and what it answered."""

    __slots__ = ("seen", "times")

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.seen: list[tuple[bool, str, object]] = []
        self.times: list[float] = []

    def observe_check(self, ok, now, reason):
        t = super().observe_check(ok, now, reason)
        self.seen.append((ok, reason, t))
        self.times.append(now)
        return t


def member(port: int, cfg: HealthCheck, *, name: str = "http://127.0.0.1/m1", route: str = "http-1",
           ssl_ctx: ssl.SSLContext | None = None, server_hostname: str | None = None) -> SimpleNamespace:
    return SimpleNamespace(
        name=name, route=route, host="127.0.0.1", port=port, ssl=ssl_ctx, server_hostname=server_hostname,
        host_header=b"127.0.0.1:%d" % port,
        health=RecordingHealth(name, passes=cfg.passes, fails=cfg.fails, active=True))


def pool(cfg: HealthCheck | None, *members: SimpleNamespace, name: str = "django-http") -> SimpleNamespace:
    return SimpleNamespace(name=name, health_cfg=cfg, members=list(members))


async def until(pred, what: str, deadline: float = DEADLINE) -> None:
    loop = asyncio.get_running_loop()
    end = loop.time() + deadline
    while not pred():
        if loop.time() > end:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)


def cfg(**kw) -> HealthCheck:
    base = {"interval": "50ms", "timeout": "500ms", "passes": 2, "fails": 3} | kw
    return HealthCheck(**base)


def run(coro) -> None:
    asyncio.run(asyncio.wait_for(coro, 60))


def _trailing_run(seen: list, ok: bool) -> int:
    """How many results at the end of `seen` equal `ok`."""
    n = 0
    for s_ok, _, _ in reversed(seen):
        if s_ok != ok:
            break
        n += 1
    return n


# -- ejection and recovery --------------------------------------------------------------------------

def test_ejected_after_fails_failed_checks_and_back_after_passes(caplog) -> None:
    caplog.set_level(logging.INFO, logger="test.prober")
    log = logging.getLogger("test.prober")

    async def main() -> None:
        async with Responder() as srv:
            c = cfg(passes=2, fails=3)
            m = member(srv.port, c)
            prober = Prober([pool(c, m)], asyncio.get_running_loop(), log, rng=random.Random(1))
            prober.start()
            try:
                h = m.health
                await until(lambda: len(h.seen) >= 2, "two passing checks")
                assert h.state == "healthy" and all(ok for ok, _, _ in h.seen)

                srv.mode = "500"
                await until(lambda: h.state == "ejected", "ejection")
                # ejected exactly at the third failure in a row, not before
                assert _trailing_run(h.seen, False) == 3
                assert [t for *_, t in h.seen[:-1] if t is not None] == []
                assert h.seen[-1][2].reason == "3 consecutive failed checks: status 500 (expected 200-399)"
                assert h.is_ejected(asyncio.get_running_loop().time() + 3600)  # held down, not timed

                n_failed = len(h.seen)
                srv.mode = "200"
                await until(lambda: h.state == "healthy", "recovery")
                assert _trailing_run(h.seen, True) == 2
                assert h.seen[-1][2].reason == "2 checks passed"
                assert all(t is None for *_, t in h.seen[n_failed:-1])
            finally:
                await prober.stop()

    run(main())
    records = [r for r in caplog.records if r.name == "test.prober" and "->" in r.getMessage()]
    assert [(r.levelno, r.getMessage()) for r in records] == [
        (logging.WARNING, "pool django-http member http://127.0.0.1/m1 (route http-1): healthy -> ejected: "
                          "3 consecutive failed checks: status 500 (expected 200-399)"),
        (logging.INFO, "pool django-http member http://127.0.0.1/m1 (route http-1): ejected -> healthy: "
                       "2 checks passed"),
    ]


@pytest.mark.parametrize("mode, reason", [
    ("close", "connection closed before a complete answer"),
    ("hang", "no answer within 150ms"),
])
def test_closed_and_silent_members_fail_their_checks(mode: str, reason: str) -> None:
    async def main() -> None:
        async with Responder() as srv:
            srv.mode = mode
            c = cfg(fails=2, timeout="150ms")
            m = member(srv.port, c)
            prober = Prober([pool(c, m)], asyncio.get_running_loop(), logging.getLogger("test.prober"))
            prober.start()
            try:
                await until(lambda: m.health.state == "ejected", "ejection")
                assert m.health.seen[-1][2].reason == f"2 consecutive failed checks: {reason}"
            finally:
                await prober.stop()

    run(main())


def test_refused_connection_fails_the_check() -> None:
    with socket.socket() as s:  # a port nobody listens on: bound, never listening
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]

        async def main() -> None:
            c = cfg(fails=1)
            m = member(port, c)
            prober = Prober([pool(c, m)], asyncio.get_running_loop(), logging.getLogger("test.prober"))
            prober.start()
            try:
                await until(lambda: m.health.state == "ejected", "ejection")
                assert m.health.seen[-1][2].reason == "check failed: connection refused"
            finally:
                await prober.stop()

        run(main())


# -- what is sent and matched -----------------------------------------------------------------------

def test_the_check_request_is_exactly_the_configured_one() -> None:
    async def main() -> None:
        async with Responder() as srv:
            c = cfg(path="/webapps/health?x=1", method="HEAD")
            m = member(srv.port, c)
            c2 = cfg(host="app.example.com")
            m2 = member(srv.port, c2, name="m2")
            prober = Prober([pool(c, m), pool(c2, m2, name="other")], asyncio.get_running_loop(),
                            logging.getLogger("test.prober"))
            prober.start()
            try:
                await until(lambda: m.health.seen and m2.health.seen, "a check of each member")
            finally:
                await prober.stop()
            heads = set(srv.requests)
            assert (b"HEAD /webapps/health?x=1 HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nConnection: close\r\n"
                    b"User-Agent: ferryman-health\r\n\r\n" % srv.port) in heads
            assert (b"GET / HTTP/1.1\r\nHost: app.example.com\r\nConnection: close\r\n"
                    b"User-Agent: ferryman-health\r\n\r\n") in heads

    run(main())


def test_a_path_with_spaces_cannot_break_the_request_line() -> None:
    assert check_request("GET", "/a b\t/\u00e9", b"h").startswith(b"GET /a%20b%09/%C3%A9 HTTP/1.1\r\n")


@pytest.mark.parametrize("text, ranges", [("200-399", ((200, 399),)), ("200,204", ((200, 200), (204, 204))),
                                          ("200-299, 304", ((200, 299), (304, 304)))])
def test_parse_expect(text: str, ranges: tuple) -> None:
    assert parse_expect(text) == ranges


@pytest.mark.parametrize("expect, mode, ok", [("200,204", "204", True), ("200,204", "500", False),
                                              ("500-599", "500", True), ("200-399", "302", True)])
def test_expect_ranges(expect: str, mode: str, ok: bool) -> None:
    async def main() -> None:
        async with Responder() as srv:
            srv.mode = mode
            srv.body = b""
            c = cfg(expect=expect)
            m = member(srv.port, c)
            prober = Prober([pool(c, m)], asyncio.get_running_loop(), logging.getLogger("test.prober"))
            await prober.check_once(prober.checks[0])
            assert m.health.seen[0][:2] == (ok, f"status {mode}" if ok else
                                            f"status {mode} (expected {expect})")

    run(main())


@pytest.mark.parametrize("mode, body, ok", [("200", b"status: OK", True), ("200", b"status: DOWN", False),
                                            ("chunked", b"xxOKxx", True), ("chunked", b"O", False)])
def test_body_must_contain_the_configured_text(mode: str, body: bytes, ok: bool) -> None:
    async def main() -> None:
        async with Responder() as srv:
            srv.mode, srv.body = mode, body
            c = cfg(body="OK")
            m = member(srv.port, c)
            prober = Prober([pool(c, m)], asyncio.get_running_loop(), logging.getLogger("test.prober"))
            await prober.check_once(prober.checks[0])
            seen_ok, reason, _ = m.health.seen[0]
            assert seen_ok is ok, reason
            if not ok:
                assert reason == "status 200 but the body lacks 'OK' (first 64 KiB)"

    run(main())


def test_tls_member_is_checked_over_verified_tls() -> None:
    ca = trustme.CA()
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("app.internal").configure_cert(server_ctx)
    client_ctx = ssl.create_default_context()
    ca.configure_trust(client_ctx)

    async def main() -> None:
        async with Responder(server_ctx) as srv:
            c = cfg()
            good = member(srv.port, c, name="good", ssl_ctx=client_ctx, server_hostname="app.internal")
            bad = member(srv.port, c, name="bad", ssl_ctx=client_ctx, server_hostname="wrong.internal")
            prober = Prober([pool(c, good, bad)], asyncio.get_running_loop(), logging.getLogger("test.prober"))
            for check in prober.checks:
                await prober.check_once(check)
            assert good.health.seen[0][:2] == (True, "status 200")
            assert bad.health.seen[0][0] is False
            assert bad.health.seen[0][1].startswith("TLS certificate not accepted")

    run(main())


# -- scheduling -------------------------------------------------------------------------------------

def test_only_configured_pools_and_members_with_health_are_checked() -> None:
    async def main() -> None:
        c = cfg()
        checked = member(1, c, name="a")
        unhealthful = member(2, c, name="b")
        unhealthful.health = None
        p = Prober({"x": pool(c, checked, unhealthful), "y": pool(None, member(3, c, name="c"))},
                   asyncio.get_running_loop(), logging.getLogger("test.prober"))
        assert [ch.member.name for ch in p.checks] == ["a"]

    run(main())


def test_members_are_probed_repeatedly_with_jitter_and_stop_ends_it() -> None:
    async def main() -> None:
        async with Responder() as srv:
            c = cfg(interval="50ms")
            members = [member(srv.port, c, name=f"m{i}") for i in range(4)]
            loop = asyncio.get_running_loop()
            times = {m.name: m.health.times for m in members}
            prober = Prober([pool(c, *members)], loop, logging.getLogger("test.prober"), rng=random.Random(7))
            prober.start()
            prober.start()  # idempotent: still one task per member
            assert len(prober._tasks) == 4
            await until(lambda: all(len(t) >= 4 for t in times.values()), "four checks of every member")
            await prober.stop()
            stopped = {k: len(v) for k, v in times.items()}
            first = sorted(t[0] for t in times.values())
            assert first[-1] - first[0] > 0.005  # jittered start: not all at once
            for t in times.values():
                gaps = [b - a for a, b in zip(t, t[1:])]
                # every interval -10% (45 ms), less the spread of probe durations: never back to back
                assert all(g >= 0.03 for g in gaps), gaps
            await asyncio.sleep(0.2)  # four intervals: nothing more happens after stop()
            assert {k: len(v) for k, v in times.items()} == stopped

    run(main())
