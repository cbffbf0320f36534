"""ASGI middleware: the same as ``ferryman.wsgi`` for ``http`` and ``websocket`` scopes (Django under
uvicorn or daphne, Starlette, any ASGI app).

    from ferryman.asgi import ProxyHeadersMiddleware
    application = ProxyHeadersMiddleware(application, trusted_proxies=["127.0.0.1"])

For a believed request the scope passed on is a copy with ``client`` (the client's address; its port
is unknown and given as 0), ``server`` (public host and port), ``scheme`` (``http``/``https``, or
``ws``/``wss`` for WebSockets), ``root_path`` = the public prefix and ``path``/``raw_path`` moved
under it (the part below the app server's own ``root_path`` is kept), the ``host`` header, and one
consistent copy of the forwarded headers and ``remote-user``. The facts are in
``scope["ferryman.facts"]``, what the server had seen in ``scope["ferryman.original"]``.
Any other request keeps its scope, minus every header ferryman vouches for.
``lifespan`` and other scope types pass through untouched.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from ferryman.core import forwarded as fwd
from ferryman.proxyheaders import (
    ForwardedFacts, ProxyHeaders, ProxyHeadersAdapter, vouched_headers,
)

__all__ = ["SCOPE_FACTS", "SCOPE_ORIGINAL", "ProxyHeadersMiddleware", "apply_to_scope"]

SCOPE_FACTS = "ferryman.facts"
SCOPE_ORIGINAL = "ferryman.original"

Scope = MutableMapping[str, Any]
ASGIApp = Callable[[Scope, Callable[[], Awaitable[Any]], Callable[[Any], Awaitable[None]]], Awaitable[None]]

def apply_to_scope(proxy: ProxyHeaders, scope: Scope, mount: str = "") -> tuple[Scope, ForwardedFacts | None]:
    """Decide about one connection scope; return the scope to pass on (a copy) and the facts.

    `mount`: the path the app is served under on the app server (ferryman's member URL path), when
    the server's ``root_path`` is not set: a ``path`` under it gets it as ``root_path`` (every request).
    """
    if mount and not scope.get("root_path"):
        path = str(scope.get("path", ""))
        if path == mount or path.startswith(mount + "/"):
            scope = dict(scope)
            scope["root_path"] = mount
    # the front end's own rule: vouched names removed in every spelling, only canonical ones believed
    kept, incoming = fwd.strip_vouched([(bytes(n), bytes(v)) for n, v in scope.get("headers", ())])
    headers = {name.decode("latin-1"): value for name, value in incoming.items()}
    host = next((v for n, v in reversed(kept) if fwd.canonical_name(n) == b"host"), b"")
    client = scope.get("client") or ("", 0)
    server = scope.get("server") or ("", 0)
    ws = scope["type"] == "websocket"
    scheme = str(scope.get("scheme") or ("ws" if ws else "http"))
    own = ForwardedFacts(
        client=str(client[0]),
        host=host.decode("latin-1"),
        scheme={"ws": "http", "wss": "https"}.get(scheme, scheme),
        port=int(server[1] or 0) if server[1] is not None else 0,
        prefix=str(scope.get("root_path", "")),
        method="GET" if ws else str(scope.get("method", "")),
    )
    facts = proxy.believe(headers, own)
    out = dict(scope)
    out[SCOPE_FACTS] = facts
    if facts is None:
        out["headers"] = kept
        return out, None
    out[SCOPE_ORIGINAL] = {k: scope.get(k) for k in ("client", "server", "scheme", "root_path", "path",
                                                      "raw_path")}
    out["client"] = (facts.client, 0)
    name = facts.host
    if name.startswith("["):
        name = name[: name.find("]") + 1]
    elif ":" in name:
        name = name.rpartition(":")[0]
    out["server"] = (name or str(server[0]), facts.port)
    out["scheme"] = ({"http": "ws", "https": "wss"}[facts.scheme] if ws else facts.scheme)
    root = own.prefix
    path = str(scope.get("path", ""))
    below = path[len(root):] if root and path.startswith(root) else path
    out["root_path"] = facts.prefix
    out["path"] = facts.prefix + below
    raw = scope.get("raw_path")
    if raw is not None:
        raw = bytes(raw)
        raw_below = raw[len(root):] if root and raw.startswith(root.encode("latin-1")) else raw
        out["raw_path"] = facts.prefix.encode("latin-1") + raw_below
    rewritten = [(n, v) for n, v in kept if n.lower() != b"host"]
    if facts.host:
        rewritten.insert(0, (b"host", facts.host.encode("latin-1")))
    for hname, hvalue in vouched_headers(facts):
        rewritten.append((hname.encode("latin-1"), hvalue.encode("utf-8")))
    out["headers"] = rewritten
    return out, facts


class ProxyHeadersMiddleware(ProxyHeadersAdapter[ASGIApp]):
    """Wrap an ASGI app; see the module's documentation. Arguments are :class:`ProxyHeaders`'s, and
    `mount` (see :func:`apply_to_scope`).

    Raises:
        ValueError: neither trusted proxies nor signing keys (nothing could be believed).
    """

    async def __call__(self, scope: Scope, receive: Callable[[], Awaitable[Any]],
                       send: Callable[[Any], Awaitable[None]]) -> None:
        if scope.get("type") in ("http", "websocket"):
            scope, _ = apply_to_scope(self.proxy, scope, self.mount)
        await self.app(scope, receive, send)
