"""Backend side: one keep-alive connection per in-flight request, pooled per member.

A `BackendConnection` parses one response at a time with httptools and reports to the `Exchange`
that owns it. It is returned to its member's idle pool only when the whole request was written,
the whole response was read and nothing else arrived (proxy-safety invariant 3).
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import TYPE_CHECKING

import httptools

from ferryman.core.http import BODY_NONE, ResponseHead, check_response_head
from ferryman.errors import UpstreamProtocolError

if TYPE_CHECKING:  # pragma: no cover
    from ferryman.server.proxy import Exchange
    from ferryman.server.runtime import MemberRuntime


class _HeadOnlyDone(Exception):
    """Raised from on_headers_complete to stop llhttp reading a body that a HEAD response lacks."""


class BackendConnection(asyncio.Protocol):
    """One connection to a member; owned by at most one exchange at a time."""

    # -- per-connection state
    transport: asyncio.Transport
    member: "MemberRuntime"

    def __init__(self, member: "MemberRuntime") -> None:
        self.member = member
        self.exchange: Exchange | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.closed = False
        self.reusable = False
        self.used = 0  # requests sent on this connection
        self.deadline = 0.0
        self.paused_by_client = False
        # -- per-response state
        self._headers: list[tuple[bytes, bytes]] = []
        self._head: ResponseHead | None = None
        self._interim = False
        self._unsolicited = False

    # -- transport callbacks -----------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        ex = self.exchange
        if ex is None:
            # Bytes while idle: not the answer to anything (invariant 3). Never reuse.
            self._fail_idle()
            return
        client = ex.client
        client.cork = []
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserCallbackError as exc:
            cause = exc.__context__
            if isinstance(cause, _HeadOnlyDone):
                self._finish_head_only()
                return
            self._protocol_error(cause if isinstance(cause, UpstreamProtocolError) else
                                 UpstreamProtocolError(f"malformed response: {cause or exc}"))
        except httptools.HttpParserError as exc:
            self._protocol_error(UpstreamProtocolError(f"malformed response: {exc}"))
        finally:
            client.uncork()

    def eof_received(self) -> bool:
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.reusable = False
        self.member.drop(self)
        ex = self.exchange
        if ex is not None:
            self.exchange = None
            head = self._head
            if head is not None and head.body == 3 and not self._interim:
                # close-delimited body (RFC 9112 6.3 rule 8): EOF is its end
                ex.on_response_complete(self)
            else:
                ex.on_backend_lost(self, exc, got_response=head is not None)

    def pause_writing(self) -> None:
        if self.exchange is not None:
            self.exchange.client.pause_for_upload()

    def resume_writing(self) -> None:
        if self.exchange is not None:
            self.exchange.client.resume_for_upload()

    # -- parser callbacks (httptools) --------------------------------------------------------------

    def on_message_begin(self) -> None:
        if self.exchange is None or self._unsolicited:
            raise UpstreamProtocolError("response to no request")
        self._headers = []
        self._interim = False

    def on_header(self, name: bytes, value: bytes) -> None:
        if self._head is None:
            self._headers.append((name.lower(), value))
        # headers after the head are trailers: deliberately dropped (see docs/configuration.md)

    def on_headers_complete(self) -> None:
        ex = self.exchange
        assert ex is not None
        status = self.parser.get_status_code()
        if status < 200:
            if status == 101:
                raise UpstreamProtocolError("backend switched protocols without being asked")
            self._interim = True  # 100/102/103: ferryman answered 100 itself; others dropped
            return
        head = check_response_head(status, self.parser.get_http_version(), self._headers,
                                   request_method=ex.head.method)
        self._head = head
        ex.on_response_head(self, head)
        if ex.head.method == b"HEAD":
            raise _HeadOnlyDone()

    def on_body(self, body: bytes) -> None:
        ex = self.exchange
        if ex is not None:
            ex.on_response_body(body)

    def on_message_complete(self) -> None:
        if self._interim:
            self._interim = False
            return
        ex = self.exchange
        head = self._head
        if ex is None or head is None:
            return
        self.reusable = head.keep_alive
        self._unsolicited = True  # anything after this response, before the next request, is an error
        ex.on_response_complete(self)

    # -- used by the exchange ----------------------------------------------------------------------

    def send(self, exchange: "Exchange", data: bytes) -> None:
        self.exchange = exchange
        self.used += 1
        self._head = None
        self._unsolicited = False
        self.transport.write(data)

    def release(self, now: float) -> None:
        """The exchange is done with us: back to the idle pool if clean, else close."""
        self.exchange = None
        self._head = None
        if self.paused_by_client:
            self.paused_by_client = False
            self.transport.resume_reading()
        if self.reusable and not self.closed and self.member.keep(self, now):
            return
        self.close()

    def close(self) -> None:
        self.exchange = None
        self.reusable = False
        if not self.closed:
            self.closed = True
            self.member.drop(self)
            self.transport.close()

    def abort(self) -> None:
        self.exchange = None
        self.reusable = False
        if not self.closed:
            self.closed = True
            self.member.drop(self)
            self.transport.abort()

    # -- internals ---------------------------------------------------------------------------------

    def _finish_head_only(self) -> None:
        # llhttp would wait for a body a HEAD response does not have; this parser is spent.
        ex = self.exchange
        self.reusable = False
        if ex is not None:
            ex.on_response_complete(self)

    def _protocol_error(self, err: UpstreamProtocolError) -> None:
        ex = self.exchange
        self.exchange = None
        self.abort()
        if ex is not None:
            ex.on_backend_error(self, err)

    def _fail_idle(self) -> None:
        self.abort()


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

    def expire(self, now: float) -> None:
        idle = self.idle
        while idle and idle[0].deadline <= now:
            idle.popleft().close()

    def close_all(self) -> None:
        while self.idle:
            self.idle.pop().close()


__all__ = ["BackendConnection", "MemberConnections", "BODY_NONE"]
