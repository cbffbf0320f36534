"""Head tokenizers for the connection machines, driven by httptools (llhttp, in C).

llhttp reads a head as its pieces arrive and refuses malformed bytes at once (bare CR or LF, control
bytes, bad tokens, obs-fold); the machine in `ferryman.core.connection` decides where each head ends and
never lets llhttp see a body. A parser is made fresh for each head (0.3 us): llhttp would otherwise wait
for the body the machine reads itself.
"""

from __future__ import annotations

import httptools

from ferryman.core.connection import RawHead
from ferryman.errors import BadRequest, HttpError, UpstreamProtocolError


class RequestTokenizer:
    """A client's request heads, with the per-line limits (414 long line, 431 too many/large headers)."""

    __slots__ = ("parser", "url", "headers", "size", "done", "max_request_line", "max_headers", "max_header_size")

    def __init__(self, max_request_line: int, max_headers: int, max_header_size: int) -> None:
        self.max_request_line = max_request_line
        self.max_headers = max_headers
        self.max_header_size = max_header_size
        self.reset()

    def reset(self) -> None:
        self.parser = httptools.HttpRequestParser(self)
        self.url = b""
        self.headers: list[tuple[bytes, bytes]] = []
        self.size = 0
        self.done = False

    # httptools callbacks
    def on_url(self, url: bytes) -> None:
        self.url += url
        if len(self.url) > self.max_request_line:
            raise HttpError("request line too long", 414)

    def on_header(self, name: bytes, value: bytes) -> None:
        # counted here, judged when the head is complete: httptools reports a header only once the next
        # one starts, so judging here would let the cut of the reads decide between this 431 and a
        # malformed line after it (400); the machine's max_head bounds the bytes meanwhile
        self.headers.append((name.lower(), value))
        self.size += len(name) + len(value) + 4

    def on_headers_complete(self) -> None:
        self.done = True

    def feed(self, data: bytes, final: bool) -> RawHead | None:
        parser = self.parser
        try:
            parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            pass  # the head of an upgrade request: the machine decides what follows it
        except httptools.HttpParserCallbackError as exc:
            cause = exc.__context__
            raise cause if isinstance(cause, HttpError) else BadRequest("malformed request") from None
        except httptools.HttpParserInvalidMethodError:
            raise HttpError("method not implemented", 501) from None
        except httptools.HttpParserError:
            raise BadRequest("malformed request") from None
        if not final:
            return None
        if not self.done:
            raise BadRequest("malformed request head")
        if len(self.headers) > self.max_headers or self.size > self.max_header_size:
            raise HttpError("request header fields too large", 431)
        raw = (parser.get_method(), self.url, parser.get_http_version(), self.headers)
        self.parser = httptools.HttpRequestParser(self)  # reset, inline: this runs once per request
        self.url = b""
        self.headers = []
        self.size = 0
        self.done = False
        return raw


class ResponseTokenizer:
    """A backend's response heads."""

    __slots__ = ("parser", "headers", "done")

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.parser = httptools.HttpResponseParser(self)
        self.headers: list[tuple[bytes, bytes]] = []
        self.done = False

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name.lower(), value))

    def on_headers_complete(self) -> None:
        self.done = True

    def feed(self, data: bytes, final: bool) -> RawHead | None:
        parser = self.parser
        try:
            parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            pass
        except httptools.HttpParserError as exc:
            raise UpstreamProtocolError(f"malformed response: {exc}") from None
        if not final:
            return None
        if not self.done:
            raise UpstreamProtocolError("malformed response head")
        raw = (b"%d" % parser.get_status_code(), b"", parser.get_http_version(), self.headers)
        self.parser = httptools.HttpResponseParser(self)  # reset, inline: this runs once per response
        self.headers = []
        self.done = False
        return raw
