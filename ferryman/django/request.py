"""What ferryman vouched for about a Django request."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest

from ferryman.django.conf import proxy_headers
from ferryman.proxyheaders import ForwardedFacts, is_vouched
from ferryman.wsgi import ENVIRON_FACTS

_UNSET = object()


def request_facts(request: HttpRequest) -> ForwardedFacts | None:
    """The believed facts of `request`, or None when it did not come through ferryman.

    Served through ``ferryman.django.wsgi``/``.asgi`` (or ``ferryman.wsgi``/``.asgi``), the wrapper
    decided already (its verdict is in the environ/scope, where no client can put it). Otherwise
    the request's own headers are judged here with the FERRYMAN_* settings, once per request.
    """
    meta = request.META
    if ENVIRON_FACTS in meta:
        return meta[ENVIRON_FACTS]  # type: ignore[no-any-return]
    scope = getattr(request, "scope", None)
    if isinstance(scope, dict) and ENVIRON_FACTS in scope:
        return scope[ENVIRON_FACTS]  # type: ignore[no-any-return]
    cached: Any = getattr(request, "_ferryman_facts", _UNSET)
    if cached is not _UNSET:
        return cached  # type: ignore[no-any-return]
    headers: dict[str, bytes] = {}
    for key, value in meta.items():
        if isinstance(key, str) and key.startswith("HTTP_") and isinstance(value, str):
            canonical = key[5:].lower().replace("_", "-")
            if is_vouched(canonical):
                headers[canonical] = value.encode("latin-1", "replace")
    port = str(meta.get("SERVER_PORT", ""))
    own = ForwardedFacts(client=str(meta.get("REMOTE_ADDR", "")), host=str(meta.get("HTTP_HOST", "")),
                         scheme=request.scheme or "http", port=int(port) if port.isascii() and port.isdigit() and len(port) <= 5 else 0,
                         prefix=str(meta.get("SCRIPT_NAME", "")), method=request.method or "")
    facts = proxy_headers().believe(headers, own)
    request._ferryman_facts = facts  # type: ignore[attr-defined]
    return facts
