"""Where a plain HTTP listener sends a client that should be on HTTPS (``redirect_https``).

Pure. The Location is built from configured values, or from the request's Host only after it was
checked to be a bare host name or IP literal: a Host header cannot smuggle a path, user info,
another scheme or a header line into the answer.
"""

from __future__ import annotations

import re

__all__ = ["redirect_location", "redirect_status"]

_HOST = re.compile(rb"(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}"
                   rb"[A-Za-z0-9])?)*\.?|\[[0-9A-Fa-f:.]{2,45}\]")
_PORT = re.compile(rb"[0-9]{1,5}")


def _host_of(authority: bytes) -> bytes | None:
    """The host part of a Host value if it is well formed (name, IPv4 or [IPv6], optional port)."""
    if authority.startswith(b"["):
        end = authority.find(b"]")
        host, rest = authority[:end + 1], authority[end + 1:]
    else:
        host, _, port = authority.partition(b":")
        rest = b":" + port if _ else b""
    if rest and not (rest.startswith(b":") and _PORT.fullmatch(rest[1:])):
        return None
    if len(host) > 253 or not _HOST.fullmatch(host):
        return None
    return host


def redirect_location(to: str, target: bytes, host: bytes | None, server_name: bytes | None) -> bytes | None:
    """The Location for a request with `target` and Host `host`; None when it cannot be made safely.

    `to` is a port ("8443": the request's host -- `server_name` when configured -- on that port) or
    an origin ("https://www.example.com[:port]", used as it is). The path and query are kept;
    an absolute-form target keeps only its path and query, ``*`` becomes ``/``.
    """
    if not target.startswith(b"/"):
        if target == b"*":
            target = b"/"
        else:
            scheme_end = target.find(b"://")
            if scheme_end < 0:
                return None
            slash = target.find(b"/", scheme_end + 3)
            query = target.find(b"?", scheme_end + 3)
            if slash < 0 or (0 <= query < slash):
                target = b"/" + (target[query:] if query >= 0 else b"")
            else:
                target = target[slash:]
    if not to.isdigit():
        return to.encode("ascii") + target
    name = server_name if server_name else (_host_of(host) if host else None)
    if not name:
        return None
    port = b"" if to == "443" else b":" + to.encode()
    return b"https://" + name + port + target


def redirect_status(method: bytes) -> int:
    """301 for GET and HEAD (what browsers and caches know best); 308 otherwise, which keeps the
    method and body where 301 lets clients turn a POST into a GET."""
    return 301 if method in (b"GET", b"HEAD") else 308
