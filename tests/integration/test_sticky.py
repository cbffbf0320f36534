"""Sticky sessions end to end, with real gunicorn members: the route in a session cookie, in a URL parameter
and in ferryman's own route cookie; what counts as no route; failover and nofailover.

One ferryman serves every pool of this module (an HTTP and an HTTPS listener, explain_header on):

  /webapps  pool sticky   sticky = "sessionid"; echo_a route r1, echo_b route r2
  /bal      pool bal      the same, only ever sent requests that must be balanced (strict alternation shows it)
  /bk       pool bk       the same, for the byrequests bookkeeping of sticky requests
  /semi     pool semi     sticky = "sessionid", scolonpathdelim = true
  /tilde    pool tilde    sticky = "sessionid", stickysessionsep = "~"
  /java     pool java     sticky = "JSESSIONID|jsessionid" (cookie and URL parameter differ)
  /shop/app pool rc       route_cookie = {} (defaults), no sticky name
  /rc2      pool rc2      route_cookie = { name = "ROUTEID", samesite = "Strict", max_age = "1h", httponly = false }
  /down     pool down     sticky + route_cookie; echo_a route r1, a refused port route r2
  /nofail   pool nofail   sticky + nofailover = true; echo_a route r1, a refused port route r2

Expected behaviour: Apache 2.4 mod_proxy_balancer stickysession, failover and recovery (observed on
Apache 2.4, and its `find_session_route`); docs/configuration.md (sticky, scolonpathdelim, stickysessionsep,
nofailover, route_cookie).
"""

from __future__ import annotations

import http.client
import json
import ssl

import pytest
import trustme

from tests.support import ClientConn, Ferryman, Response, config, refused_port

pytestmark = pytest.mark.integration

CA = trustme.CA()
CERT = CA.issue_cert("127.0.0.1", "localhost")


@pytest.fixture(scope="module")
def dead_port():
    return refused_port()


@pytest.fixture(scope="module")
def front(echo_a, echo_b, dead_port):
    a, b = echo_a.url("/webapps"), echo_b.url("/webapps")
    dead = f"http://127.0.0.1:{dead_port}/webapps"
    two = f'members = [ {{ url = "{a}", route = "r1" }}, {{ url = "{b}", route = "r2" }} ]'
    half_dead = f'members = [ {{ url = "{a}", route = "r1" }}, {{ url = "{dead}", route = "r2" }} ]'
    pools = {
        "bal": f'sticky = "sessionid"\n{two}',
        "bk": f'sticky = "sessionid"\n{two}',
        "semi": f'sticky = "sessionid"\nscolonpathdelim = true\n{two}',
        "tilde": f'sticky = "sessionid"\nstickysessionsep = "~"\n{two}',
        "java": f'sticky = "JSESSIONID|jsessionid"\n{two}',
        "rc": f"route_cookie = {{}}\n{two}",
        "rc2": f'route_cookie = {{ name = "ROUTEID", samesite = "Strict", max_age = "1h", httponly = false }}\n{two}',
        "down": f'sticky = "sessionid"\nroute_cookie = {{}}\nretry = "60s"\n{half_dead}',
        "nofail": f'sticky = "sessionid"\nnofailover = true\nretry = "60s"\n{half_dead}',
    }
    paths = {"bal": "/bal", "bk": "/bk", "semi": "/semi", "tilde": "/tilde", "java": "/java", "rc": "/shop/app",
             "rc2": "/rc2", "down": "/down", "nofail": "/nofail"}
    extra = "".join(f"[pool.{name}]\n{body}\n\n" for name, body in pools.items())
    extra += "".join(f'[[route]]\npath = "{paths[name]}"\npool = "{name}"\n\n' for name in pools)
    extra = ('[[listener]]\nname = "https"\nbind = "127.0.0.1:0"\nexplain_header = true\n'
             'tls = { cert = "front.pem", key = "front.pem" }\n\n' + extra)
    toml = config([{"url": a, "route": "r1"}, {"url": b, "route": "r2"}], "/webapps", pool="sticky",
                  pool_options='sticky = "sessionid"', listener_options="explain_header = true", extra=extra)
    with Ferryman(toml, files={"front.pem": CERT.private_key_and_cert_chain_pem.bytes()}) as f:
        yield f


@pytest.fixture(scope="module")
def members(echo_a, echo_b):
    """route -> the X-Member value that member's answers carry."""
    return {"r1": echo_a.authority, "r2": echo_b.authority}


def get(f: Ferryman, target: str, cookie: str | list[str] | None = None) -> Response:
    if cookie is None:
        headers = None
    elif isinstance(cookie, list):
        headers = [("Cookie", c) for c in cookie]
    else:
        headers = {"Cookie": cookie}
    return f.request("GET", target, headers=headers, listener="http")


def decision(r: Response) -> str:
    """The reason in the ferryman-explain header: sticky, balanced, failover, ..."""
    explain = r.header("ferryman-explain")
    assert explain is not None, (r.status, r.headers)
    return explain.rsplit("(", 1)[1].rstrip(")")


def cookie_parts(set_cookie: str) -> tuple[str, set[str]]:
    name_value, *attrs = [p.strip() for p in set_cookie.split(";")]
    return name_value, set(attrs)


def many(f: Ferryman, n: int, target: str, cookie: str | None = None) -> list[Response]:
    """n requests on one keep-alive connection."""
    headers = {"Cookie": cookie} if cookie else None
    with ClientConn(f.port("http")) as c:
        return [c.request("GET", target, headers) for _ in range(n)]


# -- the route in a session cookie ----------------------------------------------------------------------


@pytest.mark.parametrize("route", ["r1", "r2"])
def test_a_session_cookie_naming_a_route_sends_100_requests_to_that_member(front, members, route):
    answers = many(front, 100, "/webapps/echo", cookie=f"csrftoken=x; sessionid=k3j2h4.{route}")
    assert {r.status for r in answers} == {200}
    assert {r.header("x-member") for r in answers} == {members[route]}
    assert {decision(r) for r in answers} == {"sticky"}


def test_sticky_requests_over_fresh_connections_also_reach_the_routes_member(front, members):
    seen = {get(front, "/webapps/echo", "sessionid=.r2").header("x-member") for _ in range(20)}
    assert seen == {members["r2"]}


# Cookie lookups as observed on Apache 2.4 mod_proxy_balancer (stickysession):
# cookie header(s) -> route, or None (balanced)
COOKIE_ROWS = [
    ("sessionid=xyz.r2", "r2"),
    ("sessionid=.r2", "r2"),
    ("sessionid=r2", None),                          # no separator: no route
    ("sessionid=a.b.r2", None),                      # route is everything after the first '.': "b.r2"
    ("sessionid=a.r2.b", None),
    ("sessionid=xyz.R2", None),                      # routes compare case-sensitively
    ("sessionid=xyz.r9", None),                      # unknown route
    ("sessionid=a.r1; sessionid=b.r2", "r1"),        # first occurrence wins
    ("sessionid=a.r9; sessionid=b.r2", None),        # ... even when its route is unknown
    (["sessionid=a.r1", "sessionid=b.r2"], "r1"),    # two Cookie headers: the first header's value
    ("xsessionid=a.r2", None),
    ("sessionidx=a.r2", None),
    ("SESSIONID=a.r2", None),
    ("other=sessionid=a.r2", None),
    ("sessionid = a.r2", "r2"),                      # spaces around '=' are fine
    ('sessionid="a.r2"', None),                      # quoted is not sticky
]


@pytest.mark.parametrize("cookie,route", COOKIE_ROWS, ids=[str(c) for c, _ in COOKIE_ROWS])
def test_the_sticky_cookie_is_read_as_apache_reads_it(front, members, cookie, route):
    r = get(front, "/webapps/echo", cookie)
    assert r.status == 200
    if route is None:
        assert decision(r) == "balanced"
    else:
        assert decision(r) == "sticky"
        assert r.header("x-member") == members[route]


# -- the route in a URL parameter -----------------------------------------------------------------------


@pytest.mark.parametrize("target,route", [
    ("/webapps/echo?sessionid=abc.r1", "r1"),
    ("/webapps/echo?a=1&sessionid=abc.r2&b=2", "r2"),
    ("/webapps/echo;sessionid=abc.r2?x=1", "r2"),
    ("/webapps/echo;sessionid=abc.r1", "r1"),
])
def test_a_url_parameter_naming_a_route_sends_100_requests_to_that_member_and_reaches_it_unchanged(
        front, members, target, route):
    answers = many(front, 100, target)
    assert {r.header("x-member") for r in answers} == {members[route]}
    assert {decision(r) for r in answers} == {"sticky"}
    last = answers[-1]
    if ";" in target:
        # the echo app does not strip ;params, so it answers 404 naming the path it got: unchanged
        assert last.status == 404
        assert last.body.decode() == f"not found: {target.split('?')[0][len('/webapps'):]}\n"
    else:
        assert last.status == 200
        assert last.json()["raw_uri"] == target


def test_the_url_parameter_wins_over_the_cookie(front, members):
    r = get(front, "/webapps/echo?sessionid=abc.r1", "sessionid=abc.r2")
    assert decision(r) == "sticky" and r.header("x-member") == members["r1"]
    r = get(front, "/webapps/echo?sessionid=abc.r2", "sessionid=abc.r1")
    assert decision(r) == "sticky" and r.header("x-member") == members["r2"]


def test_scolonpathdelim_ends_the_url_value_at_a_semicolon_only_when_set(front, members):
    target = "/echo;sessionid=abc.r2;lang=en"
    assert decision(get(front, "/webapps" + target)) == "balanced"  # route "r2;lang=en": unknown
    r = get(front, "/semi" + target)
    assert decision(r) == "sticky" and r.header("x-member") == members["r2"]


def test_stickysessionsep_names_the_character_before_the_route(front, members):
    r = get(front, "/tilde/echo", "sessionid=abc~r2")
    assert decision(r) == "sticky" and r.header("x-member") == members["r2"]
    assert decision(get(front, "/tilde/echo", "sessionid=abc.r2")) == "balanced"


def test_a_sticky_name_pair_reads_the_cookie_and_the_url_parameter_by_their_own_names(front, members):
    r = get(front, "/java/echo", "JSESSIONID=abc.r2")
    assert decision(r) == "sticky" and r.header("x-member") == members["r2"]
    r = get(front, "/java/echo;jsessionid=abc.r1")
    assert decision(r) == "sticky" and r.header("x-member") == members["r1"]
    assert decision(get(front, "/java/echo", "jsessionid=abc.r2")) == "balanced"  # not the cookie's name


# -- what carries no route is balanced, never an error --------------------------------------------------

BAD_COOKIES = [
    "sessionid=abc.r9",                       # unknown route
    "sessionid=abc.R1",
    "sessionid=abc",
    "sessionid=abc.",
    "sessionid=.",
    "sessionid=",
    "sessionid=" + "a" * 300 + ".r1",         # oversized value
    "sessionid=" + "a" * 7000 + ".r2",        # far oversized, still under gunicorn's 8190-byte line limit
    "sessionid=a.r1\u00e9",                   # a byte outside ASCII
    "sessionid=\u00ff\u00fe.r1",
    "sessionid=a.r1<script>",
    "sessionid=a.\tr1",                       # a control byte inside the value
    "ferryman_route_bal=.r1",                 # another pool's route cookie name: nothing to this pool
]
BAD_TARGETS = [
    "/bal/echo?sessionid=abc.r9",
    "/bal/echo?sessionid=" + "a" * 300 + ".r1",
    "/bal/echo?sessionid=" + "a" * 4000 + ".r2",
    "/bal/echo?sessionid=a.r%C3%A91",
    "/bal/echo?sessionid=a.r1%00",
    "/bal/echo?sessionid=a.r1%0d%0aX-Evil:%201",
    "/bal/echo?sessionid=",
    "/bal/echo?sessionid=&x=a.r1",
    "/bal/echo?xsessionid=a.r1",
    "/bal/echo?a=sessionid=a.r1",
]


@pytest.mark.parametrize("cookie", BAD_COOKIES, ids=[c[:40] for c in BAD_COOKIES])
def test_a_missing_unknown_malformed_or_oversized_sticky_cookie_is_balanced(front, members, cookie):
    # pool bal only ever gets requests that must be balanced: byrequests alternates, so two in a row
    # reach both members; a request wrongly made sticky would break the alternation
    answers = [get(front, "/bal/echo", cookie) for _ in range(2)]
    assert [r.status for r in answers] == [200, 200], [r.body[:200] for r in answers]
    assert [decision(r) for r in answers] == ["balanced", "balanced"]
    assert {r.header("x-member") for r in answers} == set(members.values())


@pytest.mark.parametrize("target", BAD_TARGETS, ids=[t[:48] for t in BAD_TARGETS])
def test_a_missing_unknown_malformed_or_oversized_url_parameter_is_balanced(front, members, target):
    answers = [get(front, target) for _ in range(2)]
    assert [r.status for r in answers] == [200, 200], [r.body[:200] for r in answers]
    assert [decision(r) for r in answers] == ["balanced", "balanced"]
    assert {r.header("x-member") for r in answers} == set(members.values())


def test_sticky_requests_count_in_byrequests_bookkeeping_as_in_apache(front, members):
    # As in Apache byrequests (sticky requests count too): after four sticky requests to http-2 the next
    # four unsticky ones go to http-1, then alternation resumes. Pool bk is used by this test only.
    r1, r2 = members["r1"], members["r2"]
    assert get(front, "/bk/echo").header("x-member") == r1  # a fresh pool starts with its first member
    for _ in range(4):
        assert get(front, "/bk/echo", "sessionid=x.r2").header("x-member") == r2
    after = [get(front, "/bk/echo").header("x-member") for _ in range(6)]
    assert after == [r1, r1, r1, r1, r2, r1]


# -- ferryman's inserted route cookie -------------------------------------------------------------------


def test_the_inserted_route_cookie_pins_a_new_user_for_100_requests_with_path_httponly_and_samesite(
        front, members):
    first = get(front, "/shop/app/echo")
    assert first.status == 200
    served_by = first.header("x-member")
    route = next(r for r, m in members.items() if m == served_by)
    assert len(first.header_all("set-cookie")) == 1
    name_value, attrs = cookie_parts(first.header("set-cookie"))
    assert name_value == f"ferryman_route_rc=.{route}"
    assert attrs == {"Path=/shop/app", "HttpOnly", "SameSite=Lax"}  # no Secure on plain HTTP
    answers = many(front, 100, "/shop/app/echo", cookie=f"sessionid=django0123456789; {name_value}")
    assert {r.header("x-member") for r in answers} == {served_by}
    assert {decision(r) for r in answers} == {"sticky"}
    assert not any(r.has_header("set-cookie") for r in answers)  # already pinned: nothing to re-send


def test_the_route_cookie_reaches_the_backend_like_any_other_cookie(front):
    r = get(front, "/shop/app/echo", "ferryman_route_rc=.r1")
    assert r.json()["headers"]["Cookie"] == "ferryman_route_rc=.r1"


def test_route_cookie_settings_name_samesite_max_age_and_httponly_are_honoured(front, members):
    first = get(front, "/rc2/echo")
    name_value, attrs = cookie_parts(first.header("set-cookie"))
    route = next(r for r, m in members.items() if m == first.header("x-member"))
    assert name_value == f"ROUTEID=.{route}"
    assert attrs == {"Path=/rc2", "Max-Age=3600", "SameSite=Strict"}
    again = get(front, "/rc2/echo", name_value)
    assert again.header("x-member") == first.header("x-member") and not again.has_header("set-cookie")


def test_the_route_cookie_is_secure_on_the_tls_listener_only(front):
    ctx = ssl.create_default_context()
    CA.configure_trust(ctx)
    conn = http.client.HTTPSConnection("127.0.0.1", front.port("https"), context=ctx, timeout=15)
    try:
        conn.request("GET", "/shop/app/echo")
        resp = conn.getresponse()
        resp.read()
    finally:
        conn.close()
    assert resp.status == 200
    _, attrs = cookie_parts(resp.getheader("set-cookie"))
    assert attrs == {"Path=/shop/app", "Secure", "HttpOnly", "SameSite=Lax"}
    _, plain = cookie_parts(get(front, "/shop/app/echo").header("set-cookie"))
    assert "Secure" not in plain


def test_a_malformed_route_cookie_is_no_route_and_a_fresh_one_is_issued(front):
    r = get(front, "/shop/app/echo", "ferryman_route_rc=." + "r1" * 200)
    assert r.status == 200 and decision(r) == "balanced"
    assert r.header("set-cookie").startswith("ferryman_route_rc=.r")


# -- failover and nofailover ----------------------------------------------------------------------------


def test_a_sticky_request_to_a_down_member_fails_over_and_the_route_cookie_is_reissued(front, members):
    # first request: r2 refuses the connection, ferryman tries r1 instead (Apache's 503 quirk avoided)
    for cookie in ["ferryman_route_down=.r2", "sessionid=abc.r2", "sessionid=abc.r2"]:
        r = get(front, "/down/echo", cookie)
        assert r.status == 200, r.body
        assert r.header("x-member") == members["r1"]
        assert decision(r) == "failover"
        name_value, attrs = cookie_parts(r.header("set-cookie"))
        assert name_value == "ferryman_route_down=.r1"
        assert attrs == {"Path=/down", "HttpOnly", "SameSite=Lax"}
    pinned = get(front, "/down/echo", "ferryman_route_down=.r1")
    assert decision(pinned) == "sticky" and not pinned.has_header("set-cookie")


def test_nofailover_answers_503_while_the_routes_member_is_down_and_serves_the_others(front, members):
    for _ in range(3):
        assert get(front, "/nofail/echo", "sessionid=abc.r2").status == 503
    front.wait_for_access_log(lambda ln: '"GET /nofail/echo HTTP/1.1" 503' in ln
                              and "route=r2 decision=sticky-nofailover" in ln)
    r = get(front, "/nofail/echo", "sessionid=abc.r1")
    assert r.status == 200 and r.header("x-member") == members["r1"]
    assert {get(front, "/nofail/echo").header("x-member") for _ in range(3)} == {members["r1"]}
    assert get(front, "/nofail/echo?sessionid=abc.r2").status == 503


def test_a_route_cookie_for_a_route_of_no_member_here_is_balanced_not_refused(front, members):
    # A route that names no member of this pool counts as no route (Apache balances it too)
    answers = [get(front, "/down/echo", "ferryman_route_down=.https-1") for _ in range(2)]
    assert {r.status for r in answers} == {200}
    assert {decision(r) for r in answers} == {"balanced"}
    assert {r.header("set-cookie").split(";")[0] for r in answers} == {"ferryman_route_down=.r1"}


def test_echo_members_see_the_sticky_cookie_unchanged(front):
    r = get(front, "/webapps/echo", "sessionid=k3j2h4.r1")
    assert json.loads(r.body)["headers"]["Cookie"] == "sessionid=k3j2h4.r1"
