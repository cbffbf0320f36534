"""ferryman.core.sticky: the sticky route of a request (URL, cookie, route cookie) and the route cookie.

Sources named in the tables:
  APSEM   observed on Apache 2.4.71 (mod_proxy_balancer, stickysession): how a real server picked the
          route for each request below.
  APSRC   apache/httpd modules/proxy/mod_proxy_balancer.c: get_cookie_param (name after start, ';', ','
          or space; spaces before '='; value ends at ';' or ','), get_path_param (value ends at '?'/'&',
          and ';' with scolonpathdelim), find_session_route (URL first; route after the first separator)
  CLAR    ferryman's inserted route cookie (docs/configuration.md, `pool.NAME.route_cookie`), modelled on
          Apache's `Header add Set-Cookie "ROUTEID=.%{BALANCER_WORKER_ROUTE}e"` recipe
  RFC6265 RFC 6265 section 4.1.1 (Set-Cookie grammar: cookie-octet, av-octet)
  FERRY   a documented ferryman choice (module docstring of ferryman.core.sticky)
"""

from __future__ import annotations

import re

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from ferryman.core.sticky import (
    MAX_VALUE,
    StickySpec,
    cookie_value,
    default_route_cookie_name,
    find_route,
    is_route_cookie_safe,
    route_cookie_header,
    route_from_cookie,
    route_from_url,
)

SPEC = StickySpec.parse("sessionid")
ROUTE_COOKIE = default_route_cookie_name("django-http")


# -- cookies --------------------------------------------------------------------------------------

@pytest.mark.parametrize("cookie, route", [
    (b"sessionid=xyz.http-2", "http-2"),                        # APSEM row 1
    (b"sessionid=.http-2", "http-2"),                           # APSEM: empty session part is fine
    (b"sessionid=http-2", None),                                # APSEM: no dot, no route
    (b"sessionid=a.b.http-2", "b.http-2"),                      # APSEM: after the FIRST dot
    (b"sessionid=a.http-2.b", "http-2.b"),                      # APSEM
    (b"sessionid=xyz.HTTP-2", "HTTP-2"),                        # APSEM: case kept (balancer compares exactly)
    (b"sessionid=xyz.http-9", "http-9"),                        # APSEM: unknown route is the balancer's call
    (b"sessionid=a.http-1; sessionid=b.http-2", "http-1"),      # APSEM: first occurrence wins
    (b"sessionid=a; sessionid=b.http-2", None),                 # APSEM: ...even when it carries no route
    (b"sessionid=a.nosuch; sessionid=b.http-2", "nosuch"),      # APSEM: ...even when its route is unknown
    (b"xsessionid=a.http-2", None),                             # APSEM: name match is exact
    (b"sessionidx=a.http-2", None),                             # APSEM
    (b"SESSIONID=a.http-2", None),                              # APSEM
    (b"other=sessionid=a.http-2", None),                        # APSEM
    (b"sessionid = a.http-2", "http-2"),                        # APSEM: spaces around '=' are sticky
    (b"sessionid=\t a.http-2", "http-2"),                       # APSRC isspace before the value
    (b'sessionid="a.http-2"', 'http-2"'),                       # APSEM: quoted is not sticky (route unknown)
    (b"a=1; sessionid=x.http-1", "http-1"),                     # APSRC: after ';'
    (b"a=1,sessionid=x.http-1", "http-1"),                      # APSRC: after ','
    (b"a=1;sessionid=x.http-1;b=2", "http-1"),                  # APSRC: value ends at ';'
    (b"sessionid=x.http-1,b=2", "http-1"),                      # APSRC: value ends at ','
    (b"sessionid=x.http-1 ; b=2", "http-1"),                    # FERRY: trailing space removed
    (b"xsessionid=a.http-1; sessionid=b.http-2", "http-2"),     # APSRC: search goes on past a non-match
    (b"sessionid=", None),                                      # APSRC: nothing after '='
    (b"sessionid=; sessionid=b.http-2", None),                  # APSRC: empty value is the first occurrence
    (b"sessionid=x.", None),                                    # FERRY/APSRC: empty route is no route
    (b"", None),
    (b"sessionid", None),
    (b"sessionid x.http-1", None),
])
def test_cookie_route_follows_apache(cookie: bytes, route: str | None) -> None:
    assert route_from_cookie(SPEC, cookie) == route
    assert find_route(SPEC, b"/webapps/", cookie) == (route, "cookie" if route else "")


@pytest.mark.parametrize("headers, route", [
    ([b"sessionid=a.http-1", b"sessionid=b.http-2"], "http-1"),   # APSEM: first header's value
    ([b"a=1", b"sessionid=b.http-2"], "http-2"),
    ([b"sessionid=a", b"sessionid=b.http-2"], None),             # first occurrence, no route
    ([b"sessionid=", b"sessionid=b.http-2"], None),              # APSRC merged "sessionid=, ..." -> ""
    ([], None),
])
def test_several_cookie_headers_are_read_in_order(headers: list[bytes], route: str | None) -> None:
    assert route_from_cookie(SPEC, headers) == route
    # Apache merges repeated headers with ", "; the same string gives the same answer.
    assert route_from_cookie(SPEC, b", ".join(headers)) == route


# -- URL ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("target, route", [
    (b"/webapps/?sessionid=xyz.http-1", "http-1"),                    # APSEM
    (b"/webapps/?a=1&sessionid=xyz.http-1", "http-1"),                # APSEM
    (b"/webapps/x;sessionid=xyz.http-1", "http-1"),                   # APSEM
    (b"/webapps/x;sessionid=xyz.http-1?a=1", "http-1"),               # APSEM: ends at '?'
    (b"/webapps/?sessionid=xyz.http-1&a=1", "http-1"),                # APSEM: ends at '&'
    (b"/webapps/x;sessionid=xyz.http-1;a=1", "http-1;a=1"),           # APSEM: ';' ends it only with scolon
    (b"/webapps/?sessionid=xyz", None),                               # no dot
    (b"/webapps/?sessionid=a.b.c", "b.c"),                            # first dot
    (b"/webapps/?xsessionid=xyz.http-2", None),                       # FERRY (Apache quirk: http-2)
    (b"/webapps/x;jsessionid=xyz.http-2", None),                      # FERRY (Apache quirk: http-2)
    (b"/webapps/?a=sessionid=xyz.http-2", None),                      # FERRY: not a parameter start
    (b"/sessionid=xyz.http-2", None),                                 # FERRY
    (b"/webapps/?SESSIONID=xyz.http-2", None),                        # APSRC: strstr is case-sensitive
    (b"/webapps/?sessionid=&sessionid=x.http-2", "http-2"),           # FERRY: empty value skipped
    (b"/webapps/?sessionid=", None),
    (b"/webapps/?sessionid=x.http-1&sessionid=y.http-2", "http-1"),   # first occurrence
    (b"http://h/webapps/?sessionid=x.http-1", "http-1"),              # absolute form
    (b"/webapps/?sessionid=x.http%2D1", "http%2D1"),                  # APSRC: not decoded
])
def test_url_route(target: bytes, route: str | None) -> None:
    assert route_from_url(SPEC, target) == route


@pytest.mark.parametrize("target, route", [
    (b"/webapps/x;sessionid=xyz.http-1;a=1", "http-1"),           # APSEM: ';' ends it with scolonpathdelim
    (b"/webapps/x;sessionid=xyz.http-1?a=1", "http-1"),
    (b"/webapps/?sessionid=xyz.http-1&a=1", "http-1"),
])
def test_scolonpathdelim(target: bytes, route: str) -> None:
    spec = StickySpec.parse("sessionid", scolonpathdelim=True)
    assert route_from_url(spec, target) == route


def test_url_parameter_wins_over_cookie() -> None:  # APSEM
    assert find_route(SPEC, b"/w/?sessionid=a.http-1", b"sessionid=b.http-2") == ("http-1", "url")


def test_url_value_without_route_still_hides_the_cookie() -> None:  # APSRC find_session_route
    assert find_route(SPEC, b"/w/?sessionid=abc", b"sessionid=b.http-2") == (None, "")


def test_empty_url_value_falls_back_to_the_cookie() -> None:  # FERRY
    assert find_route(SPEC, b"/w/?sessionid=&x=1", b"sessionid=b.http-2") == ("http-2", "cookie")


def test_cookie_and_param_names_can_differ() -> None:  # APSRC stickysession=JSESSIONID|jsessionid
    spec = StickySpec.parse("JSESSIONID|jsessionid")
    assert (spec.cookie, spec.param) == ("JSESSIONID", "jsessionid")
    assert find_route(spec, b"/x;jsessionid=A.t1", None) == ("t1", "url")
    assert find_route(spec, b"/x", b"JSESSIONID=A.t2") == ("t2", "cookie")
    assert find_route(spec, b"/x;JSESSIONID=A.t1", b"jsessionid=A.t2") == (None, "")


def test_single_name_is_cookie_and_param() -> None:  # APSEM: also with a single-name stickysession
    assert (SPEC.cookie, SPEC.param) == ("sessionid", "sessionid")


def test_stickysessionsep() -> None:  # APSRC sticky_separator
    spec = StickySpec.parse("sessionid", sep="~")
    assert route_from_cookie(spec, b"sessionid=a.b~http-1") == "http-1"
    assert route_from_cookie(spec, b"sessionid=a.http-1") is None
    assert route_from_url(spec, b"/?sessionid=x~r~s") == "r~s"


@pytest.mark.parametrize("bad", ["", "a|b|c", "a b", "a;b", "|", "a|"])
def test_parse_refuses_bad_names(bad: str) -> None:
    with pytest.raises(ValueError):
        StickySpec.parse(bad)


def test_parse_refuses_bad_separator() -> None:
    with pytest.raises(ValueError):
        StickySpec.parse("sessionid", sep="..")


# -- malformed input --------------------------------------------------------------------------------

@pytest.mark.parametrize("value", [
    b"x." + b"r" * MAX_VALUE,          # oversized
    b"x.http-1\x00",                   # NUL
    b"x.http\x01-1",                   # control byte
    b"x.http-1\x7f",                   # DEL
    "x.h\u00e9".encode(),              # non-ASCII
    b"x.\xff\xfe",                     # not UTF-8 either
])
def test_malformed_values_carry_no_route(value: bytes) -> None:
    assert route_from_cookie(SPEC, b"sessionid=" + value) is None
    assert route_from_url(SPEC, b"/?sessionid=" + value) is None
    # the malformed value was the first occurrence: it wins, with no route
    assert route_from_cookie(SPEC, b"sessionid=" + value + b"; sessionid=a.http-2") is None


def test_value_at_the_size_limit_is_read() -> None:
    value = b"x." + b"r" * (MAX_VALUE - 2)
    assert len(value) == MAX_VALUE
    assert route_from_cookie(SPEC, b"sessionid=" + value) == "r" * (MAX_VALUE - 2)


# -- route cookie ---------------------------------------------------------------------------------

def test_route_cookie_is_read_when_sessionid_has_no_route() -> None:  # CLAR: Django's sessionid has none
    cookie = b"sessionid=abcdef0123456789; " + ROUTE_COOKIE.encode() + b"=.http-2"
    assert find_route(SPEC, b"/webapps/", cookie, ROUTE_COOKIE) == ("http-2", "route-cookie")


def test_sticky_cookie_with_route_wins_over_route_cookie() -> None:
    cookie = ROUTE_COOKIE.encode() + b"=.http-2; sessionid=a.http-1"
    assert find_route(SPEC, b"/", cookie, ROUTE_COOKIE) == ("http-1", "cookie")


def test_url_route_wins_over_route_cookie() -> None:
    cookie = ROUTE_COOKIE.encode() + b"=.http-2"
    assert find_route(SPEC, b"/?sessionid=a.http-1", cookie, ROUTE_COOKIE) == ("http-1", "url")


def test_route_cookie_of_another_pool_is_not_read() -> None:  # CLAR: HTTP and HTTPS pools
    other = default_route_cookie_name("django-https").encode()
    assert find_route(SPEC, b"/", other + b"=.https-1", ROUTE_COOKIE) == (None, "")


def test_route_cookie_used_as_the_sticky_cookie() -> None:  # Apache's recipe: stickysession=ROUTEID
    spec = StickySpec.parse("ROUTEID")
    assert find_route(spec, b"/", b"ROUTEID=.http-1", "ROUTEID") == ("http-1", "cookie")


def test_route_cookie_is_read_with_a_dot_whatever_the_separator() -> None:
    spec = StickySpec.parse("sessionid", sep="~")
    assert find_route(spec, b"/", ROUTE_COOKIE.encode() + b"=.a~b", ROUTE_COOKIE) == ("a~b", "route-cookie")


def test_default_route_cookie_names_differ_per_pool() -> None:  # CLAR
    http, https = default_route_cookie_name("django-http"), default_route_cookie_name("django-https")
    assert http != https
    assert re.fullmatch(r"[A-Za-z0-9!#$%&'*+.^_`|~-]+", http)
    assert "django-http" in http


@given(st.text(min_size=1, max_size=40), st.text(min_size=1, max_size=40))
def test_default_route_cookie_name_is_a_token_and_injective(a: str, b: str) -> None:
    na, nb = default_route_cookie_name(a), default_route_cookie_name(b)
    assert re.fullmatch(r"[A-Za-z0-9!#$%&'*+.^_`|~-]+", na)
    assert (na == nb) == (a == b)


def test_route_cookie_header_shape() -> None:  # CLAR: value .<route>, Path = public prefix, Secure on TLS
    assert route_cookie_header("ferryman_route_p", "http-1", path=b"/public", secure=True, httponly=True,
                               samesite="Lax", max_age=None) == \
        b"ferryman_route_p=.http-1; Path=/public; Secure; HttpOnly; SameSite=Lax"
    assert route_cookie_header("R", "r", path=b"", secure=False, httponly=False, samesite="Strict",
                               max_age=3600.9) == b"R=.r; Path=/; Max-Age=3600; SameSite=Strict"


def test_route_cookie_without_max_age_below_a_second_is_a_session_cookie() -> None:
    out = route_cookie_header("R", "r", path=b"/", secure=False, httponly=True, samesite="Lax", max_age=0.0)
    assert b"Max-Age" not in out


@pytest.mark.parametrize("kwargs", [
    {"name": "a b"}, {"name": "a;b"}, {"name": ""},
    {"route": "a;b"}, {"route": "a,b"}, {"route": "a b"}, {"route": 'a"b'}, {"route": "a\r\nb"},
    {"route": ""}, {"route": "\u00e9"}, {"route": "r" * MAX_VALUE},
    {"path": b"/a;b"}, {"path": b"/a\r\nSet-Cookie: x=1"}, {"path": b"relative"}, {"path": "/\u00e9".encode()},
    {"samesite": "lax"},
])
def test_route_cookie_header_refuses_what_could_inject(kwargs: dict) -> None:  # RFC6265
    args = {"name": "R", "route": "r", "path": b"/", "secure": False, "httponly": True, "samesite": "Lax",
            "max_age": None} | kwargs
    with pytest.raises(ValueError):
        route_cookie_header(args.pop("name"), args.pop("route"), **args)


# -- properties -----------------------------------------------------------------------------------

_TOKEN_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789!#$%&'*+.^_`|~-"
tokens = st.text(alphabet=_TOKEN_ALPHABET, min_size=1, max_size=60)
cookie_safe = st.text(alphabet=[chr(c) for c in range(0x21, 0x7F) if chr(c) not in '",;\\'],
                      min_size=1, max_size=100)


@settings(max_examples=500)
@given(st.binary(max_size=600), st.one_of(st.none(), st.binary(max_size=600), st.lists(st.binary(max_size=200))),
       st.sampled_from(["sessionid", "JSESSIONID|jsessionid", "a"]), st.booleans(), st.sampled_from(".~-"))
@example(b"?sessionid=", b"sessionid=", "sessionid", False, ".")
@example(b";sessionid=\xff.\x00", b"sessionid =", "sessionid", True, ".")
def test_never_raises_on_any_bytes(target, cookie, sticky, scolon, sep) -> None:
    spec = StickySpec.parse(sticky, scolonpathdelim=scolon, sep=sep)
    route, source = find_route(spec, target, cookie, ROUTE_COOKIE)
    assert source in ("url", "cookie", "route-cookie", "")
    assert (route is None) == (source == "")
    if route is not None:
        assert route and route.isascii() and route.isprintable()
        assert len(route) < MAX_VALUE


@given(tokens.filter(lambda r: "&" not in r), st.text(alphabet="abcdef0123456789", max_size=40),
       st.sampled_from([b"/webapps/?{}", b"/webapps/x;{}", b"/webapps/?a=1&{}", b"/webapps/x;{}?q=1&r=2"]),
       st.booleans())
def test_url_round_trips_any_token_route(route: str, session: str, shape: bytes, scolon: bool) -> None:
    # A token route may hold any token character except '&', which ends a URL value (Apache too).
    spec = StickySpec.parse("sessionid", scolonpathdelim=scolon)
    target = shape.replace(b"{}", f"sessionid={session}.{route}".encode())
    assert find_route(spec, target, b"sessionid=zzz.other") == (route, "url")


@given(cookie_safe, st.sampled_from(["django-http", "django-https", "a.b_c"]))
def test_route_cookie_round_trips(route: str, pool: str) -> None:
    name = default_route_cookie_name(pool)
    set_cookie = route_cookie_header(name, route, path=b"/webapps", secure=True, httponly=True,
                                     samesite="Lax", max_age=60.0)
    name_value = set_cookie.split(b";", 1)[0]  # what a browser sends back
    assert find_route(SPEC, b"/webapps/", b"sessionid=abc; " + name_value, name) == (route, "route-cookie")


@settings(max_examples=500)
@given(st.text(max_size=40), st.text(max_size=80), st.binary(max_size=40), st.booleans(), st.booleans(),
       st.sampled_from(["Strict", "Lax", "None"]), st.one_of(st.none(), st.floats(0, 1e9)))
def test_route_cookie_header_is_a_single_valid_set_cookie(name, route, path, secure, httponly, samesite, max_age):
    try:
        out = route_cookie_header(name, route, path=path, secure=secure, httponly=httponly, samesite=samesite,
                                  max_age=max_age)
    except ValueError:
        assert not (re.fullmatch(r"[A-Za-z0-9!#$%&'*+.^_`|~-]+", name) and is_route_cookie_safe(route)
                    and (path in (b"", b"/") or (path.startswith(b"/") and not re.search(rb"[\x00-\x1f\x7f-\xff;]", path))))
        return
    assert not re.search(rb"[\x00-\x1f\x7f-\xff]", out)  # no CR/LF or any control: one header line
    first, *attrs = out.split(b"; ")
    assert first == f"{name}=.{route}".encode()
    assert b";" not in first and b"," not in first and b" " not in first
    keys = [a.split(b"=", 1)[0] for a in attrs]
    assert keys[0] == b"Path" and keys[-1] == b"SameSite"
    assert set(keys) <= {b"Path", b"Max-Age", b"Secure", b"HttpOnly", b"SameSite"}
    assert len(keys) == len(set(keys))
    assert (b"Secure" in keys) == secure and (b"HttpOnly" in keys) == httponly


def test_cookie_value_for_hashing() -> None:
    assert cookie_value(b"a=1; user = bob ; sessionid=x", b"user") == b"bob"
    assert cookie_value([b"a=1", b"user=carol"], b"user") == b"carol"
    assert cookie_value(None, b"user") is None and cookie_value(b"xuser=1", b"user") is None
