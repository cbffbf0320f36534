"""ProxyPassReverse: Location / Content-Location / URI pointing at a member are rewritten to the public URL of
the listener that took the request; Set-Cookie Path follows the prefix mapping, Domain follows cookie_domain.

Reference: Apache ProxyPassReverse / ProxyPassReverseCookiePath / ProxyPassReverseCookieDomain;
docs/configuration.md (route path, member URL path, cookie_domain).
The member is gunicorn with the echo app, which builds its own absolute URLs from the address it listens on.
"""

from __future__ import annotations

from urllib.parse import quote

import pytest

from tests.support import Ferryman

pytestmark = pytest.mark.integration

HOST = "front.example:8080"


@pytest.fixture(scope="module")
def proxy(echo_a):
    member = echo_a.url("/webapps")
    toml = f"""
[[listener]]
name = "http"
bind = "127.0.0.1:0"

[pool.app]
members = [{{ url = "{member}" }}]

[[route]]
path = "/webapps"
pool = "app"

[[route]]
path = "/public"
pool = "app"
cookie_domain = {{ "app1.internal" = "www.example.com" }}

[[route]]
path = "/plain"
pool = "app"
reverse = false
cookie_path = false
"""
    with Ferryman(toml) as f:
        yield f


def get(proxy, target):
    return proxy.request("GET", target, host=HOST)


def test_an_absolute_location_at_the_member_is_rewritten_even_when_the_prefixes_are_the_same(proxy, echo_a):
    r = get(proxy, "/webapps/redirect?abs=1&to=/webapps/target")
    assert r.status == 302
    assert r.header("Location") == f"http://{HOST}/webapps/target"
    assert echo_a.authority not in r.header("Location")


def test_an_absolute_location_at_the_member_is_mapped_to_the_other_public_prefix(proxy):
    r = get(proxy, "/public/redirect?abs=1&to=/webapps/target?next=/webapps/x")
    assert r.status == 302
    assert r.header("Location") == f"http://{HOST}/public/target?next=/webapps/x"


def test_a_location_path_under_the_member_prefix_is_mapped_to_the_public_prefix(proxy):
    r = get(proxy, "/public/redirect?to=/webapps/target")
    assert r.status == 302
    assert r.header("Location") in ("/public/target", f"http://{HOST}/public/target")


def test_the_member_root_itself_maps_to_the_public_prefix(proxy):
    r = get(proxy, "/public/redirect?abs=1&to=/webapps")
    assert r.header("Location") in (f"http://{HOST}/public", f"http://{HOST}/public/")


def test_a_location_pointing_elsewhere_is_left_alone(proxy):
    target = "http://elsewhere.example/webapps/target"
    r = get(proxy, "/public/redirect?to=" + quote(target, safe=""))
    assert r.header("Location") == target


def test_a_location_that_only_shares_a_prefix_without_a_segment_boundary_is_left_alone(proxy):
    r = get(proxy, "/public/redirect?to=/webappsX/target")
    assert r.header("Location") == "/webappsX/target"


@pytest.mark.parametrize("header", ["Content-Location", "URI"])
def test_content_location_and_uri_are_rewritten_like_location(proxy, header):
    r = get(proxy, f"/public/redirect?abs=1&to=/webapps/doc&status=200&header={header}")
    assert r.status == 200
    assert r.header(header) == f"http://{HOST}/public/doc"


def test_reverse_false_leaves_location_untouched(proxy, echo_a):
    r = get(proxy, "/plain/redirect?abs=1&to=/webapps/target")
    assert r.header("Location") == f"http://{echo_a.authority}/webapps/target"


def test_set_cookie_paths_and_domains_follow_the_public_prefix_with_attribute_case_and_order_kept(proxy):
    r = get(proxy, "/public/setcookie")
    assert r.status == 200
    assert r.header_all("Set-Cookie") == [
        "a=1; Path=/public/sub; HttpOnly",
        "b=2; Domain=www.example.com; Path=/public; Secure",
    ]


def test_set_cookie_through_the_same_prefix_keeps_its_path_and_without_cookie_domain_its_domain(proxy):
    r = get(proxy, "/webapps/setcookie")
    assert r.header_all("Set-Cookie") == [
        "a=1; Path=/webapps/sub; HttpOnly",
        "b=2; Domain=app1.internal; Path=/webapps; Secure",
    ]


@pytest.mark.parametrize("sent, expected", [
    ("s=1; path=/webapps/x; httponly", "s=1; path=/public/x; httponly"),
    ("s=1; Path=/webapps", "s=1; Path=/public"),
    ("s=1; Path=/", "s=1; Path=/"),
    ("s=1; Path=/webappsX", "s=1; Path=/webappsX"),
    ("s=1; Path=/other/x", "s=1; Path=/other/x"),
    ("s=1; Max-Age=60; Domain=other.internal; Path=/webapps/y",
     "s=1; Max-Age=60; Domain=other.internal; Path=/public/y"),
])
def test_set_cookie_path_rewriting_changes_only_values_under_the_member_prefix(proxy, sent, expected):
    r = get(proxy, "/public/setcookie?c=" + quote(sent, safe=""))
    assert r.header_all("Set-Cookie") == [expected]


def test_cookie_path_false_leaves_set_cookie_paths_alone(proxy):
    r = get(proxy, "/plain/setcookie")
    assert r.header_all("Set-Cookie") == [
        "a=1; Path=/webapps/sub; HttpOnly",
        "b=2; Domain=app1.internal; Path=/webapps; Secure",
    ]
