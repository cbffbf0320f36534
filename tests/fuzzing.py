"""Fuzz targets and a mutator, shared by the bounded hypothesis tests (tests/unit/test_fuzz_core.py) and the
long run (bench/fuzz.py).

Each `check_*` function takes arbitrary input and raises `Finding` when ferryman's core misbehaves:

- an exception other than the refusal a machine or rule reports (`HttpError` / `UpstreamError`, or
  `PathRejected`): an unexpected exception is ferryman's bug;
- a connection machine whose events depend on how the same bytes were split across reads;
- an accepted request or response that does not serialise to exactly one canonical, singly framed message;
- a rewriter whose output holds a byte that could split or fold a header line.

The machines run with the I/O layer's real head tokenizers (httptools/llhttp), as in production.
"""

from __future__ import annotations

import random
import re

import httptools

from ferryman.core.connection import (
    DATA, ERROR, REQUEST, RESPONSE, SWITCHED, TRUNCATED, TUNNEL_DATA, Event, Phase, RequestReader,
    ResponseReader,
)
from ferryman.core.decisions import client_framing
from ferryman.core.forwarded import (
    TrustedProxies, build_forwarded, canonical_name, client_address, is_vouched, parse_forwarded, strip_vouched,
)
from ferryman.core.http import (
    check_request_head, serialize_request, serialize_response,
)
from ferryman.core.paths import normalize_path, split_target
from ferryman.core.rewrite import ReverseMap, rewrite_location, rewrite_set_cookie
from ferryman.errors import HttpError, PathRejected, UpstreamError
from ferryman.server.tokenizer import RequestTokenizer, ResponseTokenizer


class Finding(AssertionError):
    """A misbehaviour found by a fuzz target: the message says what and holds the input."""


def show(data: bytes) -> str:
    """The input as a bytes literal, its middle elided when long (runs of one byte are the usual filler)."""
    if len(data) <= 400:
        return repr(data)
    return f"{data[:200]!r} + ...{len(data) - 400} bytes... + {data[-200:]!r}"


MAX_LINE, MAX_HEADERS, MAX_FIELDS = 8192, 100, 32768


def request_reader() -> RequestReader:
    return RequestReader(RequestTokenizer(MAX_LINE, MAX_HEADERS, MAX_FIELDS),
                         lambda m, t, v, h: check_request_head(m, t, v, h, is_vouched=is_vouched),
                         MAX_LINE + MAX_FIELDS)


def show_cuts(data: bytes, cuts: list[int]) -> str:
    c = sorted({x for x in cuts if 0 < x < len(data)})
    return "every byte" if len(c) == len(data) - 1 and len(data) > 1 else str(c)


def _pieces(data: bytes, cuts: list[int]) -> list[bytes]:
    bounds = [0, *sorted({c for c in cuts if 0 < c < len(data)}), len(data)]
    return [data[a:b] for a, b in zip(bounds, bounds[1:])]


def _merge(events: list[Event]) -> list[tuple[object, ...]]:
    out: list[tuple[object, ...]] = []
    for kind, value in events:
        if kind in (DATA, TUNNEL_DATA) and out and out[-1][0] == kind:
            out[-1] = (kind, out[-1][1] + value)  # type: ignore[operator]
        elif kind == REQUEST:
            h = value
            out.append((REQUEST, h.method, h.target, h.version, h.body, h.content_length, h.keep_alive,  # type: ignore[attr-defined]
                        tuple(h.headers), h.upgrade))  # type: ignore[attr-defined]
        elif kind in (RESPONSE, SWITCHED):
            h = value
            out.append((kind, h.status, h.body, h.content_length, h.keep_alive, tuple(h.headers)))  # type: ignore[attr-defined]
        elif kind == ERROR:
            out.append((ERROR, type(value).__name__, getattr(value, "status", None)))
        else:
            out.append((kind, value))
    return out


def request_events(data: bytes, cuts: list[int]) -> tuple[list[tuple[object, ...]], list[object]]:
    """Every request the machine reads from `data` fed in the given pieces, each answered in turn; and the
    accepted heads. An exception escaping the machine is a `Finding`."""
    r = request_reader()
    events: list[Event] = []
    try:
        for piece in _pieces(data, cuts):
            events += r.feed(piece)
            # the I/O layer answers a complete request before reading the next one
            while r.phase is Phase.DONE and r.head is not None and r.head.keep_alive and r.head.upgrade is None:
                more = r.next_request()
                events += more
                if not more:
                    break
    except Exception as exc:  # noqa: BLE001 - the point: nothing but events may come out
        raise Finding(f"request machine raised {type(exc).__name__}: {exc} for {show(data)} cut at {show_cuts(data, cuts)}") from exc
    heads = [v for k, v in events if k == REQUEST]
    return _merge(events), heads


def check_request_bytes(data: bytes, cuts: list[int]) -> None:
    whole, heads = request_events(data, [])
    split, _ = request_events(data, cuts)
    if whole != split:
        raise Finding(f"request events depend on the split: {show(data)} cut at {show_cuts(data, cuts)}:\n"
                      f"  whole: {whole!r:.600}\n  split: {split!r:.600}")
    for head in heads:
        check_serialised_request(head, data)


_TOKEN = rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+"
_FIELD = re.compile(rb"(" + _TOKEN + rb"): ([^\x00-\x08\x0a-\x1f\x7f]*)")
_REQUEST_LINE = re.compile(_TOKEN + rb" /[\x21-\x7e]* HTTP/1\.1")


def _head_lines(wire: bytes, what: str, source: bytes) -> list[bytes]:
    end = wire.find(b"\r\n\r\n")
    if end < 0 or end + 4 != len(wire):
        raise Finding(f"{what} head does not end at its only CRLF CRLF: {wire!r} from {source!r}")
    lines = wire[:end].split(b"\r\n")
    for ln in lines[1:]:
        if not _FIELD.fullmatch(ln):
            raise Finding(f"{what} field line not canonical: {ln!r} in {wire!r} from {source!r}")
    names = [ln.split(b":", 1)[0].lower().replace(b"_", b"-") for ln in lines[1:]]
    if names.count(b"content-length") + names.count(b"transfer-encoding") > 1:
        raise Finding(f"{what} with two framing headers: {wire!r} from {source!r}")
    return lines


def check_serialised_request(head: object, source: bytes) -> None:
    """An accepted head written for the backend is one canonical request that httptools reads back whole."""
    try:
        path, _query = split_target(head.target)  # type: ignore[attr-defined]
        path = normalize_path(path)
    except PathRejected:
        return  # refused at routing: never serialised
    wire = serialize_request(head, path, b"127.0.0.1:8000", b"x-forwarded-for: 127.0.0.1\r\n")  # type: ignore[arg-type]
    lines = _head_lines(wire, "request", source)
    if not _REQUEST_LINE.fullmatch(lines[0]):
        raise Finding(f"request line not canonical: {lines[0]!r} from {source!r}")
    names = [ln.split(b":", 1)[0].lower() for ln in lines[1:]]
    if names.count(b"host") != 1:
        raise Finding(f"{names.count(b'host')} Host lines in {wire!r} from {source!r}")
    got: list[bytes] = []

    class P:
        def on_headers_complete(self) -> None:
            got.append(b"head")

    parser = httptools.HttpRequestParser(P())
    try:
        parser.feed_data(wire)
    except httptools.HttpParserUpgrade:
        pass
    except httptools.HttpParserError as exc:
        raise Finding(f"a serialised request does not parse: {exc}: {wire!r} from {source!r}") from exc
    if got != [b"head"]:
        raise Finding(f"a serialised request is not one head: {wire!r} from {source!r}")


def response_events(data: bytes, cuts: list[int], method: bytes = b"GET", eof: bool = True
                    ) -> list[tuple[object, ...]]:
    r = ResponseReader(ResponseTokenizer(), 65536)
    r.expect(method, False)
    events: list[Event] = []
    try:
        for piece in _pieces(data, cuts):
            events += r.feed(piece)
        if eof:
            events += r.eof()
    except Exception as exc:  # noqa: BLE001
        raise Finding(f"response machine raised {type(exc).__name__}: {exc} for {show(data)} cut at {show_cuts(data, cuts)}") from exc
    for kind, value in events:
        if kind == ERROR and not isinstance(value, UpstreamError):
            raise Finding(f"response machine reported a non-upstream error {value!r} for {data!r}")
        if kind == RESPONSE:
            check_serialised_response(value, data, method)
    return _merge(events)


def check_response_bytes(data: bytes, cuts: list[int], method: bytes = b"GET") -> None:
    whole = response_events(data, [], method)
    split = response_events(data, cuts, method)
    if _stable(whole) != _stable(split):
        raise Finding(f"response events depend on the split: {show(data)} cut at {show_cuts(data, cuts)}:\n"
                      f"  whole: {whole!r:.600}\n  split: {split!r:.600}")


def _stable(events: list[tuple[object, ...]]) -> list[tuple[object, ...]]:
    """Events up to the first error or truncation, where a split may only move how much data came first."""
    out: list[tuple[object, ...]] = []
    for e in events:
        if e[0] in (ERROR, TRUNCATED):
            # a body refused part-way may have streamed more or less of itself before the fault
            while out and out[-1][0] == DATA:
                out.pop()
            out.append(e[:2])
            break
        out.append(e)
    return out


def check_serialised_response(resp: object, source: bytes, method: bytes = b"GET") -> None:
    """An accepted response written for an HTTP/1.1 and an HTTP/1.0 client, with the framing the proxy picks."""
    for version in (b"1.1", b"1.0"):
        framing, keep = client_framing(resp.body, resp.content_length, method, version)  # type: ignore[attr-defined]
        for keep_alive in {keep, False}:
            wire = serialize_response(resp, resp.headers, framing, keep_alive,  # type: ignore[arg-type, attr-defined]
                                      method == b"HEAD")
            lines = _head_lines(wire, "response", source)
            if not re.fullmatch(rb"HTTP/1\.1 [1-5][0-9][0-9] [\x20-\x7e]*", lines[0]):
                raise Finding(f"status line not canonical: {lines[0]!r} from {source!r}")


# -- the validation layer on arbitrary parsed values --------------------------------------------------


def check_request_fields(method: bytes, target: bytes, version: str, headers: list[tuple[bytes, bytes]]) -> None:
    """`check_request_head` on any values: a refusal (`HttpError`) or a head that serialises canonically."""
    try:
        head = check_request_head(method, target, version, headers, is_vouched=is_vouched)
    except HttpError:
        return
    except Exception as exc:  # noqa: BLE001
        raise Finding(f"check_request_head raised {type(exc).__name__}: {exc} for "
                      f"{(method, target, version, headers)!r}") from exc
    check_serialised_request(head, repr((method, target, version, headers)).encode())


# -- the rewriters ------------------------------------------------------------------------------------

RMAP = ReverseMap.build([("http", "127.0.0.1", 9001, "/webapps"), ("http", "app2", None, "/webapps")], "/public")
TRUSTED = TrustedProxies.parse(["10.0.0.0/8", "127.0.0.1", "::1"])
_SPLITTING = re.compile(rb"[\r\n\x00]")


def check_rewriters(value: bytes) -> None:
    """Location, Set-Cookie, X-Forwarded-For and Forwarded handling of any value: no exception, and no output
    byte that could split a header line unless the input had it."""
    clean = not _SPLITTING.search(value)
    try:
        loc = rewrite_location(value, RMAP, b"https://www.example.com")
        cookie = rewrite_set_cookie(value, member_prefix=b"/webapps", public_prefix=b"/public", rewrite_path=True,
                                    domains={b"app1": b"www.example.com"})
        addr = client_address(value, "10.0.0.1", TRUSTED)
        parse_forwarded(value)
        kept, incoming = strip_vouched([(b"x-forwarded-for", value), (b"x_forwarded_for", value),
                                        (value.lower(), b"v")])
        lines = build_forwarded(peer_ip="10.0.0.1", trusted=True, incoming=incoming, host=value or None,
                                scheme=b"https", port=443, server_name=b"front", prefix=b"/public", rfc7239=True)
    except Exception as exc:  # noqa: BLE001
        raise Finding(f"a rewriter raised {type(exc).__name__}: {exc} for {value!r}") from exc
    if clean:
        for what, out in (("rewrite_location", loc), ("rewrite_set_cookie", cookie)):
            if _SPLITTING.search(out):
                raise Finding(f"{what} made a line-splitting byte out of {value!r}: {out!r}")
    for name, v in lines:
        if _SPLITTING.search(name + v):
            raise Finding(f"build_forwarded wrote a line-splitting byte for {value!r}: {(name, v)!r}")
    if any(canonical_name(n) == b"x-forwarded-for" for n, _ in kept):
        raise Finding(f"strip_vouched kept a spelling of X-Forwarded-For: {kept!r}")
    if not isinstance(addr, str) or _SPLITTING.search(addr.encode("utf-8", "replace")):
        raise Finding(f"client_address returned {addr!r} for {value!r}")


def check_path(path: bytes) -> None:
    """normalize_path on any bytes: PathRejected (400/404) or a normalised fixed point."""
    try:
        once = normalize_path(path)
    except PathRejected as exc:
        if exc.status not in (400, 404):
            raise Finding(f"normalize_path refused {path!r} with {exc.status}") from exc
        return
    except Exception as exc:  # noqa: BLE001
        raise Finding(f"normalize_path raised {type(exc).__name__}: {exc} for {path!r}") from exc
    if normalize_path(once) != once:
        raise Finding(f"normalize_path is not idempotent on {path!r}: {once!r}")
    if any(s in (b".", b"..") for s in once.split(b"/")) or b"//" in once:
        raise Finding(f"normalize_path left a dot segment or '//' in {once!r} (from {path!r})")


# -- a mutator for the long run ----------------------------------------------------------------------

TOKENS = [
    b"\r\n", b"\r", b"\n", b"\r\n\r\n", b" ", b"\t", b"\x00", b"\x0b", b"\x0c", b"\x7f", b"\xff", b":", b";", b",",
    b"\"", b"0", b"5", b"-1", b"+", b"0x", b"ffffffffffffffffff", b"chunked", b"Transfer-Encoding: chunked\r\n",
    b"Content-Length: 5\r\n", b"Content-Length: 0\r\n", b"Transfer-Encoding: ", b"Content-Length: ", b"Host: a\r\n",
    b"Connection: close\r\n", b"Connection: upgrade\r\nUpgrade: websocket\r\n", b"Expect: 100-continue\r\n",
    b"HTTP/1.1", b"HTTP/1.0", b"HTTP/2.0", b"GET ", b"POST ", b"/", b"/..", b"%2e", b"%2f", b"?", b"#", b"@",
    b"0\r\n\r\n", b"5\r\nhello\r\n", b"HTTP/1.1 200 OK\r\n", b"HTTP/1.1 100 Continue\r\n\r\n", b"_", b"Remote_User: x\r\n",
]


def mutate(rng: random.Random, data: bytes, rounds: int = 0) -> bytes:
    """A few random edits of `data`: byte flips, insertions of interesting tokens, deletions, duplications."""
    buf = bytearray(data)
    for _ in range(rounds or rng.randint(1, 4)):
        op = rng.randrange(6)
        i = rng.randint(0, len(buf))
        if op == 0 and buf:
            buf[min(i, len(buf) - 1)] = rng.randrange(256)
        elif op == 1:
            buf[i:i] = rng.choice(TOKENS)
        elif op == 2 and buf:
            j = min(len(buf), i + rng.randint(1, 8))
            del buf[i:j]
        elif op == 3 and buf:
            j = min(len(buf), i + rng.randint(1, 16))
            buf[i:i] = buf[i:j]
        elif op == 4:
            # swap CRLF styles on one line end
            k = buf.find(b"\r\n", i)
            if k >= 0:
                buf[k:k + 2] = rng.choice([b"\n", b"\r", b"\r\r\n", b"\r\n "])
        else:
            buf[i:i] = bytes([rng.choice(b" \t\r\n:,;\x00")])
    return bytes(buf)


def random_cuts(rng: random.Random, n: int) -> list[int]:
    if n < 2:
        return []
    if rng.random() < 0.1:
        return list(range(1, n))
    return [rng.randint(1, n - 1) for _ in range(rng.randint(1, 8))]
