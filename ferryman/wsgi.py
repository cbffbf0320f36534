"""WSGI middleware: an app behind ferryman sees the client's address, host, scheme, port, public
prefix and user, and a request that did not come through ferryman sees none of them.

    from ferryman.wsgi import ProxyHeadersMiddleware
    application = ProxyHeadersMiddleware(application, trusted_proxies=["127.0.0.1"])
    # or, with ferryman's [signing] keys (then only signed requests are believed):
    application = ProxyHeadersMiddleware(application, signing_keys=["env:FERRYMAN_SIGNING_KEY"])

For a believed request the environ gets ``REMOTE_ADDR``, ``HTTP_HOST``, ``SERVER_NAME``,
``SERVER_PORT``, ``wsgi.url_scheme`` (and ``HTTPS``), ``SCRIPT_NAME`` = the public prefix (``PATH_INFO``
is kept: it is the path below the app's mount point) and ``REMOTE_USER``; the forwarded headers are
replaced by one consistent copy of those values (so Django's ``USE_X_FORWARDED_HOST`` or
``SECURE_PROXY_SSL_HEADER`` read the same thing). What the app server had seen is kept in
``environ["ferryman.original"]``, the facts in ``environ["ferryman.facts"]`` (None when not believed).

For any other request nothing is changed, except that every header ferryman vouches for is removed in
every spelling the server may present (``HTTP_REMOTE_USER``, ``HTTP_X_FORWARDED_FOR``... whatever the
case or ``-``/``_`` mix), so nothing further in the app can be fooled by a client's copy.
Works under any WSGI server (gunicorn, uWSGI, mod_wsgi, waitress).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from ferryman.proxyheaders import (
    ForwardedFacts, ProxyHeaders, ProxyHeadersAdapter, is_vouched, vouched_headers,
)

__all__ = ["ENVIRON_FACTS", "ENVIRON_ORIGINAL", "ProxyHeadersMiddleware", "apply_to_environ"]

ENVIRON_FACTS = "ferryman.facts"
ENVIRON_ORIGINAL = "ferryman.original"
_ORIGINAL_KEYS = ("REMOTE_ADDR", "HTTP_HOST", "SERVER_NAME", "SERVER_PORT", "wsgi.url_scheme", "SCRIPT_NAME",
                  "PATH_INFO", "REMOTE_USER")

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


def _environ_key(canonical: str) -> str:
    return "HTTP_" + canonical.upper().replace("-", "_")


def _server_name(host: str) -> str:
    if host.startswith("["):
        return host[: host.find("]") + 1]
    return host.rpartition(":")[0] if ":" in host else host


def _under(path: str, mount: str) -> bool:
    return path == mount or path.startswith(mount + "/")


def apply_to_environ(proxy: ProxyHeaders, environ: dict[str, Any], mount: str = "") -> ForwardedFacts | None:
    """Decide about one request and rewrite `environ` in place; return the believed facts or None.

    `mount`: the path the app is served under on the app server (ferryman's member URL path), for
    servers that cannot set ``SCRIPT_NAME`` themselves: when ``SCRIPT_NAME`` is empty and ``PATH_INFO``
    starts with it, it moves from ``PATH_INFO`` to ``SCRIPT_NAME`` (for every request).
    """
    if mount and not environ.get("SCRIPT_NAME") and _under(str(environ.get("PATH_INFO", "")), mount):
        environ["SCRIPT_NAME"] = mount
        environ["PATH_INFO"] = str(environ["PATH_INFO"])[len(mount):]
    headers: dict[str, bytes] = {}
    vouched: list[str] = []
    for key, value in environ.items():
        if not (isinstance(key, str) and key[:5].upper() == "HTTP_"):
            continue
        canonical = key[5:].lower().replace("_", "-")
        if not is_vouched(canonical):
            continue
        vouched.append(key)
        # only the server's own spelling (HTTP_ + upper case + "_") is read; any other is an alias
        if key == _environ_key(canonical) and isinstance(value, str):
            headers[canonical] = value.encode("latin-1", "replace")
    port_text = str(environ.get("SERVER_PORT", ""))
    own = ForwardedFacts(
        client=str(environ.get("REMOTE_ADDR", "")),
        host=str(environ.get("HTTP_HOST", "")),
        scheme=str(environ.get("wsgi.url_scheme", "http")),
        port=int(port_text) if port_text.isascii() and port_text.isdigit() and len(port_text) <= 5 else 0,
        prefix=str(environ.get("SCRIPT_NAME", "")),
        method=str(environ.get("REQUEST_METHOD", "")),
    )
    facts = proxy.believe(headers, own)
    for key in vouched:
        del environ[key]
    environ[ENVIRON_FACTS] = facts
    if facts is None:
        return None
    environ[ENVIRON_ORIGINAL] = {k: environ[k] for k in _ORIGINAL_KEYS if k in environ}
    environ["REMOTE_ADDR"] = facts.client
    if facts.host:
        environ["HTTP_HOST"] = facts.host
        environ["SERVER_NAME"] = _server_name(facts.host)
    environ["SERVER_PORT"] = str(facts.port)
    environ["wsgi.url_scheme"] = facts.scheme
    environ["HTTPS"] = "on" if facts.scheme == "https" else "off"
    environ["SCRIPT_NAME"] = facts.prefix
    if facts.user is not None:
        environ["REMOTE_USER"] = facts.user
    else:
        environ.pop("REMOTE_USER", None)
    for name, value in vouched_headers(facts):
        environ[_environ_key(name)] = value
    return facts


class ProxyHeadersMiddleware(ProxyHeadersAdapter[WSGIApp]):
    """Wrap a WSGI app; see the module's documentation. Arguments are :class:`ProxyHeaders`'s, and
    `mount` (see :func:`apply_to_environ`).

    Raises:
        ValueError: neither trusted proxies nor signing keys (nothing could be believed).
    """

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        apply_to_environ(self.proxy, environ, self.mount)
        return self.app(environ, start_response)
