"""`ferryman explain`: why would this request land where it lands?

Runs the same decisions as a live request (path normalisation, route match, path mapping, sticky
route, member choice) on the configuration alone, with no socket, and says each step.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from ferryman.core.balancer import PickContext
from ferryman.core.http import RequestHead
from ferryman.core.paths import normalize_path, split_target
from ferryman.core.router import Router
from ferryman.core.sticky import find_route
from ferryman.errors import HttpError
from ferryman.server.runtime import PoolRuntime, RouteRuntime


@dataclass
class Question:
    """A request as `explain` is asked about it."""

    method: str
    target: str
    listener: str | None = None
    cookie: str | None = None
    headers: list[tuple[str, str]] = field(default_factory=list)
    client: str = "127.0.0.1"
    down: list[str] = field(default_factory=list)  # members (route or URL) to treat as in error


def explain(config, q: Question) -> tuple[int, str]:  # type: ignore[no-untyped-def]
    """(exit status, report): 0 when the request would reach a member, 1 otherwise."""
    lines: list[str] = []

    def say(key: str, text: str) -> None:
        lines.append(f"{key + ':':<14}{text}")

    listener = q.listener or config.listener[0].name
    if listener not in {lst.name for lst in config.listener}:
        return 2, f"no listener named {listener!r}; listeners: {', '.join(lst.name for lst in config.listener)}"
    say("request", f"{q.method} {q.target} on listener {listener}")
    target = q.target.encode("latin-1")
    try:
        raw_path, query = split_target(target)
        keep = any(r.encoded_slashes == "keep" for r in config.route)
        path = normalize_path(raw_path, keep_encoded_slashes=keep)
    except HttpError as err:
        say("refused", f"{err.status}: {err.reason} (never forwarded)")
        return 1, "\n".join(lines)
    if path != raw_path:
        say("normalised", path.decode("latin-1"))

    pools = {name: PoolRuntime(name, p) for name, p in config.pool.items()}
    routes = [(r, RouteRuntime(r, pools[r.pool])) for r in config.route]
    router: Router[tuple[object, RouteRuntime]] = Router(
        [(tuple(rc.listeners) if rc.listeners else None, rr.prefix or b"/", (rc, rr)) for rc, rr in routes])
    match = router.match(listener, path)
    if match is None:
        say("route", "none matches: ferryman answers 404")
        return 1, "\n".join(lines)
    best = match[1]
    rc, route = best
    pool = route.pool
    say("route", f"{rc.path} -> pool {pool.name} (lbmethod {pool.lbmethod})")

    head = RequestHead()
    head.method = q.method.upper().encode()
    head.target = target
    head.query = query
    head.cookie = q.cookie.encode("latin-1") if q.cookie else None
    head.headers = [(k.lower().encode(), v.encode("latin-1")) for k, v in q.headers]
    now = time.monotonic()
    for m in pool.members:
        if m.name in q.down or (m.route and m.route in q.down):
            pool.mark_error(m, now, "marked down by --down")
    if pool.sticky is not None:
        asked, source = find_route(pool.sticky, head.target, head.cookie,
                                   pool.route_cookie_name if pool.sticky.cookie != pool.route_cookie_name else None)
        names = pool.sticky.cookie if pool.sticky.cookie == pool.sticky.param else \
            f"cookie {pool.sticky.cookie}, URL parameter {pool.sticky.param}"
        found = f'route "{asked}" from the {source.replace("-", " ")}' if asked else "no route in the request"
        say("sticky", f"{names}: {found}")
    ctx: PickContext = pool.context(head, q.client, set())
    decision = pool.choose(now, ctx)
    say("decision", decision.explain())
    member = decision.member
    if member is None:
        say("answer", "503: no usable member")
        return 1, "\n".join(lines)
    mapped = member.map_path(route, path) + query  # type: ignore[attr-defined]
    say("mapped path", f"{path.decode('latin-1')} -> {mapped.decode('latin-1')}")
    m = member
    say("backend", f"{m.scheme}://{m.host_header.decode()}{mapped.decode('latin-1')}")  # type: ignore[attr-defined]
    if pool.route_cookie is not None and ctx.route != member.route and member.route:
        say("route cookie", f"sets {pool.route_cookie_name}=.{member.route} (Path={rc.path})")
    return 0, "\n".join(lines)
