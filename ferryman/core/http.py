"""HTTP/1.1 message heads: ferryman's own validation and canonical serialisation.

Theory of operation. The byte-moving layer feeds raw bytes to a permissive parser (httptools/llhttp)
and hands what it collected here: method, target, version and the header list with lower-cased names.
`check_request_head` decides, from those plain values alone, whether the request is unambiguous
(invariants 1, 2 and 4 in docs/request-safety.md) and returns a `RequestHead` that says how the body is
framed, whether the connection may be kept, and which headers may cross. `check_response_head` does the same for a
backend's answer. The serialisers then write a fresh head: one framing header, CRLF only, hop-by-hop
headers never relayed.

House rules: names and values are bytes; nothing here touches a socket, a clock or a logger; errors
are `BadRequest`/`HttpError` (client) or `UpstreamProtocolError` (backend), each carrying its status.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from http import HTTPStatus

from ferryman.errors import BadRequest, HttpError, UpstreamProtocolError

# RFC 9110 7.6.1 and 11.7.1: hop-by-hop fields never cross a proxy. Content-Length and
# Transfer-Encoding are not listed: framing is re-decided, see `body framing` below.
HOP_BY_HOP = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"te",
        b"trailer",
        b"upgrade",
        b"proxy-connection",
        b"proxy-authorization",
        b"proxy-authenticate",
        b"proxy",  # httpoxy (CVE-2016-5385): CGI turns it into HTTP_PROXY
    }
)

# Methods proxied to apps (RFC 9110 9.3, PATCH RFC 5789, WebDAV RFC 4918). TRACE would reflect
# credentials (XST) and CONNECT is a forward proxy's job: Apache answers 501 to both, so do we.
PROXIED_METHODS = frozenset(
    {
        b"GET", b"HEAD", b"POST", b"PUT", b"DELETE", b"OPTIONS", b"PATCH",
        b"PROPFIND", b"PROPPATCH", b"MKCOL", b"COPY", b"MOVE", b"LOCK", b"UNLOCK",
        b"REPORT", b"SEARCH",
    }
)
# RFC 9110 9.2.2: a request with one of these may be sent again without changing the outcome.
IDEMPOTENT_METHODS = frozenset({b"GET", b"HEAD", b"OPTIONS", b"PUT", b"DELETE", b"PROPFIND", b"SEARCH", b"REPORT"})

# Response headers that may point into a member (Apache ProxyPassReverse, -CookiePath/-Domain).
REWRITABLE = frozenset({b"location", b"content-location", b"uri", b"set-cookie"})

BODY_NONE = 0
BODY_LENGTH = 1
BODY_CHUNKED = 2
BODY_UNTIL_CLOSE = 3  # responses only (RFC 9112 6.3 rule 8)

# RFC 3986 3.2.2 host with optional port; no comma, space, '@' or '/': `Host: a,b` is ambiguous.
_HOST_RE = re.compile(rb"(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9._~!$&'()*+;=%-]+)(?::[0-9]{0,5})?\Z")
_DIGITS_RE = re.compile(rb"[0-9]{1,18}\Z")
_ABSOLUTE_RE = re.compile(rb"(?i)https?://([^/?#@]*)([^#]*)\Z")


def _status_line(code: int) -> bytes:
    try:
        phrase = HTTPStatus(code).phrase
    except ValueError:
        phrase = ""
    return f"HTTP/1.1 {code} {phrase}\r\n".encode("latin-1")


STATUS_LINES: dict[int, bytes] = {code: _status_line(code) for code in range(100, 600)}


class RequestHead:
    """A validated request head: everything the proxy decides from, nothing it must re-parse."""

    __slots__ = (
        "method", "target", "path", "query", "version", "host", "keep_alive", "body",
        "content_length", "expect_continue", "headers", "vouched", "cookie", "authorization", "upgrade", "wire",
    )

    def __init__(self) -> None:
        self.method = b"GET"
        self.target = b"/"
        self.path = b"/"
        self.query = b""
        self.version = b"1.1"
        self.host: bytes | None = None
        self.keep_alive = True
        self.body = BODY_NONE
        self.content_length = 0
        self.expect_continue = False
        #: end-to-end headers that may cross to the backend, in arrival order
        self.headers: list[tuple[bytes, bytes]] = []
        #: client copies of headers ferryman vouches for (canonical name -> joined value)
        self.vouched: dict[bytes, bytes] = {}
        self.cookie: bytes | None = None
        self.authorization: bytes | None = None
        #: the protocols asked for (Upgrade value) when Connection names "upgrade", else None
        self.upgrade: bytes | None = None
        #: (member, route, path, added lines, bytes): the last backend head written for this head, kept
        #: by the caller for a head read again (`serialize_request` is a pure function of these values)
        self.wire: tuple[object, object, bytes, bytes, bytes] | None = None

    @property
    def is_idempotent(self) -> bool:
        return self.method in IDEMPOTENT_METHODS


_HOST, _CONTENT_LENGTH, _TRANSFER_ENCODING, _CONNECTION, _EXPECT, _COOKIE, _AUTHORIZATION, _HOP = range(1, 9)
_UPGRADE = 10
_REQUEST_FIELDS: dict[bytes, int] = {  # hop-by-hop first: the specific kinds below override
    **{name: _HOP for name in HOP_BY_HOP}, b"upgrade": _UPGRADE,
    b"host": _HOST, b"content-length": _CONTENT_LENGTH, b"transfer-encoding": _TRANSFER_ENCODING,
    b"connection": _CONNECTION, b"expect": _EXPECT, b"cookie": _COOKIE, b"authorization": _AUTHORIZATION,
}
_REWRITE = 9
_RESPONSE_FIELDS: dict[bytes, int] = {
    **{name: _HOP for name in HOP_BY_HOP},
    **{name: _REWRITE for name in REWRITABLE},
    b"ferryman-explain": _HOP,  # only ferryman writes it (listener explain_header), never a backend
    # `_` spellings of the framing headers: some intermediaries read `_` as `-`; a response carries
    # only the framing header ferryman writes
    b"content_length": _HOP, b"transfer_encoding": _HOP,
    b"content-length": _CONTENT_LENGTH, b"transfer-encoding": _TRANSFER_ENCODING, b"connection": _CONNECTION,
}


def _connection_options(value: bytes, drop: list[bytes]) -> tuple[bool, bool]:
    """(close, keep-alive) named in a Connection value; other options are added to `drop`
    (RFC 9110 7.6.1: they name hop-by-hop fields of this message)."""
    close = keep = False
    for token in value.split(b","):
        token = token.strip().lower()
        if token == b"close":
            close = True
        elif token == b"keep-alive":
            keep = True
        elif token:
            drop.append(token)
    return close, keep


def check_request_head(
    method: bytes,
    target: bytes,
    version: str,
    headers: list[tuple[bytes, bytes]],
    *,
    is_vouched: Callable[[bytes], bool],
    vouched_cache: dict[bytes, bool] | None = None,
) -> RequestHead:
    """Validate a parsed request head and decide framing, keep-alive and the headers that cross.

    `headers` holds (lower-cased name, value) pairs as received. `is_vouched(name) -> bool` says
    whether a (lower-cased) name is one ferryman writes itself (any `_`/`-` alias); its answers
    are kept in `vouched_cache` when given (header names repeat: one dict lookup per header).
    Raises `BadRequest` (400) for anything ambiguous, `HttpError` with 501/505/417 otherwise.
    """
    head = RequestHead()
    if version == "1.1":
        head.version = b"1.1"
    elif version == "1.0":
        head.version = b"1.0"
        head.keep_alive = False
    elif version == "0.9":
        raise BadRequest("HTTP/0.9 requests are not served")
    else:
        raise HttpError(f"HTTP version {version} is not supported", 505)
    if method not in PROXIED_METHODS:
        raise HttpError("method not implemented", 501)
    head.method = method

    hosts = 0
    lengths: list[bytes] = []
    encodings: list[bytes] = []
    drop: list[bytes] = []
    closed = asked_keep = False
    upgrade: bytes | None = None
    forward = head.headers
    for name, value in headers:
        kind = _REQUEST_FIELDS.get(name)
        if kind is None:
            if b"_" in name and name.replace(b"_", b"-") in _REQUEST_FIELDS:
                # Transfer_Encoding, Content_Length, Host...: one backend's alias of a framing or
                # routing field is another's garbage; refuse rather than guess (invariant 2).
                raise BadRequest("underscore alias of a framing or routing header")
            vouched = None if vouched_cache is None else vouched_cache.get(name)
            if vouched is None:
                vouched = is_vouched(name)
                if vouched_cache is not None and len(vouched_cache) < 4096:
                    vouched_cache[name] = vouched
            if not vouched:
                forward.append((name, value))
            elif b"_" not in name:
                # Every spelling is removed (Remote_User is REMOTE_USER to WSGI); only the dashed
                # spelling is ever believed, even from a trusted proxy.
                old = head.vouched.get(name)
                head.vouched[name] = value if old is None else old + b", " + value
        elif kind == _HOST:
            hosts += 1
            head.host = value.rstrip(b" \t")
        elif kind == _CONTENT_LENGTH:
            lengths.append(value)
        elif kind == _TRANSFER_ENCODING:
            encodings.append(value)
        elif kind == _CONNECTION:
            close, keep = _connection_options(value, drop)
            closed = closed or close
            asked_keep = asked_keep or keep
        elif kind == _EXPECT:
            if value.strip().lower() != b"100-continue":
                raise HttpError("unsupported expectation", 417)
            # RFC 9110 10.1.1: a 100-continue expectation in an HTTP/1.0 request is ignored
            head.expect_continue = head.version == b"1.1"
        elif kind == _COOKIE:
            head.cookie = value if head.cookie is None else head.cookie + b"; " + value
        elif kind == _AUTHORIZATION:
            if head.authorization is not None:
                raise BadRequest("more than one Authorization header")  # RFC 9110 11.6.2: singleton
            head.authorization = value
            forward.append((name, value))
        elif kind == _UPGRADE:
            upgrade = value if upgrade is None else upgrade + b", " + value
        # else: hop-by-hop, never crosses

    # RFC 9112 9.3: close wins; HTTP/1.0 persists only when asked to
    head.keep_alive = not closed and (head.version == b"1.1" or asked_keep)
    if hosts > 1:
        raise BadRequest("more than one Host header")
    if head.host is not None and (not head.host or not _HOST_RE.match(head.host)):
        raise BadRequest("empty or malformed Host header")  # RFC 9110 4.2.1: http needs a host

    # request-target forms (RFC 9112 3.2): origin-form; absolute-form, whose authority replaces Host.
    if target[:1] != b"/":
        if target == b"*" and method == b"OPTIONS":
            raise HttpError("OPTIONS * is not proxied", 501)
        m = _ABSOLUTE_RE.match(target)
        if m is None:
            raise BadRequest("malformed request target")
        authority, target = m.group(1), m.group(2) or b"/"
        if not authority or not _HOST_RE.match(authority) or target[:1] not in (b"/", b"?"):
            raise BadRequest("malformed request target")
        # RFC 9112 3.2.2 says the target's authority wins, but a Host that disagrees (or none) is
        # how requests get routed one way and served another: refuse, as HAProxy does.
        if head.host is None or head.host.lower() != authority.lower():
            raise BadRequest("absolute-form target and Host disagree")
        if target[:1] == b"?":
            target = b"/" + target
        head.host = authority
    elif hosts == 0 and head.version == b"1.1":
        raise BadRequest("HTTP/1.1 request without Host")
    head.target = target

    if encodings:
        if lengths:
            raise BadRequest("both Content-Length and Transfer-Encoding")
        if head.version == b"1.0":
            raise BadRequest("Transfer-Encoding in an HTTP/1.0 request")
        if len(encodings) != 1 or encodings[0].strip().lower() != b"chunked":
            raise BadRequest("Transfer-Encoding other than a single chunked")
        head.body = BODY_CHUNKED
    elif lengths:
        value = lengths[0].rstrip(b" \t")
        if len(lengths) != 1 or not _DIGITS_RE.match(value):
            raise BadRequest("duplicate or malformed Content-Length")
        n = int(value)
        if n:
            head.body = BODY_LENGTH
            head.content_length = n

    if upgrade is not None and b"upgrade" in drop and upgrade.strip():
        head.upgrade = upgrade.strip()  # RFC 9110 7.8: Upgrade counts only when Connection names it
    if drop:
        # RFC 9110 7.6.1: names listed in Connection are hop-by-hop for this message. Framing
        # and Host are ours to decide and never dropped on a client's say-so.
        dropped = frozenset(drop)
        head.headers = [(n, v) for n, v in forward if n not in dropped]
        if b"cookie" in dropped:
            head.cookie = None
        if b"authorization" in dropped:
            head.authorization = None
    if head.cookie is not None:
        head.headers.append((b"cookie", head.cookie))
    return head


def serialize_headers(headers: list[tuple[bytes, bytes]]) -> bytes:
    """Header lines `name: value\r\n` for headers the caller has already validated."""
    return b"".join([b"%s: %s\r\n" % pair for pair in headers])


def serialize_request(head: RequestHead, path: bytes, host: bytes, extra: bytes) -> bytes:
    """Write a fresh backend request head: one framing header, CRLF only (invariant 1).

    `extra` is a block of already serialised header lines ferryman adds (forwarded headers).
    """
    parts = [head.method, b" ", path, head.query, b" HTTP/1.1\r\nhost: ", host, b"\r\n", extra]
    for name, value in head.headers:
        parts += (name, b": ", value, b"\r\n")
    if head.body == BODY_LENGTH:
        parts += (b"content-length: ", b"%d" % head.content_length, b"\r\n\r\n")
    elif head.body == BODY_CHUNKED:
        parts.append(b"transfer-encoding: chunked\r\n\r\n")
    elif head.method in (b"POST", b"PUT", b"PATCH"):
        parts.append(b"content-length: 0\r\n\r\n")
    else:
        parts.append(b"\r\n")
    return b"".join(parts)


class ResponseHead:
    """A validated backend response head."""

    __slots__ = ("status", "headers", "body", "content_length", "keep_alive", "rewritable", "wire")

    def __init__(self, status: int) -> None:
        self.status = status
        self.headers: list[tuple[bytes, bytes]] = []
        self.body = BODY_NONE
        self.content_length = -1
        self.keep_alive = True
        #: whether a Location-like or Set-Cookie header is present (reverse rewriting has work)
        self.rewritable = False
        #: (framing, keep_alive, head_only, bytes): the last `serialize_response` of exactly these headers,
        #: kept by the caller for a head read again (a pure function of these values)
        self.wire: tuple[int, bool, bool, bytes] | None = None


def check_response_head(
    status: int, version: str, headers: list[tuple[bytes, bytes]], *, request_method: bytes
) -> ResponseHead:
    """Validate a backend response head (invariant 2) and decide its framing (RFC 9112 6.3)."""
    if version not in ("1.1", "1.0"):
        raise UpstreamProtocolError(f"backend answered with HTTP/{version}")
    if not 100 <= status <= 599:  # RFC 9110 15: every valid status code is in 100..599
        raise UpstreamProtocolError(f"backend answered with status {status}")
    resp = ResponseHead(status)
    if version == "1.0":
        resp.keep_alive = False
    lengths: list[bytes] = []
    encodings: list[bytes] = []
    drop: list[bytes] = []
    forward = resp.headers
    for name, value in headers:
        kind = _RESPONSE_FIELDS.get(name)
        if kind is None:
            forward.append((name, value))
        elif kind == _REWRITE:
            resp.rewritable = True
            forward.append((name, value))
        elif kind == _CONTENT_LENGTH:
            lengths.append(value)
        elif kind == _TRANSFER_ENCODING:
            encodings.append(value)
        elif kind == _CONNECTION:
            if _connection_options(value, drop)[0]:
                resp.keep_alive = False
        # else: hop-by-hop, never crosses
    if drop:
        dropped = frozenset(drop)
        resp.headers = [(n, v) for n, v in forward if n not in dropped]

    if encodings:
        if lengths:
            raise UpstreamProtocolError("both Content-Length and Transfer-Encoding")
        if version == "1.0":
            raise UpstreamProtocolError("Transfer-Encoding in an HTTP/1.0 response")  # RFC 9112 6.1
        codings = [c for c in (c.strip().lower() for e in encodings for c in e.split(b",")) if c]
        if not codings or codings[-1] != b"chunked" or codings.count(b"chunked") != 1:
            raise UpstreamProtocolError("Transfer-Encoding without a single final chunked")
        if len(codings) > 1:
            # e.g. gzip, chunked: the coding stays with the content; we only re-frame.
            resp.headers.append((b"content-encoding", b", ".join(codings[:-1])))
        resp.body = BODY_CHUNKED
    elif lengths:
        values = {v.strip(b" \t") for v in lengths}
        # RFC 9112 6.3: identical repeats may be merged; anything else is refused
        if len(values) != 1 or not _DIGITS_RE.match(next(iter(values))):
            raise UpstreamProtocolError("duplicate or malformed Content-Length")
        resp.content_length = int(next(iter(values)))
        resp.body = BODY_LENGTH if resp.content_length else BODY_NONE
    if request_method == b"HEAD" or status < 200 or status in (204, 304):
        # RFC 9112 6.3 rule 1: these end at the blank line, whatever they declare
        resp.body = BODY_NONE
        if status == 204 or status < 200:
            resp.content_length = -1
    elif not encodings and not lengths:
        resp.body = BODY_UNTIL_CLOSE
        resp.keep_alive = False
    return resp


def serialize_response(
    resp: ResponseHead, headers: list[tuple[bytes, bytes]], framing: int, keep_alive: bool, head_only: bool
) -> bytes:
    """Write a fresh response head for the client with the framing chosen by the caller."""
    parts = [STATUS_LINES.get(resp.status) or f"HTTP/1.1 {resp.status} \r\n".encode()]
    for name, value in headers:
        parts += (name, b": ", value, b"\r\n")
    if framing == BODY_LENGTH or (resp.content_length >= 0 and (head_only or resp.status == 304)):
        parts += (b"content-length: ", str(resp.content_length).encode(), b"\r\n")
    elif framing == BODY_CHUNKED:
        parts.append(b"transfer-encoding: chunked\r\n")
    elif framing == BODY_NONE and resp.status not in (204, 304) and resp.status >= 200 and not head_only:
        parts.append(b"content-length: 0\r\n")
    if not keep_alive:
        parts.append(b"connection: close\r\n")
    parts.append(b"\r\n")
    return b"".join(parts)


def error_response(status: int, *, close: bool, extra: list[tuple[bytes, bytes]] | None = None) -> bytes:
    """A small, plain error page of ferryman's own: no internal addresses, no backend details."""
    body = f"{status} {HTTPStatus(status).phrase}\n".encode() if status in HTTPStatus._value2member_map_ else b"error\n"
    parts = [STATUS_LINES[status], b"content-type: text/plain; charset=utf-8\r\ncontent-length: ",
             str(len(body)).encode(), b"\r\n"]
    for name, value in extra or ():
        parts += (name, b": ", value, b"\r\n")
    parts.append(b"connection: close\r\n\r\n" if close else b"\r\n")
    parts.append(body)
    return b"".join(parts)


def chunk(data: bytes) -> bytes:
    """One chunk of a chunked body, canonical: hex size, no extensions (RFC 9112 7.1).

    Empty data gives no bytes: a zero-size chunk would end the message."""
    if not data:
        return b""
    return b"%x\r\n%s\r\n" % (len(data), data)


LAST_CHUNK = b"0\r\n\r\n"
CONTINUE_100 = b"HTTP/1.1 100 Continue\r\n\r\n"
