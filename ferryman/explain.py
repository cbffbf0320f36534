"""`ferryman explain`: why would this request land where it lands?

It runs a live request's own code on the plan, with no socket: the runtime objects `run` builds
(`build_runtime`), the listener's `resolve` (target split, path normalisation, route match, encoded
slash rules, with the status a live request would get), the pool's `context` and `choose` (sticky
route, hash key, balancing, force recovery when every member is in error), and the retry loop of a
live request: a member named by ``--down`` is in error before the request, and refuses the
connection when it is tried anyway (force recovery), so the request moves on to the next member
exactly as a live one does (each member tried once, ``max_tries``), and answers 503 when none is left.
A member named by ``--in-error`` is in error but answers when tried: with every member in error,
force recovery serves the request.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ferryman.core.balancer import PickContext, member_state
from ferryman.core.http import PROXIED_METHODS, RequestHead
from ferryman.core.static import content_type
from ferryman.core.sticky import find_route
from ferryman.errors import HttpError, PathRejected
from ferryman.plan import Plan
from ferryman.server.runtime import MemberRuntime, PoolRuntime, build_runtime


@dataclass
class Question:
    """A request as `explain` is asked about it."""

    method: str
    target: str
    listener: str | None = None
    cookie: str | None = None
    headers: list[tuple[str, str]] = field(default_factory=list)
    client: str = "127.0.0.1"
    down: list[str] = field(default_factory=list)  # members (route or URL) that are down
    in_error: list[str] = field(default_factory=list)  # members resting after an error, yet reachable


def explain(plan: Plan, q: Question) -> tuple[int, str]:
    """(exit status, report): 0 when the request would reach a member, 1 when it would be answered by
    ferryman itself (refused, 404, 503), 2 for a question that names no listener or member."""
    lines: list[str] = []

    def say(key: str, text: str) -> None:
        lines.append(f"{key + ':':<14}{text}")

    pools, listeners = build_runtime(plan)
    name = q.listener or listeners[0].name
    listener = next((lst for lst in listeners if lst.name == name), None)
    if listener is None:
        return 2, f"no listener named {name!r}; listeners: {', '.join(lst.name for lst in listeners)}"
    members = {m.name for p in pools.values() for m in p.members} | \
        {m.route for p in pools.values() for m in p.members if m.route}
    for flag, names in (("--down", q.down), ("--in-error", q.in_error)):
        unknown = [d for d in names if d not in members]
        if unknown:
            return 2, f"{flag} {unknown[0]!r} names no member (give a member's route or URL)"

    say("request", f"{q.method} {q.target} on listener {listener.name}")
    method = q.method.upper().encode()
    target = q.target.encode("utf-8", "surrogateescape")
    if method not in PROXIED_METHODS:
        say("refused", f"501: method {q.method} is not proxied (never forwarded)")
        return 1, "\n".join(lines)
    try:
        route, path, query = listener.resolve(target)
    except PathRejected as err:
        say("refused", f"{err.status}: {err.reason} (never forwarded)")
        return 1, "\n".join(lines)
    except HttpError:
        say("route", "none matches: ferryman answers 404")
        return 1, "\n".join(lines)
    raw_path = target.partition(b"?")[0]
    if path != raw_path:
        say("normalised", path.decode("latin-1"))
    if route.files is not None:
        return _explain_static(route, path, q.method.upper(), say, lines)
    pool = route.pool
    say("route", f"{(route.prefix or b'/').decode()} -> pool {pool.name} (lbmethod {pool.lbmethod})")
    if route.auth is not None:
        say("auth", "Basic; a request without valid credentials gets 401")

    head = RequestHead()
    head.method = method
    head.target = target
    head.query = query
    head.cookie = q.cookie.encode("latin-1", "replace") if q.cookie else None
    head.headers = [(k.lower().encode(), v.encode("latin-1", "replace")) for k, v in q.headers]
    if pool.sticky is not None:
        asked, source = find_route(pool.sticky, head.target, head.cookie,
                                   pool.route_cookie_name if pool.sticky.cookie != pool.route_cookie_name else None)
        sticky_names = pool.sticky.cookie if pool.sticky.cookie == pool.sticky.param else \
            f"cookie {pool.sticky.cookie}, URL parameter {pool.sticky.param}"
        found = f'route "{asked}" from the {source.replace("-", " ")}' if asked else "no route in the request"
        say("sticky", f"{sticky_names}: {found}")

    now = time.monotonic()
    down = [m for m in pool.members if m.name in q.down or (m.route and m.route in q.down)]
    for m in pool.members:
        if m in down or m.name in q.in_error or (m.route and m.route in q.in_error):
            pool.mark_error(m, now, "in error (--down / --in-error)")
    if _every_member_in_error(pool, now):
        say("recovery", "every member is in error: all are tried anyway (Apache force recovery)")
    member, decision, ctx = _attempts(pool, head, q.client, now, down, say)
    say("decision", decision)
    if member is None:
        say("answer", "503: no usable member")
        return 1, "\n".join(lines)
    mapped = member.map_path(route, path) + query
    say("mapped path", f"{path.decode('latin-1')} -> {mapped.decode('latin-1')}")
    say("backend", f"{member.scheme}://{member.host_header.decode()}{mapped.decode('latin-1')}")
    if pool.route_cookie is not None and ctx.route != member.route and member.route:
        say("route cookie", f"sets {pool.route_cookie_name}=.{member.route} (Path={(route.prefix or b'/').decode()})")
    return 0, "\n".join(lines)


def _attempts(pool: PoolRuntime, head: RequestHead, client: str, now: float, down: list[MemberRuntime],
              say: Callable[[str, str], None]) -> tuple[MemberRuntime | None, str, PickContext]:
    """A live request's member choice (`Exchange._try_member`): choose, and while the member chosen is
    down, put it in error and choose again without it, at most `max_tries` members."""
    tried: set[int] = set()
    ctx = pool.context(head, client, tried)
    while True:
        if tried and len(tried) >= pool.max_tries:
            return None, f"max_tries ({pool.max_tries}) reached", ctx
        decision = pool.choose(now, ctx)
        member = decision.member
        if member is None or member not in down:
            return member, decision.explain(), ctx  # type: ignore[return-value]  # a MemberRuntime
        say("tried", f"{decision.explain()}: connection refused (--down); member in error")
        pool.mark_error(member, now, "down (--down)")
        tried.add(member.index)
        if ctx.exclude is not tried:
            ctx = PickContext(ctx.route, ctx.hash_key, tried, pool.rng, pool.nofailover)


def _every_member_in_error(pool: PoolRuntime, now: float) -> bool:
    states = [member_state(m, now) for m in pool.members if m.status in ("enabled", "hot-standby")]
    return bool(states) and all(s in ("error", "ejected") for s in states)


def _explain_static(route: Any, path: bytes, method: str, say: Callable[[str, str], None],
                    lines: list[str]) -> tuple[int, str]:
    """A static route: which file answers, or why none does (the live request's own lookup)."""
    files = route.files
    say("route", f"{(route.prefix or b'/').decode()} -> static directory {files.directory}")
    if route.auth is not None:
        say("auth", "Basic; a request without valid credentials gets 401")
    if method not in ("GET", "HEAD"):
        say("answer", "405: a static route answers GET and HEAD only (Allow: GET, HEAD)")
        return 1, "\n".join(lines)
    found = files.lookup(path[len(route.prefix):].decode("latin-1"))
    if isinstance(found, str):
        say("answer", f"404: {found}")
        return 1, "\n".join(lines)
    os.close(found.fd)
    say("file", f"{os.path.join(files.root, found.name)} ({found.size} bytes, {content_type(found.name)})")
    say("answer", "200 from ferryman (304/206/416 by the request's conditional and Range headers)")
    return 0, "\n".join(lines)
