"""Client side and per-request orchestration: bytes in, core decisions, bytes out.

A `ClientConnection` is the asyncio protocol of one client: it feeds every byte to a `RequestReader`
(ferryman.core.connection) and carries out the events it returns. Each request becomes an `Exchange`,
which asks the core where it goes (router, balancer), writes a canonical head to a `BackendConnection`
and relays the body both ways with backpressure. Decisions are calls into `ferryman.core`; this module
moves bytes, keeps time, and is the exception boundary: an unexpected exception is ferryman's own bug,
logged with its traceback and answered 500 (or the connection cut once an answer has started), never
blamed on a client or a member.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import struct
from functools import partial
from typing import TYPE_CHECKING

from ferryman.core import decisions
from ferryman.core.bodyrate import add_bytes, start_credit, too_slow
from ferryman.core.clients import client_unit
from ferryman.core.balancer import Decision, PickContext
from ferryman.core.redirect import redirect_location, redirect_status
from ferryman.core.connection import (
    DATA, EARLY_CLOSE, END, ERROR, REQUEST, RESPONSE, SWITCHED, TRUNCATED, TUNNEL_DATA, Event, Phase,
    RequestReader,
)
from ferryman.core.requestid import HEADER as REQUEST_ID_HEADER
from ferryman.core.http import (
    BODY_CHUNKED, BODY_LENGTH, BODY_NONE, BODY_UNTIL_CLOSE, CONTINUE_100, LAST_CHUNK, RequestHead, ResponseHead,
    check_request_head, chunk, error_response, serialize_request, serialize_response,
)
from ferryman.errors import (
    AuthRequired, BodyTooLarge, FerrymanError, HttpError, InternalError, NoMemberAvailable, UpstreamError,
)
from ferryman.server.flow import PAUSE_BUFFER, PAUSE_PIPELINE, PAUSE_TUNNEL, PAUSE_UPLOAD, Flow
from ferryman.server.timers import Deadline
from ferryman.server.tokenizer import RequestTokenizer
from ferryman.server.upstream import BackendConnection

if TYPE_CHECKING:  # pragma: no cover
    from ferryman.server.runtime import ListenerRuntime, MemberRuntime, RouteRuntime, Server

log = logging.getLogger("ferryman")

REPLAY_LIMIT = 64 * 1024    # a request body up to this size is kept so the request can be retried
BUFFER_LIMIT = 256 * 1024   # body bytes held while connecting before the client is paused
HELD_LIMIT = 64 * 1024      # pipelined bytes held before the client is paused
_LINGER_RESET = struct.pack("ii", 1, 0)  # SO_LINGER on, 0 s: close() sends RST


def _reason(exc: BaseException) -> str:
    if isinstance(exc, asyncio.TimeoutError):
        return "connect timeout"
    return exc.strerror if isinstance(exc, OSError) and exc.strerror else (str(exc) or type(exc).__name__)


class ClientConnection(asyncio.Protocol, Deadline):
    """One client connection: reads requests in order and answers them in order."""

    def __init__(self, server: "Server", listener: "ListenerRuntime") -> None:
        # -- per-connection state
        self._loop = server.loop
        self.server = server
        self.listener = listener
        self.limits = limits = server.limits
        self.transport: asyncio.Transport = None  # type: ignore[assignment]
        self.peer_ip = "-"
        self.trusted = False
        self.reader = RequestReader(
            RequestTokenizer(limits.max_request_line, limits.max_headers, limits.max_header_size),
            partial(check_request_head, is_vouched=listener.is_vouched, vouched_cache=listener.vouched_cache),
            limits.max_head_total)
        self.current: Exchange | None = None      # the exchange being read and answered
        self.tunnel: Exchange | None = None       # the exchange whose connection became a tunnel
        self.flow: Flow = None  # type: ignore[assignment]  # made with the transport
        self.cork: list[bytes] | None = None      # writes collected during one backend read
        self.closed = False
        self.spoke = False                        # the client sent a byte (a stop closes silent ones last)
        self.half_closed = False                  # the client sent EOF: answer, then close
        self.requests = 0                         # requests read on this connection
        self.counted: str | None = None           # the key counted in listener.per_client
        self.body_credit = 0.0                    # body_min_rate credit (ferryman.core.bodyrate)
        self.drain_waiter: asyncio.Future[None] | None = None  # a file answer waiting for the buffer to drain
        self.cert_user: str | None = None         # named by a verified client certificate (tls_user_field)

    @property
    def busy(self) -> bool:
        """A request is being read or answered (shutdown waits for these)."""
        return self.current is not None or self.reader.in_request() or self.tunnel is not None

    # -- transport callbacks -----------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.flow = Flow(transport)  # type: ignore[arg-type]
        listener = self.listener
        peer = transport.get_extra_info("peername")
        if peer:
            self.peer_ip = peer[0]
            self.trusted = self.peer_ip in listener.trusted
        if listener.open_connections >= listener.max_connections:
            # over the listener's limit (invariant 7): a short answer, not a silent drop
            self.closed = True
            transport.write(error_response(503, close=True))  # type: ignore[attr-defined]
            transport.close()
            self.server.log_overload(listener)
            return
        if listener.max_per_client and not self.trusted:
            # one address may not take every slot; a trusted proxy carries many clients and is not counted
            unit = client_unit(self.peer_ip)  # an IPv6 client by its /64: it can send from any address of it
            count = listener.per_client.get(unit, 0)
            if count >= listener.max_per_client:
                self.closed = True
                transport.write(error_response(503, close=True))  # type: ignore[attr-defined]
                transport.close()
                self.server.log_limit(self, f"over max_connections_per_client ({listener.max_per_client})", 503)
                return
            listener.per_client[unit] = count + 1
            self.counted = unit
        listener.open_connections += 1
        self.server.clients.add(self)
        if listener.retired and not self.follow():  # accepted just before a reload closed the old server
            self._close()
            return
        self.deadline = self.server.loop.time() + self.listener.header_timeout

    def data_received(self, data: bytes) -> None:
        if self.closed:
            return
        self.spoke = True
        try:
            reader = self.reader
            if reader.phase is Phase.TUNNEL:
                tunnel = self.tunnel
                if tunnel is not None:
                    tunnel.tunnel_from_client(data)
                return
            was_idle = reader.phase is Phase.IDLE
            events = reader.feed(data)
            if events:
                self._handle(events)
            if reader.held > HELD_LIMIT:
                self.pause(PAUSE_PIPELINE)
            elif reader.phase is Phase.HEAD and self.current is None and (was_idle or not self._deadline):
                self.deadline = self.server.loop.time() + self.listener.header_timeout
        except Exception as exc:  # the exception boundary of the request side
            self.internal_error(exc)

    def _handle(self, events: list[Event]) -> None:
        """Carry out the reader's events. A request starts only once the whole read was handled: a body
        that breaks its framing in the same read is refused before anything reaches a backend."""
        to_start: Exchange | None = None
        for kind, value in events:
            if kind == REQUEST:
                ex = Exchange(self, value)  # type: ignore[arg-type]
                self.current = ex
                self.requests += 1
                if self.requests == self.listener.max_requests:
                    ex.keep_alive = False  # max_requests_per_connection: this answer closes
                if ex.request_done or self.flow.client_holds:
                    self.deadline = 0.0
                else:
                    self.body_started()
                to_start = ex
            elif kind == DATA:
                cur = self.current
                if cur is not None:
                    cur.on_request_body(value)  # type: ignore[arg-type]
            elif kind == END:
                cur = self.current
                if cur is not None:
                    cur.on_request_complete()
            elif kind == ERROR:
                self._reject(value)  # type: ignore[arg-type]
                return
        if to_start is not None and not to_start.done and self.current is to_start:
            to_start.start()

    def eof_received(self) -> bool:
        # A half-closed client may still want its answers (RFC 9112 9.6); close after them.
        if self.tunnel is not None:
            self.tunnel.tunnel_client_eof()
            return True
        if self.current is None and not self.reader.in_request():
            return False
        self.half_closed = True
        return True

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.cancel_deadline()
        self.reader.close()
        if self in self.server.clients:
            self.server.clients.discard(self)
            self.listener.open_connections -= 1
        unit = self.counted
        if unit is not None:
            self.counted = None
            per_client = self.listener.per_client
            left = per_client[unit] - 1
            if left:
                per_client[unit] = left
            else:
                del per_client[unit]  # the table holds only clients with open connections
        for ex in (self.current, self.tunnel):
            if ex is not None:
                ex.abandon()
        self.current = self.tunnel = None
        self._wake_drain()

    def pause_writing(self) -> None:
        """The client's write buffer is full (called by the transport): stop reading the backend."""
        ex = self.current or self.tunnel
        if self.flow.client_buffer_full() and ex is not None and ex.conn is not None:
            ex.conn.deadline = 0.0  # we stopped reading it: the client's send deadline governs
        if self.tunnel is None:
            self.deadline = self.server.loop.time() + self.listener.body_timeout

    def resume_writing(self) -> None:
        """The client's write buffer drained (called by the transport): read the backend again."""
        ex = self.current or self.tunnel
        if self.flow.client_buffer_drained() and ex is not None and ex.conn is not None \
                and ex.member is not None and ex is not self.tunnel:
            ex.conn.deadline = self.server.loop.time() + ex.member.read_timeout
        if self.tunnel is None:
            self.deadline = 0.0
        self._wake_drain()

    def drained(self) -> "asyncio.Future[None]":
        """Done once the write buffer drains (or the connection is lost): a file answer's backpressure."""
        waiter = self.drain_waiter
        if waiter is None or waiter.done():
            waiter = self.drain_waiter = self._loop.create_future()
            if self.closed or not self.flow.client_full:
                waiter.set_result(None)
        return waiter

    def _wake_drain(self) -> None:
        waiter = self.drain_waiter
        if waiter is not None:
            self.drain_waiter = None
            if not waiter.done():
                waiter.set_result(None)

    # -- flow control ------------------------------------------------------------------------------

    def pause(self, reason: int) -> None:
        """Stop reading the client for `reason` (see ferryman.server.flow)."""
        if self.closed:
            return
        if self.flow.hold_client(reason) and self.reader.in_request() and not self.flow.client_full:
            self.deadline = 0.0  # we stopped reading: the client is not slow

    def resume(self, reason: int) -> None:
        if self.closed:
            return
        if self.flow.release_client(reason) and self.reader.in_request():
            if self.reader.phase is Phase.BODY:
                self.body_started()  # time ferryman did not read does not count against the client
            else:
                self.deadline = self.server.loop.time() + self.listener.body_timeout

    # -- body deadlines ----------------------------------------------------------------------------

    def body_started(self) -> None:
        """A body starts (or is read again after ferryman paused it): a fresh idle timeout and a fresh
        body_min_rate window (its grace period)."""
        listener = self.listener
        now = self._loop.time()
        due = now + listener.body_timeout
        if listener.body_seconds_per_byte:
            credit = self.body_credit = start_credit(now, listener.body_rate_window)
            if credit < due:
                due = credit
        self.deadline = due

    def body_received(self, now: float, size: int) -> None:
        """`size` body bytes arrived: the deadline is the earlier of the idle timeout and the rate credit
        (both only move forward, so this never re-arms the timer)."""
        listener = self.listener
        due = now + listener.body_timeout
        spb = listener.body_seconds_per_byte
        if spb:
            credit = self.body_credit = add_bytes(self.body_credit, now, size, spb, listener.body_rate_window)
            if credit < due:
                due = credit
        self.deadline = due

    # -- answers -----------------------------------------------------------------------------------

    def _reject(self, err: HttpError) -> None:
        """A request we cannot serve unambiguously: answer it, then close (invariant 2)."""
        ex = self.current
        request_id = None
        if ex is not None:
            request_id = ex.request_id
            if ex.responded:  # its answer is already streaming: cut it, never complete it
                ex.abandon()
                self.current = None
                self.server.log_rejected(self, err, request_id)
                self._close(abort=True)
                return
            ex.abandon()
            self.current = None
        self._answer_and_close(err, request_id)

    def _answer_and_close(self, err: HttpError, request_id: bytes | None = None) -> None:
        self.server.log_rejected(self, err, request_id)
        if not self.closed:
            self.write(error_response(err.status, close=True))
        self._close()

    def internal_error(self, exc: BaseException) -> None:
        """ferryman's own fault on this connection: log the traceback; 500 if no answer has started."""
        ex = self.current
        self.server.log_internal_error(exc, self.peer_ip, ex.request_id if ex is not None else None)
        if ex is not None:
            ex.internal_error(exc, logged=True)
            return
        self.reader.close()
        if not self.closed:
            self.server.log_rejected(self, InternalError("internal error"))
            self.write(error_response(500, close=True))
            self._close()

    def write(self, data: bytes) -> None:
        """Write to the client; while corked, collect so one system call carries a whole answer."""
        cork = self.cork
        if cork is not None:
            cork.append(data)
        elif not self.closed:
            self.transport.write(data)

    def uncork(self) -> None:
        cork = self.cork
        self.cork = None
        if cork and not self.closed:
            self.transport.write(b"".join(cork) if len(cork) > 1 else cork[0])

    def _close(self, abort: bool = False) -> None:
        if not self.closed:
            if not abort:
                self.uncork()
            self.closed = True
            self.reader.close()
            if abort:
                self.transport.abort()
            else:
                self.transport.close()

    def reset_when_flushed(self) -> None:
        """Make the coming close a reset (RST) once the bytes already written are flushed (SO_LINGER 0). Over
        TLS the connection is cut at once instead: a close would send close_notify, a clean end."""
        sock = None if self.listener.tls else self.transport.get_extra_info("socket")
        if sock is not None:
            try:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RESET)
                return
            except OSError:
                pass
        self._close(abort=True)

    def exchange_done(self, ex: "Exchange", keep_alive: bool) -> None:
        """The answer to `ex` is written: read the next request or close."""
        if self.current is not ex:
            return
        self.current = None
        if self.closed:
            return
        if not keep_alive or self.server.stopping or self.reader.phase is not Phase.DONE:
            self._close()
            return
        if self.listener.retired and not self.follow():
            self._close()
            return
        events = self.reader.next_request()
        if self.flow.client_holds:
            self.resume(PAUSE_PIPELINE)
        if events:
            self._handle(events)
        if self.current is None and not self.closed:
            if self.half_closed and not self.reader.in_request():
                self._close()
            elif self.reader.in_request():
                self.deadline = self.server.loop.time() + self.listener.header_timeout
            else:
                self.deadline = self.server.loop.time() + self.listener.keepalive_timeout

    def start_tunnel(self, ex: "Exchange") -> bytes:
        """The backend switched protocols for `ex`: the connection is a byte tunnel from now on."""
        self.current = None
        self.tunnel = ex
        self.deadline = 0.0
        self.resume(PAUSE_PIPELINE)
        return self.reader.switch()

    def timed_out(self) -> None:
        """Our deadline passed: idle, slow head, slow body or slow reader."""
        if self.closed:
            return
        if self.tunnel is not None:
            return
        ex = self.current
        if ex is None and not self.reader.in_request():
            self._close()  # idle keep-alive connection (Apache KeepAliveTimeout)
        elif ex is None:
            self._reject(HttpError("request head not complete within header_timeout", 408))
        elif not ex.responded and not ex.request_done:
            # the body is too slow; a backend already receiving it is cut off by the same 408 (abandon)
            if self.listener.body_seconds_per_byte and too_slow(self.body_credit, self._loop.time()):
                self.server.log_limit(self, "request body slower than body_min_rate", 408)
                self._reject(HttpError("request body slower than body_min_rate", 408))
            else:
                self._reject(HttpError("request body idle for body_timeout", 408))
        else:
            self._close(abort=True)  # a client that stopped reading its answer

    def timer_fault(self, exc: Exception) -> None:
        self.internal_error(exc)

    def follow(self) -> bool:
        """The configuration was reloaded: move to its version of our listener before the next request
        (its routes, limits and trusted proxies); False when the listener was removed (close)."""
        listener = self.listener
        while listener.retired and listener.successor is not None:
            listener = listener.successor
        if listener.retired:
            return False
        old = self.listener
        old.open_connections -= 1
        listener.open_connections += 1
        unit = self.counted
        if unit is not None:  # max_connections_per_client: the count moves with the connection
            old.per_client[unit] = old.per_client.get(unit, 1) - 1
            if old.per_client[unit] <= 0:
                del old.per_client[unit]
            listener.per_client[unit] = listener.per_client.get(unit, 0) + 1
        self.listener = listener
        self.limits = limits = self.server.limits
        self.trusted = self.peer_ip in listener.trusted
        tokenizer = self.reader.tokenizer
        tokenizer.max_request_line = limits.max_request_line  # type: ignore[attr-defined]
        tokenizer.max_headers = limits.max_headers  # type: ignore[attr-defined]
        tokenizer.max_header_size = limits.max_header_size  # type: ignore[attr-defined]
        self.reader.set_check(partial(check_request_head, is_vouched=listener.is_vouched,
                                      vouched_cache=listener.vouched_cache), limits.max_head_total)
        return True

    def close_if_idle(self, keep_silent: bool = False) -> None:
        """Close unless a request is being read or answered; with `keep_silent`, also keep a connection
        whose client has not sent a byte yet: it was accepted just before the stop, and its request is
        on its way."""
        if not self.busy and not self.closed and not (keep_silent and not self.spoke):
            self._close()


class Exchange:
    """One request and its answer: route, member choice, retries, relaying."""

    __slots__ = (
        "client", "head", "route", "member", "conn", "tried", "path", "request_done", "pending",
        "pending_size", "replay", "replay_size", "responded", "client_framing", "keep_alive",
        "status", "sent_bytes", "start_time", "continue_sent", "done", "reused_retry",
        "forwarded", "connect_task", "resp_head", "failure", "user", "ctx", "decision",
        "retried_reused", "body_partial", "upgrade", "tunnel_timer", "tunnel_last", "body_limit", "waiting_body",
        "request_id", "sent_at", "head_at",
    )

    def __init__(self, client: ClientConnection, head: RequestHead) -> None:
        self.client = client
        self.head = head
        self.route: RouteRuntime | None = None
        self.member: MemberRuntime | None = None
        self.conn: BackendConnection | None = None
        self.tried: set[int] = set()
        self.path = b"/"
        self.request_done = head.body == BODY_NONE
        self.pending: list[bytes] = []     # framed body bytes not yet written to a backend
        self.pending_size = 0
        self.replay: list[bytes] | None = [] if head.body != BODY_NONE else None
        self.replay_size = 0
        self.responded = False
        self.client_framing = BODY_NONE
        self.keep_alive = head.keep_alive
        self.status = 0
        self.sent_bytes = 0
        self.start_time = client.server.loop.time()
        self.continue_sent = False
        self.done = False
        self.reused_retry = False
        self.forwarded: bytes | None = None
        self.connect_task: asyncio.Task[None] | None = None
        self.resp_head: ResponseHead | None = None
        self.failure: FerrymanError | None = None  # the last failure, answered when nothing is left
        self.user: str | None = None
        self.ctx: PickContext | None = None
        self.decision: Decision | None = None
        self.retried_reused = False   # retried on a fresh connection after a reused one failed
        self.body_partial = False     # a member was sent the body so far: only `replay` still holds it whole
        self.upgrade = False          # the protocol switch is forwarded to the backend
        self.tunnel_timer: asyncio.TimerHandle | None = None
        self.tunnel_last = 0.0
        self.body_limit = 0  # max_body_size once the route is known (0: unlimited, or not yet routed)
        self.waiting_body = False  # request_buffer: no member is chosen until the body (or enough of it) is here
        # X-Request-Id: a trusted peer's (validated), else made here (ferryman.core.requestid)
        self.request_id: bytes = client.server.request_ids.for_request(
            head.vouched.get(REQUEST_ID_HEADER) if client.trusted and head.vouched else None)
        self.sent_at = 0.0            # loop time the head was last written to a member
        self.head_at = 0.0            # loop time the member's response head arrived (0: none)

    # -- request side ------------------------------------------------------------------------------

    def start(self) -> None:
        """Route the request and send it to a member; or answer it here."""
        client = self.client
        head = self.head
        listener = client.listener
        if listener.redirect_https is not None:
            return self._redirect_https(listener.redirect_https)
        try:
            route, path, head.query = listener.resolve(head.target)
        except HttpError as err:
            return self.local(err, close=err.status == 400)
        self.route = route
        self.path = path
        # forward a protocol switch only where the route tunnels; otherwise plain HTTP, then close
        self.upgrade = decisions.tunnels(head.upgrade, route.websocket)
        if head.upgrade is not None and not self.upgrade:
            self.keep_alive = False
        if head.body != BODY_NONE:
            limit = route.max_body_size
            if limit is None:
                limit = client.limits.max_body_size
            self.body_limit = limit
            if limit and (self.replay_size > limit or head.body == BODY_LENGTH and head.content_length > limit):
                return self.local(BodyTooLarge("declared body over max_body_size"), close=True)
        auth = route.auth
        sso = auth.trusted_header if auth is not None and client.trusted and head.vouched else None
        named = head.vouched.get(sso) if sso is not None else None
        if named:  # the trusted proxy in front authenticated the user (single sign-on)
            self.user = named.decode("latin-1")
        elif auth is not None:  # a route's own login decides, and names the user, even with a client cert
            now = client.server.loop.time()
            retry_after = auth.locked(client.peer_ip, now)
            if retry_after is not None:
                return self.local(HttpError("locked out after failed logins", 429),
                                  extra=[(b"retry-after", retry_after)])
            verdict = auth.check(head.authorization, client.peer_ip, now)
            if verdict is None:
                client.server.loop.create_task(self._check_auth_slow())
                return
            if not verdict[0]:
                return self.local(AuthRequired("no valid credentials"),
                                  extra=[(b"www-authenticate", auth.challenge)])
            self.user = verdict[1]
        else:
            self.user = client.cert_user
        self._proceed()

    def _redirect_https(self, to: str) -> None:
        head = self.head
        location = redirect_location(to, head.target, head.host, self.client.listener.configured_name)
        if location is None:
            return self.local(HttpError("no valid Host to redirect to", 400), close=True)
        self.local(HttpError("redirect to HTTPS", redirect_status(head.method)), extra=[(b"location", location)])

    async def _check_auth_slow(self) -> None:
        route = self.route
        assert route is not None and route.auth is not None
        try:
            ok, user = await route.auth.check_slow(self.head.authorization, self.client.peer_ip)
        except Exception as exc:  # a task edge: ferryman's bug, not the client's
            if not self.done:
                self.internal_error(exc)
            return
        if self.done:
            return
        if not ok:
            retry_after = route.auth.locked(self.client.peer_ip, self.client.server.loop.time())
            if retry_after is not None:
                self.local(HttpError("locked out after failed logins", 429), extra=[(b"retry-after", retry_after)])
            else:
                self.local(AuthRequired("no valid credentials"), extra=[(b"www-authenticate", route.auth.challenge)])
            return
        self.user = user
        self._proceed()

    def _proceed(self) -> None:
        route = self.route
        assert route is not None
        if route.files is not None:  # a static route: ferryman answers from the directory
            return route.files.serve(self)
        if self.head.expect_continue and not self.continue_sent and not self.client.closed:
            self.continue_sent = True
            self.client.write(CONTINUE_100)
        self.forwarded = route.forwarded_headers(self)
        if not self.request_done and self.pending_size < route.request_buffer and not self.upgrade:
            # a slow client holds ferryman, not an app worker: the member sees the request once its
            # body is complete, or once request_buffer bytes of a larger one are here
            self.waiting_body = True
            if self.client.flow.client_holds & PAUSE_BUFFER:  # one read ahead of routing held more
                self.client.resume(PAUSE_BUFFER)
            return
        self._try_member()

    def _body_buffered(self) -> None:
        """The body (or request_buffer bytes of it) is here: now choose a member and send it all."""
        self.waiting_body = False
        self._try_member()

    def _try_member(self) -> None:
        route = self.route
        assert route is not None
        pool = route.pool
        server = self.client.server
        now = server.loop.time()
        ctx = self.ctx
        if ctx is None:
            ctx = self.ctx = pool.context(self.head, self.client.peer_ip, self.tried)
            pool.budget.record_request(now)
        else:
            if len(self.tried) >= pool.max_tries:
                return self.local(self.failure or NoMemberAvailable("max_tries reached"))  # Apache maxattempts
            if self.body_partial and self.replay is None and self.head.body != BODY_NONE:  # outgrew the kept copy
                return self.local(self.failure or NoMemberAvailable("body no longer replayable"))
            server.metrics.retry(pool.name)
            if ctx.exclude is not self.tried:  # a shared first-try context: now this request's own
                ctx = self.ctx = PickContext(ctx.route, ctx.hash_key, self.tried, pool.rng, pool.nofailover)
        shared = server.shared
        if shared is not None:  # a worker of several: adopt what the others changed (one read if nothing)
            shared.sync()
        decision = pool.choose(now, ctx)
        self.decision = decision
        member = decision.member
        if member is None:
            # nothing left to try: answer for the last failure, or 503 when none was usable
            return self.local(self.failure or NoMemberAvailable("no usable member"))
        self.member = member  # type: ignore[assignment]
        self.tried.add(member.index)
        conn = member.acquire() if not self.reused_retry and not self.upgrade else None  # type: ignore[attr-defined]
        if conn is not None and not self.head.is_idempotent:
            # a request that must not be sent twice takes a pooled connection only if it is still open
            while conn is not None and not conn.still_open():
                conn.abort()
                conn = member.acquire()  # type: ignore[attr-defined]
        if conn is not None:
            self._attach(conn)
        else:
            self.connect_task = server.loop.create_task(self._connect(member))  # type: ignore[arg-type]

    async def _connect(self, member: "MemberRuntime") -> None:
        try:
            await self._connect_member(member)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a task edge: ferryman's bug, never the member's
            self.connect_task = None
            self.internal_error(exc)

    async def _connect_member(self, member: "MemberRuntime") -> None:
        server = self.client.server
        try:
            conn = await member.connect(server.loop)
        except asyncio.CancelledError:
            raise
        except (OSError, asyncio.TimeoutError) as exc:
            self.connect_task = None
            if self.done:
                return
            self.failure = decisions.failure_error(
                decisions.CONNECT_TIMEOUT if isinstance(exc, asyncio.TimeoutError) else decisions.CONNECT_REFUSED,
                _reason(exc))
            server.log_member_error(member, exc, self.request_id)
            server.log_transition(member, member.pool.mark_error(member, server.loop.time(), _reason(exc)))
            self._try_member()  # never reached a backend: always safe to try another
            return
        self.connect_task = None
        if self.done:
            conn.release(server.loop.time())
            return
        if conn.closed:
            # reset between connect and the first write: it never reached a backend, try another
            self.failure = decisions.failure_error(decisions.RESET_BEFORE_USE, "reset before use")
            server.log_transition(member, member.pool.mark_error(member, server.loop.time(), "reset before use"))
            self._try_member()
            return
        self._attach(conn)

    def _attach(self, conn: BackendConnection) -> None:
        route = self.route
        member = self.member
        assert route is not None and member is not None
        self.conn = conn
        member.inflight += 1
        member.requests += 1
        head = self.head
        host = head.host if route.preserve_host and head.host else member.host_header
        extra = self.forwarded or b""
        if self.upgrade:
            extra += b"connection: upgrade\r\nupgrade: websocket\r\n"
        path = self.path
        wire = head.wire
        if wire is not None and wire[0] is member and wire[1] is route and wire[2] == path and wire[3] == extra:
            # the same head (a head read again, see RequestReader) to the same member by the same route
            # with the same added lines: the same bytes as last time (serialize_request is pure)
            data = wire[4]
        else:
            data = serialize_request(head, member.map_path(route, path), host, extra)
            head.wire = (member, route, path, extra, data)
        # the request id differs per request: added after the memo, before the head's final CRLF
        data = data[:-2] + b"x-request-id: " + self.request_id + b"\r\n\r\n"
        if self.body_partial:
            if self.replay:
                data += b"".join(self.replay)  # a retry: the whole body was kept for it
        elif self.pending:  # no member got a byte of it yet (a first try, or one after a refused connect)
            data += b"".join(self.pending)
        self.pending = []
        self.pending_size = 0
        client = self.client
        if client.flow.client_holds:
            client.resume(PAUSE_BUFFER)
        client.flow.attach(conn.transport)
        conn.send(self, data, head.method, self.upgrade)
        # the response clock starts once the whole request is sent; until then, idle time counts
        self.sent_at = now = self.client.server.loop.time()
        conn.deadline = now + (member.response_timeout if self.request_done else member.read_timeout)

    def on_request_body(self, body: bytes) -> None:
        if self.done:
            return
        client = self.client
        data = chunk(body) if self.head.body == BODY_CHUNKED else body
        size = len(body)
        self.replay_size += size
        limit = self.body_limit
        if limit and self.replay_size > limit:
            return self.local(BodyTooLarge("body over max_body_size"), close=True)
        replay = self.replay
        if replay is not None:
            if self.replay_size > REPLAY_LIMIT:
                self.replay = None
            else:
                replay.append(data)
        conn = self.conn
        now = client.server.loop.time()
        if conn is not None:
            if not conn.closed:
                conn.transport.write(data)
                member = self.member
                member.bytes_out += size  # type: ignore[union-attr]
                if not self.responded:
                    conn.deadline = now + member.read_timeout  # type: ignore[union-attr]
        elif self.route is None or self.route.files is None:  # a static route drops the body
            self.pending.append(data)
            self.pending_size += len(data)
            route = self.route
            if self.pending_size > (BUFFER_LIMIT if route is None else max(BUFFER_LIMIT, route.request_buffer)):
                client.pause(PAUSE_BUFFER)  # request_buffer bytes are read in full: a member waits for them
        if not client.flow.client_holds:
            client.body_received(now, size)
        if self.waiting_body and self.pending_size >= self.route.request_buffer:  # type: ignore[union-attr]
            self._body_buffered()

    def on_request_complete(self) -> None:
        self.request_done = True
        client = self.client
        if client.current is self and client._deadline:
            client.deadline = 0.0
        if self.done:
            return
        route = self.route
        if route is not None and route.files is not None:
            return route.files.body_read(self)
        conn = self.conn
        if conn is not None and not self.responded and self.member is not None:
            conn.deadline = self.client.server.loop.time() + self.member.response_timeout
        if self.head.body == BODY_CHUNKED:
            if self.replay is not None:
                self.replay.append(LAST_CHUNK)
            conn = self.conn
            if conn is not None and not conn.closed:
                conn.transport.write(LAST_CHUNK)
            elif conn is None:
                self.pending.append(LAST_CHUNK)
        if self.waiting_body:
            self._body_buffered()

    # -- response side -----------------------------------------------------------------------------

    def pause_upload(self) -> None:
        self.client.pause(PAUSE_TUNNEL if self.client.tunnel is self else PAUSE_UPLOAD)

    def resume_upload(self) -> None:
        self.client.resume(PAUSE_TUNNEL if self.client.tunnel is self else PAUSE_UPLOAD)

    def on_backend_events(self, conn: BackendConnection, events: list[Event]) -> None:
        """Carry out what the backend connection's machine reported for one read (or its close)."""
        client = self.client
        client.cork = []
        try:
            for kind, value in events:
                if kind == DATA:
                    self.on_response_body(value)  # type: ignore[arg-type]
                elif kind == RESPONSE:
                    self.on_response_head(conn, value)  # type: ignore[arg-type]
                elif kind == END:
                    self.on_response_complete(conn)
                elif kind == TUNNEL_DATA:
                    self.tunnel_from_backend(value)  # type: ignore[arg-type]
                elif kind == SWITCHED:
                    self.on_switched(conn, value)  # type: ignore[arg-type]
                elif kind == ERROR:
                    self.on_backend_error(conn, value)  # type: ignore[arg-type]
                elif kind == EARLY_CLOSE:
                    self.on_backend_lost(conn, got_response=False)
                elif kind == TRUNCATED:
                    self.on_backend_lost(conn, got_response=True)
            if self.conn is conn and self.responded and not self.done and not client.flow.backend_paused \
                    and client.tunnel is not self:
                # the answer goes on in later reads: each read restarts the idle clock (read_timeout);
                # a tunnel has its own clock (tunnel_idle_timeout), kept by traffic either way
                conn.deadline = client.server.loop.time() + self.member.read_timeout  # type: ignore[union-attr]
        finally:
            client.uncork()

    def on_response_head(self, conn: BackendConnection, resp: ResponseHead) -> None:
        if self.done:
            return
        route = self.route
        assert route is not None
        client = self.client
        self.resp_head = resp
        head = self.head
        framing, framing_keeps = decisions.client_framing(resp.body, resp.content_length, head.method, head.version)
        self.client_framing = framing
        self.keep_alive = decisions.keep_client(self.keep_alive, self.request_done, framing_keeps,
                                                client.server.stopping)
        headers = route.rewrite_response(self, resp)
        member = self.member
        assert member is not None
        pool = member.pool
        self.head_at = now = client.server.loop.time()
        if resp.status in pool.failonstatus:  # decisions.fails_on_status, inline on the hot path
            client.server.log_transition(member, pool.mark_error(member, now, f"failonstatus {resp.status}"))
        elif member.failures and decisions.reports_success(self.retried_reused):
            self._report(True, "")  # passive health: a success ends a run of failures
        if pool.route_cookie is not None and self.ctx is not None and decisions.reissue_route_cookie(
                True, self.ctx.route, member.route):
            # pin later requests to the member that answered; after a failover this re-issues it,
            # so the user does not bounce back when the old member recovers
            cookie = pool.route_cookie_for(member, route.prefix, client.listener.tls)
            if cookie is not None:
                headers = [*headers, (b"set-cookie", cookie)]
        hsts = client.listener.hsts
        if hsts is not None and not any(n == b"strict-transport-security" for n, _ in headers):
            headers = [*headers, (b"strict-transport-security", hsts)]
        if client.listener.explain_header and self.decision is not None:
            headers = [*headers, (b"ferryman-explain", self.explain().encode("utf-8", "replace"))]
        head_only = head.method == b"HEAD"
        if headers is resp.headers:
            # the backend's head as it was checked, nothing added: a head read again (the same
            # ResponseHead, see ResponseReader) with the same framing is written as it was last time
            wire = resp.wire
            if wire is not None and wire[0] == framing and wire[1] == self.keep_alive and wire[2] == head_only:
                data = wire[3]
            else:
                data = serialize_response(resp, headers, framing, self.keep_alive, head_only)
                resp.wire = (framing, self.keep_alive, head_only, data)
        else:
            data = serialize_response(resp, headers, framing, self.keep_alive, head_only)
        # the head is out from here on: a later fault cuts the connection, it cannot become a 500
        self.responded = True
        self.status = resp.status
        if not client.closed:
            client.write(data)

    def on_response_body(self, body: bytes) -> None:
        client = self.client
        if self.done or client.closed:
            return
        self.sent_bytes += len(body)
        if self.client_framing == BODY_CHUNKED:
            client.write(chunk(body))
        else:
            client.write(body)
        member = self.member
        if member is not None:
            member.bytes_in += len(body)

    def on_response_complete(self, conn: BackendConnection) -> None:
        if self.client.tunnel is self:
            self._end_tunnel()  # the backend closed the tunnel
            return
        if self.done:
            conn.close()
            return
        client = self.client
        if self.client_framing == BODY_CHUNKED and not client.closed:
            client.write(LAST_CHUNK)
        if not self.request_done:
            # answered before the whole body was sent: the backend has unread bytes, never reuse
            conn.reader.close()
        self._finish_backend(conn)
        self._finish(self.keep_alive)

    def on_backend_lost(self, conn: BackendConnection, got_response: bool) -> None:
        """The backend connection closed before the response was complete."""
        if self.done:
            return
        self._finish_backend(conn)
        if got_response:
            # Truncated: the client must see it truncated, never complete (invariant 9).
            self._report(False, "response truncated")
            self._truncate()
            return
        self._failed(UpstreamError("backend closed the connection before answering"), conn)

    def on_backend_error(self, conn: BackendConnection, err: UpstreamError) -> None:
        server = self.client.server
        if self.done:
            # bytes after a complete answer: the answer stands, the connection is closed (never reused)
            member = self.member
            log.warning("pool %s member %s: %s; connection closed request_id=%s",
                        member.pool.name if member else "-", member.name if member else "-", err,
                        self.request_id.decode("latin-1"))
            conn.abort()
            return
        self._report(False, str(err))
        self._finish_backend(conn)
        conn.abort()
        if self.responded:
            self._truncate()
            return
        server.log_backend_error(self, err)
        self.local(err)

    def on_backend_timeout(self, conn: BackendConnection) -> None:
        conn.abort()
        if self.done:
            return
        client = self.client
        if not self.responded and not self.request_done and not client.flow.client_holds \
                and client.current is self:
            # the backend was waiting for a body the client is slow to send: the client's fault
            client.flow.detach(conn.transport)
            client._reject(HttpError("request body not sent within the member's read_timeout", 408))
            return
        if self.client.tunnel is self:
            self._end_tunnel()
            return
        member = self.member
        if member is not None and not self.responded and member.pool.failontimeout:
            server = self.client.server
            server.log_transition(member, member.pool.mark_error(member, server.loop.time(), "response timeout"))
        else:
            self._report(False, "timeout")
        self._finish_backend(conn)
        if self.responded:
            self._truncate()
            return
        err = decisions.failure_error(decisions.TIMEOUT, "backend timed out")
        self.client.server.log_backend_error(self, err)
        self.local(err)

    def internal_error(self, exc: BaseException, logged: bool = False) -> None:
        """ferryman's own fault while serving this exchange: never counted against the member; 500 if
        no answer has started, else the client connection is cut (the access log keeps the status sent)."""
        client = self.client
        if not logged:
            client.server.log_internal_error(exc, client.peer_ip, self.request_id)
        if self.done:
            client._close(abort=True)
            return
        if self.responded:
            self.abandon()
            client.server.access(self)
            client.current = None
            client._close(abort=True)
            return
        self.local(decisions.failure_error(decisions.INTERNAL, str(exc) or type(exc).__name__), close=True)

    def _failed(self, err: UpstreamError, conn: BackendConnection) -> None:
        """No response at all. Retry when safe (invariant 8), else 502."""
        server = self.client.server
        now = server.loop.time()
        member = self.member
        pool = self.route.pool  # type: ignore[union-attr]
        reused = conn.used > 1
        if member is not None and decisions.counts_reused_failure(reused, conn.reset):
            server.log_transition(member, pool.report(member, False, now, str(err)))
        replayable = self.head.body == BODY_NONE or self.replay is not None
        same_member_again = reused and not self.reused_retry  # a fresh connection is not another try
        tries = len(self.tried) - (1 if same_member_again else 0)
        if (decisions.may_retry(reached_backend=True, idempotent=self.head.is_idempotent, replayable=replayable,
                                request_done=self.request_done, tries=tries, max_tries=pool.max_tries)
                and not self.upgrade and pool.budget.try_retry(now)):
            if same_member_again:
                # a pooled connection the backend had just closed: same member, new connection
                self.reused_retry = True
                self.retried_reused = True
                self.tried.discard(member.index)  # type: ignore[union-attr]
            self.conn = None
            self.pending = []
            self.body_partial = True
            self.failure = err
            self._try_member()
            return
        server.log_backend_error(self, err)
        self.local(err)

    def _report(self, ok: bool, reason: str) -> None:
        """Passive health: tell the pool how a live request to the member went."""
        member = self.member
        if member is not None:
            server = self.client.server
            server.log_transition(member, member.pool.report(member, ok, server.loop.time(), reason))

    def _finish_backend(self, conn: BackendConnection) -> None:
        member = self.member
        self.client.flow.detach(conn.transport)
        if self.conn is conn:
            self.conn = None
            if member is not None:
                member.inflight -= 1
        conn.release(self.client.server.loop.time())

    def _truncate(self) -> None:
        self.done = True
        client = self.client
        client.server.access(self)
        if self.client_framing == BODY_UNTIL_CLOSE:
            # the client reads this body up to the close: a clean close would pass it off as complete
            # (invariant 9), so what was written is sent, then the connection is reset
            client.reset_when_flushed()
        client._close()
        client.exchange_done(self, False)

    # -- tunnel (after a 101) ----------------------------------------------------------------------

    def on_switched(self, conn: BackendConnection, resp: ResponseHead) -> None:
        """The backend accepted the protocol switch: relay its 101, then bytes both ways as they are."""
        client = self.client
        if self.done or client.closed:
            conn.abort()
            return
        member = self.member
        route = self.route
        assert member is not None and route is not None
        self.resp_head = resp
        self.status = 101
        self.responded = True
        head = [b"HTTP/1.1 101 Switching Protocols\r\n"]
        for name, value in resp.headers:
            if name not in (b"connection", b"upgrade", b"keep-alive", b"ferryman-explain", b"content-length",
                            b"transfer-encoding", b"te", b"trailer", b"proxy-connection"):
                head += (name, b": ", value, b"\r\n")
        upgrade = next((v for n, v in resp.headers if n == b"upgrade"), self.head.upgrade or b"")
        head.append(b"connection: upgrade\r\nupgrade: " + upgrade + b"\r\n\r\n")
        client.write(b"".join(head))
        if decisions.reports_success(self.retried_reused) and member.failures:
            self._report(True, "")
        client.server.access(self)  # the access log line is written when the switch happens
        conn.deadline = 0.0
        held = client.start_tunnel(self)
        self._touch_tunnel()
        if held:
            self.tunnel_from_client(held)

    def _touch_tunnel(self) -> None:
        """Arm the idle timer (route tunnel_idle_timeout); traffic moves `tunnel_last` forward."""
        route = self.route
        assert route is not None
        loop = self.client.server.loop
        self.tunnel_last = loop.time()
        self.tunnel_timer = loop.call_at(self.tunnel_last + route.tunnel_idle_timeout, self._tunnel_idle_check)

    def tunnel_from_client(self, data: bytes) -> None:
        conn = self.conn
        if conn is None or conn.closed:
            return
        conn.transport.write(data)
        self.tunnel_last = self.client.server.loop.time()

    def tunnel_from_backend(self, data: bytes) -> None:
        client = self.client
        if not client.closed:
            client.write(data)
            self.sent_bytes += len(data)
        self.tunnel_last = client.server.loop.time()

    def tunnel_client_eof(self) -> None:
        """The client will send no more: pass the half-close on; the backend's close ends the tunnel."""
        conn = self.conn
        if conn is not None and not conn.closed and conn.transport.can_write_eof():
            conn.transport.write_eof()
        else:
            self._end_tunnel()

    def _tunnel_idle_check(self) -> None:
        self.tunnel_timer = None
        if self.client.tunnel is not self or self.route is None:
            return
        loop = self.client.server.loop
        due = self.tunnel_last + self.route.tunnel_idle_timeout
        if loop.time() < due:
            self.tunnel_timer = loop.call_at(due, self._tunnel_idle_check)
            return
        self._end_tunnel()

    def _end_tunnel(self) -> None:
        """Close both sides of a tunnel (idle, or one side went away)."""
        client = self.client
        if self.tunnel_timer is not None:
            self.tunnel_timer.cancel()
            self.tunnel_timer = None
        self.done = True
        conn = self.conn
        if conn is not None:
            self.conn = None
            if self.member is not None:
                self.member.inflight -= 1
            conn.close()
        client.tunnel = None
        client._close()

    def explain(self) -> str:
        """pool, member and why: the ferryman-explain header and the log's decision."""
        decision = self.decision
        route = self.route
        pool = route.pool.name if route is not None else "-"
        return f"pool={pool}; {decision.explain() if decision is not None else 'not routed'}"

    # -- endings -----------------------------------------------------------------------------------

    def local(self, err: FerrymanError, *, close: bool = False,
              extra: list[tuple[bytes, bytes]] | None = None) -> None:
        """Answer `err` with ferryman's own small error page (its class gives the status)."""
        status = err.status
        if self.done:
            return
        client = self.client
        if self.conn is not None:
            conn, self.conn = self.conn, None
            if self.member is not None:
                self.member.inflight -= 1
            conn.abort()
        keep = self.keep_alive and not close and self.request_done and not client.server.stopping
        self.status = status
        if self.head.body != BODY_NONE and not self.request_done:
            keep = False
        hsts = client.listener.hsts
        if hsts is not None:
            extra = [*(extra or ()), (b"strict-transport-security", hsts)]
        if not client.closed:
            client.write(error_response(status, close=not keep, extra=extra))
        self._finish(keep)

    def _finish(self, keep_alive: bool) -> None:
        self.done = True
        self.client.server.access(self)
        self.client.exchange_done(self, keep_alive)

    def abandon(self) -> None:
        """The client went away: stop everything this exchange holds."""
        if self.done:
            return
        self.done = True
        task = self.connect_task
        if task is not None:
            task.cancel()
        conn = self.conn
        if conn is not None:
            self.conn = None
            if self.member is not None:
                self.member.inflight -= 1
            conn.abort()
