"""Access log lines in Apache combined format or JSON lines, written in batches off the event loop.

Lines are collected for up to `FLUSH_DELAY` seconds and handed as one batch to a writer thread (one
per log file), so logging costs a list append per request, the hand-over to the thread (a wake-up and
a switch, tens of microseconds) happens at most a few times a second whatever the load, and the loop
never waits for the disk: a slow or stuck disk delays the log, never a request (nginx: ``access_log
... buffer= flush=``). The queue a writer has not written yet is
bounded (`MAX_QUEUED` bytes): beyond it batches are dropped and counted, never held without end.

A failed write (disk full, I/O error) loses its batch: the lines are counted in the metrics
(``ferryman_access_log_write_errors_total``, ``ferryman_access_log_lost_lines_total``) and the
first failure is reported in the error log, then nothing until a write succeeds again (which is
reported too), so a full disk does not flood the error log. `reopen` (SIGUSR1) opens the file by
its name again, after logrotate has renamed it.
"""

from __future__ import annotations

import asyncio
import json
import logging
import queue
import re
import sys
import threading
import time
from typing import IO, Any

log = logging.getLogger("ferryman")

#: Bytes handed to a writer thread and not yet written, beyond which new batches are dropped.
MAX_QUEUED = 16 * 1024 * 1024
#: Seconds a line waits before its batch goes to the writer thread.
FLUSH_DELAY = 0.1

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

    def __init__(self, path: str, fmt: str, loop: asyncio.AbstractEventLoop, metrics: Any = None) -> None:
        self.fmt = fmt
        self.loop = loop
        self.path = path
        self._writer = _Writer(path, metrics)
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

    def log(self, ex: Exchange, now: float, duration: float) -> None:
        """One answered request; `now` is wall-clock time, `duration` seconds since its head."""
        client = ex.client
        if self.fmt != "json":
            if not self._lines:
                self.loop.call_later(FLUSH_DELAY, self.flush)
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
            "duration_ms": round(duration * 1000, 3), "request_id": ex.request_id.decode("latin-1"),
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
        return b'%s - %s [%s] "%s %s HTTP/%s" %d %s "%s" "%s"%s%d request_id=%s' % (
            ex.client.peer_ip.encode(), user, self._stamp_bytes, head.method, target,
            head.version, ex.status, b"%d" % ex.sent_bytes if ex.sent_bytes else b"-", referer, agent,
            tail, int(duration * 1e6), ex.request_id)

    def log_rejected(self, peer_ip: str, status: int, reason: str, now: float, request_id: str = "-") -> None:
        if self.fmt == "json":
            line = json.dumps({"time": now, "client": peer_ip, "status": status, "bytes": 0,
                               "error": reason, "request_id": request_id}, separators=(",", ":"))
        else:
            line = (f'{peer_ip} - - [{self._clf_time(now)}] "-" {status} - "-" "-" error="{_quote(reason)}" '
                    f"request_id={request_id}")
        self.write_line(line)

    def write_line(self, line: str) -> None:
        if not self._lines:
            self.loop.call_later(FLUSH_DELAY, self.flush)
        self._lines.append(line.encode("utf-8", "backslashreplace"))

    def flush(self) -> None:
        """Hand the lines collected so far to the writer thread."""
        lines = self._lines
        if lines:
            count = len(lines)
            lines.append(b"")
            self._lines = []
            self._writer.put(b"\n".join(lines), count)

    def reopen(self) -> None:
        """Open the file by its name again (logrotate renamed it), after writing what is queued."""
        self.flush()
        self._writer.reopen()

    def close(self) -> None:
        """Write everything queued, then close the file."""
        self.flush()
        self._writer.close()


class _Writer:
    """The thread writing one access log file: batches in order, failures counted and reported once."""

    def __init__(self, path: str, metrics: Any) -> None:
        self.path = path
        self.metrics = metrics
        self._own = path != "-"
        self._out: IO[bytes] = open(path, "ab") if self._own else sys.stdout.buffer
        self._queue: queue.SimpleQueue[tuple[bytes, int] | str] = queue.SimpleQueue()
        self._queued = 0  # bytes put and not yet taken by the thread (approximate: no lock on the hot path)
        self._failing = False
        self._thread: threading.Thread | None = None

    def put(self, data: bytes, lines: int) -> None:
        if self._queued > MAX_QUEUED:
            if self.metrics is not None:
                self.metrics.access_log_dropped(self.path, lines)
            self._report_once(f"access log {self.path}: writes are {self._queued} bytes behind; "
                              "lines are dropped until the disk catches up")
            return
        self._queued += len(data)
        self._queue.put((data, lines))
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name=f"access-log {self.path}", daemon=True)
            self._thread.start()

    def reopen(self) -> None:
        if self._thread is None:
            self._swap()
        else:
            self._queue.put("reopen")

    def close(self) -> None:
        if self._thread is None:
            if self._own:
                self._out.close()
            return
        self._queue.put("close")
        self._thread.join(10)
        self._thread = None

    def _run(self) -> None:
        get = self._queue.get
        get_nowait = self._queue.get_nowait
        while True:
            item = get()
            batch: list[bytes] = []
            lines = 0
            while True:  # everything queued meanwhile goes out in the same write
                if isinstance(item, str):
                    break
                batch.append(item[0])
                lines += item[1]
                try:
                    item = get_nowait()
                except queue.Empty:
                    item = ""
                    break
            if batch:
                data = b"".join(batch) if len(batch) > 1 else batch[0]
                self._queued -= len(data)
                self._write(data, lines)
            if item == "close":
                if self._own:
                    try:
                        self._out.close()
                    except OSError:
                        pass
                return
            if item == "reopen":
                self._swap()

    def _swap(self) -> None:
        if not self._own:
            return
        try:
            new = open(self.path, "ab")
        except OSError as err:
            log.error("access log %s: cannot reopen: %s; still writing to the file opened before", self.path,
                      err.strerror or err)
            return
        old, self._out = self._out, new
        try:
            old.close()
        except OSError:
            pass
        log.info("access log %s reopened", self.path)

    def _write(self, data: bytes, lines: int) -> None:
        try:
            if self._own or len(data) <= _PIPE_BUF:
                self._out.write(data)
                self._out.flush()
            else:
                self._write_lines_atomically(data)
        except (OSError, ValueError) as err:
            if self.metrics is not None:
                self.metrics.access_log_failed(self.path, lines)
            if not self._failing:
                self._failing = True
                why = getattr(err, "strerror", None) or str(err)
                log.error("access log %s: write failed: %s; %d line(s) lost (counted in "
                          "ferryman_access_log_lost_lines_total); said once until writes work again",
                          self.path, why, lines)
            if self._own and isinstance(err, OSError):
                self._discard_buffer()
            return
        if self._failing:
            self._failing = False
            log.warning("access log %s: writes work again", self.path)

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

    def _discard_buffer(self) -> None:
        # a failed flush leaves the bytes in the file object's buffer, to fail again with the next
        # write: reopen so the next batch starts clean
        try:
            self._out.close()
        except OSError:
            pass
        try:
            self._out = open(self.path, "ab")
        except OSError:
            pass

    def _report_once(self, message: str) -> None:
        if not self._failing:
            self._failing = True
            log.error("%s", message)
