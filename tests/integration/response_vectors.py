"""The hostile / malformed RESPONSE corpus, as data: what a backend may send, and what the client must see.

Every case is the raw bytes a backend sends in answer to one request, where they come from (an RFC
section or a published test suite: every case names one), and what ferryman must do with them:

- ``Reject()``: the client gets ``502`` (or, when the fault lies in the body after the head was already
  relayed, a response cut short followed by a close: never a complete one), nothing of the faulty message's
  body reaches the client, and ferryman closes that backend connection (it is never reused).
- ``Relay(...)``: the client gets a freshly written response: status line ``HTTP/1.1``, CRLF only, token
  names, at most one framing header, no hop-by-hop header and nothing the backend's ``Connection`` named;
  optionally the exact status, body, header values, absent headers, and whether ferryman must close the
  backend connection after it (``reuse=False``: a close-delimited body, bytes after the declared end, an
  HTTP/1.0 answer, ``Connection: close``).
- ``REither(reject, relay)``: both are acceptable (odd but valid, or HAProxy relays it and refusing is
  allowed); whichever ferryman does is checked in full.

The test (tests/integration/test_response_corpus.py) answers a request for ``/r/<id>`` with the case's
bytes: in one write, one byte per write, in seeded random pieces, and pipelined behind a valid exchange on
the same backend connection. ``python -m tests.integration.response_vectors`` rewrites the response table in
docs/request-safety.md.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class Reject:
    #: "head": 502 before any byte of an answer; "body": 502, or the relayed head then a cut (never complete)
    stage: str = "head"

    def describe(self) -> str:
        cut = " (or the head then a cut, never complete)" if self.stage == "body" else ""
        return f"502{cut}, backend connection closed, nothing of it relayed"


@dataclass(frozen=True)
class Relay:
    status: int = 200
    #: exact body the client must receive (after de-chunking)
    body: bytes | None = None
    #: exact header values at the client (lower-case names)
    headers: dict[str, str] = field(default_factory=dict)
    #: header names that must not reach the client
    absent: tuple[str, ...] = ()
    #: False: ferryman must close the backend connection after this answer (never reuse it)
    reuse: bool = True
    #: True: the backend closes inside the body: the client gets the head, then a cut (never a complete answer)
    truncated: bool = False

    def describe(self) -> str:
        parts = [str(self.status)]
        if self.body is not None:
            parts.append(f"body {self.body!r}")
        for k, v in self.headers.items():
            parts.append(f"{k}: {v}")
        if self.absent:
            parts.append("without " + ", ".join(self.absent))
        if self.truncated:
            parts.append("cut short, never complete")
        if not self.reuse:
            parts.append("backend connection closed")
        return "relay " + "; ".join(parts)


@dataclass(frozen=True)
class REither:
    reject: Reject
    relay: Relay

    def describe(self) -> str:
        return self.reject.describe() + " **or** " + self.relay.describe()


RExpectation = Reject | Relay | REither


@dataclass(frozen=True)
class RVector:
    id: str
    raw: bytes
    source: str
    expect: RExpectation
    #: the request method the answer is for
    method: str = "GET"
    #: the backend closes its side after sending `raw` (a close-delimited or truncated answer)
    backend_closes: bool = False
    #: bytes at the end of `raw` after the message's declared end: sent in the same write as the end
    #: whatever the split (arriving later, they are indistinguishable from the next answer on any proxy)
    trailing: int = 0
    note: str = ""


def resp(headers: bytes = b"", body: bytes = b"", status: bytes = b"HTTP/1.1 200 OK") -> bytes:
    """A response from raw pieces: `headers` is a raw header block, each line ending in CRLF."""
    return status + b"\r\n" + headers + b"\r\n" + body


def cl(body: bytes, headers: bytes = b"", status: bytes = b"HTTP/1.1 200 OK") -> bytes:
    return resp(b"Content-Length: %d\r\n" % len(body) + headers, body, status)


TE = b"Transfer-Encoding: chunked\r\n"
FORGED = b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nforged"

R9112_22 = "RFC 9112 §2.2 (CRLF; bare CR; whitespace)"
R9112_23 = "RFC 9112 §2.3 (HTTP-version = HTTP-name \"/\" DIGIT \".\" DIGIT)"
R9112_4 = "RFC 9112 §4 (status-line = HTTP-version SP status-code SP [ reason-phrase ]; status-code = 3DIGIT)"
R9112_51 = "RFC 9112 §5.1 (no whitespace between field name and colon; a proxy MUST remove it or reject)"
R9112_52 = "RFC 9112 §5.2 (obs-fold: a proxy MUST reject or replace it)"
R9112_61 = "RFC 9112 §6.1 (Transfer-Encoding: chunked final, once; not in HTTP/1.0)"
R9112_63 = "RFC 9112 §6.3 (message body length: CL+TE, invalid Content-Length, rule 1 bodiless answers)"
R9112_638 = "RFC 9112 §6.3 rule 8 (no framing: the body ends when the server closes)"
R9112_71 = "RFC 9112 §7.1 (chunk-size = 1*HEXDIG; chunk-ext; CRLF)"
R9112_712 = "RFC 9112 §7.1.2 (trailer section)"
R9112_8 = "RFC 9112 §8 (incomplete messages: a cut body is never presented as complete)"
R9112_93 = "RFC 9112 §9.3 (persistence) and §9.6 (close)"
R9110_56 = "RFC 9110 §5.5/§5.6.2 (field values: no CR, LF, NUL; field names are tokens)"
R9110_76 = "RFC 9110 §7.6.1 (Connection and hop-by-hop fields are removed by a proxy)"
R9110_86 = "RFC 9110 §8.6 (Content-Length = 1*DIGIT)"
R9110_15 = "RFC 9110 §15 (status codes: three digits, 1xx interim, unknown codes by class)"
R9110_153 = "RFC 9110 §15.3.5 / §15.4.5 (204 and 304 carry no content)"
R9110_98 = "RFC 9110 §9.3.2 (a response to HEAD carries no content)"
R9110_152 = "RFC 9110 §15.2 (1xx interim responses; a proxy forwards or drops them, the final one follows)"
R9110_1522 = "RFC 9110 §15.2.2 (101 only in answer to an Upgrade request)"
LLR_INV = "llhttp test/response/invalid.md"
LLR_CL = "llhttp test/response/content-length.md"
LLR_TE = "llhttp test/response/transfer-encoding.md"
LLR_CONN = "llhttp test/response/connection.md"
LLR_SAMPLE = "llhttp test/response/sample.md"
LLR_FINISH = "llhttp test/response/finish.md"
HAP_BODYLESS = "haproxy reg-tests/http-messaging/http_bodyless_response.vtc"
HAP_TRUNC = "haproxy reg-tests/http-messaging/truncated.vtc"
HAP_H1 = "haproxy reg-tests/http-messaging/h1_to_h1.vtc"
KETTLE_RESP = ("James Kettle, \"Browser-Powered Desync Attacks\" (PortSwigger 2022): response queue poisoning "
               "by bytes after a response")

RESPONSE_VECTORS: list[RVector] = [
    # ---------------------------------------------------------------- clean answers, regenerated
    RVector("ok-length", cl(b"ok"), R9112_63, Relay(body=b"ok")),
    RVector("ok-chunked", resp(TE, b"2\r\nok\r\n0\r\n\r\n"), R9112_71, Relay(body=b"ok")),
    RVector("chunk-extensions", resp(TE, b"5;ilovew3;somuchlove=aretheseparametersfor\r\nhello\r\n"
                                         b"6;blahblah;blah\r\n world\r\n0\r\n\r\n"),
            LLR_TE + " (chunk extensions)", Relay(body=b"hello world"), note="extensions never reach the client"),
    RVector("chunk-extensions-quoted", resp(TE, b'5;ilovew3="I love; extensions";somuchlove="aretheseparametersfor";'
                                                b"blah;foo=bar\r\nhello\r\n6;blahblah;blah\r\n world\r\n0\r\n\r\n"),
            LLR_TE + " (chunk extensions quoting)", Relay(body=b"hello world")),
    RVector("chunk-uppercase-hex", resp(TE, b"A\r\n0123456789\r\n0\r\n\r\n"), R9112_71 + " (HEXDIG is case-insensitive)",
            Relay(body=b"0123456789")),
    RVector("chunk-leading-zeros", resp(TE, b"0005\r\nhello\r\n000\r\n\r\n"), R9112_71 + "; " + LLR_TE,
            REither(Reject("body"), Relay(body=b"hello"))),
    RVector("chunk-trailers-dropped", resp(TE, b"2\r\nok\r\n0\r\nX-Trailer: 1\r\nContent-Length: 99\r\n\r\n"),
            R9112_712 + " (Content-Length in a trailer means nothing)", REither(Reject("body"), Relay(body=b"ok"))),
    RVector("until-close", resp(b"Content-Type: text/plain\r\n", b"hello until close"),
            R9112_638 + "; " + LLR_CL + " (response without Content-Length, but with body)",
            Relay(body=b"hello until close", reuse=False), backend_closes=True),
    RVector("until-close-connection-close", resp(b"Connection: close\r\n", b"bye"),
            R9112_638 + "; " + LLR_CL, Relay(body=b"bye", reuse=False), backend_closes=True),
    RVector("http10-until-close", resp(b"", b"old", status=b"HTTP/1.0 200 OK"),
            R9112_638 + "; " + LLR_CONN + " (HTTP/1.0 EOF-terminated)", Relay(body=b"old", reuse=False),
            backend_closes=True),
    RVector("http10-length", cl(b"ok", status=b"HTTP/1.0 200 OK"), R9112_93 + " (HTTP/1.0 closes by default)",
            Relay(body=b"ok", reuse=False)),
    RVector("connection-close-length", cl(b"ok", b"Connection: close\r\n"), R9112_93,
            Relay(body=b"ok", reuse=False, absent=("keep-alive",))),
    RVector("keep-alive-header", cl(b"ok", b"Connection: keep-alive\r\nKeep-Alive: timeout=5, max=100\r\n"),
            R9110_76 + " (Keep-Alive)", Relay(body=b"ok", absent=("keep-alive",))),
    RVector("connection-named-header", cl(b"ok", b"Connection: X-Internal\r\nX-Internal: secret\r\n"),
            R9110_76, Relay(body=b"ok", absent=("x-internal",))),
    RVector("connection-named-set-cookie", cl(b"ok", b"Connection: close, X-Debug\r\nX-Debug: 1\r\n"),
            R9110_76 + "; " + R9112_93, Relay(body=b"ok", absent=("x-debug",), reuse=False)),
    RVector("proxy-connection", cl(b"hello world", b"Content-Type: text/html; charset=UTF-8\r\nProxy-Connection: close\r\n"
                                                   b"Date: Thu, 31 Dec 2009 20:55:48 +0000\r\n"),
            LLR_CONN + " (Proxy-Connection)", Relay(body=b"hello world", absent=("proxy-connection",))),
    RVector("hop-by-hop-family", cl(b"ok", b"TE: trailers\r\nTrailer: X-Sum\r\nUpgrade: h2c\r\n"
                                           b"Proxy-Authenticate: Basic realm=x\r\n"),
            R9110_76, Relay(body=b"ok", absent=("te", "trailer", "upgrade", "proxy-authenticate"))),
    RVector("upgrade-on-200", resp(b"Connection: upgrade\r\nUpgrade: h2c\r\nContent-Length: 4\r\n", b"body"),
            LLR_CONN + " (HTTP 200 response with Upgrade header and Content-Length)",
            Relay(body=b"body", absent=("upgrade",))),
    RVector("content-length-x", resp(b"Content-Length-X: 0\r\n" + TE, b"2\r\nOK\r\n0\r\n\r\n"),
            LLR_CL + " (Content-Length-X is not Content-Length)", Relay(body=b"OK", headers={"content-length-x": "0"})),
    RVector("content-length-tabs", resp(b"Content-Length:\t2\t\r\n", b"ok"),
            LLR_CL + " (tabs in Content-Length, surrounding)", REither(Reject(), Relay(body=b"ok"))),
    RVector("content-length-zero", resp(b"Content-Length: 0\r\n"), R9112_63, Relay(body=b"")),
    RVector("content-length-leading-zeros", resp(b"Content-Length: 002\r\n", b"ok"), R9110_86 + " (1*DIGIT)",
            REither(Reject(), Relay(body=b"ok", headers={"content-length": "2"}))),
    RVector("te-gzip-chunked", resp(b"Transfer-Encoding: gzip, chunked\r\n", b"2\r\nok\r\n0\r\n\r\n"),
            R9112_61 + " (a coding before the final chunked stays with the content)",
            REither(Reject(), Relay(body=b"ok", headers={"content-encoding": "gzip"}))),
    RVector("te-uppercase", resp(b"Transfer-Encoding: CHUNKED\r\n", b"2\r\nok\r\n0\r\n\r\n"),
            R9112_61 + " (transfer codings are case-insensitive)", REither(Reject(), Relay(body=b"ok"))),
    RVector("status-204-with-length", resp(b"Content-Length: 5\r\n", status=b"HTTP/1.1 204 No Content"),
            R9110_153 + "; " + HAP_BODYLESS + "; " + LLR_CONN + " (HTTP/1.1 with 204 status)",
            Relay(status=204, body=b"", absent=("content-length", "transfer-encoding"))),
    RVector("status-304-with-length", resp(b"Content-Length: 10\r\nETag: \"x\"\r\n",
                                           status=b"HTTP/1.1 304 Not Modified"),
            R9110_153 + "; " + HAP_BODYLESS, Relay(status=304, body=b"", absent=("transfer-encoding",))),
    RVector("head-with-length", resp(b"Content-Length: 10\r\n"), R9110_98 + "; " + HAP_BODYLESS,
            Relay(body=b"", headers={"content-length": "10"}), method="HEAD"),
    RVector("head-with-chunked", resp(TE), R9110_98 + "; " + HAP_BODYLESS, Relay(body=b""), method="HEAD"),
    RVector("interim-100", b"HTTP/1.1 100 Continue\r\n\r\n" + cl(b"ok"), R9110_152, Relay(body=b"ok")),
    RVector("interim-103", b"HTTP/1.1 103 Early Hints\r\nLink: </s.css>; rel=preload\r\n\r\n" + cl(b"ok"),
            R9110_152 + "; RFC 8297 (103 Early Hints)", Relay(body=b"ok")),
    RVector("interim-102-twice", b"HTTP/1.1 102 Processing\r\n\r\nHTTP/1.1 102 Processing\r\n\r\n" + cl(b"ok"),
            R9110_152, Relay(body=b"ok")),
    RVector("status-unknown-299", cl(b"ok", status=b"HTTP/1.1 299 Whatever"), R9110_15 + " (unknown codes by class)",
            Relay(status=299, body=b"ok")),
    RVector("reason-empty", cl(b"ok", status=b"HTTP/1.1 200 "), R9112_4 + " (reason-phrase may be empty)",
            Relay(body=b"ok")),
    RVector("reason-missing-space", cl(b"ok", status=b"HTTP/1.1 200"), R9112_4 + " (SP before the reason is required)",
            REither(Reject(), Relay(body=b"ok"))),
    RVector("reason-obs-text", cl(b"ok", status=b"HTTP/1.1 200 Tr\xe8s bien"), R9112_4 + " (reason-phrase allows obs-text)",
            REither(Reject(), Relay(body=b"ok"))),
    RVector("reason-double-space", cl(b"ok", status=b"HTTP/1.1 200  OK"),
            LLR_INV + " (extra space between status code and reason)", REither(Reject(), Relay(body=b"ok"))),
    RVector("value-obs-text", cl(b"ok", b"X-Name: caf\xc3\xa9\r\n"), R9110_56 + " (obs-text is allowed in values)",
            REither(Reject(), Relay(body=b"ok", headers={"x-name": "caf\xc3\xa9"}))),
    RVector("cl-underscore-alias", cl(b"ok", b"Content_Length: 99\r\n"),
            "RFC 9110 §5.1 (field names are case-insensitive tokens; `_` is not `-`, but some intermediaries "
            "read it so)", Relay(body=b"ok", absent=("content_length",)),
            note="found by bench/fuzz.py: the alias was relayed beside ferryman's own framing header"),
    RVector("te-underscore-alias", resp(b"Transfer_Encoding: chunked\r\nContent-Length: 2\r\n", b"ok"),
            "RFC 9110 §5.1; RFC 9112 §6.3 (one framing header)", Relay(body=b"ok", absent=("transfer_encoding",)),
            note="found by bench/fuzz.py: the alias was relayed"),
    RVector("set-cookie-twice", cl(b"ok", b"Set-Cookie: a=1\r\nSet-Cookie: b=2\r\n"),
            "RFC 6265 §3 (Set-Cookie is never folded into one line)", Relay(body=b"ok")),

    # ---------------------------------------------------------------- bytes after the declared end
    RVector("bytes-after-length", cl(b"ok") + b"GARBAGE", KETTLE_RESP + "; " + R9112_93,
            Relay(body=b"ok", reuse=False), trailing=7),
    RVector("forged-after-length", cl(b"ok") + FORGED, KETTLE_RESP, Relay(body=b"ok", reuse=False),
            trailing=len(FORGED)),
    RVector("bytes-after-close-length", resp(b"Content-Length: 5\r\nConnection: close\r\n",
                                             b"2ad73" + b"1e3-4dcd-4f70-b871-0ad284b29ffc"),
            LLR_CONN + " (HTTP/1.1 with keep-alive disabled, content-length)", Relay(body=b"2ad73", reuse=False),
            trailing=31),
    RVector("bytes-after-last-chunk", resp(TE, b"2\r\nok\r\n0\r\n\r\n") + FORGED, KETTLE_RESP + "; " + R9112_71,
            Relay(body=b"ok", reuse=False), trailing=len(FORGED)),
    RVector("bytes-after-204", resp(b"", status=b"HTTP/1.1 204 No content") + b"HTTP/1.1 200 OK\r\n\r\n",
            LLR_CONN + " (HTTP/1.1 with 204 status); " + HAP_BODYLESS, Relay(status=204, body=b"", reuse=False),
            trailing=19),
    RVector("body-after-204-length", resp(b"Content-Length: 5\r\n", b"hello", status=b"HTTP/1.1 204 No Content"),
            R9110_153 + " (the 5 bytes are not its body)", Relay(status=204, body=b"", reuse=False), trailing=5),
    RVector("body-after-head-answer", resp(b"Content-Length: 5\r\n", b"hello"), R9110_98 + " (the bytes are not its body)",
            Relay(body=b"", reuse=False), method="HEAD", trailing=5),

    # ---------------------------------------------------------------- ambiguous framing: 502
    RVector("cl-te", resp(b"Content-Length: 2\r\n" + TE, b"2\r\nok\r\n0\r\n\r\n"), R9112_63, Reject()),
    RVector("te-cl", resp(TE + b"Content-Length: 5\r\n", b"2\r\nok\r\n0\r\n\r\n"), R9112_63, Reject()),
    RVector("cl-te-identity", resp(b"Content-Length: 2\r\nTransfer-Encoding: identity\r\n", b"ok"), R9112_63 + "; " + R9112_61,
            Reject()),
    RVector("cl-duplicate-different", resp(b"Content-Length: 2\r\nContent-Length: 3\r\n", b"ok!"), R9112_63, Reject()),
    RVector("cl-duplicate-same", resp(b"Content-Length: 2\r\nContent-Length: 2\r\n", b"ok"),
            R9112_63 + " (a proxy may merge identical values; ferryman refuses any repeat, as it does from clients)",
            Reject(), note="HAProxy merges identical values"),
    RVector("cl-list", resp(b"Content-Length: 2, 2\r\n", b"ok"), R9110_86 + "; " + R9112_63, Reject()),
    RVector("cl-list-different", resp(b"Content-Length: 2, 3\r\n", b"ok!"), R9112_63, Reject()),
    RVector("cl-empty", resp(b"Content-Length:\r\n", b"ok"), R9110_86, Reject()),
    RVector("cl-negative", resp(b"Content-Length: -2\r\n", b"ok"), R9110_86, Reject()),
    RVector("cl-plus", resp(b"Content-Length: +2\r\n", b"ok"), R9110_86, Reject()),
    RVector("cl-hex", resp(b"Content-Length: 0x2\r\n", b"ok"), R9110_86, Reject()),
    RVector("cl-inner-space", resp(b"Content-Length: 1 1\r\n", b"hello world"), R9110_86, Reject()),
    RVector("cl-overflow", resp(b"Content-Length: 100000000000000000000000\r\n", b"ok"),
            R9110_86 + " (recipients anticipate overflow)", Reject()),
    RVector("cl-space-before-colon", resp(b"Content-Length : 2\r\n", b"ok"), R9112_51, Reject()),
    RVector("cl-vertical-tab", resp(b"Content-Length: 2\x0b\r\n", b"ok"), R9110_56, Reject()),
    RVector("te-chunked-identity-lines", resp(TE + b"Transfer-Encoding: identity\r\n", b"World"),
            LLR_TE + " (multiple transfer-encoding where chunked is not the last one)", Reject()),
    RVector("te-chunked-deflate", resp(b"Transfer-Encoding: chunked, deflate\r\n", b"World"),
            LLR_TE + " (chunked before other transfer-encoding)", Reject()),
    RVector("te-chunkedchunked", resp(b"Transfer-Encoding: chunkedchunked\r\n", b"2\r\nOK\r\n0\r\n\r\n"),
            LLR_TE + " (chunkedchunked does not enable chunked)", Reject()),
    RVector("te-chunked-twice", resp(b"Transfer-Encoding: chunked, chunked\r\n", b"2\r\nok\r\n0\r\n\r\n"),
            R9112_61 + " (chunked MUST NOT be applied more than once)", Reject()),
    RVector("te-identity", resp(b"Transfer-Encoding: identity\r\n", b"ok"), R9112_61 + " (identity is not a coding)",
            Reject()),
    RVector("te-gzip-only", resp(b"Transfer-Encoding: gzip\r\n", b"ok"),
            R9112_63 + " (a final coding other than chunked: only a close could end it; ferryman refuses)", Reject()),
    RVector("te-space-before-colon", resp(b"Transfer-Encoding : chunked\r\n", b"2\r\nok\r\n0\r\n\r\n"), R9112_51,
            Reject()),
    RVector("te-obs-fold", resp(b"Transfer-Encoding:\r\n chunked\r\n", b"2\r\nok\r\n0\r\n\r\n"), R9112_52, Reject()),
    RVector("te-obs-fold-after", resp(b"Transfer-Encoding: chunked\r\n  abc\r\n", b"5\r\nWorld\r\n0\r\n\r\n"),
            LLR_TE + " (invalid OBS fold after chunked value)", Reject()),
    RVector("te-vertical-tab", resp(b"Transfer-Encoding: \x0bchunked\r\n", b"2\r\nok\r\n0\r\n\r\n"), R9110_56, Reject()),
    RVector("te-http10", resp(TE, b"2\r\nok\r\n0\r\n\r\n", status=b"HTTP/1.0 200 OK"), R9112_61, Reject()),
    RVector("te-leading-comma", resp(b"Transfer-Encoding: ,chunked\r\n", b"2\r\nok\r\n0\r\n\r\n"),
            R9112_61 + " (empty list elements are allowed: `,chunked` is chunked)",
            REither(Reject(), Relay(body=b"ok"))),

    # ---------------------------------------------------------------- bad chunks: the answer never completes
    RVector("chunk-size-trailing-space", resp(b"Content-Type: text/plain\r\n" + TE,
                                              b"25  \r\nThis is the data in the first chunk\r\n\r\n0  \r\n\r\n"),
            LLR_TE + " (trailing space on chunked body)", Reject("body")),
    RVector("chunk-size-words", resp(TE, b"2 erfrferferf\r\naa\r\n0 rrrr\r\n\r\n"),
            LLR_TE + " (no semicolon before chunk extensions)", Reject("body")),
    RVector("chunk-ext-empty", resp(TE, b"2;\r\naa\r\n0\r\n\r\n"), LLR_TE + " (no extension after semicolon)",
            Reject("body")),
    RVector("chunk-ext-unbalanced-quote", resp(TE, b'5;ilovew3="abc";somuchlove="def; ghi\r\nhello\r\n'
                                                   b"6;blahblah;blah\r\n world\r\n0\r\n\r\n"),
            LLR_TE + " (unbalanced chunk extensions quoting)", Reject("body")),
    RVector("chunk-negative", resp(TE, b"-2\r\nok\r\n0\r\n\r\n"), R9112_71, Reject("body")),
    RVector("chunk-0x", resp(TE, b"0x2\r\nok\r\n0\r\n\r\n"), R9112_71, Reject("body")),
    RVector("chunk-size-empty", resp(TE, b"\r\nok\r\n0\r\n\r\n"), R9112_71, Reject("body")),
    RVector("chunk-size-overflow", resp(TE, b"fffffffffffffffff2\r\nok\r\n0\r\n\r\n"),
            R9112_71 + " (recipients MUST anticipate overflow)", Reject("body")),
    RVector("chunk-data-too-long", resp(TE, b"1\r\nok\r\n0\r\n\r\n"), R9112_71, Reject("body")),
    RVector("chunk-data-no-crlf", resp(TE, b"5\r\nABCDE0\r\n\r\n"), R9112_71, Reject("body")),
    RVector("chunk-bare-lf", resp(TE, b"2\nok\n0\n\n"), R9112_71 + "; " + R9112_22, Reject("body")),
    RVector("chunk-bare-cr", resp(TE, b"2\rok\r\n0\r\n\r\n"), R9112_71 + "; " + R9112_22, Reject("body")),
    RVector("chunk-ext-bare-lf", resp(TE, b"2;a=b\nHTTP/1.1 200 OK\r\n\r\nok\r\n0\r\n\r\n"), R9112_71 + "; " + R9112_22,
            Reject("body")),
    RVector("chunk-trailer-obs-fold", resp(TE, b"2\r\nok\r\n0\r\nX-T: a\r\n b\r\n\r\n"), R9112_712 + "; " + R9112_52,
            REither(Reject("body"), Relay(body=b"ok"))),

    # ---------------------------------------------------------------- line endings, controls, field names
    RVector("lf-only", b"HTTP/1.1 200 OK\nContent-Length: 0\n\n", LLR_INV + " (only LFs present and no body)",
            Reject(), backend_closes=True),
    RVector("lf-only-body", b"HTTP/1.1 200 OK\nFoo: abc\nBar: def\n\nBODY\n", LLR_INV + " (only LFs present)",
            Reject(), backend_closes=True),
    RVector("lf-in-head", resp(b"X-A: 1\nContent-Length: 2\r\n", b"ok"), R9112_22, Reject()),
    RVector("bare-cr-after-status", b"HTTP/1.1 200 OK\rContent-Length: 0\r\n\r\n",
            LLR_INV + " (bare CR after response line)", Reject()),
    RVector("bare-cr-cr-after-status", b"HTTP/1.1 200 OK\r\rContent-Length: 4\r\n\r\nEvil",
            LLR_INV + " (bare CR followed by CR after response line)", Reject()),
    RVector("headers-separated-by-cr", resp(b"Foo: 1\rBar: 2\r\nContent-Length: 0\r\n"),
            LLR_INV + " (headers separated by CR)", Reject()),
    RVector("nul-in-value", cl(b"ok", b"X-Foo: a\x00b\r\n"), R9110_56, Reject()),
    RVector("nul-in-name", cl(b"ok", b"X-F\x00oo: a\r\n"), R9110_56, Reject()),
    RVector("ctl-in-value", cl(b"ok", b"X-Foo: a\x01b\r\n"), R9110_56, Reject()),
    RVector("del-in-value", cl(b"ok", b"X-Foo: a\x7fb\r\n"), R9110_56 + " (DEL is not VCHAR)", Reject()),
    RVector("space-before-colon", cl(b"ok", b"X-Bad : x\r\n"), R9112_51, Reject()),
    RVector("tab-before-colon", cl(b"ok", b"X-Bad\t: x\r\n"), R9112_51, Reject()),
    RVector("obs-fold", cl(b"ok", b"X-Folded: a\r\n b\r\n"), R9112_52, Reject()),
    RVector("obs-fold-tab", cl(b"ok", b"X-Folded: a\r\n\tb\r\n"), R9112_52 + "; " + LLR_SAMPLE, Reject()),
    RVector("space-after-status-line", b"HTTP/1.1 200 OK\r\n Content-Length: 2\r\n\r\nok",
            LLR_INV + " (invalid space after start line)", Reject()),
    RVector("empty-name", cl(b"ok", b": x\r\n"), R9110_56, Reject()),
    RVector("bad-token-in-name", cl(b"ok", b"Fo@: x\r\n"), R9110_56, Reject()),
    RVector("line-without-colon", cl(b"ok", b"NoColonHere\r\n"), "RFC 9112 §5 (field-line = field-name \":\" ...)",
            Reject()),

    # ---------------------------------------------------------------- status line and version
    RVector("version-htp", cl(b"ok", status=b"HTP/1.1 200 OK"), LLR_INV + " (incomplete HTTP protocol)", Reject()),
    RVector("version-major-two-digits", cl(b"ok", status=b"HTTP/01.1 200 OK"),
            LLR_INV + " (extra digit in HTTP major version)", Reject()),
    RVector("version-major-11", cl(b"ok", status=b"HTTP/11.1 200 OK"),
            LLR_INV + " (extra digit in HTTP major version #2)", Reject()),
    RVector("version-minor-two-digits", cl(b"ok", status=b"HTTP/1.01 200 OK"),
            LLR_INV + " (extra digit in HTTP minor version)", Reject()),
    RVector("version-tab", cl(b"ok", status=b"HTTP/1.1\t200 OK"), LLR_INV + " (tab after HTTP version)", Reject()),
    RVector("version-5-6", cl(b"ok", status=b"HTTP/5.6 200 OK"), LLR_INV + " (invalid HTTP version)", Reject()),
    RVector("version-2-0", cl(b"ok", status=b"HTTP/2.0 200 OK"), R9112_23 + " (HTTP/2 is not spoken over this framing)",
            Reject()),
    RVector("version-0-9", cl(b"ok", status=b"HTTP/0.9 200 OK"), R9112_23 + " (HTTP/0.9 has no status line)",
            Reject()),
    RVector("version-1-2", cl(b"ok", status=b"HTTP/1.2 200 OK"), R9112_23 + "; RFC 9110 §2.5", Reject()),
    RVector("version-lowercase", cl(b"ok", status=b"http/1.1 200 OK"), R9112_23 + " (HTTP-name is case-sensitive)",
            Reject()),
    RVector("leading-cr-interim", b"\rHTTP/1.1 100 Continue\r\n\r\n" + cl(b"ok"),
            R9112_4 + "; " + R9112_22 + "; " + LLR_INV + " (CR before response); found by bench/fuzz.py", Reject(),
            note="regression: in one read the 100 was taken for the final answer"),
    RVector("leading-crlf", b"\r\n" + cl(b"ok"), R9112_4 + " (a response starts with its status line; the empty "
            "lines allowed before a request line are not allowed here)", Reject()),
    RVector("http09-body-only", b"hello, this is HTTP/0.9\r\n", R9112_23 + " (no status line at all)", Reject(),
            backend_closes=True),
    RVector("status-double-space", cl(b"ok", status=b"HTTP/1.1  200 OK"),
            LLR_INV + " (extra space between HTTP version and status code)", Reject()),
    RVector("status-one-digit", cl(b"ok", status=b"HTTP/1.1 2 OK"), LLR_INV + " (one-digit status code)", Reject()),
    RVector("status-four-digits", cl(b"ok", status=b"HTTP/1.1 2000 OK"), R9112_4 + " (status-code = 3DIGIT)", Reject()),
    RVector("status-letters", cl(b"ok", status=b"HTTP/1.1 2OO OK"), R9112_4, Reject()),
    RVector("status-leading-space", cl(b"ok", status=b" HTTP/1.1 200 OK"), R9112_4, Reject()),
    RVector("status-099", b"HTTP/1.1 099 Low\r\n\r\n", R9110_15 + " (valid codes are 100..599)", Reject(),
            note="regression: was relayed as a bodiless answer"),
    RVector("status-000", b"HTTP/1.1 000 Zero\r\nContent-Length: 2\r\n\r\nok", R9110_15 + " (valid codes are 100..599)",
            Reject(), note="regression: was relayed"),
    RVector("status-099-then-final", b"HTTP/1.1 099 Low\r\n\r\n" + cl(b"ok"), R9110_15 + " (not an interim answer)",
            Reject()),
    RVector("status-600", cl(b"ok", status=b"HTTP/1.1 600 High"), R9110_15 + " (valid codes are 100..599)", Reject(),
            note="regression: was relayed"),
    RVector("unsolicited-101", resp(b"Connection: upgrade\r\nUpgrade: h2c\r\nContent-Length: 4\r\n", b"body",
                                    status=b"HTTP/1.1 101 Switching Protocols"),
            R9110_1522 + "; " + LLR_CONN + " (HTTP 101 response with Upgrade and Content-Length header)", Reject()),
    RVector("unsolicited-101-chunked", resp(b"Connection: upgrade\r\nUpgrade: h2c\r\n" + TE,
                                            b"2\r\nbo\r\n2\r\ndy\r\n0\r\n\r\nproto",
                                            status=b"HTTP/1.1 101 Switching Protocols"),
            R9110_1522 + "; " + LLR_CONN + " (HTTP 101 response with Upgrade and Transfer-Encoding header)", Reject()),

    # ---------------------------------------------------------------- sizes, truncation
    RVector("head-too-large", cl(b"ok", b"".join(b"X-Big%d: %s\r\n" % (i, b"v" * 4000) for i in range(20))),
            "RFC 9110 §15.5.15 by analogy; ferryman max_response_head (a bounded head from the backend too)", Reject()),
    RVector("cut-in-head", b"HTTP/1.1 200 OK\r\nContent-Len", HAP_TRUNC + "; " + R9112_8, Reject(),
            backend_closes=True),
    RVector("cut-in-length-body", resp(b"Content-Length: 10\r\n", b"hello"), HAP_TRUNC + "; " + R9112_8,
            Relay(body=b"hello", truncated=True, reuse=False), backend_closes=True),
    RVector("cut-in-chunked-body", resp(TE, b"5\r\nhello\r\n"), HAP_TRUNC + "; " + R9112_8,
            Relay(body=b"hello", truncated=True, reuse=False), backend_closes=True),
    RVector("cut-before-last-chunk-crlf", resp(TE, b"2\r\nok\r\n0\r\n"), R9112_8 + "; " + R9112_712,
            Relay(body=b"ok", truncated=True, reuse=False), backend_closes=True),
]


# --------------------------------------------------------------------------------------------------
# The table in docs/request-safety.md

DOC = Path(__file__).resolve().parents[2] / "docs" / "request-safety.md"
BEGIN = "<!-- response-corpus:begin (generated by `python -m tests.integration.response_vectors`; do not edit by hand) -->"
END = "<!-- response-corpus:end -->"


def _md(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _show(raw: bytes, limit: int = 160) -> str:
    shown = repr(raw)[2:-1]
    if len(shown) > limit:
        shown = shown[:limit] + f"… ({len(raw)} bytes)"
    return "`" + shown.replace("`", "'").replace("|", "\\|") + "`"


def render_table() -> str:
    lines = [BEGIN, "", f"{len(RESPONSE_VECTORS)} cases.", "",
             "| id | answer to | backend sends (start) | expected at the client | source |",
             "|---|---|---|---|---|"]
    for v in RESPONSE_VECTORS:
        expected = v.expect.describe()
        if v.note:
            expected += f" — {v.note}"
        lines.append(f"| `{v.id}` | {v.method} | {_show(v.raw)} | {_md(expected)} | {_md(v.source)} |")
    lines += ["", END]
    return "\n".join(lines)


def rewrite_doc(path: Path = DOC) -> bool:
    """Replace (or append) the response table in the doc; return True when the file changed."""
    text = path.read_text()
    if BEGIN in text:
        start, end = text.index(BEGIN), text.index(END) + len(END)
        new = text[:start] + render_table() + text[end:]
    else:
        new = text.rstrip("\n") + "\n\n## The response corpus\n\nWhat a backend may send and what the client " \
              "then sees. A faulty answer is a 502 and that backend connection is closed; a valid one is " \
              "written afresh.\n\n" + render_table() + "\n"
    if new != text:
        path.write_text(new)
        return True
    return False


def _check_unique() -> None:
    seen: set[str] = set()
    for v in RESPONSE_VECTORS:
        if v.id in seen:
            raise ValueError(f"duplicate response vector id {v.id}")
        seen.add(v.id)


_check_unique()

if __name__ == "__main__":
    print("docs/request-safety.md", "updated" if rewrite_doc() else "already up to date")
