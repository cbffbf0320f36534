"""Access log lines in Apache combined format or JSON lines, written in batches.

Lines are collected during one turn of the event loop and written with one call, so logging
costs a list append per request, not a system call.
"""

from __future__ import annotations

import asyncio
import json
import re
import sys
import time
from typing import IO, Any

# An exchange (server/proxy.py) as this module reads it; the proxy imports this module, never the reverse.
Exchange = Any


def _header(headers: list[tuple[bytes, bytes]], name: bytes) -> str:
    for n, v in headers:
        if n == name:
            return v.decode("latin-1")
    return "-"


_UNSAFE = re.compile(rb'["\\\x00-\x1f\x7f-\xff]')
_PLAIN = re.compile(r'[^"\\\x00-\x1f\x7f]*')
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def _quote(text: str) -> str:
    # Apache escapes quotes, backslashes and control bytes in logged request data
    if _PLAIN.fullmatch(text):
        return text
    out = text.replace("\\", "\\\\").replace('"', '\\"')
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", out)


#: Bytes a pipe takes in one write without interleaving it with other writers' (POSIX PIPE_BUF on Linux).
_PIPE_BUF = 4096


class AccessLog:
    """One access log destination (`-` is stdout) in one format (`combined` or `json`)."""

    def __init__(self, path: str, fmt: str, loop: asyncio.AbstractEventLoop) -> None:
        self.fmt = fmt
        self.loop = loop
        self._own = path != "-"
        self._out: IO[bytes] = open(path, "ab") if self._own else sys.stdout.buffer
        self._lines: list[bytes] = []
        self._second = -1
        self._stamp = ""
        self._stamp_bytes = b""
        # the end of a combined line before its duration, per (route, member, decision reason): these
        # repeat request after request, so they are formatted and encoded once
        self._tails: dict[tuple[Any, Any, str], bytes] = {}

    def _clf_time(self, now: float) -> str:
        second = int(now)
        if second != self._second:
            self._second = second
            self._stamp = time.strftime("%d/%b/%Y:%H:%M:%S %z", time.localtime(second))
            self._stamp_bytes = self._stamp.encode()
        return self._stamp

    def log(self, ex: Exchange, now: float) -> None:
        client = ex.client
        duration = client.server.loop.time() - ex.start_time
        if self.fmt != "json":
            if not self._lines:
                self.loop.call_soon(self.flush)
            self._lines.append(self._combined(ex, now, duration))
            return
        head = ex.head
        member = ex.member
        route = ex.route
        line = json.dumps({
            "time": now, "client": client.peer_ip, "method": head.method.decode(),
            "target": head.target.decode("latin-1"), "protocol": f"HTTP/{head.version.decode()}",
            "status": ex.status, "bytes": ex.sent_bytes,
            "referer": _header(head.headers, b"referer"),
            "user_agent": _header(head.headers, b"user-agent"), "user": ex.user or "-",
            "pool": route.pool.name if route is not None else "-",
            "member": member.name if member is not None else "-",
            "route": (member.route or "-") if member is not None else "-",
            "decision": ex.decision.reason if ex.decision is not None else "-",
            "duration_ms": round(duration * 1000, 3),
        }, separators=(",", ":"))
        self.write_line(line)

    def _combined(self, ex: Exchange, now: float, duration: float) -> bytes:
        """One Apache combined line plus ferryman's fields, built as bytes (the hot path's log)."""
        head = ex.head
        referer = agent = b"-"
        for name, value in head.headers:
            if name == b"referer":
                referer = value
            elif name == b"user-agent":
                agent = value
        target = head.target
        if _UNSAFE.search(target) or _UNSAFE.search(referer) or _UNSAFE.search(agent):
            target, referer, agent = (_quote(x.decode("latin-1")).encode("ascii", "backslashreplace")
                                      for x in (target, referer, agent))
        user = ex.user.encode("utf-8", "backslashreplace") if ex.user else b"-"
        route = ex.route
        member = ex.member
        reason = ex.decision.reason if ex.decision is not None else "-"
        tails = self._tails
        tail = tails.get((route, member, reason))
        if tail is None:
            tail = " pool={} member={} route={} decision={} time=".format(
                route.pool.name if route is not None else "-", member.name if member is not None else "-",
                (member.route or "-") if member is not None else "-", reason).encode()
            if len(tails) >= 1024:
                tails.clear()
            tails[(route, member, reason)] = tail
        if int(now) != self._second:
            self._clf_time(now)
        return b'%s - %s [%s] "%s %s HTTP/%s" %d %s "%s" "%s"%s%d' % (
            ex.client.peer_ip.encode(), user, self._stamp_bytes, head.method, target,
            head.version, ex.status, b"%d" % ex.sent_bytes if ex.sent_bytes else b"-", referer, agent,
            tail, int(duration * 1e6))

    def log_rejected(self, peer_ip: str, status: int, reason: str, now: float) -> None:
        if self.fmt == "json":
            line = json.dumps({"time": now, "client": peer_ip, "status": status, "bytes": 0,
                               "error": reason}, separators=(",", ":"))
        else:
            line = f'{peer_ip} - - [{self._clf_time(now)}] "-" {status} - "-" "-" error="{_quote(reason)}"'
        self.write_line(line)

    def write_line(self, line: str) -> None:
        if not self._lines:
            self.loop.call_soon(self.flush)
        self._lines.append(line.encode("utf-8", "backslashreplace"))

    def flush(self) -> None:
        if self._lines:
            self._lines.append(b"")
            data = b"\n".join(self._lines)
            self._lines = []
            try:
                if self._own or len(data) <= _PIPE_BUF:
                    self._out.write(data)
                    self._out.flush()
                else:
                    self._write_lines_atomically(data)
            except (OSError, ValueError):
                pass

    def _write_lines_atomically(self, data: bytes) -> None:
        """Write to stdout (often a pipe shared by several worker processes) in pieces of whole lines of
        at most PIPE_BUF bytes: the kernel writes each such piece at once, so lines of two workers never
        interleave (a file opened for appending needs no such care: each write lands whole at its end)."""
        start = 0
        while start < len(data):
            end = start + _PIPE_BUF
            if end < len(data):
                cut = data.rfind(b"\n", start, end)
                end = cut + 1 if cut >= start else data.find(b"\n", end) + 1 or len(data)
            self._out.write(data[start:end])
            self._out.flush()
            start = end

    def close(self) -> None:
        self.flush()
        if self._own:
            self._out.close()
