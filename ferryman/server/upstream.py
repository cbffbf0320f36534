"""Backend side: one keep-alive connection per in-flight request, pooled per member.

A `BackendConnection` feeds every byte it reads to a `ResponseReader` (ferryman.core.connection) and hands
the events to the exchange that owns it, after the whole read was parsed: so bytes after a response's end
in the same read close the connection before anything could take it from the pool. It goes back to its
member's idle pool only when the machine says the answer was complete and nothing else arrived
(invariant 3 in docs/request-safety.md).
"""

from __future__ import annotations

import logging
import select
import socket
from collections import deque
from typing import Protocol

import asyncio

from ferryman.core.connection import ERROR, TRUNCATED, Event, Phase, ResponseReader
from ferryman.server.timers import Deadline
from ferryman.server.tokenizer import ResponseTokenizer

log = logging.getLogger("ferryman")
_POLL = select.poll()  # BackendConnection.still_open: one event loop thread per process uses it


class ResponseSink(Protocol):
    """What a backend connection reports to (the exchange it serves)."""

    def on_backend_events(self, conn: "BackendConnection", events: list[Event]) -> None: ...
    def on_backend_timeout(self, conn: "BackendConnection") -> None: ...
    def pause_upload(self) -> None: ...
    def resume_upload(self) -> None: ...
    def internal_error(self, exc: BaseException) -> None: ...


class Owner(Protocol):
    """The member a connection belongs to (its idle pool)."""

    name: str

    def keep(self, conn: "BackendConnection", now: float) -> bool: ...
    def drop(self, conn: "BackendConnection") -> None: ...


class BackendConnection(asyncio.Protocol, Deadline):
    """One connection to a member; owned by at most one exchange at a time."""

    # -- per-connection state
    transport: asyncio.Transport

    def __init__(self, member: Owner, max_head: int, loop: asyncio.AbstractEventLoop, max_interim: int = 32) -> None:
        self._loop = loop
        self.member = member
        self.exchange: ResponseSink | None = None
        self.reader = ResponseReader(ResponseTokenizer(), max_head, max_interim)
        self.closed = False
        self.used = 0  # requests sent on this connection
        self.reset = False  # lost by a reset (RST), not a clean close (FIN)

    # -- transport callbacks -----------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        events = self.reader.feed(data)
        ex = self.exchange
        if ex is None:
            # bytes while idle: not the answer to anything (invariant 3); never reused
            if events and events[0][0] == ERROR and log.isEnabledFor(logging.INFO):
                log.info("member %s: %s; connection closed", self.member.name, events[0][1])
            self.abort()
            return
        try:
            ex.on_backend_events(self, events)
        except Exception as exc:  # an exception boundary: ferryman's bug, never the backend's
            ex.internal_error(exc)

    def eof_received(self) -> bool:
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.reset = exc is not None
        self.member.drop(self)
        ex = self.exchange
        phase = self.reader.phase
        events = self.reader.eof()  # a close before the final head is EARLY_CLOSE: the retry rule decides
        if phase is Phase.BODY and self.reset:
            # a close ends a close-delimited body; a reset cuts it: truncated, never complete (invariant 9)
            events = [(TRUNCATED, None)]
        if ex is not None:
            self.exchange = None
            try:
                ex.on_backend_events(self, events)
            except Exception as err:
                ex.internal_error(err)

    def pause_writing(self) -> None:
        if self.exchange is not None:
            self.exchange.pause_upload()

    def resume_writing(self) -> None:
        if self.exchange is not None:
            self.exchange.resume_upload()

    def timed_out(self) -> None:
        """The deadline passed: the owning exchange's backend timeout, or an idle pooled connection's end."""
        ex = self.exchange
        if ex is not None:
            ex.on_backend_timeout(self)
        else:
            self.close()

    def timer_fault(self, exc: Exception) -> None:
        ex = self.exchange
        if ex is not None:
            ex.internal_error(exc)
        else:
            log.error("internal error on an idle connection to %s", self.member.name, exc_info=exc)
            self.abort()

    # -- used by the exchange ----------------------------------------------------------------------

    def send(self, exchange: ResponseSink, data: bytes, method: bytes, upgrade: bool = False) -> None:
        self.exchange = exchange
        self.used += 1
        self.reader.expect(method, upgrade)
        self.transport.write(data)

    def still_open(self) -> bool:
        """Whether this idle connection may carry a request that must not be sent twice: the kernel holds
        nothing from the member that the event loop has not read yet. A pooled connection found closed (FIN
        or RST waiting) is one the request provably never reached, so it goes on a fresh one (invariant 8);
        bytes waiting on an idle plain connection answer nothing, so it is not used either (invariant 3).
        One poll() with no wait; only requests for which a lost race would cost a 502 pay for it."""
        raw = self.transport.get_extra_info("socket")
        if raw is None:
            return True
        fd = raw.fileno()
        if fd < 0:
            return False
        try:
            _POLL.register(fd, select.POLLIN)
            try:
                pending = _POLL.poll(0)
            finally:
                _POLL.unregister(fd)
        except OSError:
            return False
        if not pending:
            return True
        if self.transport.get_extra_info("ssl_object") is None:
            return False
        # TLS: a record may be waiting (a session ticket); only a close makes the connection unusable
        sock = socket.socket(raw.family, raw.type, raw.proto, fd)
        try:
            return sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) != b""
        except (BlockingIOError, InterruptedError):
            return True
        except OSError:
            return False
        finally:
            sock.detach()  # the fd stays the transport's

    def release(self, now: float) -> None:
        """The exchange is done with us: back to the idle pool if clean, else close."""
        self.exchange = None
        reader = self.reader
        if not self.closed and reader.reusable and self.member.keep(self, now):
            reader.release()
            return
        self.close()

    def close(self) -> None:
        self._shut(abort=False)

    def abort(self) -> None:
        self._shut(abort=True)

    def _shut(self, abort: bool) -> None:
        self.exchange = None
        self.cancel_deadline()
        self.reader.close()
        if not self.closed:
            self.closed = True
            self.member.drop(self)
            if abort:
                self.transport.abort()
            else:
                self.transport.close()


class MemberConnections:
    """The idle keep-alive connections of one member (nginx `keepalive N`)."""

    __slots__ = ("idle", "limit", "idle_timeout")

    def __init__(self, limit: int, idle_timeout: float) -> None:
        self.idle: deque[BackendConnection] = deque()
        self.limit = limit
        self.idle_timeout = idle_timeout

    def acquire(self) -> BackendConnection | None:
        idle = self.idle
        while idle:
            conn = idle.pop()  # most recently used first: warmest, least likely timed out
            if not conn.closed and not conn.transport.is_closing():
                return conn
        return None

    def keep(self, conn: BackendConnection, now: float) -> bool:
        if len(self.idle) >= self.limit:
            return False
        conn.deadline = now + self.idle_timeout
        self.idle.append(conn)
        return True

    def drop(self, conn: BackendConnection) -> None:
        try:
            self.idle.remove(conn)
        except ValueError:
            pass

    def close_all(self) -> None:
        while self.idle:
            self.idle.pop().close()


__all__ = ["BackendConnection", "MemberConnections", "ResponseSink"]
