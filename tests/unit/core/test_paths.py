"""ferryman.core.paths: target splitting and the one canonical path ferryman routes on and forwards.

Every table row names its source. Abbreviations:
  RFC5.2.4   RFC 3986 section 5.2.4 (Remove Dot Segments), its worked example
  RFC5.4.1   RFC 3986 section 5.4.1 normal examples, base path /b/c/d;p merged per section 5.2.3
  RFC5.4.2   RFC 3986 section 5.4.2 abnormal examples, same base
  RFC2.3     RFC 3986 section 2.3 (unreserved characters: decode their escapes)
  APACHE     observed on Apache 2.4.71 (mod_proxy, default AllowEncodedSlashes Off and MergeSlashes On)
  CLAR       ferryman's path rule (docs/request-safety.md, invariant 6), stated in the row
  ENVOY      envoyproxy/envoy test/extensions/http/header_validators/envoy_default/
             path_normalizer_test.cc (test name given)
  SERVLET    apache/httpd modules/proxy/mod_proxy.c alias_match_servlet (`ProxyPass mapping=servlet`):
             Apache itself reads `..;` as `..`, so does Tomcat
  AP_NORM    apache/httpd server/util.c ap_normalize_path: slashes merged in the same left-to-right
             pass as dot removal (so `//` is merged before a following `..` sees it)
"""

from __future__ import annotations

import re

import pytest
from hypothesis import assume, example, given
from hypothesis import strategies as st

from ferryman.core.paths import _is_canonical, _normalize_slow, normalize_path, split_target
from ferryman.core.router import Router, map_path
from ferryman.errors import HttpError, PathRejected

# -- tables --------------------------------------------------------------------------------------------

ACCEPTED = [
    # (source, input, expected)
    ("RFC5.2.4 worked example", b"/a/b/c/./../../g", b"/a/g"),
    ("RFC5.4.1 g", b"/b/c/g", b"/b/c/g"),
    ("RFC5.4.1 ./g", b"/b/c/./g", b"/b/c/g"),
    ("RFC5.4.1 g/", b"/b/c/g/", b"/b/c/g/"),
    ("RFC5.4.1 ;x", b"/b/c/;x", b"/b/c/;x"),
    ("RFC5.4.1 g;x", b"/b/c/g;x", b"/b/c/g;x"),
    ("RFC5.4.1 .", b"/b/c/.", b"/b/c/"),
    ("RFC5.4.1 ./", b"/b/c/./", b"/b/c/"),
    ("RFC5.4.1 ..", b"/b/c/..", b"/b/"),
    ("RFC5.4.1 ../", b"/b/c/../", b"/b/"),
    ("RFC5.4.1 ../g", b"/b/c/../g", b"/b/g"),
    ("RFC5.4.1 ../..", b"/b/c/../..", b"/"),
    ("RFC5.4.1 ../../", b"/b/c/../../", b"/"),
    ("RFC5.4.1 ../../g", b"/b/c/../../g", b"/g"),
    ("RFC5.4.2 /./g", b"/./g", b"/g"),
    ("RFC5.4.2 g.", b"/b/c/g.", b"/b/c/g."),
    ("RFC5.4.2 .g", b"/b/c/.g", b"/b/c/.g"),
    ("RFC5.4.2 g..", b"/b/c/g..", b"/b/c/g.."),
    ("RFC5.4.2 ..g", b"/b/c/..g", b"/b/c/..g"),
    ("RFC5.4.2 ./../g", b"/b/c/./../g", b"/b/g"),
    ("RFC5.4.2 ./g/.", b"/b/c/./g/.", b"/b/c/g/"),
    ("RFC5.4.2 g/./h", b"/b/c/g/./h", b"/b/c/g/h"),
    ("RFC5.4.2 g/../h", b"/b/c/g/../h", b"/b/c/h"),
    ("RFC5.4.2 g;x=1/./y", b"/b/c/g;x=1/./y", b"/b/c/g;x=1/y"),
    ("RFC5.4.2 g;x=1/../y", b"/b/c/g;x=1/../y", b"/b/c/y"),
    ("APACHE dot-dot resolved", b"/webapps/foo/../bar", b"/webapps/bar"),
    ("APACHE encoded dot-dot resolved", b"/webapps/foo/%2e%2e/bar", b"/webapps/bar"),
    ("APACHE leaves the prefix, router finds no route", b"/webapps/../etc/passwd", b"/etc/passwd"),
    ("APACHE leading double slash", b"//webapps/x", b"/webapps/x"),
    ("APACHE inner double slash", b"/webapps//x", b"/webapps/x"),
    ("APACHE %41 decoded", b"/webapps/%41", b"/webapps/A"),
    ("APACHE %7E decoded", b"/webapps/%7E", b"/webapps/~"),
    ("APACHE %20 kept", b"/webapps/a%20b", b"/webapps/a%20b"),
    ("APACHE %25 kept", b"/webapps/100%25", b"/webapps/100%25"),
    ("APACHE %C3%A9 kept", b"/webapps/caf%C3%A9", b"/webapps/caf%C3%A9"),
    ("APACHE ;params kept", b"/webapps/x;jsessionid=1", b"/webapps/x;jsessionid=1"),
    ("CLAR %2e lower case", b"/a/b/%2e%2e/c", b"/a/c"),
    ("CLAR %2E upper case", b"/a/b/%2E%2E/c", b"/a/c"),
    ("CLAR .%2e", b"/a/b/.%2e/c", b"/a/c"),
    ("CLAR %2E.", b"/a/b/%2E./c", b"/a/c"),
    ("CLAR %2e single dot", b"/a/%2e/c", b"/a/c"),
    ("CLAR double-encoded dot is data", b"/a/%252e%252e/c", b"/a/%252e%252e/c"),
    ("CLAR other escapes kept byte for byte, case too", b"/caf%c3%a9", b"/caf%c3%a9"),
    ("CLAR lower-case unreserved escape decoded", b"/%7e%2d%5f%30", b"/~-_0"),
    ("brief /a/. keeps the directory", b"/a/.", b"/a/"),
    ("brief /a/.. is the root", b"/a/..", b"/"),
    ("brief trailing slash kept", b"/a/b/", b"/a/b/"),
    ("ENVOY NormalizePathUriDotInSegments", b"/dir1/.dir2/..dir3/dir.4/dir..5",
     b"/dir1/.dir2/..dir3/dir.4/dir..5"),
    ("ENVOY NormalizePathUriMergeSlashes", b"///root///child//", b"/root/child/"),
    ("ENVOY NormalizePathUriEncodedDotDot", b"/dir1/%2e./dir2", b"/dir2"),
    ("ENVOY NormalizePathUriTrailingDot", b"/dir1/.", b"/dir1/"),
    ("ENVOY NormalizePathUriTrailingDotDot", b"/dir1/..", b"/"),
    ("ENVOY NormalizePathUriDot", b"/dir1/./dir2", b"/dir1/dir2"),
    ("ENVOY NormalizePathUriPercentDecoded", b"/%7e/dir1", b"/~/dir1"),
    ("ENVOY NormalizePathUriPercentDecodeNormalized, but case kept (CLAR)", b"/%ff", b"/%ff"),
    ("ENVOY NormalizePathUriRoot", b"/", b"/"),
    ("AP_NORM slashes merged before .. applies", b"/a//../b", b"/b"),
    ("RFC5.4.2 ... is not a dot segment", b"/a/.../b", b"/a/.../b"),
]

REJECTED = [
    # (source, input, status)
    ("RFC5.4.2 ../../../g climbs (RFC drops it; ferryman refuses)", b"/b/c/../../../g", 404),
    ("RFC5.4.2 ../../../../g climbs", b"/b/c/../../../../g", 404),
    ("RFC5.4.2 /../g climbs", b"/../g", 404),
    ("ENVOY NormalizePathUriInvalidBeyondRoot", b"/..", 404),
    ("CLAR encoded dots climb too", b"/%2e%2e/etc/passwd", 404),
    ("brief a later .. climbs", b"/a/../..", 404),
    ("APACHE %2F refused (AllowEncodedSlashes Off)", b"/webapps/a%2Fb", 404),
    ("CLAR %2f lower case refused", b"/webapps/..%2fetc", 404),
    ("APACHE %00 refused", b"/webapps/a%00", 404),
    ("CLAR %5C refused", b"/webapps/a%5Cb", 404),
    ("CLAR %5c refused", b"/webapps/a%5cb", 404),
    ("CLAR raw backslash refused", b"/webapps/..\\etc", 404),
    ("APACHE raw space is 400", b"/webapps/a b", 400),
    ("brief %zz malformed", b"/a%zz", 400),
    ("brief %4 truncated", b"/a%4", 400),
    ("brief lone % at the end", b"/a%", 400),
    ("ENVOY NormalizePathUriInvalidEncoding", b"/path%Z%30with%xYbad%7Jencoding%A", 400),
    ("ENVOY NormalizePathUriInvalidRelative", b"./", 400),
    ("brief path must start with /", b"webapps/x", 400),
    ("brief empty path", b"", 400),
    ("brief control byte", b"/a\x01b", 400),
    ("brief tab", b"/a\tb", 400),
    ("brief CR LF (header injection)", b"/a\r\nX-Evil: 1", 400),
    ("brief DEL", b"/a\x7f", 400),
    ("brief byte >= 0x80 (raw UTF-8)", b"/caf\xc3\xa9", 400),
    ("RFC 9110 7.1 fragment never sent", b"/a#frag", 400),
    ("SERVLET ..;params climbs on a servlet backend", b"/webapps/..;/manager", 400),
    ("SERVLET .;params", b"/webapps/.;x/a", 400),
    ("SERVLET encoded ..;", b"/webapps/%2e%2e;x/manager", 400),
]

KEEP_ACCEPTED = [
    ("CLAR %2F kept encoded with encoded_slashes=keep", b"/pkg/@scope%2Fname", b"/pkg/@scope%2Fname"),
    ("CLAR %2f case kept byte for byte", b"/pkg/a%2fb", b"/pkg/a%2fb"),
    ("CLAR %2F is not a segment boundary for ..", b"/a/b%2Fc/../d", b"/a/d"),
    ("CLAR leading and trailing %2F kept", b"/a/%2F%2F", b"/a/%2F%2F"),
]

KEEP_REJECTED = [
    ("CLAR %5C still refused with keep", b"/a%5Cb", 404),
    ("CLAR backslash still refused with keep", b"/a\\b", 404),
    ("CLAR %00 still refused with keep", b"/a%00", 404),
    ("ferryman: ..%2F would climb on a decoding backend", b"/webapps/..%2Fetc", 400),
    ("ferryman: %2F..%2F would climb on a decoding backend", b"/webapps/a%2F..%2Fb", 400),
    ("ferryman: %2F. is a dot piece", b"/webapps/a%2F.", 400),
    ("ferryman: %2e%2e%2f is the same trick encoded", b"/webapps/%2e%2e%2fetc", 400),
]


def _ids(table):
    return [row[0] for row in table]


@pytest.mark.parametrize(("source", "raw", "expected"), ACCEPTED, ids=_ids(ACCEPTED))
def test_normalize_path_gives_the_documented_result_for_each_case(source, raw, expected):
    assert normalize_path(raw) == expected


@pytest.mark.parametrize(("source", "raw", "status"), REJECTED, ids=_ids(REJECTED))
def test_normalize_path_refuses_each_documented_case_with_its_status(source, raw, status):
    with pytest.raises(PathRejected) as info:
        normalize_path(raw)
    assert info.value.status == status


@pytest.mark.parametrize(("source", "raw", "expected"), KEEP_ACCEPTED, ids=_ids(KEEP_ACCEPTED))
def test_a_route_that_keeps_encoded_slashes_forwards_them_encoded(source, raw, expected):
    assert normalize_path(raw, keep_encoded_slashes=True) == expected


@pytest.mark.parametrize(("source", "raw", "status"), KEEP_REJECTED, ids=_ids(KEEP_REJECTED))
def test_keeping_encoded_slashes_still_refuses_what_could_escape(source, raw, status):
    with pytest.raises(PathRejected) as info:
        normalize_path(raw, keep_encoded_slashes=True)
    assert info.value.status == status


def test_a_rejection_is_an_http_error_carrying_its_reason():
    with pytest.raises(HttpError) as info:
        normalize_path(b"/a%2Fb")
    assert info.value.reason
    assert "%2F" in str(info.value)


def test_a_canonical_path_is_returned_as_the_very_same_object():
    for path in (b"/webapps/echo", b"/", b"/a/b/", b"/a;x=1/b", b"/~user/x-y_z.html"):
        assert normalize_path(path) is path


# -- split_target --------------------------------------------------------------------------------------


SPLITS = [
    ("RFC 9112 3.2.1 origin-form without query", b"/webapps/echo", b"/webapps/echo", b""),
    ("APACHE query forwarded byte for byte", b"/public/echo?x=1", b"/public/echo", b"?x=1"),
    ("RFC 3986 3.4 the query starts at the first ?", b"/a?b?c=/d", b"/a", b"?b?c=/d"),
    ("RFC 3986 3.4 an empty query is still a query", b"/a?", b"/a", b"?"),
    ("RFC 3986 3.4 escapes in the query untouched", b"/a?x=%2F%41", b"/a", b"?x=%2F%41"),
    ("RFC 3986 3.3 ; belongs to the path", b"/a;s=1?q", b"/a;s=1", b"?q"),
]


@pytest.mark.parametrize(("source", "target", "path", "query"), SPLITS, ids=_ids(SPLITS))
def test_split_target_cuts_at_the_first_question_mark(source, target, path, query):
    assert split_target(target) == (path, query)


SPLIT_REJECTED = [
    ("RFC 9110 7.1 fragment in the path", b"/a#b"),
    ("RFC 9110 7.1 fragment in the query", b"/a?x=1#b"),
    ("RFC 9112 3.2.2 absolute-form is the caller's", b"http://example.com/a"),
    ("RFC 9112 3.2.4 asterisk-form is the caller's", b"*"),
    ("RFC 9112 3.2 empty target", b""),
    ("RFC 9112 3.2 control byte in the query", b"/a?x=\r\n"),
    ("RFC 9112 3.2 space in the query", b"/a?x= y"),
    ("RFC 9112 3.2 raw UTF-8 in the query", b"/a?x=\xc3\xa9"),
]


@pytest.mark.parametrize(("source", "target"), SPLIT_REJECTED, ids=_ids(SPLIT_REJECTED))
def test_split_target_refuses_with_400(source, target):
    with pytest.raises(PathRejected) as info:
        split_target(target)
    assert info.value.status == 400


def test_split_target_without_a_query_returns_the_target_itself():
    target = b"/webapps/echo"
    path, query = split_target(target)
    assert path is target and query == b""


# -- properties ----------------------------------------------------------------------------------------

# Pieces chosen to collide: dots in every spelling, slashes, escapes of every class, params, junk.
TOKENS = [
    b"a", b"b", b"webapps", b"x.y", b".", b"..", b"...", b"%2e", b"%2E", b".%2e", b"%2e.", b"%2E%2e",
    b"/", b"//", b"%41", b"%7e", b"%7E", b"%25", b"%252e", b"%20", b"%c3%a9", b";p=1", b"~", b"-",
    b".well-known", b"%2f", b"%2F", b"%5c", b"\\", b"%00", b"%zz", b"%4", b" ", b"#", b"\x80",
]
SAFE_TOKENS = [t for t in TOKENS if t not in (b"%2f", b"%2F", b"%5c", b"\\", b"%00", b"%zz", b"%4",
                                              b" ", b"#", b"\x80")]

paths = st.lists(st.sampled_from(TOKENS), max_size=12).map(lambda ts: b"/" + b"".join(ts))
safe_paths = st.lists(st.sampled_from(SAFE_TOKENS), max_size=12).map(lambda ts: b"/" + b"".join(ts))
segment_paths = st.lists(st.sampled_from(TOKENS), max_size=8).map(lambda ts: b"/" + b"/".join(ts))

_ESCAPE = re.compile(rb"%([0-9A-Fa-f]{2})")
_UNRESERVED = set(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")


def _accepted(path: bytes, keep: bool = False) -> bytes | None:
    try:
        return normalize_path(path, keep_encoded_slashes=keep)
    except PathRejected as exc:
        assert exc.status in (400, 404)
        return None


def _assert_canonical(out: bytes) -> None:
    assert out.startswith(b"/")
    assert b"//" not in out
    for segment in out.split(b"/"):
        assert segment not in (b".", b"..")
    for m in _ESCAPE.finditer(out):
        assert int(m.group(1), 16) not in _UNRESERVED


@given(st.one_of(paths, segment_paths))
@example(b"/a/%2e%2e/%2E./.%2e/b")
def test_an_accepted_path_has_no_dot_segment_no_double_slash_and_no_unreserved_escape(path):
    out = _accepted(path)
    if out is not None:
        _assert_canonical(out)


@given(st.one_of(paths, segment_paths), st.booleans())
def test_normalising_twice_changes_nothing(path, keep):
    out = _accepted(path, keep)
    if out is not None:
        assert normalize_path(out, keep_encoded_slashes=keep) == out


@given(st.binary(max_size=40).map(lambda b: b"/" + b), st.booleans())
def test_any_bytes_are_either_normalised_or_refused_with_400_or_404(path, keep):
    try:
        out = normalize_path(path, keep_encoded_slashes=keep)
    except PathRejected as exc:
        assert exc.status in (400, 404)
    else:
        assert out.startswith(b"/")
        assert all(0x21 <= c <= 0x7E for c in out)


@given(st.text(alphabet="abcxyz019-_~;=,:@!$&'()*+", min_size=1, max_size=8).map(str.encode)
       .flatmap(lambda seg: st.lists(st.just(seg), min_size=1, max_size=4)),
       st.booleans())
def test_a_path_without_dots_escapes_or_double_slashes_comes_back_as_the_same_object(segs, slash):
    path = b"/" + b"/".join(segs) + (b"/" if slash else b"")
    assert normalize_path(path) is path


@given(st.one_of(paths, segment_paths, st.binary(max_size=30).map(lambda b: b"/" + b)))
def test_the_fast_path_only_takes_paths_the_exact_path_leaves_unchanged(path):
    if _is_canonical(path) is not None:
        assert _normalize_slow(path, False) == path


def _rfc_remove_dot_segments(inp: bytes) -> tuple[bytes, bool]:
    """RFC 3986 5.2.4 as written, plus a flag for `..` applied at the root (which it silently drops)."""
    out = b""
    climbed = False
    while inp:
        if inp.startswith(b"../"):
            inp = inp[3:]
        elif inp.startswith(b"./"):
            inp = inp[2:]
        elif inp.startswith(b"/./"):
            inp = b"/" + inp[3:]
        elif inp == b"/.":
            inp = b"/"
        elif inp.startswith(b"/../") or inp == b"/..":
            inp = b"/" + inp[4:]
            climbed = climbed or not out
            out = out[: out.rfind(b"/")] if b"/" in out else b""
        elif inp in (b".", b".."):
            inp = b""
        else:
            j = inp.find(b"/", 1)
            seg = inp if j < 0 else inp[:j]
            out += seg
            inp = inp[len(seg):]
    return out, climbed


def _decode_unreserved(path: bytes) -> bytes:
    def repl(m):
        octet = int(m.group(1), 16)
        return bytes((octet,)) if octet in _UNRESERVED else m.group(0)

    return _ESCAPE.sub(repl, path)


@given(safe_paths)
@example(b"/a//../b")
@example(b"/%2e%2e")
def test_normalisation_agrees_with_rfc_3986_remove_dot_segments_after_merging_slashes(path):
    decoded = _decode_unreserved(path)
    assume(b"..;" not in decoded and b".;" not in decoded)
    expected, climbed = _rfc_remove_dot_segments(re.sub(rb"/+", b"/", decoded))
    if climbed:
        with pytest.raises(PathRejected) as info:
            normalize_path(path)
        assert info.value.status == 404
    else:
        assert normalize_path(path) == (expected or b"/")


@given(st.one_of(paths, segment_paths))
def test_with_encoded_slashes_kept_no_piece_a_decoding_backend_sees_is_a_dot_segment(path):
    out = _accepted(path, keep=True)
    if out is not None:
        decoded_view = out.replace(b"%2f", b"/").replace(b"%2F", b"/")
        for piece in decoded_view.split(b"/"):
            assert piece.partition(b";")[0] not in (b".", b"..")


PREFIXES = st.lists(st.sampled_from([b"webapps", b"public", b"a", b"b", b"x.y", b"~u"]),
                    min_size=1, max_size=3).map(lambda segs: b"/" + b"/".join(segs))


@given(PREFIXES, st.lists(st.sampled_from(TOKENS), max_size=10).map(b"".join), st.booleans())
@example(b"/webapps", b"../etc/passwd", False)
@example(b"/webapps", b"%2e%2e/etc", False)
@example(b"/webapps", b"..%2fetc", True)
@example(b"/webapps/a", b"..;/b", False)
def test_a_path_routed_to_a_prefix_lies_under_that_prefix_and_maps_under_the_member(prefix, rest,
                                                                                    keep):
    out = _accepted(prefix + b"/" + rest, keep)
    assume(out is not None)
    router = Router([(None, prefix, "route"), (None, b"/", "root")])
    hit = router.match("http", out)
    under = out == prefix or out.startswith(prefix + b"/")
    assert (hit == (prefix, "route")) == under
    if under:
        member = map_path(out, prefix, b"/member")
        assert member.startswith(b"/member/")
        _assert_canonical(member)
        assert normalize_path(member, keep_encoded_slashes=keep) == member
