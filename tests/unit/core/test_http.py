"""ferryman.core.http: request/response head validation, framing decisions, canonical serialisers.

Every table row names its source. Abbreviations:
  9112-x.y   RFC 9112 (HTTP/1.1) section x.y;  6.3rN is rule N of section 6.3 (message body length)
  9110-x.y   RFC 9110 (HTTP semantics) section x.y
  6265-5.4   RFC 6265 section 5.4 (the user agent sends one Cookie header, pairs joined by "; ")
  PS-n       invariant n of docs/request-safety.md ("PS-gap": something httptools 0.9 or h11 0.16 accepts,
             measured, that ferryman's own checks must refuse)
  APACHE     observed on Apache 2.4.71 (mod_proxy, default settings), the behaviour stated in the row
  CLAR       a ferryman rule where the RFC leaves a choice, stated in the row (docs/request-safety.md)
  MODULE     a choice documented in ferryman/core/http.py itself (a stricter reading the RFC allows)

The property test at the end parses ferryman's own output with httptools (llhttp), the parser the
backend side of a deployment is most likely to share: whatever head `check_request_head` accepts, its
serialisation must be one unambiguous request.
"""

from __future__ import annotations

import re
from http import HTTPStatus

import httptools
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from ferryman.core.http import (
    BODY_CHUNKED,
    BODY_LENGTH,
    BODY_NONE,
    BODY_UNTIL_CLOSE,
    CONTINUE_100,
    HOP_BY_HOP,
    LAST_CHUNK,
    PROXIED_METHODS,
    RequestHead,
    ResponseHead,
    check_request_head,
    check_response_head,
    chunk,
    error_response,
    serialize_headers,
    serialize_request,
    serialize_response,
)
from ferryman.errors import BadRequest, HttpError, UpstreamProtocolError

# -- helpers -------------------------------------------------------------------------------------------

HOST = (b"host", b"example.com")

# The headers ferryman vouches for (invariant 4 of docs/request-safety.md), written out here so this test
# does not depend on ferryman.core.forwarded: any `_`/`-` spelling of these names, and any x-forwarded-*.
_VOUCHED = frozenset({b"forwarded", b"x-real-ip", b"remote-user"})


def is_vouched(name: bytes) -> bool:
    canonical = name.replace(b"_", b"-")
    return canonical in _VOUCHED or canonical.startswith(b"x-forwarded-")


def nothing_vouched(name: bytes) -> bool:
    return False


def check(headers, *, method=b"GET", target=b"/", version="1.1", vouched=is_vouched) -> RequestHead:
    return check_request_head(method, target, version, list(headers), is_vouched=vouched)


def names(headers) -> list[bytes]:
    return [n for n, _ in headers]


class _Collector:
    """httptools callbacks: counts messages, keeps the header list and body of each."""

    def __init__(self) -> None:
        self.messages: list[dict] = []
        self.url = b""

    def on_message_begin(self) -> None:
        self.messages.append({"headers": [], "body": b"", "complete": False})
        self.url = b""

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self.messages[-1]["headers"].append((name.lower(), value))

    def on_headers_complete(self) -> None:
        self.messages[-1]["url"] = self.url

    def on_body(self, body: bytes) -> None:
        self.messages[-1]["body"] += body

    def on_message_complete(self) -> None:
        self.messages[-1]["complete"] = True


def parse_requests(data: bytes) -> tuple[list[dict], httptools.HttpRequestParser]:
    c = _Collector()
    p = httptools.HttpRequestParser(c)
    p.feed_data(data)
    return c.messages, p


def parse_response(data: bytes) -> tuple[list[dict], httptools.HttpResponseParser]:
    c = _Collector()
    p = httptools.HttpResponseParser(c)
    p.feed_data(data)
    return c.messages, p


def head_lines(data: bytes) -> list[bytes]:
    """The field lines of a serialised head (status/request line and final blank line left out)."""
    head, sep, _ = data.partition(b"\r\n\r\n")
    assert sep, "head not terminated by CRLF CRLF"
    return head.split(b"\r\n")[1:]


def field_names(data: bytes) -> list[bytes]:
    return [line.split(b":", 1)[0].lower() for line in head_lines(data)]


def assert_crlf_only(data: bytes) -> None:
    """PS-1: CRLF line ends only, no bare CR or LF, no obs-fold (a line starting with SP/HTAB)."""
    head = data[: data.index(b"\r\n\r\n") + 4]
    stripped = head.replace(b"\r\n", b"")
    assert b"\r" not in stripped and b"\n" not in stripped, head
    for line in head.split(b"\r\n"):
        assert not line.startswith((b" ", b"\t")), head


FRAMING_NAMES = (b"content-length", b"transfer-encoding")

# == request heads ======================================================================================

# -- framing: accepted ----------------------------------------------------------------------------------

REQUEST_FRAMING_ACCEPTED = [
    # (source, version, method, framing headers, body, content_length)
    ("9112-6.3r7 no CL, no TE: a request has no content", "1.1", b"GET", [], BODY_NONE, 0),
    ("9112-6.3r7 no CL, no TE on POST: no content", "1.1", b"POST", [], BODY_NONE, 0),
    ("9112-6.3r6 CL 5", "1.1", b"POST", [(b"content-length", b"5")], BODY_LENGTH, 5),
    ("9112-6.3r6 CL 0 is no content", "1.1", b"POST", [(b"content-length", b"0")], BODY_NONE, 0),
    ("9110-8.6 CL = 1*DIGIT: leading zeros are digits", "1.1", b"PUT",
     [(b"content-length", b"007")], BODY_LENGTH, 7),
    ("9110-8.6 CL: large but 18 digits", "1.1", b"PUT",
     [(b"content-length", b"123456789012345678")], BODY_LENGTH, 123456789012345678),
    ("9112-6.3r6 CL in HTTP/1.0", "1.0", b"POST", [(b"content-length", b"3")], BODY_LENGTH, 3),
    ("9112-6.3r4 TE: chunked", "1.1", b"POST", [(b"transfer-encoding", b"chunked")], BODY_CHUNKED, 0),
    ("9112-7 transfer-coding names are case-insensitive", "1.1", b"POST",
     [(b"transfer-encoding", b"Chunked")], BODY_CHUNKED, 0),
    ("9112-5.1 OWS around the value is not part of it", "1.1", b"POST",
     [(b"transfer-encoding", b"chunked  ")], BODY_CHUNKED, 0),
]


@pytest.mark.parametrize(
    "source, version, method, framing, body, length", REQUEST_FRAMING_ACCEPTED,
    ids=[c[0] for c in REQUEST_FRAMING_ACCEPTED],
)
def test_an_unambiguous_request_body_framing_is_decided_from_cl_or_te(source, version, method, framing,
                                                                       body, length):
    head = check([HOST, *framing], method=method, version=version)
    assert head.body == body
    assert head.content_length == length
    assert not set(names(head.headers)) & set(FRAMING_NAMES), "framing headers are re-decided, never relayed"


# -- framing: refused ----------------------------------------------------------------------------------

CL5, CL6 = (b"content-length", b"5"), (b"content-length", b"6")
TE_CHUNKED = (b"transfer-encoding", b"chunked")

REQUEST_FRAMING_REFUSED = [
    # (source, version, framing headers)
    ("9112-6.1/6.3r3 PS-2 CL and TE", "1.1", [CL5, TE_CHUNKED]),
    ("9112-6.1/6.3r3 PS-2 TE and CL (other order)", "1.1", [TE_CHUNKED, CL5]),
    ("9112-6.3r3 PS-2 CL 0 and TE", "1.1", [(b"content-length", b"0"), TE_CHUNKED]),
    ("9112-6.3r5 PS-2 duplicate CL, equal values (MODULE: refuse, do not merge)", "1.1", [CL5, CL5]),
    ("9112-6.3r5 PS-2 duplicate CL, equal values in one line", "1.1", [(b"content-length", b"5, 5")]),
    ("9112-6.3r5 PS-2 APACHE two different Content-Length values: 400", "1.1", [CL5, CL6]),
    ("9112-6.3r5 PS-2 different values in one line", "1.1", [(b"content-length", b"5, 6")]),
    ("9110-8.6 PS-2 malformed CL: empty", "1.1", [(b"content-length", b"")]),
    ("9110-8.6 PS-2 malformed CL: negative", "1.1", [(b"content-length", b"-1")]),
    ("9110-8.6 PS-2 malformed CL: plus sign", "1.1", [(b"content-length", b"+5")]),
    ("9110-8.6 PS-2 malformed CL: hex", "1.1", [(b"content-length", b"0x10")]),
    ("9110-8.6 PS-2 malformed CL: exponent", "1.1", [(b"content-length", b"1e3")]),
    ("9110-8.6 PS-2 malformed CL: decimal point", "1.1", [(b"content-length", b"5.0")]),
    ("9110-8.6 PS-2 malformed CL: letters", "1.1", [(b"content-length", b"five")]),
    ("9110-8.6 PS-2 malformed CL: non-ASCII digit", "1.1", [(b"content-length", "\u0665".encode())]),
    ("9110-8.6 PS-2 CL too large to be honest (19 digits)", "1.1",
     [(b"content-length", b"1234567890123456789")]),
    ("9112-6.1 PS-2 APACHE TE gzip, chunked (Apache 500; ferryman 400)", "1.1",
     [(b"transfer-encoding", b"gzip, chunked")]),
    ("9112-6.3r4 PS-2 TE without final chunked", "1.1", [(b"transfer-encoding", b"gzip")]),
    ("9112-6.3r4 PS-2 TE chunked not last", "1.1", [(b"transfer-encoding", b"chunked, gzip")]),
    ("9112-6.1 PS-2 chunked applied twice", "1.1", [(b"transfer-encoding", b"chunked, chunked")]),
    ("9112-6.1 PS-2 two TE lines", "1.1", [TE_CHUNKED, TE_CHUNKED]),
    ("PS-gap httptools reads `TE: ,chunked` as no body", "1.1", [(b"transfer-encoding", b",chunked")]),
    ("PS-2 TE identity (removed coding)", "1.1", [(b"transfer-encoding", b"identity")]),
    ("PS-2 TE empty", "1.1", [(b"transfer-encoding", b"")]),
    ("PS-2 TE with a parameter", "1.1", [(b"transfer-encoding", b"chunked;x=1")]),
    ("PS-2 TE look-alike", "1.1", [(b"transfer-encoding", b"xchunked")]),
    ("9112-6.1 PS-2 TE in an HTTP/1.0 request", "1.0", [TE_CHUNKED]),
    ("9112-6.1 PS-2 TE and CL in an HTTP/1.0 request", "1.0", [TE_CHUNKED, CL5]),
]


@pytest.mark.parametrize("source, version, framing", REQUEST_FRAMING_REFUSED,
                         ids=[c[0] for c in REQUEST_FRAMING_REFUSED])
def test_an_ambiguous_request_body_framing_is_refused_with_400(source, version, framing):
    with pytest.raises(BadRequest) as err:
        check([HOST, *framing], method=b"POST", version=version)
    assert err.value.status == 400


# -- Host ----------------------------------------------------------------------------------------------

HOST_ACCEPTED = [
    # (source, version, headers, expected head.host)
    ("9112-3.2 Host in HTTP/1.1", "1.1", [HOST], b"example.com"),
    ("9110-7.2 Host with port", "1.1", [(b"host", b"example.com:8080")], b"example.com:8080"),
    ("9110-7.2 IPv4 literal with port", "1.1", [(b"host", b"127.0.0.1:80")], b"127.0.0.1:80"),
    ("9110-7.2 / RFC 3986 3.2.2 IPv6 literal with port", "1.1", [(b"host", b"[::1]:8443")], b"[::1]:8443"),
    ("9110-7.2 IPv6 literal without port", "1.1", [(b"host", b"[2001:db8::1]")], b"[2001:db8::1]"),
    ("APACHE HTTP/1.0 without Host is served", "1.0", [], None),
    ("9112-3.2 Host in HTTP/1.0", "1.0", [HOST], b"example.com"),
]


@pytest.mark.parametrize("source, version, headers, host", HOST_ACCEPTED, ids=[c[0] for c in HOST_ACCEPTED])
def test_a_valid_host_is_kept_and_never_forwarded_as_a_plain_header(source, version, headers, host):
    head = check(headers, version=version)
    assert head.host == host
    assert b"host" not in names(head.headers), "Host is written by serialize_request, once"


HOST_REFUSED = [
    # (source, version, headers)
    ("9112-3.2 APACHE HTTP/1.1 without Host: 400", "1.1", []),
    ("9110-4.2.1 an http URI never has an empty host: empty Host refused", "1.1", [(b"host", b"")]),
    ("9112-3.2 two Host lines, same value", "1.1", [HOST, HOST]),
    ("9112-3.2 two Host lines, different values", "1.1", [HOST, (b"host", b"evil.example")]),
    ("9112-3.2 two Host lines in HTTP/1.0", "1.0", [HOST, HOST]),
    ("PS-gap httptools accepts `Host: a,b`", "1.1", [(b"host", b"a,b")]),
    ("9110-7.2 space in Host", "1.1", [(b"host", b"a b")]),
    ("9110-7.2 userinfo is not part of Host", "1.1", [(b"host", b"user@example.com")]),
    ("9110-7.2 path in Host", "1.1", [(b"host", b"example.com/x")]),
    ("9110-7.2 backslash in Host", "1.1", [(b"host", b"example.com\\x")]),
    ("RFC 3986 3.2.2 IPv6 literal unclosed", "1.1", [(b"host", b"[::1")]),
    ("RFC 3986 3.2.2 IPv6 literal without brackets", "1.1", [(b"host", b"::1")]),
    ("RFC 3986 3.2.3 port is digits", "1.1", [(b"host", b"example.com:8o")]),
    ("RFC 3986 3.2.3 port longer than 5 digits", "1.1", [(b"host", b"example.com:123456")]),
]


@pytest.mark.parametrize("source, version, headers", HOST_REFUSED, ids=[c[0] for c in HOST_REFUSED])
def test_a_missing_duplicate_or_malformed_host_is_refused_with_400(source, version, headers):
    with pytest.raises(BadRequest) as err:
        check(headers, version=version)
    assert err.value.status == 400


# -- request target --------------------------------------------------------------------------------------

ABSOLUTE_ACCEPTED = [
    # (source, target, expected host, expected target)
    ("9112-3.2.2 authority replaces Host; target becomes origin-form", b"http://example.org/x?y=1",
     b"example.org", b"/x?y=1"),
    ("9110-4.2.3 scheme is case-insensitive; port kept", b"HTTP://Example.org:8080/x",
     b"Example.org:8080", b"/x"),
    ("9112-3.2.1 empty path becomes /", b"http://example.org", b"example.org", b"/"),
    ("9112-3.2.1 empty path with query becomes /?q", b"http://example.org?q=1", b"example.org", b"/?q=1"),
    ("9110-7.2 IPv6 authority", b"https://[::1]:8443/p", b"[::1]:8443", b"/p"),
]


@pytest.mark.parametrize("source, target, host, origin", ABSOLUTE_ACCEPTED,
                         ids=[c[0] for c in ABSOLUTE_ACCEPTED])
def test_an_absolute_form_target_agreeing_with_host_is_reduced_to_origin_form(source, target, host,
                                                                              origin):
    head = check([(b"host", host)], target=target)
    assert head.host == host
    assert head.target == origin


@pytest.mark.parametrize("headers", [[(b"host", b"other.example")], []], ids=["other Host", "no Host"])
def test_an_absolute_form_target_whose_host_disagrees_or_is_missing_is_refused(headers):
    # haproxy reg-tests h1_host_normalization.vtc: an authority that differs from Host gets 400 (PS-5)
    with pytest.raises(BadRequest):
        check(headers, target=b"http://example.org/x")


def test_an_origin_form_target_is_kept_byte_for_byte():
    head = check([HOST], target=b"/a/../b%2e?x=%20&y")
    assert head.target == b"/a/../b%2e?x=%20&y", "normalisation is ferryman.core.paths' job, not this one's"


TARGET_REFUSED = [
    # (source, method, target, status)
    ("9112-3.2 PS-5 non-http scheme", b"GET", b"ftp://example.org/x", 400),
    ("9110-4.2.4 PS-5 userinfo in the authority", b"GET", b"http://user@example.org/x", 400),
    ("9110-4.2.4 PS-5 password in the authority", b"GET", b"http://u:p@example.org/x", 400),
    ("9110-4.2.1 empty authority", b"GET", b"http:///x", 400),
    ("9110-7.2 malformed authority", b"GET", b"http://a,b/x", 400),
    ("9110-7.1 a fragment is never sent", b"GET", b"http://example.org/x#f", 400),
    ("9112-3.2 relative target", b"GET", b"x/y", 400),
    ("9112-3.2.4 asterisk-form outside OPTIONS", b"GET", b"*", 400),
    ("9112-3.2.4 MODULE OPTIONS * is answered 501, not proxied", b"OPTIONS", b"*", 501),
]


@pytest.mark.parametrize("source, method, target, status", TARGET_REFUSED, ids=[c[0] for c in TARGET_REFUSED])
def test_a_target_that_is_neither_origin_nor_plain_absolute_form_is_refused(source, method, target, status):
    with pytest.raises(HttpError) as err:
        check([HOST], method=method, target=target)
    assert err.value.status == status


def test_an_absolute_form_target_does_not_excuse_a_duplicate_host():
    with pytest.raises(BadRequest):
        check([HOST, HOST], target=b"http://example.org/")


# -- methods and versions ---------------------------------------------------------------------------------


@pytest.mark.parametrize("method", sorted(PROXIED_METHODS))
def test_every_proxied_method_is_accepted(method):
    # 9110-9.3, RFC 5789 (PATCH), RFC 4918 (WebDAV); APACHE "HEAD, OPTIONS, DELETE, PATCH are proxied"
    assert check([HOST], method=method).method == method


METHODS_501 = [
    ("APACHE TRACE: 501 (XST)", b"TRACE"),
    ("MODULE CONNECT is a forward proxy's job", b"CONNECT"),
    ("APACHE unknown method: 501", b"BREW"),
    ("9110-9.1 method names are case-sensitive", b"get"),
    ("9110-9.1 unknown method", b"PRI"),
]


@pytest.mark.parametrize("source, method", METHODS_501, ids=[c[0] for c in METHODS_501])
def test_trace_connect_and_unknown_methods_are_answered_501(source, method):
    target = b"example.org:443" if method == b"CONNECT" else b"/"
    with pytest.raises(HttpError) as err:
        check([HOST], method=method, target=target)
    assert err.value.status == 501


VERSIONS_REFUSED = [
    # (source, version, status, exception type)
    ("PS-gap HTTP/0.9 is refused with 400", "0.9", 400, BadRequest),
    ("9110-15.6.6 PS-gap HTTP/2.0 in an HTTP/1 request line: 505", "2.0", 505, HttpError),
    ("9110-15.6.6 HTTP/3.0: 505", "3.0", 505, HttpError),
]


@pytest.mark.parametrize("source, version, status, exc", VERSIONS_REFUSED,
                         ids=[c[0] for c in VERSIONS_REFUSED])
def test_versions_other_than_1_0_and_1_1_are_refused(source, version, status, exc):
    with pytest.raises(exc) as err:
        check([HOST], version=version)
    assert err.value.status == status


def test_the_version_is_checked_before_the_method():
    with pytest.raises(HttpError) as err:
        check([HOST], method=b"BREW", version="2.0")
    assert err.value.status == 505


# -- Expect ------------------------------------------------------------------------------------------------

EXPECT_CASES = [
    # (source, version, expect headers, expect_continue)
    ("9110-10.1.1 APACHE 100-continue", "1.1", [(b"expect", b"100-continue")], True),
    ("9110-10.1.1 the expectation is case-insensitive", "1.1", [(b"expect", b"100-Continue")], True),
    ("9110-10.1.1 no Expect", "1.1", [], False),
    ("9110-10.1.1 a 100-continue in HTTP/1.0 MUST be ignored", "1.0", [(b"expect", b"100-continue")], False),
]


@pytest.mark.parametrize("source, version, expect, flag", EXPECT_CASES, ids=[c[0] for c in EXPECT_CASES])
def test_expect_100_continue_sets_the_flag(source, version, expect, flag):
    head = check([HOST, (b"content-length", b"3"), *expect], method=b"POST", version=version)
    assert head.expect_continue is flag


EXPECT_417 = [
    ("9110-10.1.1 unknown expectation", [(b"expect", b"something")]),
    ("9110-10.1.1 a list with an unknown member", [(b"expect", b"100-continue, foo")]),
    ("9110-10.1.1 an expectation with a value", [(b"expect", b"100-continue=1")]),
]


@pytest.mark.parametrize("source, expect", EXPECT_417, ids=[c[0] for c in EXPECT_417])
def test_any_other_expectation_is_answered_417(source, expect):
    with pytest.raises(HttpError) as err:
        check([HOST, *expect], method=b"POST")
    assert err.value.status == 417


# -- hop-by-hop headers ----------------------------------------------------------------------------------


def test_hop_by_hop_headers_never_cross():
    # 9110-7.6.1, PS-4, APACHE "Hop-by-hop headers stripped both ways" (and Proxy-Authorization, 9110-11.7.1)
    head = check([
        HOST,
        (b"connection", b"keep-alive"),
        (b"keep-alive", b"timeout=5"),
        (b"te", b"trailers"),
        (b"trailer", b"x-checksum"),
        (b"upgrade", b"h2c"),
        (b"proxy-connection", b"keep-alive"),
        (b"proxy-authorization", b"Basic Zm9vOmJhcg=="),
        (b"x-end-to-end", b"1"),
    ])
    assert head.headers == [(b"x-end-to-end", b"1")]


def test_names_listed_in_connection_are_dropped_whatever_their_case_and_spacing():
    # 9110-7.6.1: "a proxy ... MUST remove ... each connection-option ... listed in Connection"; PS-4
    head = check([
        HOST,
        (b"connection", b" X-Secret , ,x-other"),
        (b"x-secret", b"1"),
        (b"x-other", b"2"),
        (b"connection", b"x-third"),
        (b"x-third", b"3"),
        (b"x-kept", b"4"),
    ])
    assert head.headers == [(b"x-kept", b"4")]


def test_connection_never_removes_host_or_framing():
    # MODULE / PS-1: framing and Host are ferryman's to decide, never dropped on a client's say-so
    head = check([
        (b"host", b"example.com"),
        (b"content-length", b"5"),
        (b"connection", b"host, content-length, transfer-encoding"),
    ], method=b"POST")
    assert head.host == b"example.com"
    assert (head.body, head.content_length) == (BODY_LENGTH, 5)
    data = serialize_request(head, b"/", b"backend:8080", b"")
    assert field_names(data).count(b"content-length") == 1
    assert field_names(data).count(b"host") == 1


def test_cookie_and_authorization_listed_in_connection_are_dropped_too():
    # 9110-7.6.1: a name listed in Connection is hop-by-hop for this message, whatever it is
    head = check([
        HOST,
        (b"connection", b"cookie, authorization"),
        (b"cookie", b"a=1"),
        (b"authorization", b"Basic Zm9vOmJhcg=="),
    ])
    assert head.cookie is None
    assert head.authorization is None
    assert head.headers == []


# -- vouched headers -------------------------------------------------------------------------------------


def test_vouched_headers_are_taken_out_and_only_dashed_spellings_are_kept_as_evidence():
    # PS-4: every client copy is removed, in every `_`/case alias; `Remote_User` is REMOTE_USER to WSGI.
    # Underscore spellings are removed and never believed, even from a trusted proxy.
    head = check([
        HOST,
        (b"x-forwarded-for", b"1.1.1.1"),
        (b"x_forwarded_for", b"2.2.2.2"),
        (b"remote_user", b"admin"),
        (b"remote-user", b"root"),
        (b"x-forwarded-proto", b"https"),
        (b"x-app", b"kept"),
    ])
    assert head.vouched == {
        b"x-forwarded-for": b"1.1.1.1",
        b"remote-user": b"root",
        b"x-forwarded-proto": b"https",
    }
    assert head.headers == [(b"x-app", b"kept")]


def test_is_vouched_is_asked_about_the_name_as_received():
    asked: list[bytes] = []

    def spy(name: bytes) -> bool:
        asked.append(name)
        return name == b"remote_user"

    head = check([HOST, (b"remote_user", b"admin"), (b"x-app", b"1")], vouched=spy)
    assert b"remote_user" in asked and b"x-app" in asked
    assert head.vouched == {}  # removed, and as an underscore spelling never believed
    assert head.headers == [(b"x-app", b"1")]


def test_without_a_vouched_predicate_match_everything_end_to_end_crosses():
    head = check([HOST, (b"x-forwarded-for", b"1.1.1.1")], vouched=nothing_vouched)
    assert head.headers == [(b"x-forwarded-for", b"1.1.1.1")]
    assert head.vouched == {}


# -- Cookie, Authorization -------------------------------------------------------------------------------


def test_two_cookie_headers_are_merged_with_semicolon_space_into_one():
    # 9110-5.3 allows combining, 6265-5.4 joins with "; " (APACHE quirk: Apache uses ", ", which breaks
    # the last cookie of the first line)
    head = check([HOST, (b"cookie", b"a=1"), (b"x-app", b"1"), (b"cookie", b"sessionid=x.http-2")])
    assert head.cookie == b"a=1; sessionid=x.http-2"
    assert [(n, v) for n, v in head.headers if n == b"cookie"] == [(b"cookie", b"a=1; sessionid=x.http-2")]


def test_one_cookie_header_is_forwarded_unchanged():
    head = check([HOST, (b"cookie", b"a=1; b=2")])
    assert head.cookie == b"a=1; b=2"
    assert head.headers == [(b"cookie", b"a=1; b=2")]


def test_authorization_is_kept_for_the_auth_check_and_forwarded():
    head = check([HOST, (b"authorization", b"Basic Zm9vOmJhcg==")])
    assert head.authorization == b"Basic Zm9vOmJhcg=="
    assert head.headers == [(b"authorization", b"Basic Zm9vOmJhcg==")]


# -- keep-alive ------------------------------------------------------------------------------------------

KEEP_ALIVE = [
    # (source, version, connection header values, keep_alive)
    ("9112-9.3 HTTP/1.1 persists by default", "1.1", [], True),
    ("9112-9.3 close", "1.1", [b"close"], False),
    ("9110-7.6.1 connection options are case-insensitive", "1.1", [b"Close"], False),
    ("9112-9.3 keep-alive in 1.1 changes nothing", "1.1", [b"keep-alive"], True),
    ("9112-9.3 close among other options", "1.1", [b"x-foo, close"], False),
    ("9112-9.3 close wins over keep-alive", "1.1", [b"keep-alive, close"], False),
    ("9112-9.3 close wins over keep-alive, any order", "1.1", [b"close, keep-alive"], False),
    ("9112-9.3 HTTP/1.0 closes by default", "1.0", [], False),
    ("9112-C.2.2 HTTP/1.0 keep-alive", "1.0", [b"keep-alive"], True),
    ("9112-C.2.2 HTTP/1.0 Keep-Alive (case)", "1.0", [b"Keep-Alive"], True),
    ("9112-9.3 HTTP/1.0 close wins over keep-alive", "1.0", [b"keep-alive, close"], False),
    ("9112-9.3 HTTP/1.0 close wins over keep-alive, any order", "1.0", [b"close, keep-alive"], False),
    ("9112-9.3 HTTP/1.0 close wins over keep-alive, two lines", "1.0", [b"close", b"keep-alive"], False),
]


@pytest.mark.parametrize("source, version, connection, keep", KEEP_ALIVE, ids=[c[0] for c in KEEP_ALIVE])
def test_keep_alive_follows_the_version_and_the_connection_options(source, version, connection, keep):
    head = check([HOST, *((b"connection", v) for v in connection)], version=version)
    assert head.keep_alive is keep


def test_a_checked_head_knows_whether_its_method_is_idempotent():
    # 9110-9.2.2; PS-8 (retries depend on it)
    assert check([HOST], method=b"PUT").is_idempotent
    assert not check([HOST], method=b"POST").is_idempotent
    assert not check([HOST], method=b"PATCH").is_idempotent


# == serialize_request ==================================================================================


def test_serialize_request_writes_a_fresh_canonical_head():
    head = check([HOST, (b"x-app", b"1"), (b"cookie", b"a=1"), (b"content-length", b"5")], method=b"POST")
    head.query = b"?q=1"
    data = serialize_request(head, b"/webapps/echo", b"10.0.0.5:8000",
                             serialize_headers([(b"x-forwarded-for", b"192.0.2.1")]))
    assert data == (
        b"POST /webapps/echo?q=1 HTTP/1.1\r\n"
        b"host: 10.0.0.5:8000\r\n"
        b"x-forwarded-for: 192.0.2.1\r\n"
        b"x-app: 1\r\n"
        b"cookie: a=1\r\n"
        b"content-length: 5\r\n"
        b"\r\n"
    )


SERIALIZED_FRAMING = [
    # (source, method, client framing headers, the one framing line expected, or None)
    ("PS-1 CL request: one content-length", b"POST", [(b"content-length", b"12")], b"content-length: 12"),
    ("PS-1 chunked request: one transfer-encoding", b"POST", [TE_CHUNKED], b"transfer-encoding: chunked"),
    ("9110-8.6 bodiless POST: content-length 0", b"POST", [], b"content-length: 0"),
    ("9110-8.6 bodiless PUT: content-length 0", b"PUT", [], b"content-length: 0"),
    ("9110-8.6 bodiless PATCH: content-length 0", b"PATCH", [], b"content-length: 0"),
    ("9110-8.6 POST with CL 0: content-length 0", b"POST", [(b"content-length", b"0")], b"content-length: 0"),
    ("9110-8.6 GET without content: no framing header", b"GET", [], None),
    ("9110-8.6 DELETE without content: no framing header", b"DELETE", [], None),
    ("9110-8.6 GET with CL 0: no framing header", b"GET", [(b"content-length", b"0")], None),
    ("PS-1 GET with content keeps its length", b"GET", [(b"content-length", b"2")], b"content-length: 2"),
]


@pytest.mark.parametrize("source, method, framing, expected", SERIALIZED_FRAMING,
                         ids=[c[0] for c in SERIALIZED_FRAMING])
def test_serialize_request_writes_at_most_one_framing_header(source, method, framing, expected):
    head = check([HOST, *framing], method=method)
    data = serialize_request(head, b"/", b"backend", b"")
    framing_lines = [line for line in head_lines(data) if line.split(b":")[0].lower() in FRAMING_NAMES]
    assert framing_lines == ([expected] if expected else [])
    assert_crlf_only(data)
    assert data.endswith(b"\r\n\r\n") and data.count(b"\r\n\r\n") == 1


def test_serialize_request_always_speaks_http_1_1_upstream():
    # 9110-2.5: a proxy sends its own version; the HTTP/1.0 client's head is re-written as 1.1
    head = check([], version="1.0")
    data = serialize_request(head, b"/", b"backend", b"")
    assert data.startswith(b"GET / HTTP/1.1\r\nhost: backend\r\n")


def test_a_serialised_request_parses_back_as_exactly_one_request():
    head = check([HOST, TE_CHUNKED, (b"x-app", b"1")], method=b"PUT")
    data = serialize_request(head, b"/x", b"backend", b"") + chunk(b"hello") + LAST_CHUNK
    messages, parser = parse_requests(data)
    assert len(messages) == 1 and messages[0]["complete"]
    assert messages[0]["body"] == b"hello"
    assert parser.get_method() == b"PUT"


# == response heads =====================================================================================

RESPONSE_FRAMING = [
    # (source, status, version, method, headers, body, content_length, keep_alive)
    ("9112-6.3r6 CL", 200, "1.1", b"GET", [CL5], BODY_LENGTH, 5, True),
    ("9112-6.3r6 CL 0 is no content", 200, "1.1", b"GET", [(b"content-length", b"0")], BODY_NONE, 0, True),
    ("9112-6.3r4 chunked", 200, "1.1", b"GET", [TE_CHUNKED], BODY_CHUNKED, -1, True),
    ("9112-7 chunked, any case", 200, "1.1", b"GET", [(b"transfer-encoding", b"CHUNKED")], BODY_CHUNKED, -1,
     True),
    ("9112-6.3r8 no CL, no TE: close-delimited", 200, "1.1", b"GET", [], BODY_UNTIL_CLOSE, -1, False),
    ("9112-6.3r5 equal duplicate CL may be merged", 200, "1.1", b"GET", [CL5, CL5], BODY_LENGTH, 5, True),
    ("9112-9.3 HTTP/1.0 backend: close after", 200, "1.0", b"GET", [CL5], BODY_LENGTH, 5, False),
    ("9112-9.3 HTTP/1.0 keep-alive is not trusted", 200, "1.0", b"GET",
     [CL5, (b"connection", b"keep-alive")], BODY_LENGTH, 5, False),
    ("9112-9.6 Connection: close", 200, "1.1", b"GET", [CL5, (b"connection", b"close")], BODY_LENGTH, 5,
     False),
    ("9112-6.3r1 HEAD: no content; the CL stays for the client", 200, "1.1", b"HEAD", [CL5], BODY_NONE, 5,
     True),
    ("9112-6.3r1 HEAD answered with chunked: no content", 200, "1.1", b"HEAD", [TE_CHUNKED], BODY_NONE, -1,
     True),
    ("9112-6.3r1 9110-8.6 204: no content, and never a CL", 204, "1.1", b"GET", [(b"content-length", b"0")],
     BODY_NONE, -1, True),
    ("9112-6.3r1 9110-8.6 304: no content, CL of the selected representation", 304, "1.1", b"GET", [CL5],
     BODY_NONE, 5, True),
    ("9112-6.3r1 204 without CL ends at the head: connection reusable", 204, "1.1", b"GET", [], BODY_NONE,
     -1, True),
    ("9112-6.3r1 304 without CL ends at the head: connection reusable", 304, "1.1", b"GET", [], BODY_NONE,
     -1, True),
    ("9112-6.3r1 HEAD response without CL ends at the head: connection reusable", 200, "1.1", b"HEAD", [],
     BODY_NONE, -1, True),
]


@pytest.mark.parametrize("source, status, version, method, headers, body, length, keep", RESPONSE_FRAMING,
                         ids=[c[0] for c in RESPONSE_FRAMING])
def test_a_response_body_framing_is_decided_per_rfc_9112_6_3(source, status, version, method, headers, body,
                                                             length, keep):
    resp = check_response_head(status, version, headers, request_method=method)
    assert resp.status == status
    assert resp.body == body
    assert resp.content_length == length
    assert resp.keep_alive is keep
    assert not set(names(resp.headers)) & set(FRAMING_NAMES)


RESPONSE_REFUSED = [
    # (source, version, headers)
    ("9112-6.3r3 PS-2 CL and TE from a backend: 502", "1.1", [CL5, TE_CHUNKED]),
    ("9112-6.3r3 PS-2 TE and CL", "1.1", [TE_CHUNKED, CL5]),
    ("9112-6.3r5 PS-2 different CL values", "1.1", [CL5, CL6]),
    ("9112-6.3r5 PS-2 different CL values in one line", "1.1", [(b"content-length", b"5, 6")]),
    ("9112-6.3r5 PS-2 equal values in one line (MODULE: not merged)", "1.1", [(b"content-length", b"5, 5")]),
    ("9110-8.6 PS-2 malformed CL", "1.1", [(b"content-length", b"abc")]),
    ("9110-8.6 PS-2 negative CL", "1.1", [(b"content-length", b"-1")]),
    ("9110-8.6 PS-2 empty CL", "1.1", [(b"content-length", b"")]),
    ("9112-6.3r4 PS-2 TE without chunked", "1.1", [(b"transfer-encoding", b"gzip")]),
    ("9112-6.3r4 PS-2 chunked not final", "1.1", [(b"transfer-encoding", b"chunked, gzip")]),
    ("9112-6.1 PS-2 chunked twice", "1.1", [(b"transfer-encoding", b"chunked, chunked")]),
    ("9112-6.1 PS-2 chunked twice over two lines", "1.1", [TE_CHUNKED, TE_CHUNKED]),
    ("9112-2.3 HTTP/2.0 status line", "2.0", [CL5]),
    ("9112-2.3 HTTP/0.9", "0.9", []),
]


@pytest.mark.parametrize("source, version, headers", RESPONSE_REFUSED, ids=[c[0] for c in RESPONSE_REFUSED])
def test_an_ambiguous_response_is_an_upstream_protocol_error(source, version, headers):
    with pytest.raises(UpstreamProtocolError) as err:
        check_response_head(200, version, headers, request_method=b"GET")
    assert err.value.status == 502


TE_RECODED = [
    # (source, TE header values, other headers, expected content-encoding values in order)
    ("9112-7 gzip, chunked: de-chunked, the gzip stays with the content", [b"gzip, chunked"], [],
     [b"gzip"]),
    ("9112-6.1 codings over two TE lines", [b"gzip", b"chunked"], [], [b"gzip"]),
    ("9110-8.4 codings listed in the order applied", [b"gzip, chunked"], [(b"content-encoding", b"br")],
     [b"br", b"gzip"]),
    ("9110-5.6.1 empty list elements do not count: `, chunked` is chunked alone", [b", chunked"], [], []),
    ("9110-5.6.1 empty list elements do not count: `gzip,,chunked`", [b"gzip,,chunked"], [], [b"gzip"]),
]


@pytest.mark.parametrize("source, te, other, encodings", TE_RECODED, ids=[c[0] for c in TE_RECODED])
def test_transfer_codings_before_chunked_are_kept_as_content_encoding(source, te, other, encodings):
    headers = [*other, *((b"transfer-encoding", v) for v in te)]
    resp = check_response_head(200, "1.1", headers, request_method=b"GET")
    assert resp.body == BODY_CHUNKED
    assert [v for n, v in resp.headers if n == b"content-encoding"] == encodings


def test_response_hop_by_hop_headers_and_connection_names_never_cross():
    # 9110-7.6.1, PS-4, APACHE "Hop-by-hop headers stripped both ways"
    resp = check_response_head(200, "1.1", [
        CL5,
        (b"connection", b"x-backend-secret"),
        (b"x-backend-secret", b"10.0.0.5"),
        (b"keep-alive", b"timeout=5"),
        (b"upgrade", b"h2c"),
        (b"proxy-authenticate", b"Basic"),
        (b"proxy-connection", b"keep-alive"),
        (b"trailer", b"x-checksum"),
        (b"te", b"trailers"),
        (b"set-cookie", b"a=1"),
    ], request_method=b"GET")
    assert resp.headers == [(b"set-cookie", b"a=1")]
    assert resp.keep_alive is True


# == serialize_response ==================================================================================

OK = b"HTTP/1.1 200 OK\r\n"
SERIALIZED_RESPONSES = [
    # (source, status, content_length, framing, keep_alive, head_only, expected bytes after the status line)
    ("PS-1 length framing", 200, 5, BODY_LENGTH, True, False, b"x: 1\r\ncontent-length: 5\r\n\r\n"),
    ("PS-1 chunked framing", 200, -1, BODY_CHUNKED, True, False,
     b"x: 1\r\ntransfer-encoding: chunked\r\n\r\n"),
    ("9112-6.3r8 close-delimited: no framing header, connection: close", 200, -1, BODY_UNTIL_CLOSE, False,
     False, b"x: 1\r\nconnection: close\r\n\r\n"),
    ("9110-8.6 no content in a 200: content-length 0", 200, 0, BODY_NONE, True, False,
     b"x: 1\r\ncontent-length: 0\r\n\r\n"),
    ("9112-9.6 close is announced", 200, 5, BODY_LENGTH, False, False,
     b"x: 1\r\ncontent-length: 5\r\nconnection: close\r\n\r\n"),
    ("9110-9.3.2 HEAD keeps the length of the GET", 200, 5, BODY_NONE, True, True,
     b"x: 1\r\ncontent-length: 5\r\n\r\n"),
    ("9110-9.3.2 HEAD without a known length: no framing header", 200, -1, BODY_NONE, True, True,
     b"x: 1\r\n\r\n"),
]


@pytest.mark.parametrize("source, status, length, framing, keep, head_only, rest", SERIALIZED_RESPONSES,
                         ids=[c[0] for c in SERIALIZED_RESPONSES])
def test_serialize_response_writes_the_framing_the_caller_chose(source, status, length, framing, keep,
                                                                head_only, rest):
    resp = ResponseHead(status)
    resp.content_length = length
    data = serialize_response(resp, [(b"x", b"1")], framing, keep, head_only)
    assert data == OK + rest
    assert_crlf_only(data)


NO_CONTENT_RESPONSES = [
    # (source, status, content_length, expected framing lines)
    ("9110-8.6 204 never carries content-length", 204, -1, []),
    ("9110-15.4.5 304 keeps the length of the selected representation", 304, 5, [b"content-length: 5"]),
    ("9110-15.4.5 304 without a length gets none", 304, -1, []),
]


@pytest.mark.parametrize("source, status, length, expected", NO_CONTENT_RESPONSES,
                         ids=[c[0] for c in NO_CONTENT_RESPONSES])
def test_responses_without_content_get_no_invented_framing(source, status, length, expected):
    resp = ResponseHead(status)
    resp.content_length = length
    data = serialize_response(resp, [], BODY_NONE, True, False)
    assert [ln for ln in head_lines(data) if ln.split(b":")[0] in FRAMING_NAMES] == expected


def test_an_unknown_status_gets_an_empty_reason_phrase():
    # 9112-4: reason-phrase may be empty, the SP before it may not
    data = serialize_response(ResponseHead(599), [], BODY_LENGTH, True, False)
    assert data.startswith(b"HTTP/1.1 599 \r\n")


def test_a_checked_and_serialised_response_parses_back_with_its_body():
    resp = check_response_head(200, "1.1", [(b"transfer-encoding", b"gzip, chunked"), (b"x", b"1")],
                               request_method=b"GET")
    data = serialize_response(resp, resp.headers, BODY_CHUNKED, True, False) + chunk(b"abc") + LAST_CHUNK
    messages, _ = parse_response(data)
    assert len(messages) == 1 and messages[0]["complete"] and messages[0]["body"] == b"abc"
    assert (b"content-encoding", b"gzip") in messages[0]["headers"]
    assert b"connection" not in [n for n, _ in messages[0]["headers"]], "HTTP/1.1 persists by default"


# == error_response =====================================================================================

ERROR_STATUSES = [400, 401, 403, 404, 413, 414, 417, 431, 500, 501, 502, 503, 504, 505]


@pytest.mark.parametrize("status", ERROR_STATUSES)
@pytest.mark.parametrize("close", [True, False])
def test_error_response_is_a_small_plain_page_with_the_right_length(status, close):
    data = error_response(status, close=close)
    messages, parser = parse_response(data)
    assert len(messages) == 1 and messages[0]["complete"]
    assert parser.get_status_code() == status
    body = messages[0]["body"]
    assert body == f"{status} {HTTPStatus(status).phrase}\n".encode()
    hdrs = dict(messages[0]["headers"])
    assert hdrs[b"content-length"] == str(len(body)).encode()
    assert hdrs[b"content-type"] == b"text/plain; charset=utf-8"
    assert (hdrs.get(b"connection") == b"close") is close
    assert_crlf_only(data)


def test_error_response_carries_no_internal_details():
    # PS-8 / module docstring: no internal addresses, no backend details, whatever the cause
    data = error_response(502, close=True)
    body = data.partition(b"\r\n\r\n")[2]
    assert body == b"502 Bad Gateway\n"
    assert not re.search(rb"\d+\.\d+\.\d+\.\d+|Traceback|Error\(|:\d{2,5}\b", data)


def test_error_response_includes_extra_headers_and_survives_an_unknown_status():
    data = error_response(401, close=False, extra=[(b"www-authenticate", b'Basic realm="x"')])
    assert b'\r\nwww-authenticate: Basic realm="x"\r\n' in data
    data = error_response(599, close=True)
    messages, _ = parse_response(data)
    assert messages[0]["body"] == b"error\n"


# == chunk ==============================================================================================

CHUNKS = [
    # (source, data, expected)
    ("9112-7.1 hex size, CRLF, data, CRLF", b"hello", b"5\r\nhello\r\n"),
    ("9112-7.1 size is hex", b"x" * 255, b"ff\r\n" + b"x" * 255 + b"\r\n"),
    ("9112-7.1 size is hex, several digits", b"y" * 4096, b"1000\r\n" + b"y" * 4096 + b"\r\n"),
    ("9112-7.1 data may hold CRLF", b"\r\n", b"2\r\n\r\n\r\n"),
]


@pytest.mark.parametrize("source, data, expected", CHUNKS, ids=[c[0] for c in CHUNKS])
def test_chunk_is_canonical_without_extensions(source, data, expected):
    assert chunk(data) == expected
    assert b";" not in chunk(data).split(b"\r\n", 1)[0], "PS-1: no chunk extensions"


def test_an_empty_chunk_is_not_the_last_chunk():
    # 9112-7.1: a zero-size chunk IS the last-chunk; writing one for an empty read ends the message early,
    # and whatever follows would be read by the client as the next response (PS-3)
    assert chunk(b"") != LAST_CHUNK
    assert chunk(b"") == b""


def test_chunks_and_the_last_chunk_parse_back_to_the_body():
    head = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n"
    messages, _ = parse_response(head + chunk(b"ab") + chunk(b"c" * 300) + LAST_CHUNK)
    assert messages[0]["complete"] and messages[0]["body"] == b"ab" + b"c" * 300
    assert LAST_CHUNK == b"0\r\n\r\n"
    assert CONTINUE_100 == b"HTTP/1.1 100 Continue\r\n\r\n"


# == property: whatever is accepted is re-serialised unambiguously =====================================

TCHAR = "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyz"
SPECIAL_NAMES = [
    b"host", b"content-length", b"transfer-encoding", b"connection", b"keep-alive", b"te", b"trailer",
    b"upgrade", b"proxy-connection", b"proxy-authorization", b"proxy-authenticate", b"expect", b"cookie",
    b"authorization", b"x-forwarded-for", b"x_forwarded_for", b"x-forwarded-host", b"remote_user",
    b"remote-user", b"forwarded", b"x-real-ip", b"content_length", b"transfer_encoding", b"x-app",
]
# What llhttp lets through in a field value: HTAB, SP, VCHAR, obs-text (it refuses other controls itself).
VALUE_BYTES = [9, *range(0x20, 0x7F), *range(0x80, 0x100)]
SPECIAL_VALUES = [
    b"chunked", b"Chunked", b"gzip, chunked", b",chunked", b"0", b"5", b"12", b"5, 5", b"-1", b"close",
    b"keep-alive", b"close, keep-alive", b"x-app, cookie", b"host, content-length", b"100-continue",
    b"example.com", b"[::1]:8080", b"a,b", b"",
]

names_st = st.one_of(st.sampled_from(SPECIAL_NAMES), st.text(TCHAR, min_size=1, max_size=12).map(str.encode))
values_st = st.one_of(st.sampled_from(SPECIAL_VALUES),
                      st.lists(st.sampled_from(VALUE_BYTES), max_size=20).map(bytes))
headers_st = st.lists(st.tuples(names_st, values_st), max_size=12)
methods_st = st.sampled_from([b"GET", b"HEAD", b"POST", b"PUT", b"PATCH", b"DELETE", b"OPTIONS", b"TRACE"])
targets_st = st.sampled_from([b"/", b"/a?b=c", b"http://example.org/x", b"http://[::1]:8080", b"*", b"x"])
versions_st = st.sampled_from(["1.1", "1.1", "1.0", "0.9", "2.0"])


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(method=methods_st, target=targets_st, version=versions_st, headers=headers_st)
@example(method=b"POST", target=b"/", version="1.1",
         headers=[(b"host", b"a"), (b"content-length", b"5"), (b"transfer-encoding", b"chunked")])
@example(method=b"GET", target=b"/", version="1.1",
         headers=[(b"host", b"a"), (b"connection", b"content-length, host, x-app"), (b"x-app", b"1"),
                  (b"content-length", b"3")])
def test_an_accepted_request_head_serialises_to_exactly_one_unambiguous_request(method, target, version,
                                                                              headers):
    try:
        head = check_request_head(method, target, version, list(headers), is_vouched=is_vouched)
    except HttpError:
        return  # refusing is always allowed (never looser than HAProxy; stricter is fine)
    data = serialize_request(head, head.target, head.host or b"member:8000", b"")
    if head.body == BODY_LENGTH:
        body = b"x" * head.content_length if head.content_length <= 4096 else b""
        data += body
    elif head.body == BODY_CHUNKED:
        data += chunk(b"abc") + LAST_CHUNK

    assert_crlf_only(data)
    messages, parser = parse_requests(data)
    assert len(messages) == 1
    if head.body != BODY_LENGTH or head.content_length <= 4096:
        assert messages[0]["complete"], "the message ends where ferryman says it ends"
    got = [n for n, _ in messages[0]["headers"]]

    # PS-1: at most one framing header, and exactly one whenever there is content or the method
    # anticipates it (9110-8.6)
    framing = [n for n in got if n in FRAMING_NAMES]
    assert len(framing) <= 1
    if head.body != BODY_NONE or method in (b"POST", b"PUT", b"PATCH"):
        assert len(framing) == 1
    assert got.count(b"host") == 1

    # PS-4: no hop-by-hop header, nothing the client's Connection named (bar Host and framing, which
    # ferryman writes itself), no vouched header under any alias
    listed = {t.strip().lower() for n, v in headers if n == b"connection" for t in v.split(b",")}
    forbidden = (set(HOP_BY_HOP) | listed) - {b"host", *FRAMING_NAMES}
    assert not forbidden & set(got)
    assert not [n for n in got if is_vouched(n)]
    assert parser.get_method() == method
    assert messages[0]["url"] == head.target


RESPONSE_STATUSES = st.sampled_from([200, 201, 204, 206, 301, 304, 404, 500, 503])


@settings(max_examples=400, deadline=None)
@given(status=RESPONSE_STATUSES, version=st.sampled_from(["1.1", "1.1", "1.0"]), headers=headers_st)
@example(status=200, version="1.1", headers=[(b"content-length", b"5"), (b"transfer-encoding", b"chunked")])
def test_an_accepted_response_head_serialises_to_exactly_one_unambiguous_response(status, version, headers):
    try:
        resp = check_response_head(status, version, list(headers), request_method=b"GET")
    except UpstreamProtocolError:
        return  # PS-2: 502 and close is always allowed
    # the client-side framing rule of the engine: keep the backend's length, re-chunk anything else
    if resp.body == BODY_UNTIL_CLOSE:
        framing, keep, body = BODY_UNTIL_CLOSE, False, b""
    elif resp.body == BODY_CHUNKED:
        framing, keep, body = BODY_CHUNKED, resp.keep_alive, chunk(b"abc") + LAST_CHUNK
    elif resp.body == BODY_LENGTH:
        n = resp.content_length
        framing, keep, body = BODY_LENGTH, resp.keep_alive, b"x" * n if n <= 4096 else b""
    else:
        framing, keep, body = BODY_NONE, resp.keep_alive, b""
    data = serialize_response(resp, resp.headers, framing, keep, False)
    assert_crlf_only(data)
    messages, _ = parse_response(data + body)
    assert len(messages) == 1
    got = [n for n, _ in messages[0]["headers"]]
    assert len([n for n in got if n in FRAMING_NAMES]) <= 1, "PS-1: one framing header at most"
    if framing in (BODY_LENGTH, BODY_CHUNKED):
        assert len([n for n in got if n in FRAMING_NAMES]) == 1
    listed = {t.strip().lower() for n, v in headers if n == b"connection" for t in v.split(b",")}
    assert not ((set(HOP_BY_HOP) | listed) - {b"connection", *FRAMING_NAMES}) & set(got), "PS-4"
    assert got.count(b"connection") == (0 if keep else 1)
    if framing != BODY_UNTIL_CLOSE and (framing != BODY_LENGTH or resp.content_length <= 4096):
        assert messages[0]["complete"]


# == small helpers the engine relies on ==================================================================

REWRITABLE_CASES = [
    # (source, headers, rewritable)
    ("APACHE ProxyPassReverse: Location", [CL5, (b"location", b"http://10.0.0.5/x")], True),
    ("APACHE ProxyPassReverse: Content-Location", [CL5, (b"content-location", b"/x")], True),
    ("APACHE ProxyPassReverse: URI", [CL5, (b"uri", b"/x")], True),
    ("APACHE ProxyPassReverseCookiePath: Set-Cookie", [CL5, (b"set-cookie", b"a=1; Path=/webapps")], True),
    ("nothing to rewrite", [CL5, (b"content-type", b"text/plain")], False),
    ("9110-7.6.1 a Location named in Connection is gone, but was seen", [
        CL5, (b"connection", b"location"), (b"location", b"/x")], True),
]


@pytest.mark.parametrize("source, headers, rewritable", REWRITABLE_CASES,
                         ids=[c[0] for c in REWRITABLE_CASES])
def test_a_response_says_whether_reverse_rewriting_has_work(source, headers, rewritable):
    assert check_response_head(200, "1.1", headers, request_method=b"GET").rewritable is rewritable


def test_serialize_headers_writes_one_crlf_terminated_line_per_field():
    assert serialize_headers([(b"x-a", b"1"), (b"x-b", b"")]) == b"x-a: 1\r\nx-b: \r\n"
    assert serialize_headers([]) == b""
