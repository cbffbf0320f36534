"""Balancer pools end to end: sticky sessions, failover, recovery, member states, explain.

Members are RawBackends answering with `X-Member: <route>`, so every response says who served it.
Sources: Apache 2.4 mod_proxy_balancer (stickysession, lbmethod, retry; observed behaviour) and
docs/configuration.md (route_cookie, retry, max_tries).
"""

from __future__ import annotations

import subprocess
import sys
import threading

import pytest

from tests.support import BackendConn, ClientConn, Ferryman, RawBackend, keep_alive_handler, wait_until

pytestmark = pytest.mark.integration


def member(name: str, hold: threading.Event | None = None) -> RawBackend:
    """A keep-alive member that names itself; with `hold`, it answers only once the event is set."""
    def answer(conn: BackendConn, req) -> None:  # noqa: ANN001
        if hold is not None:
            hold.wait(30)
        conn.respond(200, {"X-Member": name}, b"ok")
    return RawBackend(keep_alive_handler(answer))


def pool_toml(members: list[tuple[RawBackend, str, str]], pool: str = "", listener: str = "") -> str:
    """One listener, one pool `app` on /app; members as (backend, route, extra member keys)."""
    rows = ",\n  ".join(f'{{ url = "{b.url("/m")}", route = "{r}"{", " + extra if extra else ""} }}'
                        for b, r, extra in members)
    return (f'[[listener]]\nname = "http"\nbind = "127.0.0.1:0"\n{listener}\n\n'
            f'[pool.app]\nretry = "1s"\n{pool}\nmembers = [\n  {rows},\n]\n\n'
            f'[[route]]\npath = "/app"\npool = "app"\n')


def served(f: Ferryman, target: str = "/app/x", cookie: str | None = None, method: str = "GET"):  # noqa: ANN201
    headers = {"Cookie": cookie} if cookie else None
    return f.request(method, target, headers=headers)


def who(f: Ferryman, target: str = "/app/x", cookie: str | None = None) -> str | None:
    r = served(f, target, cookie)
    assert r.status == 200, (r.status, r.body)
    return r.header("x-member")


@pytest.fixture()
def two():  # noqa: ANN201
    with member("r1") as a, member("r2") as b:
        yield a, b


# -- sticky sessions ------------------------------------------------------------------------------


def test_a_session_cookie_naming_a_route_sticks_for_100_requests(two):
    a, b = two
    with Ferryman(pool_toml([(a, "r1", ""), (b, "r2", "")], 'sticky = "sessionid"')) as f:
        assert {who(f, cookie="sessionid=abc.r2") for _ in range(100)} == {"r2"}
        assert {who(f, cookie="other=1; sessionid=.r1") for _ in range(100)} == {"r1"}


@pytest.mark.parametrize("target", ["/app/x?sessionid=abc.r1", "/app/x?a=1&sessionid=abc.r1",
                                    "/app/x;sessionid=abc.r1"])
def test_a_url_parameter_naming_a_route_sticks_and_the_url_is_forwarded_unchanged(two, target):
    a, b = two
    with Ferryman(pool_toml([(a, "r1", ""), (b, "r2", "")], 'sticky = "sessionid"')) as f:
        assert {who(f, target) for _ in range(100)} == {"r1"}
        assert a.requests[-1].target == target.replace("/app", "/m", 1)
        assert not b.requests


@pytest.mark.parametrize("cookie", ["sessionid=abc", "sessionid=abc.r9", "sessionid=abc.R1",
                                    "sessionid=" + "a" * 300 + ".r1", "sessionid=a.r\u00e91"])
def test_a_route_that_is_missing_unknown_or_malformed_is_balanced_never_an_error(two, cookie):
    a, b = two
    with Ferryman(pool_toml([(a, "r1", ""), (b, "r2", "")], 'sticky = "sessionid"')) as f:
        assert {who(f, cookie=cookie) for _ in range(4)} == {"r1", "r2"}


def test_the_inserted_route_cookie_pins_the_user_and_is_reissued_after_a_failover(two):
    a, b = two
    toml = pool_toml([(a, "r1", ""), (b, "r2", "")], 'route_cookie = { samesite = "Strict" }')
    with Ferryman(toml) as f:
        first = served(f)
        cookie = first.header("set-cookie")
        assert cookie is not None
        name_value, *attrs = [p.strip() for p in cookie.split(";")]
        assert name_value == f"ferryman_route_app=.{first.header('x-member')}"
        assert {"Path=/app", "HttpOnly", "SameSite=Strict"} <= set(attrs)
        assert "Secure" not in attrs  # not a TLS listener
        pinned = first.header("x-member")
        for _ in range(100):
            r = served(f, cookie=name_value)
            assert r.header("x-member") == pinned
            assert r.header("set-cookie") is None  # already pinned: nothing to say
        (a if pinned == "r1" else b).close()
        other = "r2" if pinned == "r1" else "r1"
        moved = served(f, cookie=name_value)
        assert moved.status == 200 and moved.header("x-member") == other
        assert moved.header("set-cookie").startswith(f"ferryman_route_app=.{other};")


def test_nofailover_answers_503_when_the_routes_member_is_down(two):
    a, b = two
    with Ferryman(pool_toml([(a, "r1", ""), (b, "r2", "")], 'sticky = "sessionid"\nnofailover = true')) as f:
        a.close()
        assert served(f, cookie="sessionid=x.r1").status == 503
        assert who(f, cookie="sessionid=x.r2") == "r2"


# -- failover and recovery ------------------------------------------------------------------------


def test_a_member_killed_mid_test_moves_its_sessions_and_new_requests_with_no_failed_get(two):
    a, b = two
    with Ferryman(pool_toml([(a, "r1", ""), (b, "r2", "")], 'sticky = "sessionid"')) as f:
        assert who(f, cookie="sessionid=s.r1") == "r1"
        a.close()
        for _ in range(20):
            assert who(f, cookie="sessionid=s.r1") == "r2"  # its session moved
            assert who(f) == "r2"                             # and so did new requests
        f.wait_for_error_log("r1")  # the failure is logged, naming the member's route


def test_a_post_whose_backend_dies_after_receiving_it_gets_502_and_is_never_sent_twice():
    def die(conn: BackendConn, req) -> str:  # noqa: ANN001
        conn.reset()
        return "close"

    with RawBackend(keep_alive_handler(die)) as dying, member("r2") as b:
        with Ferryman(pool_toml([(dying, "r1", ""), (b, "r2", "")], 'sticky = "sessionid"')) as f:
            r = f.request("POST", "/app/order", headers={"Cookie": "sessionid=s.r1"}, body=b"buy=1")
            assert r.status == 502
            assert [q.method for q in dying.requests] == ["POST"]
            assert not b.requests  # never a duplicate elsewhere


def test_a_failed_member_is_used_again_after_retry_elapses():
    import socket

    with member("r1") as a, member("r2") as b:
        port = a.port
        a.close()  # r1 refuses connections from the start
        with Ferryman(pool_toml([(a, "r1", ""), (b, "r2", "")])) as f:
            assert {who(f) for _ in range(4)} == {"r2"}
            sock = socket.socket()
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                pytest.skip("the member's port was taken by another process")
            sock.listen(16)
            sock.settimeout(0.2)
            stop = threading.Event()

            def serve() -> None:  # r1 is back: a minimal HTTP/1.1 server on its old port
                while not stop.is_set():
                    try:
                        conn, _ = sock.accept()
                    except OSError:
                        continue
                    with conn:
                        buf = b""
                        while b"\r\n\r\n" not in buf:
                            got = conn.recv(4096)
                            if not got:
                                break
                            buf += got
                        conn.sendall(b"HTTP/1.1 200 OK\r\nX-Member: r1\r\nContent-Length: 2\r\n"
                                     b"Connection: close\r\n\r\nok")

            t = threading.Thread(target=serve, daemon=True)
            t.start()
            try:
                wait_until(lambda: who(f) == "r1", timeout=15, interval=0.05)  # retry = "1s"
            finally:
                stop.set()
                t.join(5)
                sock.close()


def test_active_health_checks_eject_a_failing_member_and_bring_it_back_after_passes(two):
    a, b = two
    healthy = threading.Event()
    healthy.set()

    def checked(conn: BackendConn, req) -> None:  # noqa: ANN001
        if req.target == "/health":
            conn.respond(200 if healthy.is_set() else 500, body=b"")
        else:
            conn.respond(200, {"X-Member": "r1"}, b"ok")

    with RawBackend(keep_alive_handler(checked)) as c:
        toml = pool_toml([(c, "r1", ""), (b, "r2", "")],
                         'health = { path = "/health", interval = "100ms", timeout = "1s", passes = 2, fails = 2 }')
        with Ferryman(toml) as f:
            healthy.clear()
            f.wait_for_error_log(lambda line: "route r1" in line and "ejected" in line, timeout=15)
            assert {who(f) for _ in range(6)} == {"r2"}
            healthy.set()
            f.wait_for_error_log(lambda line: "route r1" in line and "-> healthy" in line, timeout=15)
            wait_until(lambda: who(f) == "r1", timeout=10)


# -- member states --------------------------------------------------------------------------------


def test_a_draining_member_gets_only_requests_sticky_to_it(two):
    a, b = two
    with Ferryman(pool_toml([(a, "r1", 'status = "drain"'), (b, "r2", "")], 'sticky = "sessionid"')) as f:
        assert {who(f) for _ in range(10)} == {"r2"}
        assert who(f, cookie="sessionid=s.r1") == "r1"


def test_a_hot_standby_serves_nothing_while_a_primary_is_usable_and_everything_when_none_is(two):
    a, b = two
    with Ferryman(pool_toml([(a, "r1", ""), (b, "r2", 'status = "hot-standby"')])) as f:
        assert {who(f) for _ in range(10)} == {"r1"}
        a.close()
        assert {who(f) for _ in range(10)} == {"r2"}


@pytest.mark.parametrize("method", ["bybusyness", "p2c"])
def test_busyness_aware_methods_send_new_requests_away_from_a_member_stuck_on_slow_ones(method):
    hold = threading.Event()
    with member("slow", hold) as slow, member("fast") as fast:
        with Ferryman(pool_toml([(slow, "slow", ""), (fast, "fast", "")], f'lbmethod = "{method}"')) as f:
            stuck: list[ClientConn] = []
            try:
                # open requests until the slow member holds one (p2c breaks ties at random)
                for _ in range(30):
                    c = ClientConn(f.port())
                    stuck.append(c)
                    dispatched = len(slow.requests) + len(fast.requests)
                    c.send(b"GET /app/stuck HTTP/1.1\r\nHost: t\r\n\r\n")
                    wait_until(lambda: len(slow.requests) + len(fast.requests) > dispatched, timeout=10)
                    if slow.requests:
                        break
                assert slow.requests, "the slow member never got a request"
                answers = [who(f) for _ in range(10)]
                assert answers.count("fast") >= 9, answers
            finally:
                hold.set()
                for c in stuck:
                    c.close()


def test_failonstatus_puts_a_member_in_error_and_still_passes_its_answer_on(two):
    a, b = two
    with RawBackend(keep_alive_handler(lambda c, q: c.respond(503, {"X-Member": "r1"}, b"busy"))) as sick:
        with Ferryman(pool_toml([(sick, "r1", ""), (b, "r2", "")], "failonstatus = [503]")) as f:
            answers = [served(f) for _ in range(6)]
            assert [r.status for r in answers].count(503) == 1  # passed on once, then r1 rests
            assert answers[0].status == 503 or answers[1].status == 503
            f.wait_for_error_log(lambda line: "route r1" in line and "failonstatus 503" in line)
            assert {r.header("x-member") for r in answers[2:]} == {"r2"}


def test_the_route_cookie_is_secure_on_a_tls_listener(two, tmp_path):
    import http.client
    import ssl

    import trustme

    a, b = two
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    cert.private_key_and_cert_chain_pem.write_to_path(str(tmp_path / "front.pem"))
    toml = pool_toml([(a, "r1", ""), (b, "r2", "")], "route_cookie = {}",
                     f'tls = {{ cert = "{tmp_path / "front.pem"}", key = "{tmp_path / "front.pem"}" }}')
    with Ferryman(toml) as f:
        ctx = ssl.create_default_context()
        ca.configure_trust(ctx)
        conn = http.client.HTTPSConnection("127.0.0.1", f.port(), context=ctx, timeout=15)
        conn.request("GET", "/app/x")
        resp = conn.getresponse()
        resp.read()
        assert resp.status == 200
        attrs = [p.strip() for p in resp.getheader("set-cookie").split(";")]
        assert "Secure" in attrs and "Path=/app" in attrs
        conn.close()


def test_hash_on_a_cookie_keeps_each_user_on_one_member_and_spreads_users(two):
    a, b = two
    with Ferryman(pool_toml([(a, "r1", ""), (b, "r2", "")], 'lbmethod = "hash"\nhash_on = "cookie:uid"')) as f:
        homes = {}
        for uid in range(40):
            seen = {who(f, cookie=f"uid=user{uid}") for _ in range(3)}
            assert len(seen) == 1  # the same user always lands on the same member
            homes[uid] = seen.pop()
        assert set(homes.values()) == {"r1", "r2"}  # and users are spread over both


def test_failontimeout_puts_a_member_that_times_out_in_error():
    hold = threading.Event()
    with member("slow", hold) as slow, member("fast") as fast:
        toml = pool_toml([(slow, "slow", ""), (fast, "fast", "")],
                         'failontimeout = true\nresponse_timeout = "300ms"')
        with Ferryman(toml) as f:
            try:
                first = [served(f) for _ in range(2)]
                assert sorted(r.status for r in first) == [200, 504]
                f.wait_for_error_log(lambda line: "route slow" in line and "response timeout" in line)
                assert {who(f) for _ in range(6)} == {"fast"}
            finally:
                hold.set()


def test_passive_health_ejects_a_member_after_consecutive_failed_requests():
    def reset(conn: BackendConn, req) -> str:  # noqa: ANN001
        conn.reset()
        return "close"

    with RawBackend(keep_alive_handler(reset)) as bad, member("good") as good:
        toml = pool_toml([(bad, "bad", ""), (good, "good", "")], "passive = { fails = 2 }")
        with Ferryman(toml) as f:
            statuses = [served(f, method="POST").status for _ in range(6)]  # POSTs are never retried
            assert statuses.count(502) == 2, statuses  # two failures, then the member is ejected
            f.wait_for_error_log(lambda line: "route bad" in line and "ejected" in line)
            assert {who(f) for _ in range(6)} == {"good"}


# -- explaining -----------------------------------------------------------------------------------


def test_the_explain_header_says_pool_member_and_why(two):
    a, b = two
    with Ferryman(pool_toml([(a, "r1", ""), (b, "r2", "")], 'sticky = "sessionid"',
                            "explain_header = true")) as f:
        r = served(f, cookie="sessionid=s.r2")
        assert r.header("ferryman-explain") == f"pool=app; sticky route r2 -> member {b.url('/m')} (sticky)"
        f.wait_for_access_log(lambda line: "route=r2 decision=sticky" in line)


def test_ferryman_explain_names_route_mapping_sticky_route_member_and_reason(tmp_path):
    conf = tmp_path / "f.toml"
    conf.write_text(
        '[[listener]]\nname = "http"\nbind = "127.0.0.1:8080"\n\n'
        '[pool.django-http]\nsticky = "sessionid"\nmembers = [\n'
        '  { url = "http://127.0.0.1:9001/webapps", route = "http-1" },\n'
        '  { url = "http://127.0.0.1:9002/webapps", route = "http-2" },\n]\n\n'
        '[pool.off]\nmembers = [ { url = "http://127.0.0.1:9003", status = "disabled" } ]\n\n'
        '[[route]]\npath = "/public"\npool = "django-http"\n\n'
        '[[route]]\npath = "/off"\npool = "off"\n')

    def explain(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "ferryman", "explain", "-c", str(conf), *args],
                              capture_output=True, text=True, timeout=60)

    sticky = explain("GET /public/x?y=1", "--cookie", "sessionid=abc.http-2")
    assert sticky.returncode == 0, sticky.stderr
    assert "/public -> pool django-http" in sticky.stdout
    assert 'route "http-2" from the cookie' in sticky.stdout
    assert "/public/x -> /webapps/x?y=1" in sticky.stdout
    assert "member http://127.0.0.1:9002/webapps (sticky)" in sticky.stdout
    failover = explain("GET /public/x", "--cookie", "sessionid=abc.http-2", "--down", "http-2")
    assert "sticky route http-2 unusable -> member http://127.0.0.1:9001/webapps (failover)" in failover.stdout
    recovered = explain("GET /public/x", "--in-error", "http-1", "--in-error", "http-2")
    assert recovered.returncode == 0  # Apache: when every member is in error, all are tried again
    none = explain("GET /off/x")
    assert none.returncode == 1 and "503: no usable member" in none.stdout
    missing = explain("GET /elsewhere")
    assert missing.returncode == 1 and "404" in missing.stdout
    assert explain("nonsense").returncode == 2
