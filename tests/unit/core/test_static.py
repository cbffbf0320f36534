"""ferryman.core.static: the file a static route names, its validators, and conditional/range answers.

Sources named in the tables:
  RFC3986-3.3   RFC 3986 section 3.3: "." and ".." segments
  RFC3986-2.1   RFC 3986 section 2.1: percent-encoding is "%" HEXDIG HEXDIG
  CVE-2021-41773  Apache 2.4.49 path traversal through ".%2e/" in a static directory
  CVE-2021-42013  Apache 2.4.50: the same through double-encoded "%%32%65"
  NUL          a NUL byte ends a C string, so "a.txt%00.png" names "a.txt" to the file system
  WINSEP       a backslash is a separator on Windows and in some libraries (IIS "..\\" traversal)
  RFC9110-x    RFC 9110 section x (conditional requests 13, ranges 14, dates 5.6.7, ETag 8.8.3)
"""

from __future__ import annotations

import posixpath
from urllib.parse import quote

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ferryman.core.static import (ByteRange, Refused, Resolved, content_type, contained, decide,
                                  format_http_date, parse_http_date, parse_range, resolve_path, validators)

# -- paths ------------------------------------------------------------------------------------------

REFUSED = [
    ("/..", "RFC3986-3.3"),
    ("/a/../b", "RFC3986-3.3"),
    ("/./a", "RFC3986-3.3"),
    ("/.%2e/etc/passwd", "CVE-2021-41773"),
    ("/%2e%2e/etc/passwd", "CVE-2021-41773"),
    ("/%2E%2E/x", "CVE-2021-41773"),
    ("/%2e/x", "RFC3986-3.3"),
    ("/%%32%65%%32%65/x", "CVE-2021-42013"),
    ("/a%2Fb", "RFC3986-2.1"),
    ("/a%2f..%2fb", "RFC3986-2.1"),
    ("/a%5Cb", "WINSEP"),
    ("/..\\x", "WINSEP"),
    ("/a\\b", "WINSEP"),
    ("/a.txt%00.png", "NUL"),
    ("/a%0Ab", "NUL"),
    ("/a%7f", "NUL"),
    ("/%", "RFC3986-2.1"),
    ("/%4", "RFC3986-2.1"),
    ("/%zz", "RFC3986-2.1"),
    ("/%ff", "RFC3986-2.1"),
    ("/%C3", "RFC3986-2.1"),
    ("/.env", "hidden"),
    ("/uploads/.htaccess", "hidden"),
    ("/%2eenv", "hidden"),
    ("/...", "hidden"),
    ("x", "RFC3986-3.3"),
]


@pytest.mark.parametrize(("rest", "source"), REFUSED, ids=[r for r, _ in REFUSED])
def test_a_path_that_could_leave_the_directory_or_be_misread_is_refused(rest: str, source: str) -> None:
    assert isinstance(resolve_path(rest), Refused), source


ACCEPTED = [
    ("", (), True),
    ("/", (), True),
    ("/a.txt", ("a.txt",), False),
    ("/uploads/a%20b.txt", ("uploads", "a b.txt"), False),
    ("/uploads//x/", ("uploads", "x"), True),
    ("/%C3%A9t%C3%A9.png", ("été.png",), False),
    ("/%252e%252e/x", ("%2e%2e", "x"), False),   # double-encoded dots are data, not dots
    ("/a..b", ("a..b",), False),
]


@pytest.mark.parametrize(("rest", "segments", "directory"), ACCEPTED, ids=[r or "empty" for r, _, _ in ACCEPTED])
def test_a_plain_path_resolves_to_its_decoded_segments(rest: str, segments: tuple[str, ...], directory: bool) -> None:
    assert resolve_path(rest) == Resolved(segments, directory)


def test_hidden_names_are_served_when_the_route_asks_for_them() -> None:
    assert resolve_path("/.well-known/x", allow_hidden=True) == Resolved((".well-known", "x"), False)
    assert resolve_path("/...", allow_hidden=True) == Resolved(("...",), False)
    assert isinstance(resolve_path("/..", allow_hidden=True), Refused)


PIECES = st.sampled_from(["a", "b.txt", ".", "..", "%2e", "%2E", "%2f", "%2F", "%5c", "%00", "%", "%4", "\\",
                          "/", "//", "%252e", "%c3%a9", "%ff", ".x", "é", "%20", "~"])


@given(st.lists(PIECES, max_size=12).map("".join))
def test_whatever_the_path_a_resolved_one_stays_inside_the_directory(rest: str) -> None:
    got = resolve_path(rest)
    if isinstance(got, Refused):
        return
    root = "/srv/media"
    for segment in got.segments:
        assert segment and segment not in (".", "..") and "/" not in segment and "\\" not in segment
        assert not any(ord(c) < 0x20 or ord(c) == 0x7F for c in segment)
    joined = posixpath.normpath(posixpath.join(root, *got.segments))
    assert contained(root, joined)


NAMES = st.text(st.characters(blacklist_categories=("Cs", "Cc"), blacklist_characters="/\\"), min_size=1,
                max_size=12).filter(lambda n: not n.startswith("."))


@given(st.lists(NAMES, min_size=1, max_size=5))
def test_any_percent_encoded_file_name_resolves_back_to_itself(names: list[str]) -> None:
    rest = "/" + "/".join(quote(n, safe="") for n in names)
    assert resolve_path(rest) == Resolved(tuple(names), False)


def test_containment_is_on_path_boundaries() -> None:
    assert contained("/srv/media", "/srv/media")
    assert contained("/srv/media", "/srv/media/a/b")
    assert not contained("/srv/media", "/srv/media2/a")
    assert not contained("/srv/media", "/srv")
    assert contained("/", "/etc")


# -- validators and dates ---------------------------------------------------------------------------

SECONDS = st.integers(min_value=0, max_value=253402300799)  # up to 9999-12-31T23:59:59Z


@given(SECONDS)
def test_an_http_date_parses_back_to_the_same_second(seconds: int) -> None:
    text = format_http_date(seconds)
    assert len(text) == 29 and text.endswith(" GMT")
    assert parse_http_date(text) == seconds


def test_the_three_date_forms_of_rfc9110_name_the_same_instant() -> None:
    # RFC9110-5.6.7: the example instant in all three forms.
    assert format_http_date(784111777) == "Sun, 06 Nov 1994 08:49:37 GMT"
    assert parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT") == 784111777
    assert parse_http_date("Sunday, 06-Nov-94 08:49:37 GMT", now_year=2026) == 784111777
    assert parse_http_date("Sun Nov  6 08:49:37 1994") == 784111777
    assert parse_http_date("Sunday, 06-Nov-30 08:49:37 GMT", now_year=2026) is not None
    for bad in ("", "yesterday", "Sun, 06 Nov 1994 08:49:37 UTC", "Sun, 31 Feb 1994 08:49:37 GMT",
                "Sun, 06 Nov 1994 25:49:37 GMT", "1994-11-06T08:49:37Z"):
        assert parse_http_date(bad) is None, bad


def test_a_two_digit_year_is_read_within_fifty_years_of_now() -> None:
    # RFC9110-5.6.7: a year more than 50 years in the future is taken as the past century.
    assert parse_http_date("Sunday, 06-Nov-94 08:49:37 GMT", now_year=2026) == 784111777
    assert parse_http_date("Thursday, 01-Jan-70 00:00:00 GMT", now_year=2019) == 0
    assert parse_http_date("Thursday, 01-Jan-70 00:00:00 GMT", now_year=2026) == parse_http_date(
        "Thu, 01 Jan 2070 00:00:00 GMT")


@given(st.integers(0, 1 << 40), st.integers(0, 1 << 62), st.integers(0, 1 << 40), st.integers(0, 1 << 62))
def test_validators_change_with_size_or_mtime_and_only_then(size: int, mtime: int, size2: int, mtime2: int) -> None:
    a, b = validators(size, mtime), validators(size2, mtime2)
    assert a == validators(size, mtime)
    assert (a.etag == b.etag) == ((size, mtime) == (size2, mtime2))
    assert a.etag.startswith('"') and a.etag.endswith('"') and not a.etag.startswith("W/")
    assert parse_http_date(a.last_modified) == mtime // 1_000_000_000 == a.mtime


# -- conditional requests ---------------------------------------------------------------------------

V = validators(1000, 1_700_000_000_500_000_000)
LATER = format_http_date(V.mtime + 1)
EARLIER = format_http_date(V.mtime - 1)
SAME = V.last_modified


def status(headers: dict[str, str], method: str = "GET") -> int:
    return decide(method, headers, 1000, V, "text/plain").status


CONDITIONALS = [
    # (request headers, status, source)
    ({}, 200, "RFC9110-15.3.1"),
    ({"if-none-match": V.etag}, 304, "RFC9110-13.1.2"),
    ({"if-none-match": f'"other", {V.etag}'}, 304, "RFC9110-13.1.2"),
    ({"if-none-match": "W/" + V.etag}, 304, "RFC9110-13.1.2 weak comparison"),
    ({"if-none-match": "*"}, 304, "RFC9110-13.1.2"),
    ({"if-none-match": '"other"'}, 200, "RFC9110-13.1.2"),
    ({"if-none-match": '"other"', "if-modified-since": LATER}, 200, "RFC9110-13.1.3 ignored with If-None-Match"),
    ({"if-modified-since": SAME}, 304, "RFC9110-13.1.3"),
    ({"if-modified-since": LATER}, 304, "RFC9110-13.1.3"),
    ({"if-modified-since": EARLIER}, 200, "RFC9110-13.1.3"),
    ({"if-modified-since": "not a date"}, 200, "RFC9110-13.1.3 invalid date ignored"),
    ({"if-match": V.etag}, 200, "RFC9110-13.1.1"),
    ({"if-match": "*"}, 200, "RFC9110-13.1.1"),
    ({"if-match": '"other"'}, 412, "RFC9110-13.1.1"),
    ({"if-match": "W/" + V.etag}, 412, "RFC9110-13.1.1 strong comparison"),
    ({"if-match": '"other"', "if-none-match": V.etag}, 412, "RFC9110-13.2.2 If-Match first"),
    ({"if-unmodified-since": EARLIER}, 412, "RFC9110-13.1.4"),
    ({"if-unmodified-since": SAME}, 200, "RFC9110-13.1.4"),
    ({"if-unmodified-since": EARLIER, "if-match": V.etag}, 200, "RFC9110-13.1.4 ignored with If-Match"),
]


@pytest.mark.parametrize(("headers", "expected", "source"), CONDITIONALS, ids=[c[2] + " " + str(c[0]) for c in CONDITIONALS])
def test_conditional_headers_are_evaluated_in_rfc9110_order(headers: dict[str, str], expected: int,
                                                             source: str) -> None:
    assert status(headers) == expected, source
    assert status(headers, "HEAD") == expected, source


def test_a_not_modified_answer_carries_the_validators_and_no_body() -> None:
    d = decide("GET", {"if-none-match": V.etag}, 1000, V, "text/plain")
    assert (d.status, d.body, d.length) == (304, False, 0)
    assert dict(d.headers) == {"ETag": V.etag, "Last-Modified": V.last_modified}


def test_only_get_and_head_are_allowed() -> None:
    for method in ("POST", "PUT", "DELETE", "OPTIONS", "PATCH"):
        d = decide(method, {}, 1000, V, "text/plain")
        assert d.status == 405 and dict(d.headers)["Allow"] == "GET, HEAD" and not d.body


def test_head_gets_the_length_of_the_whole_file_and_no_body() -> None:
    d = decide("HEAD", {"range": "bytes=0-9"}, 1000, V, "text/plain")
    assert (d.status, d.body, dict(d.headers)["Content-Length"]) == (200, False, "1000")


# -- ranges -----------------------------------------------------------------------------------------

RANGES = [
    # (Range, size, status, (offset, length) or None, source)
    ("bytes=0-99", 1000, 206, (0, 100), "RFC9110-14.1.2"),
    ("bytes=500-", 1000, 206, (500, 500), "RFC9110-14.1.2"),
    ("bytes=-100", 1000, 206, (900, 100), "RFC9110-14.1.2 suffix"),
    ("bytes=-5000", 1000, 206, (0, 1000), "RFC9110-14.1.2 suffix longer than the file"),
    ("bytes=990-2000", 1000, 206, (990, 10), "RFC9110-14.1.2 last-pos clipped"),
    ("bytes=999-999", 1000, 206, (999, 1), "RFC9110-14.1.2"),
    ("BYTES = 0 - 0", 1000, 206, (0, 1), "RFC9110-14.1.1 unit is case-insensitive"),
    ("bytes=1000-", 1000, 416, None, "RFC9110-15.5.17"),
    ("bytes=5000-6000", 1000, 416, None, "RFC9110-15.5.17"),
    ("bytes=-0", 1000, 416, None, "RFC9110-14.1.2 zero-length suffix"),
    ("bytes=0-0", 0, 416, None, "RFC9110-14.1.2 empty representation"),
    ("bytes=-1", 0, 416, None, "RFC9110-14.1.2 empty representation"),
    ("bytes=0-9,20-29", 1000, 200, None, "several ranges: whole file"),
    ("bytes=9-0", 1000, 200, None, "RFC9110-14.1.2 invalid: ignored"),
    ("bytes=a-b", 1000, 200, None, "RFC9110-14.2 invalid: ignored"),
    ("bytes=", 1000, 200, None, "RFC9110-14.2 invalid: ignored"),
    ("bytes=-", 1000, 200, None, "RFC9110-14.2 invalid: ignored"),
    ("items=0-9", 1000, 200, None, "RFC9110-14.2 unknown unit: ignored"),
    ("0-9", 1000, 200, None, "RFC9110-14.2 no unit: ignored"),
    ("bytes=00000000000000000000001-2", 1000, 200, None, "absurdly long number: ignored"),
]


@pytest.mark.parametrize(("header", "size", "expected", "span", "source"), RANGES, ids=[r[0] for r in RANGES])
def test_a_range_request_gets_206_416_or_the_whole_file(header: str, size: int, expected: int,
                                                        span: tuple[int, int] | None, source: str) -> None:
    v = validators(size, 1)
    d = decide("GET", {"range": header}, size, v, "text/plain")
    assert d.status == expected, source
    h = dict(d.headers)
    if expected == 206:
        assert (d.offset, d.length) == span
        assert h["Content-Range"] == f"bytes {d.offset}-{d.end - 1}/{size}"
        assert h["Content-Length"] == str(d.length)
    elif expected == 416:
        assert h["Content-Range"] == f"bytes */{size}" and not d.body
    else:
        assert (d.offset, d.length, h["Content-Length"]) == (0, size, str(size))


IF_RANGE = [
    (V.etag, 206, "RFC9110-13.1.5 strong match"),
    ("W/" + V.etag, 200, "RFC9110-13.1.5 weak tag never matches"),
    ('"other"', 200, "RFC9110-13.1.5"),
    (SAME, 206, "RFC9110-13.1.5 exact date"),
    (EARLIER, 200, "RFC9110-13.1.5 not an exact match"),
    (LATER, 200, "RFC9110-13.1.5 not an exact match"),
    ("garbage", 200, "RFC9110-13.1.5"),
]


@pytest.mark.parametrize(("if_range", "expected", "source"), IF_RANGE, ids=[c[2] + " " + c[0] for c in IF_RANGE])
def test_if_range_applies_the_range_only_to_the_same_version(if_range: str, expected: int, source: str) -> None:
    assert status({"range": "bytes=0-9", "if-range": if_range}) == expected, source


@given(st.integers(0, 10_000), st.one_of(st.none(), st.integers(0, 12_000)),
       st.one_of(st.none(), st.integers(0, 12_000)), st.booleans())
def test_any_single_range_answer_stays_inside_the_file(size: int, first: int | None, last: int | None,
                                                       suffix: bool) -> None:
    if suffix:
        header = f"bytes=-{last if last is not None else 0}"
    else:
        header = f"bytes={'' if first is None else first}-{'' if last is None else last}"
    d = decide("GET", {"range": header}, size, validators(size, 0), "application/octet-stream")
    assert d.status in (200, 206, 416)
    assert 0 <= d.offset and d.end <= size
    if d.status == 206:
        assert d.length >= 1
        parsed = parse_range(header, size)
        assert parsed == [ByteRange(d.offset, d.end - 1)]
    if d.status == 200:
        assert (d.offset, d.length) == (0, size)


@given(st.text(max_size=40), st.integers(0, 5000))
def test_any_range_header_text_gets_a_sane_answer(header: str, size: int) -> None:
    d = decide("GET", {"range": header}, size, validators(size, 0), "text/plain")
    assert d.status in (200, 206, 416)
    assert 0 <= d.offset <= d.end <= size


# -- media types ------------------------------------------------------------------------------------

TYPES = [
    ("a.txt", "text/plain; charset=utf-8"),
    ("index.html", "text/html; charset=utf-8"),
    ("app.js", "text/javascript; charset=utf-8"),
    ("data.json", "application/json; charset=utf-8"),
    ("logo.PNG", "image/png"),
    ("photo.jpg", "image/jpeg"),
    ("doc.pdf", "application/pdf"),
    ("icon.svg", "image/svg+xml; charset=utf-8"),
    ("backup.tar.gz", "application/gzip"),
    ("README", "application/octet-stream"),
    ("weird.zzzz", "application/octet-stream"),
]


@pytest.mark.parametrize(("name", "expected"), TYPES)
def test_the_content_type_comes_from_python_s_built_in_table(name: str, expected: str) -> None:
    got = content_type(name)
    if name == "app.js":  # Python < 3.12 says application/javascript
        assert got in (expected, "application/javascript; charset=utf-8")
    else:
        assert got == expected
