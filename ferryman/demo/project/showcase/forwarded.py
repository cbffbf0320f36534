"""WSGI middleware: make the request look as the browser sent it to ferryman.

ferryman forwards ``/public/x`` and ``/webapps/x`` both to ``/webapps/x`` on an app server, and says
what the browser used in ``X-Forwarded-Proto/-Host/-Port/-Prefix/-For``. Here the app's mount point
(``/webapps``) moves from PATH_INFO to SCRIPT_NAME, and SCRIPT_NAME becomes the public prefix, so
Django's ``reverse()`` and redirects name public URLs (Django: ``FORCE_SCRIPT_NAME``, per request).

The headers are believed only from a loopback peer: the app servers listen on 127.0.0.1 and
ferryman, on the same machine, removes every client-sent copy of them.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterable
from typing import Any

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


def _loopback(address: str) -> bool:
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False


class BehindFerryman:
    """Wrap `app`, mounted at `mount` on the app server."""

    def __init__(self, app: WSGIApp, mount: str = "/webapps") -> None:
        self.app = app
        self.mount = mount.rstrip("/")

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if self.mount and (path == self.mount or path.startswith(self.mount + "/")):
            environ["PATH_INFO"] = path[len(self.mount):]
            environ["SCRIPT_NAME"] = environ.get("SCRIPT_NAME", "") + self.mount
        if _loopback(environ.get("REMOTE_ADDR", "")):
            prefix = environ.get("HTTP_X_FORWARDED_PREFIX", "")
            if prefix.startswith("/") and ".." not in prefix:
                environ["SCRIPT_NAME"] = prefix.rstrip("/")
            proto = environ.get("HTTP_X_FORWARDED_PROTO", "").lower()
            if proto in ("http", "https"):
                environ["wsgi.url_scheme"] = proto
            if environ.get("HTTP_X_FORWARDED_HOST"):
                environ["HTTP_HOST"] = environ["HTTP_X_FORWARDED_HOST"].split(",")[0].strip()
            if environ.get("HTTP_X_FORWARDED_PORT", "").isdigit():
                environ["SERVER_PORT"] = environ["HTTP_X_FORWARDED_PORT"]
            chain = [a.strip() for a in environ.get("HTTP_X_FORWARDED_FOR", "").split(",") if a.strip()]
            if chain:
                environ["REMOTE_ADDR"] = chain[-1]
        return self.app(environ, start_response)
