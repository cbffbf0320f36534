"""The hostile / malformed request corpus, as data.

Every case is raw client bytes, where they come from (an RFC section or a published test suite or
write-up: every case names one), the invariant of docs/request-safety.md (1-6) it
exercises, and what ferryman must do with it:

- ``Refuse(statuses)``: ferryman answers with a status in ``statuses``, closes the client connection
  afterwards, and the backend receives NOTHING of this request (not a byte).
- ``Forward(...)``: the backend receives exactly ``requests`` request(s), each with a canonical head (CRLF
  only, request line ``METHOD SP target SP HTTP/1.1``, token names, one Host = the member's authority, at
  most one framing header counting ``_`` aliases, no hop-by-hop header, ferryman's own forwarded headers)
  and a normalised target; optionally the exact target(s), header values, absent headers and body.
- ``Either(refuse, forward)``: both are acceptable (the request is valid but odd, or HAProxy forwards it and
  refusing is allowed by "never looser than HAProxy"); whichever ferryman does is checked in full.

Placeholders, substituted by the test before sending / comparing:
``{TRAP}`` the authority (``127.0.0.1:PORT``) of a listener that is NOT a configured member (nothing may
ever connect to it), ``{MEMBER}`` the configured member's authority, ``{PORT}`` ferryman's listener port.

The test configuration (tests/integration/test_hostile.py): route ``/webapps`` -> member
``http://{MEMBER}/webapps``, and a catch-all route ``/`` -> member ``http://{MEMBER}/catchall``.

``python -m tests.integration.vectors`` rewrites the corpus table in docs/request-safety.md.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

# --------------------------------------------------------------------------------------------------
# Expectations


@dataclass(frozen=True)
class Refuse:
    statuses: frozenset[int]
    #: where the fault lies: "head" (request line / header block), "body" (chunked framing) or "path" (a
    #: well-framed request whose target is refused). Nothing may reach the backend in every case.
    stage: str = "head"
    #: the client connection must be closed after the answer. Not required for a path refusal: the request
    #: was well framed, nothing of it is left unread (ferryman sends `Connection: close` only when the
    #: connection must close; Apache keeps the connection after a 404).
    close: bool = True

    def describe(self) -> str:
        return ("refuse " + "/".join(str(s) for s in sorted(self.statuses))
                + (", close" if self.close else "") + ", backend gets nothing")


@dataclass(frozen=True)
class Forward:
    #: exact target expected at the backend, one per request (None: any normalised target)
    targets: tuple[str, ...] | None = None
    requests: int = 1
    #: the statuses the client must see, in order, one set per final response
    responses: tuple[frozenset[int], ...] = (frozenset({200}),)
    #: True: the client connection must be closed after the last response
    closed: bool = False
    #: exact header values expected at the backend (lower-case names; first request)
    headers: dict[str, str] = field(default_factory=dict)
    #: header names that must not reach the backend, compared by their WSGI spelling (case, `_` = `-`)
    absent: tuple[str, ...] = ()
    #: substrings that must appear nowhere in any forwarded head (spoofed values)
    not_in_head: tuple[str, ...] = ()
    #: exact body the (first) backend request must carry
    body: bytes | None = None
    #: a later pipelined request is refused for its body's framing: when the bytes arrive in pieces, its
    #: head may already have been dispatched (a streaming proxy cannot un-send it), but never its end
    later_refused_in_body: bool = False

    def describe(self) -> str:
        parts = []
        if self.requests != 1:
            parts.append(f"{self.requests} requests")
        if self.targets:
            parts.append("target " + ", ".join(f"`{t}`" for t in self.targets))
        if self.absent:
            parts.append("without " + ", ".join(self.absent))
        for k, v in self.headers.items():
            parts.append(f"{k}: {v}")
        if self.body is not None:
            parts.append(f"body {self.body!r}")
        if len(self.responses) > 1 or self.responses[0] != frozenset({200}):
            parts.append("client sees " + " then ".join("/".join(map(str, sorted(r))) for r in self.responses))
        if self.closed:
            parts.append("then close")
        return "forward" + (" (" + "; ".join(parts) + ")" if parts else "")


@dataclass(frozen=True)
class Either:
    refuse: Refuse
    forward: Forward

    def describe(self) -> str:
        return self.refuse.describe() + " **or** " + self.forward.describe()


Expectation = Refuse | Forward | Either


@dataclass(frozen=True)
class Vector:
    id: str
    raw: bytes
    source: str
    invariant: int
    expect: Expectation
    note: str = ""


def refuse(*statuses: int, stage: str = "head") -> Refuse:
    return Refuse(frozenset(statuses or (400,)), stage)


def refuse_path(*statuses: int) -> Refuse:
    """A refused target: 400 or 404, never forwarded, and the connection may stay open."""
    return Refuse(frozenset(statuses or (400, 404)), "path", close=False)


def either(refusal: Refuse, forward: Forward) -> Either:
    return Either(refusal, forward)


# --------------------------------------------------------------------------------------------------
# Building requests

HOST = b"Host: test.local\r\n"


def req(method: bytes = b"GET", target: bytes = b"/webapps/x", headers: bytes = b"", body: bytes = b"",
        version: bytes = b"HTTP/1.1", host: bytes = HOST) -> bytes:
    """A request from raw pieces: `headers` is a raw header block (each line ending in CRLF)."""
    return method + b" " + target + b" " + version + b"\r\n" + host + headers + b"\r\n" + body


def chunked_post(body: bytes, target: bytes = b"/webapps/upload", te: bytes = b"Transfer-Encoding: chunked\r\n",
                 extra: bytes = b"") -> bytes:
    return req(b"POST", target, te + extra, body)


# Sources (RFC sections and files of published suites; each was read for this corpus).
R9112_22 = "RFC 9112 §2.2 (message parsing: CRLF, bare CR, whitespace)"
R9112_23 = "RFC 9112 §2.3 (HTTP-version = HTTP-name \"/\" DIGIT \".\" DIGIT)"
R9112_3 = "RFC 9112 §3 (request-line = method SP request-target SP HTTP-version)"
R9112_32 = "RFC 9112 §3.2 (request-target forms; Host MUST be sent, 400 if missing/duplicate/invalid)"
R9112_322 = "RFC 9112 §3.2.2 (absolute-form)"
R9112_5 = "RFC 9112 §5 (field-line = field-name \":\" OWS field-value OWS)"
R9112_51 = "RFC 9112 §5.1 (no whitespace between field name and colon: MUST reject with 400)"
R9112_52 = "RFC 9112 §5.2 (obsolete line folding)"
R9112_61 = "RFC 9112 §6.1 (Transfer-Encoding; chunked final and once; TE in HTTP/1.0)"
R9112_63 = "RFC 9112 §6.3 (message body length; CL+TE; invalid Content-Length)"
R9112_71 = "RFC 9112 §7.1 (chunked transfer coding: chunk-size = 1*HEXDIG, chunk-ext, CRLF)"
R9112_712 = "RFC 9112 §7.1.2 (chunked trailer section)"
R9112_96 = "RFC 9112 §9.6 (Connection: close; no further requests processed)"
R9112_PIPE = "RFC 9112 §9.3.2 (pipelining: requests answered in order)"
R9110_56 = "RFC 9110 §5.5/§5.6.2 (field values: no CR, LF, NUL; field names are tokens)"
R9110_76 = "RFC 9110 §7.6.1 (Connection options and hop-by-hop fields)"
R9110_762 = "RFC 9110 §7.6.1 / §11.7.2 (Proxy-Authorization is hop-by-hop)"
R9110_86 = "RFC 9110 §8.6 (Content-Length = 1*DIGIT)"
R9110_253 = "RFC 9110 §2.5 (HTTP/1.x minor versions) and §15.6.6 (505 HTTP Version Not Supported)"
R3986_524 = "RFC 3986 §5.2.4 (remove dot segments)"
CLAR_PATHS = ("RFC 3986 §3.3 (path) and §2.4 (when to decode); "
              "observed on Apache 2.4 mod_proxy (AllowEncodedSlashes Off)")
HAP_TE = "haproxy reg-tests/http-messaging/http_transfer_encoding.vtc"
HAP_H1 = "haproxy reg-tests/http-messaging/h1_to_h1.vtc"
HAP_HOST = "haproxy reg-tests/http-messaging/h1_host_normalization.vtc"
HAP_TARGET = "haproxy reg-tests/http-messaging/h1_request_target_validation.vtc"
HAP_FRAG = "haproxy reg-tests/http-messaging/h1_authority_fragment_char.vtc (raw '#' rejected by default)"
HAP_HOSTCOMMIT = "haproxy commit 531b83e (reject requests whose authority does not match Host)"
LL_TE = "llhttp test/request/transfer-encoding.md"
LL_CL = "llhttp test/request/content-length.md"
LL_INV = "llhttp test/request/invalid.md"
LL_SAMPLE = "llhttp test/request/sample.md"
LL_CONN = "llhttp test/request/connection.md"
KETTLE = "James Kettle, \"HTTP Desync Attacks: Request Smuggling Reborn\" (DEF CON 27 / PortSwigger 2019), TE obfuscations"
DAVISON = "Nathan Davison, \"Abusing HTTP hop-by-hop request headers\" (2019)"
UNDERSCORE = ("eventlet PR #959 / werkzeug PR #2622 / apache httpd PR #558 (underscore aliases: "
              "WSGI maps `_` and `-` to one variable)")
PROXYSAFETY4 = ("RFC 7239 §8.1 (a proxy must not relay a client's claims about itself); PEP 3333 (headers become "
                "HTTP_* environ keys, so `-` and `_` spellings collide)")
H2C = "RFC 9110 §7.8 (Upgrade) and RFC 9113 §3.1 (h2c upgrade) via Connection-named HTTP2-Settings"
TOMCAT = ("docs.rs wafrift-encoding path_norm (\"Tomcat semicolon segment /foo/..;/admin\"); "
          "Tomcat CoyoteAdapter parsePathParameters")
HTTPOXY = "httpoxy (CVE-2016-5385): a `Proxy` request header becomes HTTP_PROXY in CGI/WSGI environs"
ENGINE_LIMITS = ("RFC 9110 §15.5.15 (414 URI Too Long); RFC 6585 §5 (431 Request Header Fields Too Large); "
                 "Apache core LimitRequestLine / LimitRequestFields / LimitRequestFieldSize")



def _cl(body: bytes) -> bytes:
    return b"Content-Length: %d\r\n" % len(body)


SMUGGLED = b"GET /webapps/smuggled HTTP/1.1\r\nHost: test.local\r\n\r\n"

# --------------------------------------------------------------------------------------------------
# The corpus

VECTORS: list[Vector] = [
    # ---------------------------------------------------------------- framing: CL and TE together
    Vector("cl-te", chunked_post(b"0\r\n\r\n" + SMUGGLED, extra=_cl(b"0\r\n\r\n" + SMUGGLED)),
           R9112_63, 2, refuse(400, 501), "CL.TE: the classic smuggle, body hides a second request"),
    Vector("te-cl", req(b"POST", b"/webapps/upload",
                        b"Content-Length: 4\r\nTransfer-Encoding: chunked\r\n", b"5c\r\nGPOST / HTTP/1.1\r\n\r\n0\r\n\r\n"),
           KETTLE, 2, refuse(400, 501), "TE.CL order"),
    Vector("cl-te-haproxy", req(b"POST", b"/webapps/upload",
                                b"Transfer-Encoding: chunked\r\nContent-Length: 31\r\n",
                                b"0\r\n\r\nGET /smuggled HTTP/1.1\r\n\r\n"),
           HAP_TE + " (client c1)", 2, refuse(400, 501),
           "HAProxy forwards chunked and closes; ferryman refuses (invariant 2)"),
    Vector("cl-te-identity", req(b"PUT", b"/webapps/url", b"Content-Length: 1\r\nTransfer-Encoding: identity\r\n", b"x"),
           LL_CL, 2, refuse(400, 501)),
    Vector("cl-te-expect-continue", req(b"POST", b"/webapps/x", b"Expect: 100-continue\r\nContent-Length: 5\r\n"
                                        b"Transfer-Encoding: chunked\r\n"),
           R9112_63 + "; RFC 9110 §10.1.1 (no 100 Continue for a request that will be refused)", 2, refuse(400, 501)),
    Vector("cl-te-empty-values", req(b"POST", b"/webapps/x", b"Content-Length: 10\r\nTransfer-Encoding:\r\n"
                                     b"Transfer-Encoding:\r\nTransfer-Encoding:\r\n", b"2\r\nAA\r\n0\r\n\r\n"),
           LL_TE + " (empty Transfer-Encoding and Content-Length)", 2, refuse(400, 501)),
    Vector("cl-te-xchunked", req(b"POST", b"/webapps/x", b"Transfer-Encoding: xchunked\r\nContent-Length: 5\r\n", b"hello"),
           KETTLE, 2, refuse(400, 501)),
    Vector("cl-te-space-before-colon", req(b"POST", b"/webapps/x",
                                           b"Content-Length: 5\r\nTransfer-Encoding : chunked\r\n", b"0\r\n\r\n"),
           KETTLE + "; " + R9112_51, 2, refuse(400, 501)),
    Vector("cl-te-tab-value", req(b"POST", b"/webapps/x", b"Content-Length: 5\r\nTransfer-Encoding:\tchunked\r\n",
                                  b"0\r\n\r\n"),
           KETTLE, 2, refuse(400, 501)),
    Vector("cl-te-leading-space-line", req(b"POST", b"/webapps/x",
                                           b"Content-Length: 5\r\nX: y\r\n Transfer-Encoding: chunked\r\n", b"0\r\n\r\n"),
           KETTLE + "; " + R9112_52, 2, refuse(400, 501), "the TE line is an obs-fold continuation of X"),
    Vector("cl-te-bare-lf", req(b"POST", b"/webapps/x", b"Content-Length: 5\r\nX: X\nTransfer-Encoding: chunked\r\n",
                                b"0\r\n\r\n"),
           KETTLE + "; " + LL_INV + " (headers separated by LF)", 2, refuse(400, 501)),
    Vector("cl-te-name-fold", req(b"POST", b"/webapps/x", b"Content-Length: 5\r\nTransfer-Encoding\r\n : chunked\r\n",
                                  b"0\r\n\r\n"),
           KETTLE + "; " + LL_INV + " (illegal header field name line folding)", 2, refuse(400, 501)),
    Vector("cl-te-underscore", req(b"POST", b"/webapps/x", b"Content-Length: 5\r\nTransfer_Encoding: chunked\r\n",
                                   b"hello"),
           UNDERSCORE + "; " + KETTLE, 1,
           either(refuse(400, 501), Forward(absent=("transfer-encoding",), body=b"hello",
                                            headers={"content-length": "5"})),
           "Transfer_Encoding is HTTP_TRANSFER_ENCODING to WSGI: forwarding it beside Content-Length gives the "
           "app two framing headers"),
    Vector("cl-underscore-alias", req(b"POST", b"/webapps/x", b"Content_Length: 5\r\n", b""),
           UNDERSCORE, 1,
           either(refuse(400, 411), Forward(body=b"")),
           "Content_Length must not reach the app beside ferryman's own content-length"),

    # ---------------------------------------------------------------- framing: Content-Length
    Vector("cl-duplicate-same", req(b"POST", b"/webapps/x", b"Content-Length: 5\r\nContent-Length: 5\r\n", b"hello"),
           R9112_63 + " (duplicate CL)", 2, refuse(400)),
    Vector("cl-duplicate-different", req(b"POST", b"/webapps/x", b"Content-Length: 1\r\nContent-Length: 2\r\n", b"ab"),
           LL_CL + " (duplicate Content-Length); observed on Apache 2.4 (two different Content-Length: 400)", 2,
           refuse(400)),
    Vector("cl-comma-list-same", req(b"POST", b"/webapps/x", b"Content-Length: 5, 5\r\n", b"hello"),
           R9110_86 + "; " + R9112_63, 2, refuse(400),
           "HAProxy merges identical list members; ferryman refuses (allowed)"),
    Vector("cl-comma-list-different", req(b"POST", b"/webapps/x", b"Content-Length: 5, 6\r\n", b"hello!"),
           R9112_63, 2, refuse(400)),
    Vector("cl-trailing-comma", req(b"POST", b"/webapps/x", b"Content-Length: 0,\r\n"),
           HAP_H1 + " (client c4h1)", 2, refuse(400)),
    Vector("cl-empty", req(b"POST", b"/webapps/x", b"Content-Length:\r\n"),
           HAP_H1 + " (client c5h1); " + LL_CL + " (empty Content-Length)", 2, refuse(400)),
    Vector("cl-plus-sign", req(b"POST", b"/webapps/x", b"Content-Length: +5\r\n", b"hello"),
           R9110_86, 2, refuse(400)),
    Vector("cl-negative", req(b"POST", b"/webapps/x", b"Content-Length: -5\r\n", b"hello"),
           R9110_86, 2, refuse(400)),
    Vector("cl-hex", req(b"POST", b"/webapps/x", b"Content-Length: 0x5\r\n", b"hello"),
           R9110_86, 2, refuse(400)),
    Vector("cl-inner-space", req(b"POST", b"/webapps/x", b"Content-Length: 4 2\r\n", b"x" * 42),
           LL_CL + " (spaces in Content-Length #2)", 2, refuse(400)),
    Vector("cl-decimal-point", req(b"POST", b"/webapps/x", b"Content-Length: 5.0\r\n", b"hello"),
           R9110_86, 2, refuse(400)),
    Vector("cl-overflow", req(b"PUT", b"/webapps/url", b"Content-Length: 1000000000000000000000\r\n"),
           LL_CL + " (Content-Length overflow)", 2, refuse(400, 413)),
    Vector("cl-vertical-tab", req(b"POST", b"/webapps/x", b"Content-Length: 5\x0b\r\n", b"hello"),
           R9110_56 + "; " + R9110_86, 2, refuse(400)),
    Vector("cl-space-before-colon", req(b"PUT", b"/webapps/url", b"Content-Length : 4\r\n", b"abcd"),
           LL_CL + " (invalid whitespace token with Content-Length); " + R9112_51, 2, refuse(400)),
    Vector("cl-cr-instead-of-dash", req(b"PUT", b"/webapps/url", b"Content\rLength: 4\r\n", b"abcd"),
           LL_CL + " (Content-Length with CR instead of dash)", 2, refuse(400)),
    Vector("cl-leading-zeros", req(b"PUT", b"/webapps/url", b"Content-Length: 003\r\n", b"abc"),
           LL_CL + " (Content-Length with zeroes)", 1,
           either(refuse(400), Forward(targets=("/webapps/url",), headers={"content-length": "3"}, body=b"abc")),
           "valid 1*DIGIT: if forwarded, the length is rewritten canonically"),
    Vector("cl-mixed-case-name", req(b"POST", b"/webapps/x", b"conTENT-Length: 5\r\n", b"HELLO"),
           LL_CL + " (funky Content-Length with body)", 1,
           Forward(headers={"content-length": "5"}, body=b"HELLO")),
    Vector("cl-surrounding-ows", req(b"POST", b"/webapps/x", b"Content-Length:  5 \r\n", b"hello"),
           LL_CL + " (spaces in Content-Length, surrounding)", 1,
           either(refuse(400), Forward(headers={"content-length": "5"}, body=b"hello"))),

    # ---------------------------------------------------------------- framing: Transfer-Encoding
    Vector("te-chunked-chunked", chunked_post(b"0\r\n\r\n", te=b"Transfer-Encoding: chunked, chunked\r\n"),
           HAP_TE + " (client c6: 400)", 2, refuse(400, 501)),
    Vector("te-chunked-gzip-chunked", chunked_post(b"0\r\n\r\n", te=b"Transfer-Encoding: chunked, gzip, chunked\r\n"),
           HAP_TE + " (client c7: 400)", 2, refuse(400, 501)),
    Vector("te-chunked-gzip", chunked_post(b"0\r\n\r\n", te=b"Transfer-Encoding: chunked, gzip\r\n"),
           HAP_TE + " (client c8: 400)", 2, refuse(400, 501)),
    Vector("te-gzip", req(b"POST", b"/webapps/upload", b"Transfer-Encoding: gzip\r\n", b"abc"),
           HAP_TE + " (client c9: 400)", 2, refuse(400, 501)),
    Vector("te-gzip-chunked", chunked_post(b"0\r\n\r\n", te=b"Transfer-Encoding: gzip, chunked\r\n"),
           HAP_TE + " (client c10: 422); ferryman refuses `gzip, chunked`", 2, refuse(400, 501)),
    Vector("te-deflate-then-chunked-lines", chunked_post(b"5\r\nWorld\r\n0\r\n\r\n",
                                                         te=b"Transfer-Encoding: deflate\r\nTransfer-Encoding: chunked\r\n"),
           LL_TE + " (chunked as last transfer-encoding, multiple headers)", 2, refuse(400, 501)),
    Vector("te-chunked-then-deflate-lines", chunked_post(b"World",
                                                         te=b"Transfer-Encoding: chunked\r\nTransfer-Encoding: deflate\r\n"),
           LL_TE + " (chunked and duplicate transfer-encoding)", 2, refuse(400, 501)),
    Vector("te-chunked-twice-lines", chunked_post(b"0\r\n\r\n",
                                                  te=b"Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n"),
           R9112_61 + " (chunked MUST NOT be applied more than once)", 2, refuse(400, 501)),
    Vector("te-leading-comma", chunked_post(b"0\r\n\r\n", te=b"Transfer-Encoding: ,chunked\r\n"),
           KETTLE + " (measured: httptools 0.9 accepts `,chunked` as no body)", 2, refuse(400, 501)),
    Vector("te-space-comma", chunked_post(b"0\r\n\r\n", te=b"Transfer-Encoding:  ,chunked\r\n"),
           KETTLE + " (measured: httptools 0.9 accepts `,chunked` as no body)", 2, refuse(400, 501)),
    Vector("te-chunkedchunked", chunked_post(b"5\r\nWorld\r\n0\r\n\r\n", te=b"Transfer-Encoding: chunkedchunked\r\n"),
           LL_TE + " (chunkedchunked)", 2, refuse(400, 501)),
    Vector("te-pigeons", req(b"PUT", b"/webapps/url", b"Transfer-Encoding: pigeons\r\n"),
           LL_TE + " (ignoring pigeons)", 2, refuse(400, 501)),
    Vector("te-identity", req(b"POST", b"/webapps/x", b"Transfer-Encoding: identity\r\n", b""),
           R9112_61 + " (identity was removed from the registry)", 2, refuse(400, 501)),
    Vector("te-quoted", chunked_post(b"0\r\n\r\n", te=b"Transfer-Encoding: \"chunked\"\r\n"),
           KETTLE, 2, refuse(400, 501)),
    Vector("te-vertical-tab", chunked_post(b"0\r\n\r\n", te=b"Transfer-Encoding: chunked\x0b\r\n"),
           KETTLE + "; " + R9110_56, 2, refuse(400, 501)),
    Vector("te-form-feed-prefix", chunked_post(b"0\r\n\r\n", te=b"Transfer-Encoding: \x0cchunked\r\n"),
           KETTLE + "; " + R9110_56, 2, refuse(400, 501)),
    Vector("te-space-before-colon", chunked_post(b"0\r\n\r\n", te=b"Transfer-Encoding : chunked\r\n"),
           KETTLE + "; " + R9112_51, 2, refuse(400, 501)),
    Vector("te-underscore-name", chunked_post(b"5\r\nhello\r\n0\r\n\r\n", te=b"Transfer_Encoding: chunked\r\n"),
           KETTLE + "; " + UNDERSCORE, 2,
           either(refuse(400, 411, 501), Forward(absent=("transfer-encoding",), body=b"", closed=True)),
           "not the framing header to ferryman; if forwarded, the alias must not reach the app (the chunked "
           "bytes are then the start of a next, malformed request and are refused or dropped)"),
    Vector("te-obs-fold", chunked_post(b"0\r\n\r\n", te=b"Transfer-Encoding:\r\n chunked\r\n"),
           KETTLE + "; " + R9112_52, 2, refuse(400, 501)),
    Vector("te-obs-fold-after-value", chunked_post(b"5\r\nWorld\r\n0\r\n\r\n", te=b"Transfer-Encoding: chunked\r\n  abc\r\n"),
           LL_TE + " (invalid OBS fold after chunked value)", 2, refuse(400, 501)),
    Vector("te-http10", req(b"POST", b"/webapps/x", b"Transfer-Encoding: chunked\r\n", b"0\r\n\r\n", version=b"HTTP/1.0"),
           R9112_61 + "; " + HAP_TE + " (client c2)", 2, refuse(400, 501),
           "HAProxy forwards and closes; invariant 2 requires a refusal"),
    Vector("te-tab-value", chunked_post(b"5\r\nhello\r\n0\r\n\r\n", te=b"Transfer-Encoding:\tchunked\r\n"),
           KETTLE + "; " + R9112_5 + " (HTAB is OWS)", 1,
           either(refuse(400, 501), Forward(headers={"transfer-encoding": "chunked"}, body=b"hello")),
           "valid OWS: if forwarded, the framing header is rewritten canonically"),
    Vector("te-uppercase", chunked_post(b"5\r\nhello\r\n0\r\n\r\n", te=b"Transfer-Encoding: CHUNKED\r\n"),
           R9112_61 + " (transfer codings are case-insensitive)", 1,
           either(refuse(400, 501), Forward(headers={"transfer-encoding": "chunked"}, body=b"hello"))),

    # ---------------------------------------------------------------- framing: chunk sizes and lines
    Vector("chunk-negative", chunked_post(b"-5\r\nhello\r\n0\r\n\r\n"),
           R9112_71, 2, refuse(400, stage="body")),
    Vector("chunk-size-overflow", chunked_post(b"fffffffffffffffff0\r\nhello\r\n0\r\n\r\n"),
           R9112_71 + " (recipients MUST anticipate overflow)", 2, refuse(400, 413, stage="body")),
    Vector("chunk-size-0x", chunked_post(b"0x5\r\nhello\r\n0\r\n\r\n"),
           R9112_71, 2, refuse(400, stage="body")),
    Vector("chunk-size-plus", chunked_post(b"+5\r\nhello\r\n0\r\n\r\n"),
           R9112_71, 2, refuse(400, stage="body")),
    Vector("chunk-size-trailing-space", chunked_post(b"5 \r\nhello\r\n0\r\n\r\n"),
           LL_TE + " (space after chunk header); measured: h11 0.16 accepts it", 2, refuse(400, stage="body")),
    Vector("chunk-size-leading-space", chunked_post(b" 5\r\nhello\r\n0\r\n\r\n"),
           R9112_71, 2, refuse(400, stage="body")),
    Vector("chunk-size-words", chunked_post(b"2 erfrferferf\r\naa\r\n0 rrrr\r\n\r\n"),
           LL_TE + " (no semicolon before chunk extensions)", 2, refuse(400, stage="body")),
    Vector("chunk-size-empty", chunked_post(b"\r\nhello\r\n0\r\n\r\n"),
           R9112_71, 2, refuse(400, stage="body")),
    Vector("chunk-ext-empty", chunked_post(b"2;\r\naa\r\n0\r\n\r\n"),
           LL_TE + " (no extension after semicolon)", 2, refuse(400, stage="body")),
    Vector("chunk-ext-bare-cr", chunked_post(b"5;a=b\rc\r\nhello\r\n0\r\n\r\n"),
           R9112_71 + "; " + R9112_22, 2, refuse(400, stage="body")),
    Vector("chunk-ext-bare-lf", chunked_post(b"5;a=b\nGET /webapps/smuggled HTTP/1.1\r\nhello\r\n0\r\n\r\n"),
           R9112_71 + "; " + R9112_22, 2, refuse(400, stage="body")),
    Vector("chunk-header-cr-cr", req(b"GET", b"/webapps/x", b"Connection: close\r\nTransfer-Encoding: chunked\r\n",
                                     b"5\r\r;ABCD\r\n34\r\nE\r\n0\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\n0\r\n\r\n"),
           LL_TE + " (chunk header not terminated by CRLF)", 2, refuse(400, stage="body")),
    Vector("chunk-data-no-crlf", req(b"GET", b"/webapps/x", b"Transfer-Encoding: chunked\r\n", b"5\r\nABCDE0\r\n\r\n"),
           LL_TE + " (chunk data not terminated by CRLF)", 2, refuse(400, stage="body")),
    Vector("chunk-data-too-long", chunked_post(b"3\r\nhello\r\n0\r\n\r\n"),
           R9112_71, 2, refuse(400, stage="body")),
    Vector("chunk-bare-lf-lines", chunked_post(b"5\nhello\n0\n\n"),
           R9112_71 + "; " + R9112_22, 2, refuse(400, stage="body")),
    Vector("chunk-extension-stripped", chunked_post(b"5;name=value\r\nhello\r\n6;blahblah;blah\r\n world\r\n0\r\n\r\n"),
           LL_TE + " (chunk extensions); invariant 1 (chunk extensions are not forwarded)", 1,
           Forward(targets=("/webapps/upload",), headers={"transfer-encoding": "chunked"}, body=b"hello world")),
    Vector("chunk-ext-quoted", chunked_post(b'5;a="b;c\\"d"\r\nhello\r\n0\r\n\r\n'),
           LL_TE + " (chunk extensions quoting)", 1, Forward(headers={"transfer-encoding": "chunked"}, body=b"hello")),
    Vector("chunk-size-leading-zeros", chunked_post(b"000000000000000000005\r\nhello\r\n000\r\n\r\n"),
           LL_TE + " (triple zero prefixed end chunk); " + R9112_71, 1,
           either(refuse(400, stage="body"), Forward(headers={"transfer-encoding": "chunked"}, body=b"hello")),
           "if forwarded, chunk sizes are re-printed"),
    Vector("chunk-trailer-content-length", chunked_post(b"5\r\nhello\r\n0\r\nContent-Length: 99\r\nX-Trailer: 1\r\n\r\n"),
           R9112_712 + "; measured: h11 0.16 accepts Content-Length in a trailer", 1,
           either(refuse(400, stage="body"), Forward(body=b"hello", absent=("x-trailer",))),
           "request trailers are dropped, never forwarded"),

    # ---------------------------------------------------------------- line endings, controls, names
    Vector("lf-only-request", b"GET /webapps/x HTTP/1.1\nHost: test.local\n\n",
           R9112_22 + "; " + LL_INV + " (only LFs present)", 2, refuse(400)),
    Vector("lf-after-request-line", b"GET /webapps/x HTTP/1.1\nHost: test.local\r\n\r\n",
           R9112_22, 2, refuse(400)),
    Vector("bare-cr-line-end", b"GET /webapps/x HTTP/1.1\rHost: test.local\r\n\r\n",
           R9112_22 + "; " + LL_SAMPLE + " (no LF after CR)", 2, refuse(400)),
    Vector("headers-separated-by-cr", req(headers=b"Foo: 1\rBar: 2\r\n"),
           LL_INV + " (headers separated by CR)", 2, refuse(400)),
    Vector("empty-header-cr-te", req(b"POST", b"/webapps/x", b"Connection: Close\r\nx:\rTransfer-Encoding: chunked\r\n",
                                     b"1\r\nA\r\n0\r\n\r\n"),
           LL_INV + " (empty headers separated by CR)", 2, refuse(400)),
    Vector("header-value-lf-cl", req(headers=b"Dummy: x\nContent-Length: 23\r\n",
                                     body=b"GET / HTTP/1.1\r\nDummy: GET /admin HTTP/1.1\r\nHost: localhost\r\n\r\n"),
           LL_INV + " (LF in value before Content-Length)", 2, refuse(400)),
    Vector("dummy-cr-before-request", req(headers=b"Connection: close\r\n\rZGET /evil: HTTP/1.1\r\n"),
           LL_INV + " (headers separated by dummy characters)", 2, refuse(400)),
    Vector("head-end-cr-lf-lf", b"GET /webapps/x HTTP/1.1\r\nHost: test.local\r\n\n",
           R9112_22, 2, refuse(400)),
    Vector("nul-in-value", req(headers=b"X-Foo: a\x00b\r\n"),
           R9110_56 + "; haproxy src/h1.c (NUL explicitly forbidden in values)", 2, refuse(400)),
    Vector("nul-in-name", req(headers=b"X-F\x00oo: a\r\n"),
           R9110_56, 2, refuse(400)),
    Vector("ctl-in-value", req(headers=b"X-Foo: a\x01b\r\n"),
           R9110_56, 2, refuse(400)),
    Vector("del-in-value", req(headers=b"X-Foo: a\x7fb\r\n"),
           R9110_56 + " (DEL is not VCHAR)", 2, refuse(400)),
    Vector("escape-in-name", req(headers=b"Foo\x01test: Bar\r\n"),
           LL_INV + " (invalid header token #2)", 2, refuse(400)),
    Vector("at-in-name", req(headers=b"Fo@: Failure\r\n"),
           LL_INV + " (invalid header token #1)", 2, refuse(400)),
    Vector("empty-name", req(headers=b": Bar\r\n"),
           LL_INV + " (invalid header token #3)", 2, refuse(400)),
    Vector("corrupted-connection-name", req(headers=b"Connection\r\x1b\x35\xd5eep-Alive\r\n"),
           LL_INV + " (corrupted Connection header)", 2, refuse(400)),
    Vector("line-without-colon", req(headers=b"X-Foo\r\n"),
           R9112_5, 2, refuse(400)),
    Vector("space-before-colon", req(headers=b"X-Foo : bar\r\n"),
           R9112_51, 2, refuse(400)),
    Vector("tab-before-colon", req(headers=b"X-Foo\t: bar\r\n"),
           R9112_51, 2, refuse(400)),
    Vector("host-space-before-colon", b"GET /webapps/x HTTP/1.1\r\nHost : test.local\r\n\r\n",
           R9112_51, 2, refuse(400)),
    Vector("obs-fold", req(headers=b"X-Foo: a\r\n b\r\n"),
           R9112_52 + " (obs-fold refused)", 2, refuse(400)),
    Vector("obs-fold-tab", req(headers=b"X-Foo: a\r\n\tb\r\n"),
           R9112_52 + "; " + LL_SAMPLE + " (line folding in header value)", 2, refuse(400)),
    Vector("space-after-request-line", b"GET /webapps/x HTTP/1.1\r\n Host: test.local\r\n\r\n",
           LL_INV + " (invalid space after start line); " + R9112_22, 2, refuse(400)),
    Vector("spaces-before-cl", req(b"POST", b"/webapps/hello", b"Foo: bar\r\n Content-Length: 38\r\n",
                                   b"GET /bye HTTP/1.1\r\nHost: localhost\r\n\r\n"),
           LL_INV + " (spaces before headers)", 2, refuse(400)),
    Vector("high-bytes-in-value", req(headers=b"X-Name: caf\xc3\xa9\r\n"),
           R9110_56 + " (obs-text is allowed in values)", 1,
           either(refuse(400), Forward(headers={"x-name": "caf\xc3\xa9"}))),

    # ---------------------------------------------------------------- request line and version
    Vector("http09", b"GET /webapps/x\r\n\r\n",
           R9112_23 + "; " + LL_SAMPLE + " (no HTTP version); measured: httptools 0.9 accepts HTTP/0.9", 2,
           refuse(400, 505)),
    Vector("http20-line", req(version=b"HTTP/2.0"),
           R9112_23 + "; measured: httptools 0.9 and h11 0.16 accept HTTP/2.0", 2, refuse(400, 505)),
    Vector("http12", req(version=b"HTTP/1.2"), R9110_253, 2, refuse(400, 505)),
    Vector("http110", req(version=b"HTTP/1.10"), R9112_23, 2, refuse(400, 505)),
    Vector("http56", req(version=b"HTTP/5.6"), LL_INV + " (invalid HTTP version)", 2, refuse(400, 505)),
    Vector("http-lowercase", req(version=b"http/1.1"), R9112_23 + " (HTTP-name is case-sensitive)", 2,
           refuse(400, 505)),
    Vector("http-no-minor", req(version=b"HTTP/1"), R9112_23, 2, refuse(400, 505)),
    Vector("pri-preface", b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", "llhttp test/request/method.md (PRI request HTTP2)",
           2, refuse(400, 501, 505)),
    Vector("ice-protocol", b"GET /webapps/x ICE/1.0\r\nHost: example.com\r\n\r\n", LL_INV + " (ICE protocol)", 2,
           refuse(400, 505)),
    Vector("rtsp-protocol", b"PUT /webapps/x RTSP/1.0\r\nHost: example.com\r\n\r\n", LL_INV + " (RTSP protocol)", 2,
           refuse(400, 505)),
    Vector("double-space-before-target", b"GET  /webapps/x HTTP/1.1\r\nHost: test.local\r\n\r\n",
           R9112_3 + "; measured: httptools 0.9 accepts a double space", 2, refuse(400)),
    Vector("double-space-before-version", b"GET /webapps/x  HTTP/1.1\r\nHost: test.local\r\n\r\n",
           R9112_3, 2, refuse(400)),
    Vector("leading-crlf-double-space", b"\r\nGET  /webapps/x HTTP/1.1\r\nHost: test.local\r\n\r\n",
           R9112_22 + "; " + R9112_3, 2, refuse(400),
           "an allowed empty line first must not hide a malformed request line"),
    Vector("pipelined-double-space", req() + b"GET  /webapps/smuggled HTTP/1.1\r\nHost: test.local\r\n\r\n",
           R9112_3 + "; " + R9112_PIPE + "; measured: httptools 0.9 accepts a double space", 2,
           Forward(requests=1, targets=("/webapps/x",), closed=True),
           "the second request line is as malformed as the first would be: it never reaches the backend"),
    Vector("tab-separator", b"GET\t/webapps/x HTTP/1.1\r\nHost: test.local\r\n\r\n", R9112_3, 2, refuse(400, 501)),
    Vector("trailing-space-after-version", b"GET /webapps/x HTTP/1.1 \r\nHost: test.local\r\n\r\n", R9112_3, 2,
           refuse(400, 505)),
    Vector("leading-space-request-line", b" GET /webapps/x HTTP/1.1\r\nHost: test.local\r\n\r\n", R9112_3, 2,
           refuse(400, 501)),
    Vector("raw-space-in-target", b"GET /webapps/a b HTTP/1.1\r\nHost: test.local\r\n\r\n",
           "llhttp test/request/uri.md (space in URI); observed on Apache 2.4 (a raw space: 400)", 6,
           refuse(400, 505)),
    Vector("leading-crlf", b"\r\nGET /webapps/x HTTP/1.1\r\nHost: test.local\r\n\r\n",
           R9112_22 + " (SHOULD ignore at least one empty line before the request-line)", 1,
           either(refuse(400), Forward(targets=("/webapps/x",)))),
    Vector("lowercase-method", req(b"get"), "RFC 9110 §9.1 (method names are case-sensitive)", 2, refuse(400, 501)),
    Vector("asterisk-get", req(target=b"*"), HAP_TARGET + " (client c5: GET * is 400)", 6, refuse(400, 501)),
    Vector("target-no-slash", req(target=b"admin"), HAP_TARGET + " (client c13)", 6, refuse(400)),

    # ---------------------------------------------------------------- Host
    Vector("host-missing", b"GET /webapps/x HTTP/1.1\r\n\r\n",
           R9112_32 + "; measured: httptools 0.9 accepts a missing Host", 2, refuse(400)),
    Vector("host-duplicate", req(host=b"Host: test.local\r\nHost: evil.example\r\n"),
           R9112_32 + "; " + HAP_HOST + " (client c12); haproxy commit 497ab4f", 5, refuse(400)),
    Vector("host-duplicate-same", req(host=b"Host: test.local\r\nHost: test.local\r\n"),
           R9112_32 + " (more than one Host field line: 400)", 5, refuse(400)),
    Vector("host-comma-list", req(host=b"Host: test.local,evil.example\r\n"),
           R9112_32 + "; measured: httptools 0.9 accepts `Host: a,b`", 5, refuse(400)),
    Vector("host-userinfo", req(host=b"Host: user@{TRAP}\r\n"),
           R9112_32 + " (invalid field value; RFC 3986 §3.2.2 host has no userinfo)", 5, refuse(400)),
    Vector("host-space", req(host=b"Host: test.local evil.example\r\n"),
           R9112_32 + " (invalid field value)", 5, refuse(400)),
    Vector("host-with-path", req(host=b"Host: {TRAP}/webapps\r\n"),
           R9112_32 + " (invalid field value)", 5, refuse(400)),
    Vector("host-two-ports", req(host=b"Host: {TRAP}:80\r\n"),
           R9112_32 + " (invalid field value: uri-host [ \":\" port ])", 5, refuse(400)),
    Vector("host-empty", req(host=b"Host:\r\n"),
           R9112_32 + " (invalid field value); RFC 9110 §4.2.1 (an http URI never has an empty host)", 5,
           refuse(400)),
    Vector("host-trap-origin-form", req(host=b"Host: {TRAP}\r\n"),
           "Apache mod_proxy ProxyPreserveHost Off (the member's own authority is sent as Host; "
           "the client's selects nothing)", 5,
           Forward(targets=("/webapps/x",), headers={"host": "{MEMBER}", "x-forwarded-host": "{TRAP}"})),

    # ---------------------------------------------------------------- absolute-form and other authorities
    Vector("absolute-form-trap", req(target=b"http://{TRAP}/webapps/x", host=b"Host: {TRAP}\r\n"),
           R9112_322 + " (the authority selects nothing)", 5,
           either(refuse(400), Forward(targets=("/webapps/x",), headers={"host": "{MEMBER}"})),
           "the authority selects nothing: the member is contacted, target converted to origin-form"),
    Vector("absolute-form-host-mismatch", req(target=b"http://{TRAP}/webapps/x", host=b"Host: test.local\r\n"),
           HAP_HOST + " (client c8: 400); " + HAP_HOSTCOMMIT + "; " + R9112_32, 5, refuse(400),
           "never looser than HAProxy: authority and Host disagree"),
    Vector("absolute-form-port-mismatch", req(target=b"http://test.local:8080/webapps/x", host=b"Host: test.local\r\n"),
           HAP_HOST + " (client c10: 400)", 5, refuse(400)),
    Vector("absolute-form-no-host", b"GET http://{TRAP}/webapps/x HTTP/1.1\r\n\r\n",
           R9112_32 + " (HTTP/1.1 without Host: 400, whatever the target form)", 5, refuse(400)),
    Vector("absolute-form-default-port", req(target=b"http://test.local:80/webapps/x", host=b"Host: test.local\r\n"),
           HAP_HOST + " (client c20: accepted, Host normalised)", 5,
           either(refuse(400), Forward(targets=("/webapps/x",), headers={"host": "{MEMBER}"}))),
    Vector("absolute-form-http10-no-host", b"GET http://{TRAP}/webapps/x HTTP/1.0\r\n\r\n",
           R9112_322 + "; " + R9112_32 + " (Host is required in HTTP/1.1 only)", 5,
           either(refuse(400), Forward(targets=("/webapps/x",), headers={"host": "{MEMBER}"}, closed=True))),
    Vector("absolute-form-userinfo", req(target=b"http://user:pw@{TRAP}/webapps/x", host=b"Host: {TRAP}\r\n"),
           HAP_HOST + " (client c1); RFC 3986 §3.2.1", 5,
           either(refuse(400), Forward(targets=("/webapps/x",), headers={"host": "{MEMBER}"}))),
    Vector("absolute-form-at-trick", req(target=b"http://{MEMBER}@{TRAP}/webapps/x", host=b"Host: {TRAP}\r\n"),
           "RFC 3986 §3.2 (userinfo '@' confusion)", 5,
           either(refuse(400), Forward(targets=("/webapps/x",), headers={"host": "{MEMBER}"}))),
    Vector("absolute-form-https-scheme", req(target=b"https://{TRAP}/webapps/x", host=b"Host: {TRAP}\r\n"),
           R9112_322 + " (scheme other than the listener's)", 5,
           either(refuse(400), Forward(targets=("/webapps/x",), headers={"host": "{MEMBER}"}))),
    Vector("absolute-form-dot-segments", req(target=b"http://{TRAP}/webapps/../etc/passwd", host=b"Host: {TRAP}\r\n"),
           R9112_322 + "; " + R3986_524, 6,
           either(refuse_path(), Forward(targets=("/catchall/etc/passwd",), headers={"host": "{MEMBER}"}))),
    Vector("absolute-form-fragment", req(target=b"http://{TRAP}#frag", host=b"Host: {TRAP}\r\n"),
           HAP_FRAG + " (client c1)", 6, refuse(400)),
    Vector("authority-form-get", req(target=b"{TRAP}", host=b"Host: {TRAP}\r\n"),
           HAP_TARGET + " (client c12: 400)", 5, refuse(400)),
    Vector("connect-trap", req(b"CONNECT", b"{TRAP}", host=b"Host: {TRAP}\r\n"),
           "RFC 9110 §9.3.6 (CONNECT is a forward proxy's); observed on Apache 2.4 (unknown methods 501)", 5,
           refuse(400, 405, 501)),

    # ---------------------------------------------------------------- vouched headers (spoofing)
    Vector("spoof-remote-user-underscore", req(headers=b"Remote_User: admin\r\n"),
           PROXYSAFETY4 + "; " + UNDERSCORE, 4,
           Forward(absent=("remote-user",), not_in_head=("admin",))),
    Vector("spoof-remote-user-upper", req(headers=b"REMOTE-USER: admin\r\n"),
           PROXYSAFETY4, 4, Forward(absent=("remote-user",), not_in_head=("admin",))),
    Vector("spoof-remote-user-mixed", req(headers=b"Remote-User: admin\r\nremote_user: root\r\nREMOTE_USER: x\r\n"),
           PROXYSAFETY4, 4, Forward(absent=("remote-user",), not_in_head=("admin", "root"))),
    Vector("spoof-remote-user-folded", req(headers=b"X: y\r\n\tRemote-User: admin\r\n"),
           R9112_52 + "; " + PROXYSAFETY4, 4, refuse(400), "a folded line that looks like a vouched header"),
    Vector("spoof-xff-underscore", req(headers=b"X_Forwarded_For: 6.6.6.6\r\n"),
           PROXYSAFETY4 + "; apache httpd PR #558 (X_Forwarded_For trick)", 4,
           Forward(headers={"x-forwarded-for": "127.0.0.1"}, not_in_head=("6.6.6.6",))),
    Vector("spoof-xff-mixed-alias", req(headers=b"X-Forwarded_For: 6.6.6.6\r\nx_forwarded-for: 6.6.6.7\r\n"),
           PROXYSAFETY4 + "; " + UNDERSCORE, 4,
           Forward(headers={"x-forwarded-for": "127.0.0.1"}, not_in_head=("6.6.6.6", "6.6.6.7"))),
    Vector("spoof-xff-plain", req(headers=b"X-Forwarded-For: 6.6.6.6\r\n"),
           PROXYSAFETY4 + " (untrusted peer: client chain dropped)", 4,
           Forward(headers={"x-forwarded-for": "127.0.0.1"}, not_in_head=("6.6.6.6",))),
    Vector("spoof-forwarded-family", req(headers=b"X-Forwarded-Host: evil.example\r\nX-Forwarded-Proto: https\r\n"
                                                 b"X-Forwarded-Port: 31337\r\nX-Forwarded-Prefix: /admin\r\n"
                                                 b"X-Forwarded-Server: evil.example\r\nX-Real-IP: 6.6.6.6\r\n"
                                                 b"Forwarded: for=6.6.6.6;host=evil.example\r\n"),
           PROXYSAFETY4 + "; RFC 7239 §4", 4,
           Forward(headers={"x-forwarded-for": "127.0.0.1", "x-forwarded-host": "test.local",
                            "x-forwarded-proto": "http", "x-forwarded-port": "{PORT}",
                            "x-forwarded-prefix": "/webapps"},
                   absent=("forwarded", "x-real-ip"),
                   not_in_head=("6.6.6.6", "evil.example", "31337", "/admin"))),

    # ---------------------------------------------------------------- hop-by-hop
    Vector("connection-named-header", req(headers=b"Connection: X-Secret\r\nX-Secret: 1\r\n"),
           R9110_76, 4, Forward(absent=("x-secret", "connection"))),
    Vector("connection-close-named-header", req(headers=b"Connection: close, X-Secret\r\nX-Secret: 1\r\n"),
           R9110_76 + "; " + DAVISON, 4, Forward(absent=("x-secret", "connection"), closed=True)),
    Vector("connection-names-xff", req(headers=b"Connection: close, X-Forwarded-For\r\n"),
           DAVISON + " (strip the proxy's own header)", 4,
           Forward(headers={"x-forwarded-for": "127.0.0.1"}, absent=("connection",), closed=True)),
    Vector("connection-names-host", req(headers=b"Connection: Host\r\n"),
           DAVISON + "; " + R9112_32, 4, Forward(headers={"host": "{MEMBER}"}, absent=("connection",))),
    Vector("connection-names-vouched", req(headers=b"Connection: X-Forwarded-Host, X-Forwarded-Proto, Remote-User\r\n"),
           DAVISON, 4,
           Forward(headers={"x-forwarded-host": "test.local", "x-forwarded-proto": "http"}, absent=("connection",))),
    Vector("connection-names-content-length", req(b"POST", b"/webapps/x", b"Connection: Content-Length\r\n"
                                                  b"Content-Length: 5\r\n", b"hello"),
           DAVISON + "; " + R9112_63, 4,
           Forward(headers={"content-length": "5"}, absent=("connection",), body=b"hello")),
    Vector("connection-names-transfer-encoding", chunked_post(b"5\r\nhello\r\n0\r\n\r\n",
                                                              extra=b"Connection: Transfer-Encoding\r\n"),
           DAVISON + "; " + R9112_61, 4,
           Forward(headers={"transfer-encoding": "chunked"}, absent=("connection",), body=b"hello")),
    Vector("keep-alive-header", req(headers=b"Connection: keep-alive\r\nKeep-Alive: timeout=99, max=1000\r\n"),
           R9110_76 + " (Keep-Alive)", 4, Forward(absent=("keep-alive", "connection"))),
    Vector("te-trailers-header", req(headers=b"TE: trailers, gzip\r\n"),
           R9110_76 + "; " + HAP_TE + " (client c5)", 4, Forward(absent=("te",))),
    Vector("trailer-header", req(b"POST", b"/webapps/x", b"Trailer: X-Checksum\r\nContent-Length: 2\r\n", b"ok"),
           R9110_76 + " (Trailer)", 4, Forward(absent=("trailer",), body=b"ok")),
    Vector("upgrade-without-connection", req(headers=b"Upgrade: websocket\r\n"),
           R9110_76 + " (Upgrade)", 4, Forward(absent=("upgrade",))),
    Vector("upgrade-websocket", req(headers=b"Connection: Upgrade\r\nUpgrade: websocket\r\n"
                                            b"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"),
           R9110_76 + " (Upgrade); " + LL_CONN + " (upgrade)", 4,
           Forward(headers={"upgrade": "websocket", "connection": "upgrade"}),
           "a WebSocket upgrade is forwarded with ferryman's own Upgrade and Connection (the tunnel starts only "
           "on a 101); a backend answering 200 keeps the connection plain HTTP"),
    Vector("upgrade-h2c", req(headers=b"Connection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\n"
                                       b"HTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n"),
           H2C, 4,
           either(refuse(400, 501), Forward(absent=("upgrade", "http2-settings", "connection"), closed=True))),
    Vector("upgrade-with-length-head-alone", req(headers=b"Content-Length: 5\r\nConnection: Upgrade, HTTP2-Settings\r\n"
                                                      b"Upgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n"),
           H2C + "; RFC 9110 §7.8 (an upgrade request with content); found by bench/fuzz.py", 3, refuse(400),
           "regression: a head arriving alone in one read was reported before its refusal (body still to come)"),
    Vector("proxy-authorization", req(headers=b"Proxy-Authorization: Basic Zm9vOmJhcg==\r\n"),
           R9110_762 + " (ferryman strips it)", 4,
           Forward(absent=("proxy-authorization",), not_in_head=("Zm9vOmJhcg==",))),
    Vector("proxy-connection", req(headers=b"Proxy-Connection: keep-alive\r\n"),
           R9110_76 + " (Proxy-Connection removed)", 4, Forward(absent=("proxy-connection",))),
    Vector("proxy-header-httpoxy", req(headers=b"Proxy: http://{TRAP}\r\n"),
           HTTPOXY, 4, either(refuse(400), Forward(absent=("proxy",))),
           "beyond the written contract (Proxy-* is; plain Proxy is not): defence in depth"),

    # ---------------------------------------------------------------- paths
    Vector("path-dotdot-out-of-route", req(target=b"/webapps/../etc/passwd"),
           R3986_524 + "; observed on Apache 2.4 (`/webapps/../etc/passwd` matches no /webapps route)", 6,
           either(refuse_path(), Forward(targets=("/catchall/etc/passwd",))),
           "routed on the normalised path: the catch-all, never /webapps"),
    Vector("path-encoded-dotdot", req(target=b"/webapps/%2e%2e/x"),
           R3986_524 + " (%2e is a dot)", 6,
           either(refuse_path(), Forward(targets=("/catchall/x",)))),
    Vector("path-encoded-dotdot-upper", req(target=b"/webapps/%2E%2E/%2E%2E/etc/passwd"),
           R3986_524 + " (climbs above /)", 6, refuse_path()),
    Vector("path-mixed-dotdot", req(target=b"/webapps/.%2e/x"),
           R3986_524, 6, either(refuse_path(), Forward(targets=("/catchall/x",)))),
    Vector("path-dotdot-inside", req(target=b"/webapps/foo/../bar"),
           "RFC 3986 §5.2.4; observed on Apache 2.4 (reaches the member as /webapps/bar)", 6,
           Forward(targets=("/webapps/bar",))),
    Vector("path-encoded-dotdot-inside", req(target=b"/webapps/foo/%2e%2e/bar"),
           R3986_524 + " (%2e is a dot); observed on Apache 2.4", 6, Forward(targets=("/webapps/bar",))),
    Vector("path-dot-segment", req(target=b"/webapps/./x/."),
           R3986_524, 6, Forward(targets=("/webapps/x/",))),
    Vector("path-double-slash-prefix", req(target=b"//webapps/x"),
           "Apache core MergeSlashes On (`//webapps/x` becomes `/webapps/x`)", 6,
           Forward(targets=("/webapps/x",))),
    Vector("path-double-slash-inside", req(target=b"/webapps//x"),
           "Apache core MergeSlashes On", 6, Forward(targets=("/webapps/x",))),
    Vector("path-climb-above-root", req(target=b"/../etc/passwd"),
           CLAR_PATHS + " (climbs above /)", 6, refuse_path()),
    Vector("path-climb-twice", req(target=b"/webapps/../../etc/passwd"),
           CLAR_PATHS, 6, refuse_path()),
    Vector("path-encoded-slash", req(target=b"/webapps/a%2Fb"),
           CLAR_PATHS + " (%2F refused: AllowEncodedSlashes Off)", 6, refuse_path()),
    Vector("path-encoded-slash-lower", req(target=b"/webapps/..%2f..%2fetc/passwd"),
           CLAR_PATHS, 6, refuse_path()),
    Vector("path-encoded-backslash", req(target=b"/webapps/a%5Cb"),
           CLAR_PATHS + " (%5C)", 6, refuse_path()),
    Vector("path-backslash", req(target=b"/webapps/a\\b"),
           CLAR_PATHS + " (backslash)", 6, refuse_path()),
    Vector("path-backslash-dotdot", req(target=b"/webapps/..\\..\\etc"),
           CLAR_PATHS + " (IIS-style backslash traversal)", 6, refuse_path()),
    Vector("path-encoded-nul", req(target=b"/webapps/a%00b"),
           CLAR_PATHS + " (%00)", 6, refuse_path()),
    Vector("path-double-encoded-dot", req(target=b"/webapps/%252e%252e/x"),
           CLAR_PATHS + " (double-encoded forms are data)", 6,
           Forward(targets=("/webapps/%252e%252e/x",))),
    Vector("path-unreserved-escapes", req(target=b"/webapps/%41%7e"),
           "RFC 3986 §6.2.2.2 (percent-encoding normalization: %41 -> A, %7E -> ~)", 6,
           Forward(targets=("/webapps/A~",))),
    Vector("path-query-kept", req(target=b"/webapps/a?x=/../y%2F&z=%41"),
           CLAR_PATHS + " (query kept byte for byte)", 6, Forward(targets=("/webapps/a?x=/../y%2F&z=%41",))),
    Vector("path-tomcat-semicolon", req(target=b"/webapps/..;/x"),
           TOMCAT, 6, refuse_path(),
           "`..;` is `..` to Tomcat/Jetty: forwarded as is it escapes the member prefix"),
    Vector("path-fragment", req(target=b"/webapps/x#frag"),
           HAP_FRAG, 6, refuse(400)),
    Vector("path-raw-utf8", req(target=b"/webapps/caf\xc3\xa9"),
           "llhttp test/request/uri.md (disallow UTF-8 in URI path in strict mode)", 6, refuse(400)),
    Vector("path-ctl-byte", req(target=b"/webapps/a\x01b"),
           "haproxy src/h1.c (request URI: forbidden chars 0..31 and 127)", 6, refuse(400)),
    Vector("path-del-byte", req(target=b"/webapps/\x7fx"),
           "haproxy src/h1.c (request URI: forbidden chars 0..31 and 127)", 6, refuse(400)),
    Vector("query-raw-nul", b"GET /webapps/x?a=\x00 HTTP/1.1\r\nHost: test.local\r\n\r\n",
           "haproxy src/h1.c (request URI: forbidden chars 0..31 and 127); " + R9110_56, 6, refuse(400)),
    Vector("query-raw-high-byte", b"GET /webapps/x?\xff HTTP/1.1\r\nHost: test.local\r\n\r\n",
           "RFC 3986 §2 (a URI is ASCII); " + R9112_3 + " (invalid request-line: 400)", 6, refuse(400)),
    Vector("path-malformed-escape", req(target=b"/webapps/%zz"),
           "RFC 3986 §2.1 (pct-encoded = \"%\" HEXDIG HEXDIG)", 6, either(refuse(400), Forward(targets=("/webapps/%zz",)))),

    # ---------------------------------------------------------------- limits
    Vector("request-line-too-long", req(target=b"/webapps/" + b"a" * 9000),
           ENGINE_LIMITS + " (max_request_line 8KiB -> 414)", 2, refuse(414)),
    Vector("too-many-headers", req(headers=b"".join(b"X-H%d: v\r\n" % i for i in range(101))),
           ENGINE_LIMITS + " (max_headers 100 -> 431)", 2, refuse(431)),
    Vector("head-too-large", req(headers=b"".join(b"X-Big%d: %s\r\n" % (i, b"v" * 4000) for i in range(9))),
           ENGINE_LIMITS + " (max_header_size 32KiB, \"whole request head\" -> 431)", 2, refuse(431),
           "about 36 KB of header lines: over max_header_size, under max_request_line + max_header_size"),
    Vector("head-far-too-large", req(headers=b"".join(b"X-Big%d: %s\r\n" % (i, b"v" * 4000) for i in range(11))),
           ENGINE_LIMITS + " (max_header_size 32KiB -> 431)", 2, refuse(431),
           "about 44 KB of header lines, over any reading of the limit"),
    Vector("one-header-too-large", req(headers=b"X-Big: " + b"v" * 34000 + b"\r\n"),
           ENGINE_LIMITS + " (max_header_size 32KiB -> 431; Apache: 400)", 2, refuse(400, 431)),

    Vector("long-target-then-bad-byte", req(target=b"/webapps/" + b"a" * 8300 + b"\xa0b"),
           ENGINE_LIMITS + "; " + R9112_3 + "; found by bench/fuzz.py", 2, refuse(400, 414),
           "regression: 400 in one read, 414 when the line came in pieces (the tokenizer saw part of it)"),
    Vector("big-header-then-malformed-line", req(headers=b"X-Big: " + b"v" * 34000 + b"\r\nGET /x HTTP/1.1\r\n"),
           ENGINE_LIMITS + "; " + R9112_5 + "; found by bench/fuzz.py", 2, refuse(400, 431),
           "regression: 400 in one read, 431 byte by byte (the parser reports a header only when the next starts)"),
    Vector("malformed-line-past-the-head-limit", req(headers=b"X-Big: " + b"v" * 40000 + b"\r\nBad Line\r\n"),
           ENGINE_LIMITS + "; found by bench/fuzz.py", 2, refuse(400, 431),
           "regression: the bytes up to the head limit are read before 431, however the reads were cut"),

    # ---------------------------------------------------------------- pipelining and smuggling (invariant 3)
    Vector("pipelined-cl0-smuggle", req(headers=b"Content-Length: 0\r\n") + SMUGGLED,
           KETTLE + " (CL.0); " + HAP_H1, 3,
           Forward(requests=2, targets=("/webapps/x", "/webapps/smuggled"),
                   responses=(frozenset({200}), frozenset({200})))),
    Vector("get-body-holds-request", req(headers=_cl(SMUGGLED), body=SMUGGLED),
           KETTLE + " (a GET with a body: the body is data); " + HAP_H1 + " (third request sends a body with a GET)", 3,
           Forward(requests=1, targets=("/webapps/x",), body=SMUGGLED)),
    Vector("pipelined-then-ambiguous", req() + req(b"POST", b"/webapps/two",
                                                   b"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n", b"0\r\n\r\n"),
           R9112_63 + "; llhttp test/request/pipelining.md", 3,
           Forward(requests=1, targets=("/webapps/x",), closed=True),
           "the good first request is answered, the ambiguous second never reaches the backend, the connection is closed (a 400 for it is allowed, not required)"),
    Vector("pipelined-chunked-then-get", chunked_post(b"5\r\nhello\r\n0\r\n\r\n") + SMUGGLED,
           R9112_PIPE + "; " + R9112_71, 3,
           Forward(requests=2, targets=("/webapps/upload", "/webapps/smuggled"), body=b"hello",
                   responses=(frozenset({200}), frozenset({200}))),
           "the chunked body ends at its last chunk; what follows is the next request"),
    Vector("pipelined-then-bad-chunk", req() + chunked_post(b"zz\r\nhello\r\n0\r\n\r\n"),
           R9112_PIPE + "; " + R9112_71, 3,
           Forward(requests=1, targets=("/webapps/x",), closed=True, later_refused_in_body=True),
           "the good first request is answered; the second never reaches the backend complete (sent whole, not a "
           "byte of it does)"),
    Vector("pipelined-then-garbage", req() + b"\x16\x03\x01\x00\xa5garbage\r\n\r\n",
           R9112_22 + "; " + LL_INV, 3,
           Forward(requests=1, targets=("/webapps/x",), closed=True)),
    Vector("after-connection-close", req(headers=b"Connection: close\r\n") + SMUGGLED,
           R9112_96 + "; " + LL_CONN + " (data after Connection: close)", 3,
           Forward(requests=1, targets=("/webapps/x",), responses=(frozenset({200}),), closed=True)),
    Vector("http10-then-request", req(version=b"HTTP/1.0") + SMUGGLED,
           R9112_96 + " (HTTP/1.0 without keep-alive closes); " + LL_CONN + " (no restart when keep-alive is off)", 3,
           Forward(requests=1, targets=("/webapps/x",), responses=(frozenset({200}),), closed=True)),
]


# --------------------------------------------------------------------------------------------------
# The corpus table in docs/request-safety.md

DOC = Path(__file__).resolve().parents[2] / "docs" / "request-safety.md"
BEGIN = "<!-- corpus:begin (generated by `python -m tests.integration.vectors`; do not edit by hand) -->"
END = "<!-- corpus:end -->"


def _md(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _show(raw: bytes, limit: int = 200) -> str:
    shown = repr(raw)[2:-1]
    if len(shown) > limit:
        shown = shown[:limit] + f"… ({len(raw)} bytes)"
    return "`" + shown.replace("`", "'").replace("|", "\\|") + "`"


def render_table() -> str:
    lines = [BEGIN, "",
             f"{len(VECTORS)} cases. `{{TRAP}}` is an address that is not a configured member, `{{MEMBER}}` the member's, "
             "`{PORT}` ferryman's listener port.", "",
             "| id | inv. | request (start) | expected | source |",
             "|---|---|---|---|---|"]
    for v in VECTORS:
        expected = v.expect.describe()
        if v.note:
            expected += f" — {v.note}"
        lines.append(f"| `{v.id}` | {v.invariant} | {_show(v.raw)} | {_md(expected)} | {_md(v.source)} |")
    lines += ["", END]
    return "\n".join(lines)


def rewrite_doc(path: Path = DOC) -> bool:
    """Replace the corpus table in the doc; return True when the file changed."""
    text = path.read_text()
    start, end = text.index(BEGIN), text.index(END) + len(END)
    new = text[:start] + render_table() + text[end:]
    if new != text:
        path.write_text(new)
        return True
    return False


def _check_unique() -> None:
    seen: set[str] = set()
    for v in VECTORS:
        if v.id in seen:
            raise ValueError(f"duplicate vector id {v.id}")
        seen.add(v.id)


_check_unique()

if __name__ == "__main__":
    print("docs/request-safety.md", "updated" if rewrite_doc() else "already up to date")
