"""A ``static`` route at run time: files of one directory answered by ferryman itself.

The rules (which path, which validators, which status and bytes) are `ferryman.core.static`; this
module does the file system calls and moves the bytes.

- Opening: the request path is refused before any file system call when `resolve_path` refuses it.
  Otherwise the file is opened (``O_RDONLY | O_NONBLOCK | O_NOCTTY``, off the event loop), and the check
  is made on the descriptor that was opened, never on the name again: ``fstat`` must show a regular
  file, and the path the kernel reports for the descriptor (``/proc/self/fd/N``) must lie inside the
  directory's realpath. A symbolic link inside the directory to a file inside it is served; one that
  leads out, or a file replaced by such a link between any check and the open, is 404, because what
  is checked is the inode actually being read (no TOCTOU window). Where ``/proc`` is missing the
  realpath of the name is checked after the open instead.
- Sending: the file is read in 256 KiB pieces off the event loop (``os.pread`` in the default
  executor) and written to the client's transport, waiting for the transport to drain whenever its
  write buffer is full, so a big file never sits in memory and a slow client holds one piece. On a
  plain (non-TLS) transport of a loop that implements ``loop.sendfile`` (asyncio's own loops) the
  kernel copies the bytes instead; uvloop does not implement it, so under uvloop both plain and TLS
  listeners use the read loop.
- A request body (a GET with a body) is read and discarded before the answer, as nginx does for
  static files, so the connection stays usable; ``max_body_size`` still applies. A request that
  expects ``100-continue`` is answered at once and the connection closed, the body never read.
"""

from __future__ import annotations

import asyncio
import os
import stat
import time
from dataclasses import dataclass
from typing import Any

from ferryman.core.http import STATUS_LINES
from ferryman.core.static import (
    Decision, Refused, content_type, contained, decide, format_http_date, resolve_path, validators,
)
from ferryman.errors import HttpError

PIECE = 256 * 1024
_OPEN_FLAGS = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0) | getattr(os, "O_CLOEXEC", 0)


@dataclass(frozen=True, slots=True)
class PoolLabel:
    """What the access log and the explain header show in place of a pool for a static route."""

    name: str = "static"


STATIC_POOL = PoolLabel()


@dataclass(frozen=True, slots=True)
class Opened:
    """A regular file inside the directory, open: its descriptor, size and validators' inputs."""

    fd: int
    size: int
    mtime_ns: int
    name: str


def open_inside(root: str, relative: str) -> Opened | str:
    """Open `relative` below `root` (a realpath) and check the descriptor; the reason when refused.

    Blocking: run it off the event loop.
    """
    path = os.path.join(root, relative)
    try:
        fd = os.open(path, _OPEN_FLAGS)
    except OSError as err:
        return f"cannot open: {err.strerror}"
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise LookupError("a directory" if stat.S_ISDIR(st.st_mode) else "not a regular file")
        try:
            real = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            real = os.path.realpath(path)
        if not real.startswith("/") or not contained(root, real):
            raise LookupError(f"leads out of the directory ({real})")
        os.set_blocking(fd, True)
        return Opened(fd, st.st_size, st.st_mtime_ns, relative)
    except LookupError as err:
        os.close(fd)
        return str(err)
    except BaseException:
        os.close(fd)
        raise


class StaticFiles:
    """The directory of one static route and how its answers are made."""

    def __init__(self, directory: str, max_age: float | None) -> None:
        self.directory = directory
        self.root = os.path.realpath(directory)
        self.cache_control = f"max-age={int(max_age)}".encode() if max_age is not None else None

    def lookup(self, rest: str) -> Opened | str:
        """The opened file for `rest` (the path below the route prefix), or why it is 404. Blocking."""
        resolved = resolve_path(rest)
        if isinstance(resolved, Refused):
            return resolved.reason
        if resolved.directory:
            return "a directory (no listings)"
        return open_inside(self.root, resolved.relative)

    # -- serving -----------------------------------------------------------------------------------

    def serve(self, ex: Any) -> None:
        """Answer `ex` (an `Exchange` on this route) once its request body, if any, is read."""
        ex.pending = []
        ex.pending_size = 0
        if ex.request_done:
            self.body_read(ex)
        elif ex.head.expect_continue:
            ex.keep_alive = False  # the body is never asked for: answer now, then close
            self.body_read(ex)
        # else: ``body_read`` is called once the body has been read (and dropped)

    def body_read(self, ex: Any) -> None:
        if ex.done or ex.connect_task is not None:
            return
        # kept where `Exchange.abandon` cancels it: a client going away stops the answer
        ex.connect_task = ex.client.server.loop.create_task(self._answer(ex))

    async def _answer(self, ex: Any) -> None:
        try:
            await self._answer_file(ex)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a task edge: ferryman's own bug
            ex.connect_task = None
            if not ex.done:
                ex.internal_error(exc)

    async def _answer_file(self, ex: Any) -> None:
        client = ex.client
        loop = client.server.loop
        head = ex.head
        method = head.method.decode("latin-1")
        if method not in ("GET", "HEAD"):
            return self._finish(ex, Decision(405, 0, 0, (("Allow", "GET, HEAD"),), False), None)
        rest = ex.path[len(ex.route.prefix):].decode("latin-1")
        opening = loop.run_in_executor(None, self.lookup, rest)
        try:
            found = await asyncio.shield(opening)  # a cancelled wait must not leak the descriptor opened
        except asyncio.CancelledError:
            opening.add_done_callback(_close_opened)
            raise
        if isinstance(found, str):
            if ex.done:
                return
            return self._finish(ex, Decision(404, 0, 0, (), False), None)
        reads: list[asyncio.Future[bytes]] = []
        try:
            if ex.done:
                return
            headers: dict[str, str] = {}
            for name, value in head.headers:
                key = name.decode("latin-1")
                text = value.decode("latin-1")
                headers[key] = f"{headers[key]}, {text}" if key in headers else text
            decision = decide(method, headers, found.size, validators(found.size, found.mtime_ns),
                              content_type(found.name), now_year=time.gmtime().tm_year)
            self._head(ex, decision)
            if decision.body and decision.length:
                await self._send(ex, found.fd, decision.offset, decision.length, reads)
        finally:
            if reads and not reads[-1].done():  # cancelled during a read: close once the thread is done
                reads[-1].add_done_callback(lambda _: os.close(found.fd))
            else:
                os.close(found.fd)
        if not ex.done:
            ex.connect_task = None
            ex._finish(ex.keep_alive and not client.server.stopping)

    def _head(self, ex: Any, d: Decision) -> None:
        client = ex.client
        keep = ex.keep_alive and ex.request_done and not client.server.stopping
        ex.keep_alive = keep
        parts = [STATUS_LINES[d.status], b"date: ", format_http_date(int(time.time())).encode(), b"\r\n"]
        for name, value in d.headers:
            parts += (name.lower().encode(), b": ", value.encode("latin-1"), b"\r\n")
        if d.status in (200, 206):
            parts.append(b"x-content-type-options: nosniff\r\n")
        if self.cache_control is not None and d.status in (200, 206, 304):
            parts += (b"cache-control: ", self.cache_control, b"\r\n")
        if d.status not in (200, 206, 304):
            parts.append(b"content-length: 0\r\n")
        if client.listener.hsts is not None:
            parts += (b"strict-transport-security: ", client.listener.hsts, b"\r\n")
        if not keep:
            parts.append(b"connection: close\r\n")
        parts.append(b"\r\n")
        ex.status = d.status
        ex.responded = True
        client.write(b"".join(parts))

    def _finish(self, ex: Any, d: Decision, _fd: int | None) -> None:
        if ex.done:
            return
        if d.status == 404:
            return ex.local(HttpError("no such file", 404))
        self._head(ex, d)
        ex.connect_task = None
        ex._finish(ex.keep_alive)

    async def _send(self, ex: Any, fd: int, offset: int, length: int, reads: list["asyncio.Future[bytes]"]) -> None:
        client = ex.client
        loop = client.server.loop
        transport = client.transport
        if not client.listener.tls and type(loop).__module__.startswith("asyncio"):
            try:
                with os.fdopen(os.dup(fd), "rb") as f:
                    sent = await loop.sendfile(transport, f, offset, length, fallback=False)
                ex.sent_bytes += sent
                return
            except (NotImplementedError, asyncio.SendfileNotAvailableError):
                pass
        end = offset + length
        while offset < end and not ex.done and not client.closed:
            reading = loop.run_in_executor(None, os.pread, fd, min(PIECE, end - offset), offset)
            reads[:] = [reading]
            data = await asyncio.shield(reading)
            if not data:  # the file shrank while being sent: the client must see a cut answer
                return ex._truncate()
            if ex.done or client.closed:
                return
            client.write(data)
            offset += len(data)
            ex.sent_bytes += len(data)
            if client.flow.client_full:
                await client.drained()


def _close_opened(fut: "asyncio.Future[Opened | str]") -> None:
    if not fut.cancelled() and fut.exception() is None:
        found = fut.result()
        if isinstance(found, Opened):
            os.close(found.fd)


__all__ = ["STATIC_POOL", "Opened", "StaticFiles", "open_inside"]
