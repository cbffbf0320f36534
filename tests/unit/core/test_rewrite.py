"""Tests for ferryman.core.rewrite: ProxyPassReverse, ProxyPassReverseCookiePath/-Domain.

Sources cited in the tables:
  Apache ProxyPassReverse as observed on Apache 2.4 (AS), docs/configuration.md route and member paths (CC),
  Apache httpd modules/proxy/proxy_util.c ap_proxy_location_reverse_map / ap_proxy_cookie_reverse_map
  (HTTPD), RFC 3986 (URIs), RFC 6265 (cookies), WHATWG URL (what browsers do with "\\").
"""

from __future__ import annotations

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from ferryman.core.rewrite import ReverseMap, rewrite_location, rewrite_set_cookie

PUBLIC = b"https://www.example.com:8443"

# The classic deployment: two members under /webapps, published at /webapps (HTTP route) and at /public.
SEED_MEMBERS: list[tuple[str | bytes, str | bytes, int | None, str | bytes]] = [
    ("http", "127.0.0.1", 9001, "/webapps"),
    ("http", "127.0.0.1", 9002, "/webapps"),
]
AT_PUBLIC = ReverseMap.build(SEED_MEMBERS, "/public")
AT_WEBAPPS = ReverseMap.build(SEED_MEMBERS, "/webapps")
ROOT_MEMBER = ReverseMap.build([("http", "app1", None, "/")], "/public")
ROOT_PUBLIC = ReverseMap.build([("http", "app1", 80, "/webapps")], "/")


# -- ReverseMap ----------------------------------------------------------------------------------


def test_build_makes_the_port_explicit_and_the_host_lower_case() -> None:
    rmap = ReverseMap.build([("HTTP", "App1", None, "/webapps/"), ("https", "::1", 9443, "/webapps")], "/public/")
    assert rmap.member_origins == frozenset({(b"http", b"app1:80"), (b"https", b"[::1]:9443")})
    assert rmap.member_prefix == b"/webapps"
    assert rmap.public_prefix == b"/public"
    assert rmap.origin_prefixes == frozenset()


def test_build_keeps_a_prefix_per_origin_when_members_differ() -> None:
    rmap = ReverseMap.build([("http", "a", 1, "/one"), ("http", "b", 2, "/two"), ("http", "c", 3, "/one")], "")
    assert rmap.member_prefix == b"/one"  # the one most members share
    assert rmap.origin_prefixes == frozenset(
        {(b"http", b"a:1", b"/one"), (b"http", b"b:2", b"/two"), (b"http", b"c:3", b"/one")}
    )


def test_build_maps_slash_to_root() -> None:
    assert ROOT_MEMBER.member_prefix == b""
    assert ROOT_PUBLIC.public_prefix == b""


@pytest.mark.parametrize(
    "bad",
    [
        lambda: ReverseMap.build([], "/x"),
        lambda: ReverseMap.build([("ftp", "a", 21, "/")], "/x"),
        lambda: ReverseMap(frozenset(), b"/webapps/", b""),
        lambda: ReverseMap(frozenset(), b"webapps", b""),
    ],
)
def test_malformed_maps_are_refused(bad: object) -> None:
    with pytest.raises(ValueError):
        bad()  # type: ignore[operator]


# -- rewrite_location ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("rmap", "value", "expected"),
    [
        # AS: Location http://<member>/webapps/target reaches the client as
        # <listener scheme>://<client Host>/public/target through /public ...
        (AT_PUBLIC, b"http://127.0.0.1:9001/webapps/target", PUBLIC + b"/public/target"),
        (AT_PUBLIC, b"http://127.0.0.1:9002/webapps/target", PUBLIC + b"/public/target"),
        # ... and /webapps/target through /webapps: rewritten even when the prefixes are equal
        (AT_WEBAPPS, b"http://127.0.0.1:9001/webapps/target", PUBLIC + b"/webapps/target"),
        # query and fragment byte for byte (RFC 3986 section 3.4, 3.5)
        (AT_PUBLIC, b"http://127.0.0.1:9001/webapps/a%2Fb?next=/webapps/x&q=%20#frag", PUBLIC + b"/public/a%2Fb?next=/webapps/x&q=%20#frag"),
        (AT_PUBLIC, b"http://127.0.0.1:9001/webapps?x=1", PUBLIC + b"/public?x=1"),
        (AT_PUBLIC, b"http://127.0.0.1:9001/webapps", PUBLIC + b"/public"),
        (AT_PUBLIC, b"http://127.0.0.1:9001/webapps/", PUBLIC + b"/public/"),
        (AT_PUBLIC, b"http://127.0.0.1:9001/webapps;jsessionid=1", PUBLIC + b"/public;jsessionid=1"),
        # scheme and host case-insensitive, port by value (RFC 3986 section 6.2.2.1, 6.2.3)
        (AT_PUBLIC, b"HTTP://127.0.0.1:9001/webapps/x", PUBLIC + b"/public/x"),
        (AT_PUBLIC, b"http://127.0.0.1:09001/webapps/x", PUBLIC + b"/public/x"),
        (ROOT_MEMBER, b"http://APP1/x", b"https://www.example.com:8443/public/x"),
        (ROOT_MEMBER, b"http://app1:80/x", PUBLIC + b"/public/x"),
        (ROOT_MEMBER, b"http://app1:/x", PUBLIC + b"/public/x"),  # RFC 3986 3.2.3: empty port
        (ROOT_MEMBER, b"http://app1", PUBLIC + b"/public"),
        (ROOT_MEMBER, b"http://app1?q", PUBLIC + b"/public?q"),
        # path-absolute references under the member prefix (AS, CC "Path mapping")
        (AT_PUBLIC, b"/webapps/x?y", b"/public/x?y"),
        (AT_PUBLIC, b"/webapps", b"/public"),
        (AT_PUBLIC, b"/webapps#top", b"/public#top"),
        (ROOT_MEMBER, b"/", b"/public/"),
        (ROOT_MEMBER, b"/accounts/login/?next=/", b"/public/accounts/login/?next=/"),
        (ROOT_PUBLIC, b"/webapps/x", b"/x"),
        (ROOT_PUBLIC, b"/webapps", b"/"),
        (ROOT_PUBLIC, b"/webapps?x", b"/?x"),
        (ROOT_PUBLIC, b"http://app1/webapps/x", PUBLIC + b"/x"),
        # the ambiguous overlap (rewrite.py docstring): a prefix-aware app already answers /public/x
        (ROOT_MEMBER, b"/public/x", b"/public/x"),
        (ROOT_MEMBER, b"/public", b"/public"),
        (ROOT_MEMBER, b"http://app1/public/x", PUBLIC + b"/public/x"),
        (ROOT_MEMBER, b"/publicity", b"/public/publicity"),  # segment boundary: not /public
        # a rewrite never creates a network-path reference (open redirect)
        (ROOT_PUBLIC, b"/webapps//evil.example/x", PUBLIC + b"//evil.example/x"),
        (ROOT_PUBLIC, b"/webapps/\\evil.example/x", PUBLIC + b"/\\evil.example/x"),
        # IPv6 members
        (
            ReverseMap.build([("https", "::1", 9443, "/webapps")], "/public"),
            b"https://[::1]:9443/webapps/q",
            PUBLIC + b"/public/q",
        ),
        # members with different paths: each origin its own prefix
        (
            ReverseMap.build([("http", "a", 9001, "/one"), ("http", "b", 9002, "/two")], "/public"),
            b"http://b:9002/two/x",
            PUBLIC + b"/public/x",
        ),
        (
            ReverseMap.build([("http", "a", 9001, "/one"), ("http", "b", 9002, "/two")], "/public"),
            b"/two/x",
            b"/public/x",
        ),
    ],
)
def test_location_pointing_at_a_member_gets_the_public_url(rmap: ReverseMap, value: bytes, expected: bytes) -> None:
    assert rewrite_location(value, rmap, PUBLIC) == expected


@pytest.mark.parametrize(
    ("rmap", "value"),
    [
        (AT_PUBLIC, b"http://127.0.0.1:9003/webapps/x"),  # not a member
        (AT_PUBLIC, b"https://127.0.0.1:9001/webapps/x"),  # member port, other scheme
        (AT_PUBLIC, b"http://127.0.0.2:9001/webapps/x"),
        (AT_PUBLIC, b"http://127.0.0.1:9001/other/x"),  # member, but not under its prefix
        (AT_PUBLIC, b"http://127.0.0.1:9001/webappsX"),  # AS: prefixes match on segment boundaries
        (AT_PUBLIC, b"http://127.0.0.1:9001/WEBAPPS/x"),  # paths are case-sensitive (HTTPD differs)
        (AT_PUBLIC, b"http://user@127.0.0.1:9001/webapps/x"),  # userinfo: not a member's own URL
        (AT_PUBLIC, b"http://127.0.0.1:9001@evil.example/webapps/x"),
        (AT_PUBLIC, b"http://127.0.0.1:9001.evil.example/webapps/x"),
        (AT_PUBLIC, b"https://www.example.com/webapps/x"),
        (AT_PUBLIC, b"/webappsX/y"),
        (AT_PUBLIC, b"/public/x"),
        (AT_PUBLIC, b"/other"),
        (AT_PUBLIC, b"webapps/x"),  # relative references are left alone
        (AT_PUBLIC, b"x/y"),
        (AT_PUBLIC, b"../webapps/x"),
        (AT_PUBLIC, b"?page=2"),
        (AT_PUBLIC, b"#top"),
        (AT_PUBLIC, b""),
        (AT_PUBLIC, b"//evil.example/webapps/x"),  # network-path reference (RFC 3986 4.2)
        (AT_PUBLIC, b"//127.0.0.1:9001/webapps/x"),
        (AT_PUBLIC, b"/\\evil.example/webapps"),  # "/\\" is "//" to a browser (WHATWG URL)
        (AT_PUBLIC, b"mailto:admin@example.com"),
        (AT_PUBLIC, b"ftp://127.0.0.1:9001/webapps/x"),
        (AT_PUBLIC, b"javascript://127.0.0.1:9001/webapps/%0aalert(1)"),
        (AT_WEBAPPS, b"/webapps/x"),  # equal prefixes: a path-absolute reference is already public
    ],
)
def test_location_not_pointing_at_a_member_is_returned_unchanged(rmap: ReverseMap, value: bytes) -> None:
    assert rewrite_location(value, rmap, PUBLIC) is value


_MAPS = [AT_PUBLIC, AT_WEBAPPS, ROOT_MEMBER, ROOT_PUBLIC]
_PATHS = st.lists(
    st.sampled_from(["webapps", "public", "x", "a%2Fb", "", "..", "webappsX", "é".encode().decode("latin-1")]),
    max_size=4,
).map(lambda parts: "/" + "/".join(parts))
_TAILS = st.sampled_from(["", "?q=1", "?next=/webapps/x", "#frag", "?a=b#c", ";p=1"])
_OTHER_ORIGINS = st.sampled_from(
    [
        b"http://127.0.0.1:9003",
        b"https://127.0.0.1:9001",
        b"http://127.0.0.2:9001",
        b"http://evil.example",
        b"http://127.0.0.1:9001@evil.example",
        b"https://www.example.com:8443",
        b"http://app1:8080",
        b"https://app1",
        b"//app1",
        b"//127.0.0.1:9001",
        b"ftp://app1",
    ]
)


@given(rmap=st.sampled_from(_MAPS), origin=_OTHER_ORIGINS, path=_PATHS, tail=_TAILS)
def test_a_url_that_does_not_point_at_a_member_is_never_changed(
    rmap: ReverseMap, origin: bytes, path: str, tail: str
) -> None:
    value = origin + (path + tail).encode("latin-1")
    assert rewrite_location(value, rmap, PUBLIC) is value


@given(rmap=st.sampled_from(_MAPS), path=_PATHS, tail=_TAILS)
def test_relative_references_are_never_changed(rmap: ReverseMap, path: str, tail: str) -> None:
    value = (path.lstrip("/") + tail).encode("latin-1")
    assume(value[:1] != b"/")
    assert rewrite_location(value, rmap, PUBLIC) is value


@given(rmap=st.sampled_from(_MAPS), path=_PATHS, tail=_TAILS)
def test_public_urls_are_fixed_points(rmap: ReverseMap, path: str, tail: str) -> None:
    value = PUBLIC + (path + tail).encode("latin-1")
    assert rewrite_location(value, rmap, PUBLIC) is value


@given(
    rmap=st.sampled_from(_MAPS),
    origin=st.sampled_from([b"http://127.0.0.1:9001", b"HTTP://127.0.0.1:9002", b"http://app1", b"http://App1:80", b""]),
    path=_PATHS,
    tail=_TAILS,
)
def test_rewriting_twice_is_rewriting_once(rmap: ReverseMap, origin: bytes, path: str, tail: str) -> None:
    # Path-absolute references are fixed points once public, except where the member prefix lies
    # under the public one (member /webapps at public root): then "/webapps/x" is both a public path
    # and a member path, and no rewriter without the request's context can tell which.
    assume(origin or not (rmap.public_prefix == b"" and rmap.member_prefix))
    value = origin + (path + tail).encode("latin-1")
    once = rewrite_location(value, rmap, PUBLIC)
    assert rewrite_location(once, rmap, PUBLIC) == once


@given(
    rmap=st.sampled_from(_MAPS),
    origin=st.sampled_from([b"http://127.0.0.1:9001", b"http://app1", b""]),
    path=_PATHS,
    tail=_TAILS,
)
def test_query_and_fragment_survive_byte_for_byte(rmap: ReverseMap, origin: bytes, path: str, tail: str) -> None:
    tail_b = tail.encode()
    value = origin + path.encode("latin-1") + tail_b
    assert rewrite_location(value, rmap, PUBLIC).endswith(tail_b)


# -- rewrite_set_cookie --------------------------------------------------------------------------

DOMAINS = {b"app1.internal": b"www.example.com"}


def cookie(value: bytes, member: bytes = b"/webapps", public: bytes = b"/public", path: bool = True,
           domains: dict[bytes, bytes] | None = None) -> bytes:
    return rewrite_set_cookie(
        value, member_prefix=member, public_prefix=public, rewrite_path=path, domains=DOMAINS if domains is None else domains
    )


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        # AS: Set-Cookie Path/Domain rewritten, attribute case and order kept, only values change
        (b"sessionid=abc; Path=/webapps", b"sessionid=abc; Path=/public"),
        (b"sessionid=abc; path=/webapps/x; HttpOnly", b"sessionid=abc; path=/public/x; HttpOnly"),  # HTTPD: "/public"
        (b"sessionid=abc; PATH=/webapps/", b"sessionid=abc; PATH=/public/"),
        (b"s=1; Path = /webapps ;Secure", b"s=1; Path = /public ;Secure"),  # RFC 6265 5.2: WSP trimmed
        (b"s=1;Path=/webapps", b"s=1;Path=/public"),
        (
            b"s=1; expires=Wed, 21 Oct 2015 07:28:00 GMT; Path=/webapps; SameSite=Lax; Secure",
            b"s=1; expires=Wed, 21 Oct 2015 07:28:00 GMT; Path=/public; SameSite=Lax; Secure",
        ),
        (b"s=1; Path=/webapps; Path=/webapps/y", b"s=1; Path=/public; Path=/public/y"),  # every one (HTTPD: last)
        (b"Path=/webapps; Path=/webapps", b"Path=/webapps; Path=/public"),  # a cookie named Path is data
        (b"s=/webapps; Path=/webapps", b"s=/webapps; Path=/public"),
        # Domain: ProxyPassReverseCookieDomain app1.internal www.example.com (CC cookie_domain)
        (b"s=1; Domain=app1.internal", b"s=1; Domain=www.example.com"),
        (b"s=1; domain=APP1.Internal; Path=/webapps", b"s=1; domain=www.example.com; Path=/public"),
        (b"s=1; Domain=.app1.internal", b"s=1; Domain=.www.example.com"),  # RFC 6265 5.2.3: dot ignored
        (b"s=1; Domain = app1.internal ; Secure", b"s=1; Domain = www.example.com ; Secure"),
    ],
)
def test_set_cookie_path_and_domain_values_follow_the_mapping(value: bytes, expected: bytes) -> None:
    assert cookie(value) == expected


@pytest.mark.parametrize(
    "value",
    [
        b"sessionid=abc; Path=/",  # above the member prefix: untouched (Django's default cookie path)
        b"s=1; Path=/webappsX",  # segment boundary (HTTPD would rewrite it to /public)
        b"s=1; Path=/other/webapps",
        b"s=1; Path=webapps",  # RFC 6265 5.2.4: not a path
        b"s=1; Path=",
        b"s=1; Path",
        b"s=1; XPath=/webapps",
        b"s=1; Domain=app1.internal.evil",  # exact match only (HTTPD matches a prefix)
        b"s=1; Domain=evil.app1.internal",
        b"s=1; Domain=other.example",
        b"s=1; Comment=path=/webapps",
        b"s=1",
        b"s=1; Expires=Wed, 21 Oct 2015 07:28:00 GMT; HttpOnly; SameSite=Lax",
        b"",
    ],
)
def test_set_cookie_without_a_mapped_path_or_domain_is_returned_unchanged(value: bytes) -> None:
    assert cookie(value) is value


def test_set_cookie_is_untouched_when_nothing_is_configured() -> None:
    value = b"s=1; Path=/webapps; Domain=app1.internal"
    assert cookie(value, path=False, domains={}) is value
    assert cookie(value, path=True, public=b"/webapps", domains={}) is value  # equal prefixes: identity


def test_set_cookie_path_is_left_when_only_domains_are_configured() -> None:
    assert cookie(b"s=1; Path=/webapps; Domain=app1.internal", path=False) == (
        b"s=1; Path=/webapps; Domain=www.example.com"
    )


@pytest.mark.parametrize(
    ("member", "public", "path", "expected"),
    [
        (b"", b"/public", b"/", b"/public"),  # RFC 6265 5.1.4: /public matches /public and /public/x
        (b"", b"/public", b"/x", b"/public/x"),
        (b"", b"/public", b"/public/x", b"/public/x"),  # the ambiguous overlap: already public
        (b"/webapps", b"", b"/webapps", b"/"),
        (b"/webapps", b"", b"/webapps/x", b"/x"),
        (b"/webapps", b"/a/b", b"/webapps/x", b"/a/b/x"),
    ],
)
def test_set_cookie_path_mapping_with_root_prefixes(member: bytes, public: bytes, path: bytes, expected: bytes) -> None:
    assert cookie(b"s=1; Path=" + path, member=member, public=public) == b"s=1; Path=" + expected


_WS = st.sampled_from(["", " ", "  ", "\t"])
_ATTR_NAMES = st.sampled_from(["Path", "path", "PATH", "Domain", "domain", "Expires", "Max-Age", "SameSite", "Secure", "HttpOnly", "X-Other"])
_ATTR_VALUES = st.sampled_from(
    ["/webapps", "/webapps/x", "/", "/webappsX", "app1.internal", ".APP1.internal", "Wed, 21 Oct 2015 07:28:00 GMT", "Lax", "", "3600"]
)


@st.composite
def set_cookies(draw: st.DrawFn) -> bytes:
    pair = draw(st.sampled_from(["sessionid=abc.http-1", "Path=/webapps", "csrftoken=x", "a=b=c"]))
    attrs = []
    for _ in range(draw(st.integers(0, 6))):
        name = draw(_ATTR_NAMES)
        if draw(st.booleans()):
            attrs.append(draw(_WS) + name + draw(_WS) + "=" + draw(_WS) + draw(_ATTR_VALUES) + draw(_WS))
        else:
            attrs.append(draw(_WS) + name + draw(_WS))
    return ";".join([pair] + attrs).encode()


def without_path_and_domain_values(value: bytes) -> bytes:
    """RFC 6265 5.2: blank the values of Path/Domain attributes, keep every other byte."""
    first, *attrs = value.split(b";")
    out = [first]
    for attr in attrs:
        name, eq, _ = attr.partition(b"=")
        out.append(name + eq if eq and name.strip(b" \t").lower() in (b"path", b"domain") else attr)
    return b";".join(out)


@settings(max_examples=300)
@given(value=set_cookies(), member=st.sampled_from([b"/webapps", b""]), public=st.sampled_from([b"/public", b"", b"/webapps"]))
def test_set_cookie_rewriting_changes_nothing_but_path_and_domain_values(value: bytes, member: bytes, public: bytes) -> None:
    out = cookie(value, member=member, public=public)
    assert without_path_and_domain_values(out) == without_path_and_domain_values(value)
    if out == value:
        assert out is value


@given(value=set_cookies())
def test_set_cookie_rewriting_is_idempotent_between_disjoint_prefixes(value: bytes) -> None:
    once = cookie(value)
    assert cookie(once) == once


def test_set_cookie_prefixes_with_a_trailing_slash_mean_the_same_without_it() -> None:
    assert cookie(b"s=1; Path=/", member=b"/", public=b"/public/") == b"s=1; Path=/public"
    assert cookie(b"s=1; Path=/webapps/x", member=b"/webapps/", public=b"/") == b"s=1; Path=/x"
