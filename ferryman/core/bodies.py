"""Message body framing, decoded incrementally: a fixed length, chunked, or until the connection closes.

A decoder is fed bytes at a position and says how many it took, which payload they carried and whether
the body has ended, so the caller knows to the byte where the next message starts (bytes after a message
are the next request, or, from a backend, a protocol error). Chunk sizes, extensions and trailers are
checked strictly (RFC 9112 7.1): what is not exactly right is refused, never guessed; extensions and
trailers are consumed and dropped (ferryman re-frames every body it forwards).
"""

from __future__ import annotations

import re

from ferryman.errors import HttpError

_TOKEN = rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+"
_QUOTED = rb'"(?:[\t !#-\[\]-~\x80-\xff]|\\[\t -~\x80-\xff])*"'
# chunk-size [ chunk-ext ] CRLF, no whitespace anywhere (llhttp and HAProxy refuse "5 \r\n" too)
_SIZE_LINE = re.compile(rb"([0-9A-Fa-f]+)((?:;" + _TOKEN + rb"(?:=(?:" + _TOKEN + rb"|" + _QUOTED + rb"))?)*)\Z")
_TRAILER_LINE = re.compile(_TOKEN + rb":[\t -~\x80-\xff]*\Z")
_MAX_SIZE_DIGITS = 16
_MAX_LINE = 4096  # a chunk-size line or trailer line longer than this is refused


class BodyError(HttpError):
    """A body broke its framing (bad chunk size, missing CRLF, malformed trailer)."""

    status = 400


class LengthBody:
    """A body of exactly `remaining` bytes (Content-Length)."""

    __slots__ = ("remaining",)

    def __init__(self, length: int) -> None:
        self.remaining = length

    def feed(self, data: bytes, pos: int, out: list[bytes]) -> tuple[int, bool]:
        """Take body bytes from data[pos:]; append payload to `out`. Returns (new pos, body ended)."""
        take = min(self.remaining, len(data) - pos)
        if take:
            out.append(data[pos:pos + take] if pos or take != len(data) else data)
            self.remaining -= take
        return pos + take, self.remaining == 0

    def eof(self) -> bool:
        """The connection closed: True if that ends the body properly."""
        return self.remaining == 0


class UntilCloseBody:
    """A response body delimited by the connection's close (RFC 9112 6.3 rule 8)."""

    __slots__ = ()

    def feed(self, data: bytes, pos: int, out: list[bytes]) -> tuple[int, bool]:
        if pos < len(data):
            out.append(data[pos:] if pos else data)
        return len(data), False

    def eof(self) -> bool:
        return True


_SIZE, _DATA, _DATA_END, _TRAILER, _DONE = range(5)


class ChunkedBody:
    """A chunked body (RFC 9112 7.1), decoded strictly; extensions and trailers are dropped."""

    __slots__ = ("_state", "_remaining", "_line", "_trailer_bytes", "max_trailer")

    def __init__(self, max_trailer: int = 32 * 1024) -> None:
        self._state = _SIZE
        self._remaining = 0
        self._line = b""           # a partial size/trailer line, or the partial CRLF after data
        self._trailer_bytes = 0
        self.max_trailer = max_trailer

    def _take_line(self, data: bytes, pos: int) -> tuple[bytes | None, int]:
        """A whole CRLF-ended line from the carried bytes plus data[pos:], or None if not complete yet."""
        end = data.find(b"\n", pos)
        if end < 0:
            self._line += data[pos:]
            if len(self._line) > _MAX_LINE:
                raise BodyError("chunk line too long")
            return None, len(data)
        line = self._line + data[pos:end + 1]
        self._line = b""
        if len(line) > _MAX_LINE:
            raise BodyError("chunk line too long")
        if not line.endswith(b"\r\n") or b"\r" in line[:-2]:
            raise BodyError("chunk line not ended by CRLF")
        return line[:-2], end + 1

    def feed(self, data: bytes, pos: int, out: list[bytes]) -> tuple[int, bool]:
        """Take body bytes from data[pos:]; append payload to `out`. Returns (new pos, body ended)."""
        n = len(data)
        while pos < n:
            state = self._state
            if state == _DATA:
                take = min(self._remaining, n - pos)
                out.append(data[pos:pos + take])
                pos += take
                self._remaining -= take
                if not self._remaining:
                    self._state = _DATA_END
            elif state == _SIZE:
                line, pos = self._take_line(data, pos)
                if line is None:
                    return pos, False
                m = _SIZE_LINE.match(line)
                if m is None:
                    raise BodyError("malformed chunk size line")
                digits = m.group(1).lstrip(b"0")
                if len(digits) > _MAX_SIZE_DIGITS:
                    raise BodyError("chunk size too large")
                size = int(digits, 16) if digits else 0
                if size:
                    self._remaining = size
                    self._state = _DATA
                else:
                    self._state = _TRAILER
            elif state == _DATA_END:
                need = 2 - len(self._line)
                got = data[pos:pos + need]
                pos += len(got)
                self._line += got
                if len(self._line) < 2:
                    if self._line != b"\r"[:len(self._line)]:
                        raise BodyError("chunk data not followed by CRLF")
                    return pos, False
                if self._line != b"\r\n":
                    raise BodyError("chunk data not followed by CRLF")
                self._line = b""
                self._state = _SIZE
            elif state == _TRAILER:
                line, pos = self._take_line(data, pos)
                if line is None:
                    return pos, False
                if not line:
                    self._state = _DONE
                    return pos, True
                self._trailer_bytes += len(line)
                if self._trailer_bytes > self.max_trailer:
                    raise BodyError("trailer section too large")
                if not _TRAILER_LINE.match(line):
                    raise BodyError("malformed trailer line")
            else:
                return pos, True
        return pos, self._state == _DONE

    def eof(self) -> bool:
        return self._state == _DONE


Body = LengthBody | ChunkedBody | UntilCloseBody
