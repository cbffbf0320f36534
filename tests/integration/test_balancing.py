"""Balancing methods and member states end to end: byrequests (weights, per request), bybusyness and p2c
(a stuck member is avoided), bytraffic, hash (consistent on a cookie), lbset tiers, hot standby, drain,
disabled, and max_tries.

One ferryman serves every pool of this module, each pool on its own route, so each test starts from a
pool no other test touched. Fast members are real gunicorn processes (echo app, `X-Member: host:port`);
RawBackends play the members that hold, reset or are closed mid-test (`X-Member: <name>`).

Expected behaviour: Apache 2.4 mod_proxy_balancer (lbmethod, loadfactor, lbset, retry; observed), invariant 8
of docs/request-safety.md (what may be retried);
docs/configuration.md (lbmethod, hash_on, weight, status, lbset, max_tries).
"""

from __future__ import annotations

import select

import pytest

from tests.support import (
    BackendConn, ClientConn, Ferryman, Gunicorn, RawBackend, Response, config, keep_alive_handler, wait_until,
)

pytestmark = pytest.mark.integration


def named(name: str, hold: bool = False) -> RawBackend:
    """A keep-alive member answering 200 with `X-Member: name`; with hold, only once `.release` is set."""
    def answer(conn: BackendConn, req) -> None:  # noqa: ANN001
        if hold:
            conn.backend.release.wait(60)
        conn.respond(200, {"X-Member": name}, b"ok")
    return RawBackend(keep_alive_handler(answer))


def resetting() -> RawBackend:
    """Reads each request whole, then resets the connection without answering."""
    def die(conn: BackendConn, req) -> str:  # noqa: ANN001
        conn.reset()
        return "close"
    return RawBackend(keep_alive_handler(die))


@pytest.fixture(scope="module")
def echo_c():
    with Gunicorn() as g:
        yield g


@pytest.fixture(scope="module")
def raw():
    """The RawBackends of this module by role."""
    backends = {
        "slow_busy": named("slow", hold=True), "slow_p2c": named("slow", hold=True),
        "prim": named("prim"), "prim2": named("prim2"),
        "die1": resetting(), "die2": resetting(), "die3": resetting(),
    }
    yield backends
    for b in backends.values():
        b.close()


@pytest.fixture(scope="module")
def front(echo_a, echo_b, echo_c, raw):
    a, b, c = echo_a.url("/webapps"), echo_b.url("/webapps"), echo_c.url("/webapps")
    dies = ", ".join(f'{{ url = "{raw[d].url("/m")}" }}' for d in ("die1", "die2", "die3"))
    pools = {
        "rr": f'members = [ {{ url = "{a}" }}, {{ url = "{b}" }} ]',
        "weighted": f'members = [ {{ url = "{a}", weight = 2 }}, {{ url = "{b}", weight = 1 }} ]',
        "busy": f'lbmethod = "bybusyness"\nmembers = [ {{ url = "{raw["slow_busy"].url("/m")}" }}, '
                f'{{ url = "{a}" }} ]',
        "p2c": f'lbmethod = "p2c"\nmembers = [ {{ url = "{raw["slow_p2c"].url("/m")}" }}, {{ url = "{a}" }} ]',
        "traffic": f'lbmethod = "bytraffic"\nmembers = [ {{ url = "{a}" }}, {{ url = "{b}" }} ]',
        "hash3": f'lbmethod = "hash"\nhash_on = "cookie:uid"\n'
                 f'members = [ {{ url = "{a}" }}, {{ url = "{b}" }}, {{ url = "{c}" }} ]',
        "hash2": f'lbmethod = "hash"\nhash_on = "cookie:uid"\nmembers = [ {{ url = "{a}" }}, {{ url = "{b}" }} ]',
        "tiers": f'members = [ {{ url = "{raw["prim"].url("/m")}", lbset = 0 }}, {{ url = "{a}", lbset = 1 }}, '
                 f'{{ url = "{b}", lbset = 1 }} ]',
        "standby": f'members = [ {{ url = "{raw["prim2"].url("/m")}" }}, '
                   f'{{ url = "{b}", status = "hot-standby" }} ]',
        "states": f'sticky = "sessionid"\nmembers = [ {{ url = "{a}", route = "r1", status = "drain" }}, '
                  f'{{ url = "{b}", route = "r2" }}, {{ url = "{c}", route = "r3", status = "disabled" }}, '
                  f'{{ url = "{c}/", route = "r4", status = "stopped" }} ]',
        "tries2": f"max_tries = 2\nmembers = [ {dies} ]",
        "triesall": f"members = [ {dies} ]",
        "budget": "retry_budget = 0.0\npassive = { fails = 0 }\nmembers = [ "
                  + ", ".join(f'{{ url = "{raw[d].url("/b")}" }}' for d in ("die1", "die2")) + " ]",
    }
    extra = "".join(f"[pool.{name}]\nretry = \"60s\"\n{body}\n\n" for name, body in pools.items())
    extra += "".join(f'[[route]]\npath = "/{name}"\npool = "{name}"\n\n' for name in pools)
    # the first route of config() is unused here; every pool above has its own /<name> route
    toml = config([a], "/unused", pool="unused", listener_options="explain_header = true", extra=extra)
    with Ferryman(toml) as f:
        yield f


def get(f: Ferryman, target: str, cookie: str | None = None) -> Response:
    return f.request("GET", target, headers={"Cookie": cookie} if cookie else None)


def who(f: Ferryman, target: str, cookie: str | None = None) -> str:
    r = get(f, target, cookie)
    assert r.status == 200, (r.status, r.body[:200])
    return r.header("x-member")


def keepalive_members(f: Ferryman, target: str, n: int, cookie: str | None = None) -> list[str]:
    headers = {"Cookie": cookie} if cookie else None
    with ClientConn(f.port()) as c:
        answers = [c.request("GET", target, headers) for _ in range(n)]
    assert {r.status for r in answers} == {200}
    return [r.header("x-member") for r in answers]


# -- byrequests -----------------------------------------------------------------------------------------


def test_byrequests_alternates_per_request_even_on_one_client_connection(front, echo_a, echo_b):
    seen = keepalive_members(front, "/rr/echo", 10)
    assert seen == [echo_a.authority, echo_b.authority] * 5


def test_byrequests_with_weights_2_to_1_gives_exactly_two_thirds_in_apaches_order(front, echo_a, echo_b):
    seen = keepalive_members(front, "/weighted/echo", 30)
    a, b = echo_a.authority, echo_b.authority
    assert seen.count(a) == 20 and seen.count(b) == 10
    assert seen == [a, b, a] * 10  # mod_lbmethod_byrequests: a scores 2, b 1, winner pays 3


# -- bybusyness and p2c ---------------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["busy", "p2c"])
def test_a_busyness_aware_method_sends_most_concurrent_requests_to_the_member_that_answers_at_once(
        front, raw, echo_a, method):
    slow = raw[f"slow_{method}"]
    n = 30
    conns: list[ClientConn] = []
    fast_answers: list[Response] = []
    try:
        for _ in range(n):
            c = ClientConn(front.port())
            conns.append(c)
            held_before = len(slow.requests)
            c.send(b"GET /%s/echo HTTP/1.1\r\nHost: test.local\r\n\r\n" % method.encode())

            def settled() -> bool:  # the slow member holds it, or the fast one answered it
                return len(slow.requests) > held_before or bool(select.select([c.sock], [], [], 0)[0])

            wait_until(settled, timeout=10)
            if len(slow.requests) == held_before:
                fast_answers.append(c.read_response())
        held = len(slow.requests)
        assert held + len(fast_answers) == n
        assert {r.header("x-member") for r in fast_answers} == {echo_a.authority}
        assert {r.status for r in fast_answers} == {200}
        # the stuck member holds at most the one request it got while both were idle
        assert held <= 2, f"{held} of {n} concurrent requests went to the member that holds them"
    finally:
        slow.release.set()
        for c in conns:
            c.close()


# -- bytraffic ------------------------------------------------------------------------------------------


def test_bytraffic_sends_requests_to_the_member_that_moved_fewer_bytes(front, echo_a, echo_b):
    a, b = echo_a.authority, echo_b.authority
    assert who(front, "/traffic/bytes?size=200000") == a  # both at 0 bytes: the first member
    assert keepalive_members(front, "/traffic/bytes?size=1000", 10) == [b] * 10  # b: 10 kB < a: 200 kB
    assert who(front, "/traffic/bytes?size=300000") == b  # b now 310 kB
    assert keepalive_members(front, "/traffic/bytes?size=1000", 5) == [a] * 5


# -- hash -----------------------------------------------------------------------------------------------


def test_hash_on_a_cookie_keeps_each_user_on_one_member_spreads_users_and_removing_a_member_moves_only_its_users(
        front, echo_a, echo_b, echo_c):
    homes3: dict[int, str] = {}
    homes2: dict[int, str] = {}
    with ClientConn(front.port()) as c:
        for uid in range(60):
            cookie = {"Cookie": f"sessionid=s{uid}; uid=user-{uid}"}
            answers = [c.request("GET", "/hash3/echo", cookie) for _ in range(3)]
            assert {r.header("ferryman-explain").rsplit("(", 1)[1] for r in answers} == {"hashed)"}
            seen = {r.header("x-member") for r in answers}
            assert len(seen) == 1, (uid, seen)  # the same user always lands on the same member
            homes3[uid] = seen.pop()
            homes2[uid] = c.request("GET", "/hash2/echo", cookie).header("x-member")
    a, b, cc = echo_a.authority, echo_b.authority, echo_c.authority
    assert set(homes3.values()) == {a, b, cc}  # users are spread over every member
    # the pool without member c: users of a and b stay where they were, c's users are shared by a and b
    moved = [uid for uid in homes3 if homes3[uid] != cc and homes2[uid] != homes3[uid]]
    assert not moved, f"users {moved} changed member although theirs was not removed"
    assert {homes2[uid] for uid in homes3 if homes3[uid] == cc} == {a, b}


def test_hash_without_its_cookie_balances_by_request_count(front):
    r = get(front, "/hash2/echo", "sessionid=abc")
    assert r.status == 200
    assert r.header("ferryman-explain").endswith("(balanced)")


# -- lbset tiers, hot standby, drain, disabled ----------------------------------------------------------


def test_the_lowest_lbset_with_a_usable_member_takes_everything_and_the_next_tier_takes_over_when_it_is_gone(
        front, raw, echo_a, echo_b):
    assert keepalive_members(front, "/tiers/echo", 6) == ["prim"] * 6
    raw["prim"].close()
    after = keepalive_members(front, "/tiers/echo", 6)  # no failed request: the refusal is retried
    assert set(after) == {echo_a.authority, echo_b.authority}


def test_a_hot_standby_gets_nothing_while_a_primary_is_usable_and_everything_when_none_is(
        front, raw, echo_b):
    before = [get(front, "/standby/echo") for _ in range(6)]
    assert {r.header("x-member") for r in before} == {"prim2"}
    raw["prim2"].close()
    after = [get(front, "/standby/echo") for _ in range(6)]
    assert {r.status for r in after} == {200}
    assert {r.header("x-member") for r in after} == {echo_b.authority}
    assert after[-1].header("ferryman-explain").endswith("(hot-standby)")


def test_a_draining_member_gets_only_requests_sticky_to_it(front, echo_a, echo_b):
    assert set(keepalive_members(front, "/states/echo", 10)) == {echo_b.authority}
    assert set(keepalive_members(front, "/states/echo", 5, "sessionid=x.r1")) == {echo_a.authority}


@pytest.mark.parametrize("route", ["r3", "r4"], ids=["disabled", "stopped"])
def test_a_disabled_or_stopped_member_gets_nothing_even_sticky(front, echo_b, route):
    r = get(front, "/states/echo", f"sessionid=x.{route}")
    assert r.status == 200 and r.header("x-member") == echo_b.authority
    assert r.header("ferryman-explain").endswith("(failover)")


# -- max_tries ------------------------------------------------------------------------------------------


def _counts(raw: dict[str, RawBackend]) -> dict[str, list[str]]:
    """The methods each resetting member received so far."""
    return {name: [q.method for q in raw[name].requests] for name in ("die1", "die2", "die3")}


def _since(raw: dict[str, RawBackend], before: dict[str, list[str]]) -> dict[str, list[str]]:
    now = _counts(raw)
    return {name: now[name][len(before[name]):] for name in now if now[name][len(before[name]):]}


def test_max_tries_bounds_the_members_tried_for_one_request(front, raw):
    before = _counts(raw)
    r = get(front, "/tries2/x")
    assert r.status == 502
    got = _since(raw, before)
    assert len(got) == 2 and all(m == ["GET"] for m in got.values()), got


def test_without_max_tries_a_get_is_tried_once_on_every_member_and_a_post_only_once(front, raw):
    before = _counts(raw)
    assert get(front, "/triesall/x").status == 502
    assert _since(raw, before) == {"die1": ["GET"], "die2": ["GET"], "die3": ["GET"]}
    before = _counts(raw)
    r = front.request("POST", "/triesall/x", body=b"order=1")
    assert r.status == 502
    got = _since(raw, before)
    assert list(got.values()) == [["POST"]], got


def test_retry_budget_bounds_the_retries_a_pool_adds_to_its_floor(front, raw):
    # retry_budget = 0: only the floor is left, 3 retries per second over the 10 s window, i.e. 30 retries.
    # 40 GETs to two members that reset everything: the first 30 are tried on both, the last 10 only once.
    before = _counts(raw)
    statuses = [get(front, "/budget/x").status for _ in range(40)]
    assert statuses == [502] * 40
    tries = sum(len(m) for m in _since(raw, before).values())
    assert tries == 40 + 30, tries
