"""Active health checks: one asyncio task per member of every pool that configures ``health``.

Each task waits a random fraction of the interval first (so the members of a pool, and pools started
together, are not probed at the same instant), then probes every ``interval`` +-10%. A probe opens a
new TCP connection (TLS when the member is https, with the pool's client context and SNI name) to
the member's configured address, sends one request::

    METHOD path HTTP/1.1
    Host: <health.host, or the member's host:port>
    Connection: close
    User-Agent: ferryman-health

and, within ``timeout`` for the whole exchange, reads the status line (skipping 1xx interim
answers) and, when ``body`` is configured, up to 64 KiB of the body (de-chunked) to look for it.
The result goes to ``member.health.observe_check``; every `Transition` it returns is logged, at
WARNING when the member is ejected and INFO when it comes back.

Targets come only from configuration: a check never follows a redirect or any other address a member
gives. Check results are pure data handed to `ferryman.core.health`; this module owns only sockets,
timers and logging.
"""

from __future__ import annotations

import asyncio
import logging
import random
import ssl
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import quote

from ferryman.core.health import Transition
from ferryman.core.units import format_duration

#: Most body bytes read to look for ``health.body``.
MAX_BODY = 64 * 1024
#: Most bytes of status line plus headers accepted.
MAX_HEAD = 64 * 1024
#: Interval jitter: each wait is the interval times a factor in [1 - JITTER, 1 + JITTER].
JITTER = 0.10

_USER_AGENT = b"ferryman-health"
# Characters left as they are in a configured check path: RFC 3986 reserved + unreserved + '%'.
_PATH_SAFE = "/:@!$&'()*+,;=-._~?%[]"


def parse_expect(text: str) -> tuple[tuple[int, int], ...]:
    """``"200-399"`` / ``"200,204"`` / ``"200-299,304"`` -> inclusive ranges.

    Raises:
        ValueError: a part that is not a code or a range of codes.
    """
    ranges = []
    for part in text.split(","):
        lo, _, hi = part.strip().partition("-")
        if not lo.isdigit() or (hi and not hi.isdigit()):
            raise ValueError(f"{text!r} is not a list of status codes and ranges")
        ranges.append((int(lo), int(hi or lo)))
    return tuple(ranges)


def check_request(method: str, path: str, host: bytes) -> bytes:
    """The bytes of one check request; characters that cannot stand in a request target are
    percent-encoded, so no configured path can break the request line."""
    target = quote(path or "/", safe=_PATH_SAFE, encoding="utf-8", errors="strict")
    if not target.startswith("/"):
        target = "/" + target
    return b"".join((method.encode("ascii"), b" ", target.encode("ascii"), b" HTTP/1.1\r\nHost: ", host,
                     b"\r\nConnection: close\r\nUser-Agent: ", _USER_AGENT, b"\r\n\r\n"))


class CheckFailed(Exception):
    """A probe that failed; the message is the reason logged and given to the health state."""


def _describe(exc: BaseException, timeout: float) -> str:
    """A short reason for a connection-level failure."""
    if isinstance(exc, TimeoutError):
        return f"no answer within {format_duration(timeout)}"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, ConnectionResetError):
        return "connection reset"
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"TLS certificate not accepted: {exc.verify_message or exc.reason}"
    if isinstance(exc, ssl.SSLError):
        return f"TLS failed: {exc.reason or exc}"
    if isinstance(exc, (asyncio.IncompleteReadError, EOFError)):
        return "connection closed before a complete answer"
    if isinstance(exc, asyncio.LimitOverrunError):
        return f"answer head over {MAX_HEAD // 1024} KiB"
    if isinstance(exc, OSError):
        return exc.strerror or type(exc).__name__
    return str(exc) or type(exc).__name__


class MemberCheck:
    """The check of one member: what to send and what counts as healthy."""

    __slots__ = ("pool", "member", "request", "expect", "expect_text", "body", "method", "timeout",
                 "interval")

    def __init__(self, pool: Any, cfg: Any, member: Any) -> None:
        self.pool = pool
        self.member = member
        host = cfg.host.encode("utf-8") if getattr(cfg, "host", None) else member.host_header
        self.method = cfg.method
        self.request = check_request(cfg.method, cfg.path, host)
        self.expect_text = cfg.expect
        self.expect = parse_expect(cfg.expect)
        self.body = cfg.body.encode("utf-8") if getattr(cfg, "body", None) else None
        self.timeout = float(cfg.timeout)
        self.interval = float(cfg.interval)

    def expected(self, status: int) -> bool:
        return any(lo <= status <= hi for lo, hi in self.expect)

    async def probe(self) -> str:
        """One check. Returns the success reason ("status 200").

        Raises:
            CheckFailed: the check failed; its message says why.
        """
        m = self.member
        writer = None
        try:
            async with asyncio.timeout(self.timeout):
                reader, writer = await asyncio.open_connection(
                    m.host, m.port, ssl=m.ssl, server_hostname=m.server_hostname if m.ssl else None,
                    limit=MAX_HEAD)
                writer.write(self.request)
                await writer.drain()
                status, headers = await self._read_head(reader)
                if not self.expected(status):
                    raise CheckFailed(f"status {status} (expected {self.expect_text})")
                if self.body is not None:
                    body = b"" if self.method == "HEAD" or status in (204, 304) \
                        else await self._read_body(reader, headers)
                    if self.body not in body:
                        raise CheckFailed(f"status {status} but the body lacks {self.body.decode('utf-8')!r}"
                                          f" (first {MAX_BODY // 1024} KiB)")
                return f"status {status}"
        except CheckFailed:
            raise
        except Exception as exc:  # every failure (timeouts, resets, TLS...) is a failed check
            raise CheckFailed(_describe(exc, self.timeout)) from exc
        finally:
            if writer is not None:
                writer.close()

    async def _read_head(self, reader: asyncio.StreamReader) -> tuple[int, dict[bytes, bytes]]:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            line, _, rest = head.partition(b"\r\n")
            parts = line.split(b" ", 2)
            if len(parts) < 2 or not parts[0].startswith(b"HTTP/1.") or len(parts[1]) != 3 \
                    or not parts[1].isdigit():
                shown = line[:80].decode("latin-1")
                raise CheckFailed(f"not an HTTP/1.x status line: {shown!r}")
            status = int(parts[1])
            if 100 <= status < 200 and status != 101:
                continue  # interim answer (103 Early Hints...): the real one follows
            headers: dict[bytes, bytes] = {}
            for raw in rest.split(b"\r\n"):
                name, sep, value = raw.partition(b":")
                if sep:
                    headers[name.strip().lower()] = value.strip()
            return status, headers

    async def _read_body(self, reader: asyncio.StreamReader, headers: dict[bytes, bytes]) -> bytes:
        """Up to `MAX_BODY` bytes of the body, de-chunked; what arrived before the end or the limit."""
        if b"chunked" in headers.get(b"transfer-encoding", b"").lower():
            out = bytearray()
            while len(out) < MAX_BODY:
                size_line = await reader.readline()
                try:
                    size = int(size_line.split(b";", 1)[0].strip(), 16)
                except ValueError:
                    break
                if size == 0:
                    break
                out += await reader.readexactly(min(size, MAX_BODY - len(out)))
                if len(out) >= MAX_BODY:
                    break
                await reader.readexactly(2)
            return bytes(out)
        length = headers.get(b"content-length")
        want = min(int(length), MAX_BODY) if length and length.isdigit() else MAX_BODY
        out = bytearray()
        while len(out) < want:
            chunk = await reader.read(want - len(out))
            if not chunk:
                break
            out += chunk
        return bytes(out)


class Prober:
    """Runs the active checks of every pool that has ``health`` configured.

    Args:
        pools: pool runtimes: ``.name``, ``.health_cfg`` (the pool's `HealthCheck` or None) and
            ``.members``, each with ``.name .route .host .port .ssl .server_hostname .host_header``
            and ``.health`` (a `MemberHealth`, or None: not checked).
        loop: the event loop whose clock (`loop.time`) times the checks.
        log: where transitions (and, at DEBUG, every failed check) are written.
        rng: source of the jitter; a fresh `random.Random` by default.
        metrics: counts ejections (`ferryman.server.metrics.Metrics.ejection`); None: not counted.
    """

    def __init__(self, pools: Iterable[Any], loop: asyncio.AbstractEventLoop, log: logging.Logger,
                 *, rng: random.Random | None = None, metrics: Any = None) -> None:
        self._loop = loop
        self._log = log
        self._metrics = metrics
        self._rng = rng or random.Random()
        if isinstance(pools, Mapping):
            pools = pools.values()
        self._checks = [MemberCheck(pool, pool.health_cfg, m)
                        for pool in pools if getattr(pool, "health_cfg", None) is not None
                        for m in pool.members if getattr(m, "health", None) is not None]
        self._tasks: list[asyncio.Task[None]] = []

    @property
    def checks(self) -> list[MemberCheck]:
        """One per checked member."""
        return list(self._checks)

    def start(self) -> None:
        """Start one task per checked member; calling it again does nothing."""
        if self._tasks:
            return
        for check in self._checks:
            name = f"ferryman-health {check.pool.name} {check.member.name}"
            self._tasks.append(self._loop.create_task(self._run(check), name=name))

    async def stop(self) -> None:
        """Cancel every check and wait until they are gone (open check connections are closed)."""
        tasks, self._tasks = self._tasks, []
        for t in tasks:
            t.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _run(self, check: MemberCheck) -> None:
        next_at = self._loop.time() + self._rng.uniform(0.0, check.interval)
        while True:
            await asyncio.sleep(max(0.0, next_at - self._loop.time()))
            next_at = self._loop.time() + check.interval * self._rng.uniform(1.0 - JITTER, 1.0 + JITTER)
            try:
                await self.check_once(check)
            except asyncio.CancelledError:
                raise
            except Exception:  # a bug here must not stop checking the member
                self._log.exception("health check of pool %s member %s failed unexpectedly",
                                    check.pool.name, check.member.name)

    async def check_once(self, check: MemberCheck) -> Transition | None:
        """Probe one member now, feed its health state, log a transition; returns it."""
        try:
            reason = await check.probe()
            ok = True
        except CheckFailed as exc:
            reason = str(exc)
            ok = False
            if self._log.isEnabledFor(logging.DEBUG):
                self._log.debug("health check of pool %s member %s failed: %s",
                                check.pool.name, check.member.name, reason)
        transition = check.member.health.observe_check(ok, self._loop.time(), reason)
        if transition is not None:
            self._log_transition(check, transition)
        return transition

    def _log_transition(self, check: MemberCheck, t: Transition) -> None:
        level = logging.WARNING if t.new == "ejected" else logging.INFO
        if t.new == "ejected" and t.old != "ejected" and self._metrics is not None:
            self._metrics.ejection(check.pool.name, check.member.name)
        self._log.log(level, "pool %s member %s (route %s): %s -> %s: %s", check.pool.name,
                      check.member.name, getattr(check.member, "route", None) or "-", t.old, t.new, t.reason)
