"""Runtime objects built from a `Plan`, and the `Server` that owns them.

The plan (`ferryman.plan`) is the configuration compiled and checked: immutable, with every file
already loaded (TLS contexts, htpasswd tables). The objects here are what a running ferryman adds to
it: the live state, and only that. Per member: health, error state, lbstatus, in-flight, request and
byte counters, idle connections; per pool: the retry budget and the sticky-route caches; per route
and listener: caches of built headers. Live state is keyed by pool name and member name
(`Server.members`), never by position, so that a reload (`ferryman.server.reload`) can build new
runtime objects from a new plan that keep each member still configured, the same object with its live
state and the new settings (`build_runtime(previous=...)`, `MemberRuntime.configure`), while requests
in flight keep the route and pool objects they hold (`Exchange.route`) and finish on the old plan.
Nothing here reads a configuration file.
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import random
import socket
from time import time as _wall
from typing import TYPE_CHECKING, Any

from ferryman.core import forwarded as fwd
from ferryman.core.auth import FailureLimiter, Htpasswd, parse_basic_authorization
from ferryman.core.balancer import Member, PickContext, Pool, make_strategy
from ferryman.core.budget import RetryBudget
from ferryman.core.signing import sign
from ferryman.core.throttle import LogGate
from ferryman.core.health import MemberHealth
from ferryman.core.sticky import StickySpec, cookie_value, find_route, is_route_cookie_safe, route_cookie_header
from ferryman.core.http import ResponseHead, serialize_headers
from ferryman.core.rewrite import ReverseMap, rewrite_location, rewrite_set_cookie
from ferryman.core.paths import normalize_path, split_target
from ferryman.core.requestid import HEADER as REQUEST_ID_HEADER, RequestIds
from ferryman.core.router import Router, map_path
from ferryman.errors import HttpError, PathRejected
from ferryman.server.accesslog import AccessLog
from ferryman.server.metrics import Metrics
from ferryman.server.static import STATIC_POOL, StaticFiles
from ferryman.server.tls import handshake_reason
from ferryman.server.upstream import BackendConnection, MemberConnections

if TYPE_CHECKING:  # pragma: no cover
    from ferryman.plan import AuthPlan, ListenerPlan, MemberPlan, Plan, PoolPlan, RoutePlan

# The proxy layer (server/proxy.py) imports this module, never the reverse: exchanges and client
# connections are passed in as plain objects.
Exchange = Any
ClientConnection = Any

log = logging.getLogger("ferryman")

_UNPARSED = object()
_LOCATION_HEADERS = frozenset({b"location", b"content-location", b"uri"})


class Limits:
    """Request limits (invariant 7), from `[limits]`."""

    __slots__ = ("max_request_line", "max_header_size", "max_headers", "max_body_size", "max_head_total")

    def __init__(self, cfg: Any) -> None:
        self.max_request_line = cfg.max_request_line
        self.max_header_size = cfg.max_header_size
        self.max_headers = cfg.max_headers
        self.max_body_size = cfg.max_body_size
        self.max_head_total = cfg.max_request_line + cfg.max_header_size


class MemberRuntime(Member):
    """A pool member with its address, its idle connections and its timeouts."""

    __slots__ = ("pool", "scheme", "host", "port", "path", "host_header", "conns",
                 "ssl", "server_hostname", "connect_timeout", "response_timeout", "read_timeout",
                 "max_response_head", "max_interim_responses")

    def __init__(self, cfg: "MemberPlan", pool_cfg: "PoolPlan") -> None:
        super().__init__(cfg.index, cfg.name, cfg.route, cfg.weight, cfg.status, cfg.lbset)
        self.pool: PoolRuntime = None  # type: ignore[assignment]  # set by PoolRuntime
        self.scheme = cfg.scheme
        self.host = cfg.host
        self.port = cfg.port
        self.path = cfg.path.encode()
        self.conns = MemberConnections(pool_cfg.keepalive, pool_cfg.keepalive_timeout)
        self.configure(cfg, pool_cfg)

    def configure(self, cfg: "MemberPlan", pool_cfg: "PoolPlan") -> None:
        """Take the settings of `cfg` (a member with this name: same URL, so same address); the live
        state (health, counters, scores, idle connections) stays. A reload calls it on a kept member."""
        self.index = cfg.index
        self.route = cfg.route
        self.weight = cfg.weight
        self.status = cfg.status
        self.lbset = cfg.lbset
        self.host_header = cfg.host_header
        self.conns.limit = pool_cfg.keepalive
        self.conns.idle_timeout = pool_cfg.keepalive_timeout
        self.ssl = pool_cfg.client_tls if cfg.scheme == "https" else None
        self.server_hostname = cfg.server_hostname
        self.connect_timeout = pool_cfg.connect_timeout
        self.response_timeout = pool_cfg.response_timeout
        self.read_timeout = pool_cfg.read_timeout
        self.max_response_head = pool_cfg.max_response_head
        self.max_interim_responses = pool_cfg.max_interim_responses

    def acquire(self) -> BackendConnection | None:
        return self.conns.acquire()  # the exchange sets the connection's deadline as it sends

    def keep(self, conn: BackendConnection, now: float) -> bool:
        return self.conns.keep(conn, now)

    def drop(self, conn: BackendConnection) -> None:
        self.conns.drop(conn)

    async def connect(self, loop: asyncio.AbstractEventLoop) -> BackendConnection:
        _, conn = await asyncio.wait_for(
            loop.create_connection(lambda: BackendConnection(self, self.max_response_head, loop,
                                                           self.max_interim_responses), self.host, self.port,
                                   ssl=self.ssl, server_hostname=self.server_hostname),
            self.connect_timeout,
        )
        return conn

    def map_path(self, route: "RouteRuntime", path: bytes) -> bytes:
        return map_path(path, route.prefix, self.path)


class PoolRuntime(Pool):
    """A configured pool: core balancing state plus its members' runtime and pool-wide policy."""

    members: list[MemberRuntime]  # type: ignore[assignment]

    def __init__(self, cfg: "PoolPlan", previous: "PoolRuntime | None" = None, now: float = 0.0) -> None:
        """`previous`: the pool of this name in the configuration being replaced; its members that are
        still configured (same URL) are kept, live state and all, and take the new settings (`now`: the
        loop clock, for a member those settings bring back)."""
        name = cfg.name
        #: (kept member, the health transition its new settings caused or None), for the reload to log
        self.transitions: list[tuple[MemberRuntime, Any]] = []
        kept = {m.name: m for m in previous.members} if previous is not None else {}
        members: list[MemberRuntime] = []
        hc = cfg.health
        for mcfg in cfg.members:
            settings = dict(passes=hc.passes if hc else 1, fails=hc.fails if hc else 1,
                            passive_fails=cfg.passive.fails, retry=cfg.retry, max_backoff=cfg.passive.max_backoff,
                            slow_start=cfg.slow_start, active=hc is not None, ignore_errors=mcfg.ignore_errors)
            m = kept.get(mcfg.name)
            if m is None:
                m = MemberRuntime(mcfg, cfg)
                m.health = MemberHealth(m.name, **settings)  # type: ignore[arg-type]
            else:
                m.configure(mcfg, cfg)
                self.transitions.append((m, m.health.reconfigure(**settings, now=now)))  # type: ignore[arg-type]
            members.append(m)
        super().__init__(name, members, cfg.retry, make_strategy(cfg.lbmethod))
        for m in members:
            m.pool = self
        self.lbmethod = cfg.lbmethod
        self.health_cfg = hc
        self.route_cookie = cfg.route_cookie
        self.route_cookie_name = cfg.route_cookie_name
        self.sticky: StickySpec | None = cfg.sticky_spec
        self.nofailover = cfg.nofailover
        self.hash_kind = cfg.hash_kind
        self.hash_name = cfg.hash_name
        self.failonstatus = cfg.failonstatus
        self.failontimeout = cfg.failontimeout
        self.max_tries = cfg.max_tries
        same_budget = previous is not None and previous.budget.ratio == cfg.retry_budget
        self.budget = previous.budget if same_budget else RetryBudget(cfg.retry_budget)  # type: ignore[union-attr]
        self.rng = random.Random()
        self.plain = self.sticky is None and not self.hash_kind
        self._param_key = (self.sticky.param + "=").encode() if self.sticky else b""
        self._extra_cookie = (self.route_cookie_name if self.sticky is not None
                              and self.sticky.cookie != self.route_cookie_name else None)
        self._route_cache: dict[bytes, str | None] = {}
        self._route_ctx: dict[str | None, PickContext] = {}
        self._plain_ctx = PickContext(rng=self.rng, nofailover=self.nofailover)

    def context(self, head: Any, peer_ip: str, exclude: set[int]) -> PickContext:
        """What this request brings to the member choice: sticky route, hash key, retry veto."""
        if self.plain and not exclude:
            return self._plain_ctx  # nothing per request to say: share one (read-only) context
        route = None
        spec = self.sticky
        if spec is not None:
            if self._param_key in head.target:  # a URL parameter may carry the route: read it all
                route, _ = find_route(spec, head.target, head.cookie, self._extra_cookie)
            elif head.cookie is not None:
                # a user's Cookie header repeats request after request: parse it once
                cache = self._route_cache
                route = cache.get(head.cookie, _UNPARSED)  # type: ignore[assignment]
                if route is _UNPARSED:
                    route, _ = find_route(spec, b"", head.cookie, self._extra_cookie)
                    if len(cache) >= 4096:
                        cache.clear()
                    cache[head.cookie] = route
        kind = self.hash_kind
        if not kind and not exclude:
            ctx = self._route_ctx.get(route)  # first tries with one route share one context
            if ctx is None:
                ctx = PickContext(route=route, rng=self.rng, nofailover=self.nofailover)
                if len(self._route_ctx) < 1024:
                    self._route_ctx[route] = ctx
            return ctx
        key = None
        if kind == "client":
            key = peer_ip.encode()
        elif kind == "cookie" and head.cookie:
            key = cookie_value(head.cookie, self.hash_name)
        elif kind == "header":
            key = next((v for n, v in head.headers if n == self.hash_name), None)
        return PickContext(route=route, hash_key=key, exclude=exclude, rng=self.rng,
                           nofailover=self.nofailover)

    def route_cookie_for(self, member: "MemberRuntime", path: bytes, tls: bool) -> bytes | None:
        """The Set-Cookie value pinning later requests to `member`, or None without a route cookie."""
        rc = self.route_cookie
        if rc is None or not member.route or not is_route_cookie_safe(member.route):
            return None
        return route_cookie_header(
            self.route_cookie_name, member.route, path=path or b"/",  # type: ignore[arg-type]
            secure=rc.secure if rc.secure is not None else tls, httponly=rc.httponly,
            samesite=rc.samesite, max_age=rc.max_age)


class AuthRuntime:
    """Basic authentication of one route against an htpasswd file; the user becomes Remote-User.

    Verified answers are cached (`cache_ttl`), so bcrypt runs once per credential, not per request;
    failed attempts are counted per client address and lock it out (`FailureLimiter`)."""

    def __init__(self, cfg: "AuthPlan") -> None:
        ttl = cfg.cache_ttl
        # the plan's table; the verification cache is live state
        self.htpasswd = Htpasswd(cfg.users, cache_size=1024 if ttl > 0 else 0, ttl=ttl)
        self.challenge = cfg.challenge
        self.trusted_header = cfg.trusted_header
        self.limiter = (FailureLimiter(cfg.max_failures, cfg.failure_window, cfg.lockout)
                        if cfg.max_failures else None)
        self._pending: dict[bytes, asyncio.Future[bool]] = {}

    def locked(self, peer_ip: str, now: float) -> bytes | None:
        """The Retry-After value (seconds) while `peer_ip` is locked out, else None."""
        limiter = self.limiter
        if limiter is None or not limiter.locked(peer_ip, now):
            return None
        return str(max(1, math.ceil(limiter.retry_after(peer_ip, now)))).encode()

    def _count(self, ok: bool, peer_ip: str, now: float) -> None:
        limiter = self.limiter
        if limiter is None:
            return
        if not ok and limiter.failed(peer_ip, now):
            log.warning("client %s locked out of Basic authentication for %gs after %d failed attempts",
                        peer_ip, limiter.lockout, limiter.max_failures)

    def check(self, authorization: bytes | None, peer_ip: str = "-", now: float = 0.0
              ) -> tuple[bool, str | None] | None:
        """(ok, user) when the answer is known now; None when a slow hash must be checked."""
        if not authorization:
            return (False, None)  # no credentials: a challenge, not a failed attempt
        creds = parse_basic_authorization(authorization)
        if creds is None:
            self._count(False, peer_ip, now)
            return (False, None)
        verdict = self.htpasswd.cached(*creds, now)
        if verdict is None:
            return None
        self._count(verdict, peer_ip, now)
        return (verdict, creds[0] if verdict else None)

    async def check_slow(self, authorization: bytes | None, peer_ip: str = "-") -> tuple[bool, str | None]:
        """Verify with the slow hash in a thread. Concurrent requests with the same Authorization
        share one verification (a browser opening a page sends many at once); each new credential
        counts as a failed attempt until it verifies, so a burst of guesses sent in parallel is
        cut off at `max_failures` like a sequential one, before it can occupy the hashing threads."""
        creds = parse_basic_authorization(authorization) if authorization else None
        if creds is None or authorization is None:
            return (False, None)
        loop = asyncio.get_running_loop()
        pending = self._pending.get(authorization)
        if pending is None:
            if self.locked(peer_ip, loop.time()) is not None:
                return (False, None)
            self._count(False, peer_ip, loop.time())  # provisional: undone below when it verifies
            pending = loop.run_in_executor(None, self.htpasswd.check, *creds, loop.time())
            self._pending[authorization] = pending
            pending.add_done_callback(lambda _f: self._pending.pop(authorization, None))
            ok = await asyncio.shield(pending)
            if ok and self.limiter is not None:
                self.limiter.withdraw(peer_ip)  # the provisional failure counted above
        else:
            ok = await asyncio.shield(pending)
        return (ok, creds[0] if ok else None)


class RouteRuntime:
    """A route: public prefix -> pool, with its rewriting and identity settings."""

    files: StaticFiles | None = None  # set on a static route: no pool, files answered by ferryman

    def __init__(self, cfg: "RoutePlan", pool: PoolRuntime) -> None:
        self.prefix = cfg.prefix
        self.pool = pool
        self.preserve_host = cfg.preserve_host
        self.reverse = cfg.reverse
        self.cookie_path = cfg.cookie_path
        self.cookie_domains = dict(cfg.cookie_domains)
        self.keep_encoded_slashes = cfg.keep_encoded_slashes
        self.websocket = cfg.websocket
        self.tunnel_idle_timeout = cfg.tunnel_idle_timeout
        self.max_body_size: int | None = cfg.max_body_size  # None: [limits] max_body_size
        self.request_buffer = cfg.request_buffer
        self.auth = AuthRuntime(cfg.auth) if cfg.auth is not None else None
        self.rmap = ReverseMap.build(
            [(m.scheme.encode(), m.host.encode(), m.port, m.path) for m in pool.members], self.prefix)
        self.member_prefix = pool.members[0].path
        self.rewrites = self.reverse or self.cookie_path or bool(self.cookie_domains)
        self._fwd_cache: dict[tuple[str, bytes | None, str], bytes] = {}

    def forwarded_headers(self, ex: Exchange) -> bytes:
        """The serialised forwarded-header block for this request (plus Remote-User)."""
        client = ex.client
        head = ex.head
        vouched = client.trusted and head.vouched
        key = (client.peer_ip, head.host, client.listener.name)
        block = None if vouched else self._fwd_cache.get(key)
        if block is None:
            listener = client.listener
            block = serialize_headers(fwd.build_forwarded(
                peer_ip=client.peer_ip, trusted=client.trusted, incoming=head.vouched, host=head.host,
                scheme=listener.scheme, port=listener.port, server_name=listener.server_name,
                prefix=self.prefix, rfc7239=listener.rfc7239))
            if not vouched:
                if len(self._fwd_cache) >= 4096:
                    self._fwd_cache.clear()
                self._fwd_cache[key] = block
        user = ex.user
        if user is None and self.auth is not None and self.auth.trusted_header and client.trusted:
            value = head.vouched.get(self.auth.trusted_header)
            if value:
                user = value.decode("latin-1")
                ex.user = user
        if user is not None:
            block += b"remote-user: " + user.encode("utf-8") + b"\r\n"
        signing = client.server.config.signing
        if signing is not None:  # the header itself has a timestamp and a nonce: made per request
            cache = self.__dict__.get("_facts_cache")
            if cache is None:  # facts per (peer, Host, listener), like the block above
                cache = self._facts_cache = {}
            base = None if vouched else cache.get(key)
            if base is None:
                listener = client.listener
                lines = fwd.build_forwarded(
                    peer_ip=client.peer_ip, trusted=client.trusted, incoming=head.vouched, host=head.host,
                    scheme=listener.scheme, port=listener.port, server_name=b"", prefix=self.prefix, rfc7239=False)
                base = fwd.vouched_facts(lines, peer_ip=client.peer_ip, trusted=listener.trusted,
                                         scheme=listener.scheme, port=listener.port, user=None, method=b"")
                if not vouched:
                    if len(cache) >= 4096:
                        cache.clear()
                    cache[key] = base
            facts = fwd.ForwardedFacts(base.client, base.host, base.scheme, base.port, base.prefix, user,
                                       head.method.decode("latin-1"))
            block += (b"ferryman-signature: " + sign(signing.secrets[0], facts, now=_wall(), nonce=os.urandom(12))
                      + b"\r\n")
        return block

    def rewrite_response(self, ex: Exchange, resp: "ResponseHead") -> list[tuple[bytes, bytes]]:
        """ProxyPassReverse and ProxyPassReverseCookiePath/-Domain on a response's headers."""
        headers = resp.headers
        if not (self.rewrites and resp.rewritable):
            return headers
        out = headers
        for i, (name, value) in enumerate(headers):
            if name in _LOCATION_HEADERS and self.reverse:
                new = rewrite_location(value, self.rmap, ex.client.listener.public_origin(ex.head.host))
            elif name == b"set-cookie":
                new = rewrite_set_cookie(value, member_prefix=ex.member.path if ex.member else self.member_prefix,
                                         public_prefix=self.prefix, rewrite_path=self.cookie_path,
                                         domains=self.cookie_domains)
            else:
                continue
            if new is not value:
                if out is headers:
                    out = list(headers)
                out[i] = (name, new)
        return out


class StaticRouteRuntime:
    """A static route: public prefix -> a directory (`ferryman.server.static`), no pool, no member."""

    websocket = False  # a protocol switch is never forwarded: answered as plain HTTP, then closed
    keep_encoded_slashes = False
    tunnel_idle_timeout = 0.0
    pool = STATIC_POOL  # what the access log and the explain header show as the pool

    def __init__(self, cfg: "RoutePlan") -> None:
        self.prefix = cfg.prefix
        self.max_body_size: int | None = cfg.max_body_size  # None: [limits] max_body_size
        self.auth = AuthRuntime(cfg.auth) if cfg.auth is not None else None
        self.files = StaticFiles(str(cfg.static), cfg.static_max_age)


class ListenerRuntime:
    """A listening socket's settings and its own router."""

    def __init__(self, cfg: "ListenerPlan", router: Router[RouteRuntime], routes: list[RouteRuntime],
                 extra_vouched: frozenset[bytes], access: AccessLog | None) -> None:
        self.name = cfg.name
        self.cfg = cfg
        self.host = cfg.host
        self.port = cfg.port
        self.ssl_context = cfg.ssl_context
        self.tls = cfg.ssl_context is not None
        self.scheme = b"https" if self.tls else b"http"
        self.trusted = fwd.TrustedProxies(cfg.trusted_proxies)
        self.server_name = (cfg.server_name or socket.gethostname()).encode()
        self.rfc7239 = cfg.forwarded
        self.router = router
        self.any_keep_slashes = any(r.keep_encoded_slashes for r in routes)
        self.header_timeout = cfg.header_timeout
        self.keepalive_timeout = cfg.keepalive_timeout
        self.body_timeout = cfg.body_timeout
        self.explain_header = cfg.explain_header
        self.max_connections = cfg.max_connections
        self.open_connections = 0
        self.redirect_https: str | None = cfg.redirect_https
        self.configured_name = cfg.server_name.encode() if cfg.server_name else None
        self.hsts: bytes | None = None
        if cfg.hsts_max_age is not None and self.tls:
            self.hsts = b"max-age=%d" % int(cfg.hsts_max_age) + (
                b"; includeSubDomains" if cfg.hsts_include_subdomains else b"")
        self.tls_handshake_timeout = cfg.tls_handshake_timeout
        self.tls_user_field = cfg.tls_user_field if cfg.tls_client_ca is not None else None
        self.tls_failures = 0  # failed TLS handshakes since start
        self.max_per_client = cfg.max_connections_per_client  # 0: no limit
        self.per_client: dict[str, int] = {}  # open connections by client_unit (trusted peers not counted)
        self.max_requests = cfg.max_requests_per_connection  # 0: no limit
        # body_min_rate as seconds of credit per byte (0.0: off) and its window (ferryman.core.bodyrate)
        self.body_seconds_per_byte = 1.0 / cfg.body_min_rate if cfg.body_min_rate else 0.0
        self.body_rate_window = cfg.body_rate_window
        self.access = access
        #: Set by a reload that replaced this listener's settings: True, with `successor` the listener
        #: runtime its connections move to after their request in flight (None: the listener was removed,
        #: and they close instead).
        self.retired = False
        self.successor: ListenerRuntime | None = None
        # a client's X-Request-Id is ferryman's to write, like X-Forwarded-*: kept only from trusted peers
        self._extra = extra_vouched | {REQUEST_ID_HEADER}
        self.vouched_cache: dict[bytes, bool] = {}
        self._origin_cache: dict[bytes | None, bytes] = {}

    def is_vouched(self, name: bytes) -> bool:
        return fwd.is_vouched(name, self._extra)

    def resolve(self, target: bytes) -> tuple[RouteRuntime, bytes, bytes]:
        """(route, normalised path, query) of a request target on this listener: how every live
        request is routed, and what `ferryman explain` runs.

        Raises:
            HttpError: with the status to answer: `PathRejected` (400 or 404) for a target that
                cannot be normalised safely, 404 when no route matches, or when an encoded slash kept
                for another route of this listener reaches a route that does not keep it.
        """
        raw_path, query = split_target(target)
        path = normalize_path(raw_path, keep_encoded_slashes=self.any_keep_slashes)
        match = self.router.match(self.name, path)
        if match is None:
            raise HttpError("no route matches", 404)
        route = match[1]
        if self.any_keep_slashes and not route.keep_encoded_slashes and b"%2f" in path.lower():
            raise PathRejected("path contains an encoded slash (%2F)", 404)
        return route, path, query

    def public_origin(self, host: bytes | None) -> bytes:
        origin = self._origin_cache.get(host)
        if origin is None:
            origin = self.scheme + b"://" + (host or f"{self.host}:{self.port}".encode())
            if len(self._origin_cache) < 1024:
                self._origin_cache[host] = origin
        return origin


def build_runtime(plan: "Plan", access_log: Any = lambda cfg: None,
                  previous: "dict[str, PoolRuntime] | None" = None, now: float = 0.0
                  ) -> tuple[dict[str, PoolRuntime], list[ListenerRuntime]]:
    """Runtime objects (pools by name, listeners in order) for `plan`: fresh, with no live state yet,
    except for the members of `previous` (the pools being replaced by a reload) still configured,
    which are kept by pool name and member name with their live state.

    `access_log(cfg)` gives a listener's `AccessLog` from its ``access_log`` table, or None. Used by
    `Server` and by `ferryman explain`, which must decide exactly as live requests do.
    """
    previous = previous or {}
    pools = {name: PoolRuntime(p, previous.get(name), now) for name, p in plan.pools.items()}
    routes: list[Any] = [RouteRuntime(r, pools[r.pool]) if r.pool is not None else StaticRouteRuntime(r)
                         for r in plan.routes]
    router: Router[RouteRuntime] = Router(
        [(r.listeners, r.prefix or b"/", rr) for r, rr in zip(plan.routes, routes)])
    listeners = [ListenerRuntime(lp, router, [routes[i] for i in lp.routes], plan.vouched_headers,
                                 access_log(lp.access_log)) for lp in plan.listeners]
    return pools, listeners


class Server:
    """Everything one running ferryman owns: listeners, pools, live connections, logs."""

    def __init__(self, plan: "Plan", loop: asyncio.AbstractEventLoop, metrics: Metrics | None = None) -> None:
        self.plan = plan
        self.config = plan.config
        self.loop = loop
        self.limits = Limits(plan.config.limits)
        self.stopping = False
        self.clients: set[ClientConnection] = set()
        #: the process's metrics (`ferryman.server.app.process_metrics` when run), else a private set
        self.metrics = metrics if metrics is not None else Metrics()
        self.request_ids = RequestIds(os.urandom(8))
        self._logs: dict[tuple[str, str], AccessLog] = {}
        self.pools, self.listeners = build_runtime(plan, self._access_log)
        self.members = {(pool.name, m.name): m for pool in self.pools.values() for m in pool.members}
        #: the shared member table's view (`ferryman.server.member_table.SharedMembers`) in a worker of
        #: several; None when this process is the only one
        self.shared: Any = None
        self._handshake_log = LogGate(60.0)
        self._limit_log = LogGate(10.0, max_keys=256)  # over-limit warnings (and max_connections)

    def _access_log(self, cfg: Any) -> AccessLog | None:
        if cfg.format == "off":
            return None
        key = (cfg.path, cfg.format)
        if key not in self._logs:
            self._logs[key] = AccessLog(cfg.path, cfg.format, self.loop, self.metrics)
        return self._logs[key]

    def access(self, ex: Exchange) -> None:
        """An exchange is answered: count it (metrics) and log it (access log)."""
        duration = self.loop.time() - ex.start_time
        head_at = ex.head_at
        self.metrics.observe(ex.route, ex.member, ex.status, duration, head_at - ex.sent_at if head_at else -1.0)
        access = ex.client.listener.access
        if access is not None:
            access.log(ex, _wall(), duration)

    def log_rejected(self, client: ClientConnection, err: Exception, request_id: bytes | None = None) -> None:
        """A request refused before or while it was read; `request_id` of its exchange, if it had one."""
        access = client.listener.access
        status = getattr(err, "status", 400)
        rid = (request_id or self.request_ids.make()).decode("latin-1")
        self.metrics.observe(None, None, status, 0.0, -1.0)
        if access is not None:
            access.log_rejected(client.peer_ip, status, str(err), _wall(), rid)
        if log.isEnabledFor(logging.DEBUG):
            log.debug("rejected request from %s: %s (%d) request_id=%s", client.peer_ip, err, status, rid)

    def log_internal_error(self, exc: BaseException, peer_ip: str, request_id: bytes | None = None) -> None:
        """An exception escaped ferryman's own code: a bug, logged with its traceback."""
        log.error("internal error while serving %s: %s: %s%s", peer_ip, type(exc).__name__, exc,
                  f" request_id={request_id.decode('latin-1')}" if request_id else "",
                  exc_info=(type(exc), exc, exc.__traceback__))

    def log_handshake_failure(self, listener: ListenerRuntime, peer_ip: str, exc: BaseException) -> None:
        """A TLS handshake failed: counted always, logged once per client address and minute."""
        listener.tls_failures += 1
        self.metrics.tls_handshake(listener.name, False)
        held = self._handshake_log.allow(peer_ip, self.loop.time())
        if held is not None:
            more = f" ({held} more from this address since its last line)" if held else ""
            log.info("listener %s: TLS handshake with %s failed: %s%s", listener.name, peer_ip,
                     handshake_reason(exc), more)

    def log_overload(self, listener: ListenerRuntime) -> None:
        """A listener is full: a warning at most once every 10 s (an overload must not flood the log)."""
        if self._limit_log.allow("max_connections", self.loop.time()) is not None:
            log.warning("listener %s is at max_connections (%d); new connections get 503",
                        listener.name, listener.max_connections)

    def log_limit(self, client: ClientConnection, reason: str, status: int) -> None:
        """A client went over a limit: a warning with its address and the reason, at most one per listener
        and reason every 10 s (a flood must not flood the log; the access log has a line for each)."""
        listener = client.listener
        if self._limit_log.allow(f"{listener.name}\0{reason}", self.loop.time()) is not None:
            log.warning("listener %s: client %s %s; answered %d and closed", listener.name, client.peer_ip,
                        reason, status)
        access = listener.access
        if access is not None and status == 503:  # refused at connect: no request, so no other line
            access.log_rejected(client.peer_ip, status, reason, _wall())

    def log_member_error(self, member: MemberRuntime, exc: BaseException, request_id: bytes = b"-") -> None:
        reason = "timed out" if isinstance(exc, asyncio.TimeoutError) else (str(exc) or type(exc).__name__)
        log.warning("pool %s member %s (route %s) failed to connect for request_id=%s: %s; in error for %gs",
                    member.pool.name, member.name, member.route or "-", request_id.decode("latin-1"), reason,
                    member.pool.retry)

    def log_transition(self, member: MemberRuntime, transition: Any) -> None:
        """A member's health changed: say so, with the reason (issue: state changes are logged)."""
        if transition is None:
            return
        if self.shared is not None:  # every other worker must honour it: publish it first
            self.shared.publish(member)
        level = logging.INFO if transition.new == "healthy" else logging.WARNING
        if transition.new == "ejected" and transition.old != "ejected":
            self.metrics.ejection(member.pool.name, member.name)
        log.log(level, "pool %s member %s (route %s): %s -> %s: %s", member.pool.name, member.name,
                member.route or "-", transition.old, transition.new, transition.reason)

    def log_backend_error(self, ex: Exchange, err: Exception) -> None:
        member = ex.member
        log.warning("pool %s member %s: %s (%s %s) request_id=%s", ex.route.pool.name if ex.route else "-",
                    member.name if member else "-", err, ex.head.method.decode(),
                    ex.head.target.decode("latin-1")[:200], ex.request_id.decode("latin-1"))

    def busy_connections(self) -> int:
        """Client connections with a request being read or answered."""
        return sum(1 for c in self.clients if c.busy)

    def close_idle_clients(self, keep_silent: bool = False) -> None:
        for client in list(self.clients):
            client.close_if_idle(keep_silent)

    def silent_connections(self) -> int:
        """Client connections accepted that have not sent a byte yet."""
        return sum(1 for c in self.clients if not c.spoke and not c.closed)

    def close_all(self) -> None:
        """Close every client connection and every idle backend connection at once."""
        for client in list(self.clients):
            if not client.closed:
                client.closed = True
                client.transport.close()
        for pool in self.pools.values():
            for member in pool.members:
                member.conns.close_all()

    def flush_logs(self) -> None:
        """Write what the access logs hold and close them (at stop)."""
        for access in self._logs.values():
            access.close()

    def reopen_logs(self) -> None:
        """Reopen every access log file by its name (after logrotate renamed it)."""
        for access in self._logs.values():
            access.reopen()


