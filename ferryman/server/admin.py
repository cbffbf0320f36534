"""The admin listener: ``GET /metrics`` (Prometheus text) and ``GET /status`` (JSON), nothing else.

A deliberately small HTTP/1.1 server on asyncio streams: one request per connection (answered with
``Connection: close``), a head of at most 16 KiB read within 10 s, GET and HEAD only. Clients on a
loopback address are served as they are; any other client must send Basic credentials from the
``[admin] htpasswd`` file (verified as route ``auth`` verifies them, ferryman.core.auth) or gets 401
with a ``WWW-Authenticate`` challenge. Binding a non-loopback address without htpasswd is a
configuration error (ferryman.plan), so an admin listener reachable from elsewhere always asks.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import logging
from typing import Any, Callable

from ferryman.core.auth import Htpasswd, parse_basic_authorization

log = logging.getLogger("ferryman")

MAX_HEAD = 16 * 1024
HEAD_TIMEOUT = 10.0
METRICS_CONTENT_TYPE = b"text/plain; version=0.0.4; charset=utf-8"


def is_loopback_peer(ip: str) -> bool:
    """The client connects from this machine's loopback: 127.0.0.0/8, ::1 or an IPv4-mapped
    ``::ffff:127.x.y.z``. Any other address, even one of this machine's own, is not loopback."""
    try:
        addr = ipaddress.ip_address(ip.partition("%")[0])
    except ValueError:
        return False
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        addr = addr.ipv4_mapped
    return addr.is_loopback


def _response(status: int, reason: str, body: bytes, content_type: bytes = b"text/plain; charset=utf-8",
              extra: bytes = b"", head_only: bool = False) -> bytes:
    head = (b"HTTP/1.1 %d %s\r\ncontent-type: %s\r\ncontent-length: %d\r\ncache-control: no-store\r\n"
            b"connection: close\r\n%s\r\n" % (status, reason.encode(), content_type, len(body), extra))
    return head if head_only else head + body


class AdminServer:
    """Serves /metrics from `metrics()` and /status from `status()` (both called per request)."""

    def __init__(self, plan: Any, metrics: Callable[[], bytes], status: Callable[[], dict[str, Any]]) -> None:
        self.plan = plan
        self.metrics = metrics
        self.status = status
        self.htpasswd = Htpasswd(plan.users) if plan.users is not None else None
        self.server: asyncio.AbstractServer | None = None
        self.port = plan.port

    async def start(self) -> None:
        """Bind and serve; raises OSError when the address cannot be bound."""
        self.server = await asyncio.start_server(self._serve, self.plan.host, self.plan.port, limit=MAX_HEAD,
                                                 reuse_address=True)
        sock = self.server.sockets[0]
        host, self.port = sock.getsockname()[:2]
        shown = f"[{host}]" if ":" in host else host
        log.info("admin listening on http://%s:%d (metrics at /metrics, status at /status)", shown, self.port)

    def close(self) -> None:
        if self.server is not None:
            self.server.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            answer = await self._answer(reader, writer)
            if answer:
                writer.write(answer)
                await asyncio.wait_for(writer.drain(), HEAD_TIMEOUT)
        except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            pass
        except Exception as exc:  # a connection edge: ferryman's bug, logged with its traceback
            log.error("internal error in the admin listener: %s: %s", type(exc).__name__, exc, exc_info=exc)
            writer.write(_response(500, "Internal Server Error", b"internal error\n"))
        finally:
            writer.close()

    async def _answer(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bytes:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), HEAD_TIMEOUT)
        except (asyncio.LimitOverrunError, ValueError):
            return _response(431, "Request Header Fields Too Large", b"request head too large\n")
        lines = head.split(b"\r\n")
        parts = lines[0].split(b" ")
        if len(parts) != 3 or not parts[2].startswith(b"HTTP/1."):
            return _response(400, "Bad Request", b"bad request line\n")
        method, target = parts[0], parts[1]
        authorization = None
        for line in lines[1:]:
            name, sep, value = line.partition(b":")
            if sep and name.strip().lower() == b"authorization":
                authorization = value.strip()
        peer = writer.get_extra_info("peername")
        if not (peer and is_loopback_peer(peer[0])) and not await self._authorized(authorization):
            return _response(401, "Unauthorized", b"credentials required\n",
                             extra=b"www-authenticate: " + self.plan.challenge + b"\r\n")
        if method not in (b"GET", b"HEAD"):
            return _response(405, "Method Not Allowed", b"GET only\n", extra=b"allow: GET, HEAD\r\n")
        path = target.partition(b"?")[0]
        head_only = method == b"HEAD"
        if path == b"/metrics":
            return _response(200, "OK", self.metrics(), METRICS_CONTENT_TYPE, head_only=head_only)
        if path == b"/status":
            body = json.dumps(self.status(), indent=1, default=str).encode() + b"\n"
            return _response(200, "OK", body, b"application/json", head_only=head_only)
        return _response(404, "Not Found", b"not found: try /metrics or /status\n", head_only=head_only)

    async def _authorized(self, authorization: bytes | None) -> bool:
        if self.htpasswd is None or not authorization:
            return False
        creds = parse_basic_authorization(authorization)
        if creds is None:
            return False
        verdict = self.htpasswd.cached(*creds)
        if verdict is None:  # a slow hash (bcrypt): off the event loop
            verdict = await asyncio.get_running_loop().run_in_executor(None, self.htpasswd.check, *creds)
        return bool(verdict)
