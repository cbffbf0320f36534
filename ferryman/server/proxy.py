"""Client side and per-request orchestration: bytes in, core decisions, bytes out.

A `ClientConnection` is the asyncio protocol of one client; httptools calls it back as the request
arrives. Each request becomes an `Exchange`, which asks the core where it goes (router, balancer),
writes a canonical head to a `BackendConnection` and relays the body both ways with backpressure.
Every decision is a call into `ferryman.core`; this module only moves bytes and keeps time.
"""

from __future__ import annotations

import asyncio
import re
from collections import deque
from typing import TYPE_CHECKING

import httptools

from ferryman.core.balancer import Decision, PickContext
from ferryman.core.http import (
    BODY_CHUNKED, BODY_LENGTH, BODY_NONE, BODY_UNTIL_CLOSE, CONTINUE_100, LAST_CHUNK,
    RequestHead, ResponseHead, check_request_head, chunk, error_response,
    serialize_request, serialize_response,
)
from ferryman.errors import HttpError, UpstreamError, UpstreamProtocolError
from ferryman.server.upstream import BackendConnection

if TYPE_CHECKING:  # pragma: no cover
    from ferryman.server.runtime import ListenerRuntime, MemberRuntime, RouteRuntime, Server

# Reasons a client's reading is paused; reading resumes when none is left.
PAUSE_PIPELINE = 1   # a later request waits for the current answer
PAUSE_UPLOAD = 2     # the backend cannot take the body as fast as the client sends it
PAUSE_BUFFER = 4     # the body arrives before a backend connection exists

PAUSE_CLOSING = 8    # the last request was read (Connection: close, shutdown, error)

REPLAY_LIMIT = 64 * 1024    # a request body up to this size is kept so the request can be retried
BUFFER_LIMIT = 256 * 1024   # body bytes held while connecting before the client is paused


_DOUBLED_SPACE = re.compile(rb"(?:\A|\n)[A-Z]+(?: {2}| [^ \r\n]+ {2,}HTTP/)")


def _reason(exc: BaseException) -> str:
    if isinstance(exc, asyncio.TimeoutError):
        return "connect timeout"
    return exc.strerror if isinstance(exc, OSError) and exc.strerror else (str(exc) or type(exc).__name__)


class _NoMoreRequests(Exception):
    """Raised from on_message_begin after a request that ends the connection."""


class ClientConnection(asyncio.Protocol):
    """One client connection: parses requests in order and answers them in order."""

    def __init__(self, server: "Server", listener: "ListenerRuntime") -> None:
        # -- per-connection state
        self.server = server
        self.listener = listener
        self.limits = server.limits
        self.transport: asyncio.Transport = None  # type: ignore[assignment]
        self.peer_ip = "-"
        self.trusted = False
        self.parser = httptools.HttpRequestParser(self)
        self.current: Exchange | None = None      # the exchange being answered
        self.reading: Exchange | None = None      # the exchange whose request is being parsed
        self.waiting: deque[Exchange] = deque()   # pipelined, parsed, not yet started
        self.paused = 0
        self.write_paused = False
        self.closing = False                      # no further requests are read
        self.rejected: HttpError | None = None    # a bad request waiting for earlier answers
        self.cork: list[bytes] | None = None      # writes collected during one backend read
        self._to_start: Exchange | None = None    # parsed in this read, started when it is all parsed
        self.closed = False
        self.deadline = 0.0
        # -- per-request parse state
        self._url = b""
        self._headers: list[tuple[bytes, bytes]] = []
        self._head_bytes = 0
        self._header_size = 0
        self._in_head = False

    # -- transport callbacks -----------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        listener = self.listener
        if listener.open_connections >= listener.max_connections:
            # over the listener's limit (invariant 7): a short answer, not a silent drop
            self.closed = True
            transport.write(error_response(503, close=True))  # type: ignore[attr-defined]
            transport.close()
            self.server.log_overload(listener)
            return
        listener.open_connections += 1
        peer = transport.get_extra_info("peername")
        if peer:
            self.peer_ip = peer[0]
            self.trusted = self.peer_ip in self.listener.trusted
        self.server.clients.add(self)
        self.deadline = self.server.loop.time() + self.listener.header_timeout

    def data_received(self, data: bytes) -> None:
        if self.closed:
            return
        bad_line = None
        if self.reading is None and not self._in_head and b"  " in data:
            # llhttp accepts a doubled space in a request line; RFC 9112 3 allows exactly one.
            # Checked on every line of a read that starts between requests (pipelined ones too):
            # what comes before the bad line is served, the bad line is refused in its turn.
            bad_line = _DOUBLED_SPACE.search(data)
            if bad_line is not None:
                data = data[:bad_line.start() + (data[bad_line.start()] == 0x0A)]
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserCallbackError as exc:
            cause = exc.__context__
            if isinstance(cause, _NoMoreRequests):
                self.pause(PAUSE_CLOSING)  # bytes after a last request are not read
            else:
                self._reject(cause if isinstance(cause, HttpError) else HttpError("bad request", 400))
        except httptools.HttpParserUpgrade:
            # a protocol switch ferryman does not offer: the request is answered as plain
            # HTTP/1.1 (Upgrade removed) and the connection closes after it; nothing more is read
            self.pause(PAUSE_CLOSING)
        except httptools.HttpParserInvalidMethodError:
            self._reject(HttpError("method not implemented", 501))
        except httptools.HttpParserError:
            if self.closing and self.reading is None and not self._in_head:
                self.pause(PAUSE_CLOSING)  # llhttp refuses data after a closing request: ignore it
            else:
                self._reject(HttpError("malformed request", 400))
        else:
            if self._in_head:
                # a head still incomplete after this read: bound what the parser holds (invariant 7)
                self._head_bytes += len(data)
                if self._head_bytes > self.limits.max_head_total:
                    self._reject(HttpError("request head too large", 431))
        if bad_line is not None and not self.closed:
            self._reject(HttpError("malformed request line", 400))
        ex = self._to_start
        if ex is not None:
            # Started only now, after the whole read was parsed: a body that breaks its framing in
            # the same read is refused before anything reaches a backend. A later bad request in
            # the same read does not stop this one (it was answered in order by _reject).
            self._to_start = None
            if not ex.done and self.current is ex:
                ex.start()

    def eof_received(self) -> bool:
        # A half-closed client may still want its answers (RFC 9112 9.6); close after them.
        if self.current is None and self.reading is None:
            return False
        self.closing = True
        return True

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self in self.server.clients:
            self.server.clients.discard(self)
            self.listener.open_connections -= 1
        for ex in (self.current, self.reading, *self.waiting):
            if ex is not None:
                ex.abandon()
        self.current = self.reading = None
        self.waiting.clear()

    def pause_writing(self) -> None:
        self.write_paused = True
        ex = self.current
        if ex is not None and ex.conn is not None and not ex.conn.closed:
            ex.conn.paused_by_client = True
            ex.conn.deadline = 0.0  # we stopped reading it: the client's send deadline governs
            ex.conn.transport.pause_reading()
        self.deadline = self.server.loop.time() + self.listener.body_timeout

    def resume_writing(self) -> None:
        self.write_paused = False
        ex = self.current
        if ex is not None and ex.conn is not None and ex.conn.paused_by_client and not ex.conn.closed:
            ex.conn.paused_by_client = False
            ex.conn.transport.resume_reading()
            if ex.member is not None:
                ex.conn.deadline = self.server.loop.time() + ex.member.read_timeout
        self.deadline = 0.0

    # -- parser callbacks (httptools) --------------------------------------------------------------

    def on_message_begin(self) -> None:
        if self.closing:
            raise _NoMoreRequests()
        self._url = b""
        self._headers = []
        self._head_bytes = 0
        self._header_size = 0
        self._in_head = True
        self.deadline = self.server.loop.time() + self.listener.header_timeout

    def on_url(self, url: bytes) -> None:
        self._url += url
        if len(self._url) > self.limits.max_request_line:
            raise HttpError("request line too long", 414)

    def on_header(self, name: bytes, value: bytes) -> None:
        headers = self._headers
        headers.append((name.lower(), value))
        self._header_size += len(name) + len(value) + 4
        if len(headers) > self.limits.max_headers or self._header_size > self.limits.max_header_size:
            raise HttpError("request header fields too large", 431)

    def on_headers_complete(self) -> None:
        parser = self.parser
        head = check_request_head(parser.get_method(), self._url, parser.get_http_version(),
                                  self._headers, is_vouched=self.listener.is_vouched,
                                  vouched_cache=self.listener.vouched_cache)
        self._in_head = False
        self._head_bytes = 0
        if parser.should_upgrade():
            head.keep_alive = False  # no protocol switch through ferryman yet: answer, then close
        ex = Exchange(self, head)
        self.reading = ex
        if not head.keep_alive:
            self.closing = True
        if self.current is None:
            self.current = ex
            self.deadline = 0.0
            self._to_start = ex  # see data_received
        else:
            self.waiting.append(ex)
            self.pause(PAUSE_PIPELINE)

    def on_body(self, body: bytes) -> None:
        ex = self.reading
        if ex is not None:
            ex.on_request_body(body)

    def on_message_complete(self) -> None:
        ex = self.reading
        self.reading = None
        if ex is not None:
            ex.on_request_complete()

    # -- flow control ------------------------------------------------------------------------------

    def pause(self, reason: int) -> None:
        if not self.paused and not self.closed:
            self.transport.pause_reading()
            if self.reading is not None and not self.write_paused:
                self.deadline = 0.0  # we stopped reading: the client is not slow
        self.paused |= reason

    def resume(self, reason: int) -> None:
        if self.paused & reason:
            self.paused &= ~reason
            if not self.paused and not self.closed:
                self.transport.resume_reading()
                if self.reading is not None:
                    self.deadline = self.server.loop.time() + self.listener.body_timeout

    def pause_for_upload(self) -> None:
        self.pause(PAUSE_UPLOAD)

    def resume_for_upload(self) -> None:
        self.resume(PAUSE_UPLOAD)

    # -- answers -----------------------------------------------------------------------------------

    def _reject(self, err: HttpError) -> None:
        """A request we cannot serve unambiguously: answer it in turn, then close (invariant 2)."""
        self.closing = True
        self._in_head = False
        bad, self.reading = self.reading, None
        if bad is not None and bad is not self.current:
            self.waiting.remove(bad)
            bad.done = True
        if self.current is None or self.current is bad:
            if bad is not None:
                if bad.responded:  # its answer is already streaming: cut it, never complete it
                    bad.abandon()
                    self.server.log_rejected(self, err)
                    self._close(abort=True)
                    return
                bad.abandon()
                self.current = None
            self._answer_and_close(err)
        else:
            self.rejected = err  # earlier requests are answered first, in order

    def _answer_and_close(self, err: HttpError) -> None:
        self.server.log_rejected(self, err)
        if not self.closed:
            self.write(error_response(err.status, close=True))
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
            if abort:
                self.transport.abort()
            else:
                self.transport.close()

    def exchange_done(self, ex: "Exchange", keep_alive: bool) -> None:
        """The answer to `ex` is written: move to the next request or close."""
        if self.current is not ex:
            return
        self.current = None
        if self.closed:
            return
        if not keep_alive or self.server.stopping:
            self._close()
        elif self.waiting:
            nxt = self.waiting.popleft()
            self.current = nxt
            if not self.waiting:
                self.resume(PAUSE_PIPELINE)
            nxt.start()
        elif self.rejected is not None:
            self._answer_and_close(self.rejected)
        elif self.closing:
            self._close()
        else:
            self.deadline = self.server.loop.time() + self.listener.keepalive_timeout

    def timed_out(self) -> None:
        """The sweeper found our deadline passed: idle, slow head, slow body or slow reader."""
        if self.closed:
            return
        reading = self.reading
        if self.current is None and reading is None and not self._in_head:
            self._close()  # idle keep-alive connection (Apache KeepAliveTimeout)
        elif reading is None and self._in_head or reading is not None and not reading.responded:
            self._reject(HttpError("request timeout", 408))
        else:
            self._close(abort=True)  # a client that stopped reading its answer

    def close_if_idle(self) -> None:
        if self.current is None and self.reading is None and not self._in_head and not self.closed:
            self._close()


class Exchange:
    """One request and its answer: route, member choice, retries, relaying."""

    __slots__ = (
        "client", "head", "route", "member", "conn", "tried", "path", "request_done", "pending",
        "pending_size", "replay", "replay_size", "responded", "client_framing", "keep_alive",
        "status", "sent_bytes", "start_time", "continue_sent", "done", "reused_retry",
        "forwarded", "connect_task", "resp_head", "fail_status", "user", "ctx", "decision",
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
        self.fail_status = 0
        self.user: str | None = None
        self.ctx: PickContext | None = None
        self.decision: Decision | None = None

    # -- request side ------------------------------------------------------------------------------

    def start(self) -> None:
        """Route the request and send it to a member; or answer it here."""
        client = self.client
        head = self.head
        listener = client.listener
        try:
            route, path, head.query = listener.resolve(head.target)
        except HttpError as err:
            return self.local(err.status, close=err.status == 400)
        self.route = route
        self.path = path
        if head.body == BODY_LENGTH and client.limits.max_body_size and \
                head.content_length > client.limits.max_body_size:
            return self.local(413, close=True)
        if route.auth is not None:
            verdict = route.auth.check(head.authorization)
            if verdict is None:
                client.server.loop.create_task(self._check_auth_slow())
                return
            if not verdict[0]:
                return self.local(401, extra=[(b"www-authenticate", route.auth.challenge)])
            self.user = verdict[1]
        self._proceed()

    async def _check_auth_slow(self) -> None:
        route = self.route
        assert route is not None and route.auth is not None
        ok, user = await route.auth.check_slow(self.head.authorization)
        if self.done:
            return
        if not ok:
            self.local(401, extra=[(b"www-authenticate", route.auth.challenge)])
            return
        self.user = user
        self._proceed()

    def _proceed(self) -> None:
        route = self.route
        assert route is not None
        if self.head.expect_continue and not self.continue_sent and not self.client.closed:
            self.continue_sent = True
            self.client.write(CONTINUE_100)
        self.forwarded = route.forwarded_headers(self)
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
                return self.local(self.fail_status or 503)  # Apache maxattempts
            if ctx.exclude is not self.tried:  # a shared first-try context: now this request's own
                ctx = self.ctx = PickContext(ctx.route, ctx.hash_key, self.tried, pool.rng, pool.nofailover)
        decision = pool.choose(now, ctx)
        self.decision = decision
        member = decision.member
        if member is None:
            # nothing left to try: answer for the last failure, or 503 when none was usable
            return self.local(self.fail_status or 503)
        self.member = member  # type: ignore[assignment]
        self.tried.add(member.index)
        conn = member.acquire() if not self.reused_retry else None  # type: ignore[attr-defined]
        if conn is not None:
            self._attach(conn)
        else:
            self.connect_task = server.loop.create_task(self._connect(member))  # type: ignore[arg-type]

    async def _connect(self, member: "MemberRuntime") -> None:
        server = self.client.server
        try:
            conn = await member.connect(server.loop)
        except asyncio.CancelledError:
            raise
        except (OSError, asyncio.TimeoutError) as exc:
            self.connect_task = None
            if self.done:
                return
            self.fail_status = 504 if isinstance(exc, asyncio.TimeoutError) else 503
            server.log_member_error(member, exc)
            server.log_transition(member, member.pool.mark_error(member, server.loop.time(), _reason(exc)))
            self._try_member()  # never reached a backend: always safe to try another
            return
        self.connect_task = None
        if self.done:
            conn.release(server.loop.time())
            return
        if conn.closed:
            # reset between connect and the first write: it never reached a backend, try another
            self.fail_status = 502
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
        data = serialize_request(head, member.map_path(route, self.path), host, self.forwarded or b"")
        if len(self.tried) > 1 or self.reused_retry:
            if self.replay:
                data += b"".join(self.replay)  # a retry: the whole body was kept for it
        elif self.pending:
            data += b"".join(self.pending)
        self.pending = []
        self.pending_size = 0
        self.client.resume(PAUSE_BUFFER)
        conn.send(self, data)
        # the response clock starts once the whole request is sent; until then, idle time counts
        conn.deadline = self.client.server.loop.time() + (
            member.response_timeout if self.request_done else member.read_timeout)

    def on_request_body(self, body: bytes) -> None:
        if self.done:
            return
        client = self.client
        data = chunk(body) if self.head.body == BODY_CHUNKED else body
        size = len(body)
        self.replay_size += size
        limit = client.limits.max_body_size
        if limit and self.replay_size > limit:
            return self.local(413, close=True)
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
        else:
            self.pending.append(data)
            self.pending_size += len(data)
            if self.pending_size > BUFFER_LIMIT:
                client.pause(PAUSE_BUFFER)
        if not client.paused:
            client.deadline = now + client.listener.body_timeout

    def on_request_complete(self) -> None:
        self.request_done = True
        if self.client.current is self:
            self.client.deadline = 0.0
        if self.done:
            return
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

    # -- response side -----------------------------------------------------------------------------

    def on_response_head(self, conn: BackendConnection, resp: ResponseHead) -> None:
        if self.done:
            return
        route = self.route
        assert route is not None
        client = self.client
        self.responded = True
        self.resp_head = resp
        self.status = resp.status
        head = self.head
        if resp.body == BODY_NONE or head.method == b"HEAD":
            framing = BODY_NONE
        elif resp.body == BODY_LENGTH:
            framing = BODY_LENGTH
        elif head.version == b"1.1":
            framing = BODY_CHUNKED
        else:
            framing = BODY_UNTIL_CLOSE
            self.keep_alive = False
        if resp.body == BODY_NONE and head.method != b"HEAD" and resp.content_length > 0:
            framing = BODY_NONE
        self.client_framing = framing
        if not self.request_done:
            self.keep_alive = False  # answered before the body was read: the rest is unaccounted
        if client.server.stopping or client.closing and not client.waiting:
            self.keep_alive = False
        headers = route.rewrite_response(self, resp)
        member = self.member
        assert member is not None
        pool = member.pool
        now = client.server.loop.time()
        conn.deadline = now + member.read_timeout
        if resp.status in pool.failonstatus:
            client.server.log_transition(member, pool.mark_error(member, now, f"failonstatus {resp.status}"))
        elif member.failures:
            self._report(True, "")  # passive health: a success ends a run of failures
        if pool.route_cookie is not None and self.ctx is not None and self.ctx.route != member.route:
            # pin later requests to the member that answered; after a failover this re-issues it,
            # so the user does not bounce back when the old member recovers
            cookie = pool.route_cookie_for(member, route.prefix, client.listener.tls)
            if cookie is not None:
                headers = [*headers, (b"set-cookie", cookie)]
        if client.listener.explain_header and self.decision is not None:
            headers = [*headers, (b"ferryman-explain", self.explain().encode("utf-8", "replace"))]
        if not client.closed:
            client.write(serialize_response(resp, headers, framing, self.keep_alive,
                                            head.method == b"HEAD"))

    def on_response_body(self, body: bytes) -> None:
        client = self.client
        if self.done or client.closed:
            return
        self.sent_bytes += len(body)
        if self.client_framing == BODY_CHUNKED:
            client.write(chunk(body))
        else:
            client.write(body)
        conn = self.conn
        if conn is not None:
            member = self.member
            if member is not None:
                member.bytes_in += len(body)
                conn.deadline = client.server.loop.time() + member.read_timeout

    def on_response_complete(self, conn: BackendConnection) -> None:
        if self.done:
            conn.close()
            return
        client = self.client
        if self.client_framing == BODY_CHUNKED and not client.closed:
            client.write(LAST_CHUNK)
        if not self.request_done:
            conn.reusable = False
        self._finish_backend(conn)
        self._finish(self.keep_alive)

    def on_backend_lost(self, conn: BackendConnection, exc: Exception | None, got_response: bool) -> None:
        """The backend connection closed before the response was complete."""
        if self.done:
            return
        self._finish_backend(conn)
        if got_response:
            # Truncated: the client must see it truncated, never complete (invariant 9).
            self._truncate()
            return
        self._failed(UpstreamError("backend closed the connection before answering"), conn)

    def on_backend_error(self, conn: BackendConnection, err: UpstreamError) -> None:
        if self.done:
            return
        self._report(False, str(err))
        self._finish_backend(conn)
        if self.responded:
            self._truncate()
            return
        self.client.server.log_backend_error(self, err)
        self.local(err.status)

    def on_backend_timeout(self, conn: BackendConnection) -> None:
        conn.abort()
        if self.done:
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
        self.client.server.log_backend_error(self, UpstreamError("backend timed out"))
        self.local(504)

    def _failed(self, err: UpstreamError, conn: BackendConnection) -> None:
        """No response at all. Retry when safe (invariant 8), else 502."""
        server = self.client.server
        now = server.loop.time()
        member = self.member
        pool = self.route.pool  # type: ignore[union-attr]
        fresh_conn_failed = conn.used <= 1
        if member is not None and fresh_conn_failed:
            server.log_transition(member, pool.report(member, False, now, str(err)))
        replayable = self.request_done and (self.head.body == BODY_NONE or self.replay is not None)
        if (replayable and self.head.is_idempotent and len(self.tried) < pool.max_tries
                and pool.budget.try_retry(now)):
            if not fresh_conn_failed and not self.reused_retry:
                # a pooled connection the backend had just closed: same member, new connection
                self.reused_retry = True
                self.tried.discard(member.index)  # type: ignore[union-attr]
            self.conn = None
            self.pending = []
            self.fail_status = 502
            self._try_member()
            return
        server.log_backend_error(self, err)
        self.local(502)

    def _report(self, ok: bool, reason: str) -> None:
        """Passive health: tell the pool how a live request to the member went."""
        member = self.member
        if member is not None:
            server = self.client.server
            server.log_transition(member, member.pool.report(member, ok, server.loop.time(), reason))

    def _finish_backend(self, conn: BackendConnection) -> None:
        member = self.member
        if self.conn is conn:
            self.conn = None
            if member is not None:
                member.inflight -= 1
        conn.release(self.client.server.loop.time())

    def _truncate(self) -> None:
        self.done = True
        client = self.client
        client.server.access(self)
        client._close()
        client.exchange_done(self, False)

    def explain(self) -> str:
        """pool, member and why: the ferryman-explain header and the log's decision."""
        decision = self.decision
        route = self.route
        pool = route.pool.name if route is not None else "-"
        return f"pool={pool}; {decision.explain() if decision is not None else 'not routed'}"

    # -- endings -----------------------------------------------------------------------------------

    def local(self, status: int, *, close: bool = False,
              extra: list[tuple[bytes, bytes]] | None = None) -> None:
        """Answer with ferryman's own small error page."""
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
