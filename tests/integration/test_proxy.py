"""End-to-end proxying through a real ferryman process: keep-alive, pipelining, bodies, HEAD, Expect,
path mapping and normalisation, Host, hop-by-hop headers, balancing and failover.

Reference: Apache ProxyPass path mapping and mod_proxy_balancer balancing (observed on Apache 2.4);
docs/request-safety.md (path normalisation, hop-by-hop headers).
"""

from __future__ import annotations

import json
import socket
from collections import Counter

import pytest

from tests.support import (
    ClientConn,
    Ferryman,
    RawBackend,
    build_request,
    config,
    free_port,
    keep_alive_handler,
    parse_responses,
    raw_request,
    wait_until,
)

pytestmark = pytest.mark.integration


def _raw_answer(conn, req):
    conn.respond(200, {"X-Raw": "yes"}, b"raw-ok")


@pytest.fixture(scope="module")
def raw():
    with RawBackend(keep_alive_handler(_raw_answer)) as backend:
        yield backend


@pytest.fixture(scope="module")
def proxy(echo_a, raw):
    """One ferryman for the module: the echo app under /webapps, /public (other public prefix, cookie domain),
    /preserved (preserve_host), and a recording raw backend under /raw."""
    toml = f"""
[[listener]]
name = "http"
bind = "127.0.0.1:0"

[pool.app]
members = [{{ url = "{echo_a.url('/webapps')}" }}]

[pool.raw]
members = [{{ url = "{raw.url('/rawm')}" }}]

[[route]]
path = "/webapps"
pool = "app"

[[route]]
path = "/public"
pool = "app"
cookie_domain = {{ "app1.internal" = "www.example.com" }}

[[route]]
path = "/preserved"
pool = "app"
preserve_host = true

[[route]]
path = "/raw"
pool = "raw"
"""
    with Ferryman(toml) as f:
        yield f


def echo(resp):
    assert resp.status == 200, (resp.status, resp.body[:300])
    return json.loads(resp.body)


# --------------------------------------------------------------------------------------------------
# basics and keep-alive


def test_a_get_reaches_the_member_and_its_answer_reaches_the_client(proxy, echo_a):
    r = proxy.request("GET", "/webapps/echo?x=1")
    body = echo(r)
    assert body["method"] == "GET"
    assert body["raw_uri"] == "/webapps/echo?x=1"
    assert r.header("X-Member") == echo_a.authority


def test_several_requests_on_one_client_connection_are_all_answered_on_that_connection(proxy):
    with ClientConn(proxy.port()) as c:
        for i in range(5):
            r = c.request("GET", f"/webapps/echo?i={i}")
            assert echo(r)["query"] == f"i={i}"
            assert r.header("Connection", "").lower() != "close"
        # the connection is still usable after five requests
        assert echo(c.request("GET", "/webapps/echo?i=last"))["query"] == "i=last"


def test_sequential_requests_on_one_client_connection_use_one_backend_connection():
    with RawBackend.respond(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok") as backend, \
            Ferryman(config([backend.url("/m")], "/p")) as f, ClientConn(f.port()) as c:
        for i in range(5):
            r = c.request("GET", f"/p/{i}")
            assert (r.status, r.body) == (200, b"ok")
        assert [req.target for req in backend.requests] == [f"/m/{i}" for i in range(5)]
        assert backend.connection_count == 1


def test_sequential_requests_from_different_clients_reuse_a_pooled_backend_connection():
    with RawBackend.respond(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok") as backend, \
            Ferryman(config([backend.url("/m")], "/p")) as f:
        for i in range(4):
            with ClientConn(f.port()) as c:
                assert c.request("GET", f"/p/{i}").status == 200
        assert len(backend.requests) == 4
        assert backend.connection_count == 1


def test_pool_keepalive_zero_opens_a_new_backend_connection_per_request():
    with RawBackend.respond(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok") as backend, \
            Ferryman(config([backend.url("/m")], "/p", pool_options="keepalive = 0")) as f, \
            ClientConn(f.port()) as c:
        for i in range(3):
            assert c.request("GET", f"/p/{i}").status == 200
        assert len(backend.requests) == 3
        assert backend.connection_count == 3


def test_a_backend_that_closes_after_each_response_gets_a_fresh_connection_next_time():
    with RawBackend.respond(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok",
                            keep_alive=False) as backend, \
            Ferryman(config([backend.url("/m")], "/p")) as f, ClientConn(f.port()) as c:
        for i in range(3):
            r = c.request("GET", f"/p/{i}")
            assert (r.status, r.body) == (200, b"ok")
        assert len(backend.requests) == 3
        assert backend.connection_count == 3


def test_three_pipelined_requests_in_one_write_are_answered_in_order(proxy):
    data = (build_request("GET", "/webapps/echo?n=1")
            + build_request("POST", "/webapps/echo?n=2", body=b"hello")
            + build_request("GET", "/webapps/echo?n=3", {"Connection": "close"}))
    out = raw_request(proxy.port(), data)
    responses = parse_responses(out)
    assert [r.status for r in responses] == [200, 200, 200]
    bodies = [json.loads(r.body) for r in responses]
    assert [b["query"] for b in bodies] == ["n=1", "n=2", "n=3"]
    assert [b["method"] for b in bodies] == ["GET", "POST", "GET"]
    assert bodies[1]["body_length"] == 5


def test_pipelined_requests_to_a_raw_backend_are_forwarded_one_at_a_time_in_order():
    def answer(conn, req):
        conn.respond(200, body=req.target.encode())
    with RawBackend(keep_alive_handler(answer)) as backend, Ferryman(config([backend.url("/m")], "/p")) as f:
        data = b"".join(build_request("GET", f"/p/{i}") for i in range(4))
        with ClientConn(f.port()) as c:
            c.send(data)
            got = [c.read_response().body for _ in range(4)]
        assert got == [f"/m/{i}".encode() for i in range(4)]
        assert [r.target for r in backend.requests] == [f"/m/{i}" for i in range(4)]


def test_access_log_records_the_request_with_pool_and_member(proxy, echo_a):
    proxy.request("GET", "/webapps/echo?logged=1", {"User-Agent": "ferryman-tests/1"})
    line = proxy.wait_for_access_log("/webapps/echo?logged=1")
    assert '"GET /webapps/echo?logged=1 HTTP/1.1" 200 ' in line
    assert '"ferryman-tests/1"' in line
    assert "pool=app" in line
    assert f"member={echo_a.url('/webapps')}" in line


# --------------------------------------------------------------------------------------------------
# HEAD, Expect, bodies


def test_head_response_keeps_its_headers_and_carries_no_body(proxy):
    with ClientConn(proxy.port()) as c:
        r = c.request("HEAD", "/webapps/head")
        assert r.status == 200
        assert r.header("Content-Length") == "9"
        assert r.header("X-Head-Test") == "yes"
        # had ferryman sent the 9 body bytes, they would corrupt the next response on this connection
        r2 = c.request("GET", "/webapps/head")
        assert (r2.status, r2.body) == (200, b"head-body")


def test_expect_100_continue_gets_100_before_the_body_is_sent_then_the_final_answer(proxy):
    with ClientConn(proxy.port()) as c:
        c.send(b"POST /webapps/echo HTTP/1.1\r\nHost: test.local\r\nContent-Length: 11\r\n"
               b"Expect: 100-continue\r\n\r\n")
        interim = c.read_response("POST", allow_interim=True)
        assert interim.status == 100
        c.send(b"hello world")
        final = c.read_response("POST")
        body = echo(final)
        assert body["body_length"] == 11
        assert "Expect" not in body["headers"]


def test_expect_100_continue_is_not_forwarded_and_the_backend_gets_the_body(proxy, raw):
    with ClientConn(proxy.port()) as c:
        c.send(b"PUT /raw/up HTTP/1.1\r\nHost: test.local\r\nContent-Length: 4\r\nExpect: 100-continue\r\n\r\n")
        assert c.read_response("PUT", allow_interim=True).status == 100
        c.send(b"data")
        assert c.read_response("PUT").status == 200
    req = raw.requests[-1]
    assert req.target == "/rawm/up"
    assert req.body == b"data"
    assert req.header("Expect") is None


def test_a_content_length_request_body_is_forwarded_with_content_length(proxy, raw):
    r = proxy.request("POST", "/raw/cl", body=b"x" * 1000)
    assert r.status == 200
    req = raw.requests[-1]
    assert req.header("Content-Length") == "1000"
    assert req.header("Transfer-Encoding") is None
    assert req.body == b"x" * 1000


def test_a_chunked_request_body_is_forwarded_rechunked_without_extensions_or_trailers(proxy, raw):
    data = (b"POST /raw/chunked HTTP/1.1\r\nHost: test.local\r\nTransfer-Encoding: chunked\r\n"
            b"Trailer: X-Sum\r\n\r\n"
            b"5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nX-Sum: 42\r\n\r\n")
    with ClientConn(proxy.port()) as c:
        c.send(data)
        assert c.read_response("POST").status == 200
    req = raw.requests[-1]
    assert req.target == "/rawm/chunked"
    assert req.chunked
    assert req.header("Content-Length") is None
    assert req.body == b"hello world"
    assert b";ext" not in req.raw
    assert req.trailers == []
    assert req.header("Trailer") is None


def test_a_chunked_upload_reaches_gunicorn_complete(proxy):
    payload = bytes(range(256)) * 1000
    chunks = b"".join(b"%x\r\n%s\r\n" % (len(payload[i:i + 7000]), payload[i:i + 7000])
                      for i in range(0, len(payload), 7000))
    data = (b"POST /webapps/upload HTTP/1.1\r\nHost: test.local\r\nTransfer-Encoding: chunked\r\n\r\n"
            + chunks + b"0\r\n\r\n")
    import hashlib
    with ClientConn(proxy.port()) as c:
        c.send(data)
        body = echo(c.read_response("POST"))
    assert body["length"] == len(payload)
    assert body["sha256"] == hashlib.sha256(payload).hexdigest()


def test_a_chunked_backend_response_reaches_the_client_chunked_and_complete(proxy):
    from tests.apps.echo_wsgi import pattern_bytes
    r = proxy.request("GET", "/webapps/stream?size=300000")
    assert r.status == 200
    assert r.framing == "chunked"
    assert r.header("Content-Length") is None
    assert r.body == pattern_bytes(300000)


def test_a_close_delimited_backend_response_is_sent_chunked_to_an_http11_client():
    def answer(conn, req):
        conn.send(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nConnection: close\r\n\r\n" + b"z" * 5000)
        return "close"
    with RawBackend(keep_alive_handler(answer)) as backend, Ferryman(config([backend.url("/m")], "/p")) as f, \
            ClientConn(f.port()) as c:
        r = c.request("GET", "/p/x")
        assert r.status == 200
        assert r.framing == "chunked"
        assert r.complete
        assert r.body == b"z" * 5000
        # framed, so the client connection survives
        r2 = c.request("GET", "/p/y")
        assert (r2.status, r2.body) == (200, b"z" * 5000)


@pytest.mark.parametrize("status", [204, 304])
def test_204_and_304_responses_carry_no_body(proxy, status):
    with ClientConn(proxy.port()) as c:
        r = c.request("GET", f"/webapps/status/{status}")
        assert r.status == status
        assert r.body == b""
        assert r.header("Transfer-Encoding") is None
        assert echo(c.request("GET", "/webapps/echo"))["method"] == "GET"


def test_a_backend_error_status_is_passed_through_with_its_body(proxy, echo_a):
    r = proxy.request("GET", "/webapps/status/503")
    assert r.status == 503
    assert r.body == b"status 503\n"
    assert r.header("X-Member") == echo_a.authority
    # the member is not put in error by its own 503
    assert proxy.request("GET", "/webapps/echo").status == 200


# --------------------------------------------------------------------------------------------------
# Host, hop-by-hop


def test_the_backend_gets_the_member_authority_as_host_by_default(proxy, raw):
    assert proxy.request("GET", "/raw/h", host="public.example:8080").status == 200
    assert raw.requests[-1].header_all("Host") == [raw.authority]


def test_preserve_host_sends_the_clients_host_to_the_backend(proxy, echo_a):
    body = echo(proxy.request("GET", "/preserved/echo", host="public.example:8080"))
    assert body["host"] == "public.example:8080"
    assert body["raw_uri"] == "/webapps/echo"
    body = echo(proxy.request("GET", "/webapps/echo", host="public.example:8080"))
    assert body["host"] == echo_a.authority


def test_hop_by_hop_request_headers_and_those_named_by_connection_are_not_forwarded(proxy, raw):
    r = proxy.request("GET", "/raw/hop", [
        ("Connection", "keep-alive, X-Secret-Hop"), ("X-Secret-Hop", "1"), ("Keep-Alive", "timeout=5"),
        ("TE", "trailers"), ("Trailer", "X-T"), ("Proxy-Connection", "keep-alive"),
        ("Proxy-Authorization", "Basic Zm9vOmJhcg=="), ("X-Kept", "yes"),
    ])
    assert r.status == 200
    names = {n.lower() for n in raw.requests[-1].header_names()}
    for hop in ("x-secret-hop", "keep-alive", "te", "trailer", "proxy-connection", "proxy-authorization"):
        assert hop not in names, hop
    assert raw.requests[-1].header("X-Kept") == "yes"


def test_hop_by_hop_response_headers_are_not_forwarded_to_the_client():
    def answer(conn, req):
        conn.send(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: X-Internal\r\nX-Internal: 1\r\n"
                  b"Keep-Alive: timeout=9\r\nProxy-Authenticate: Basic\r\nUpgrade: h2c\r\nX-Kept: yes\r\n\r\nok")
    with RawBackend(keep_alive_handler(answer)) as backend, Ferryman(config([backend.url("/m")], "/p")) as f:
        r = f.request("GET", "/p/x")
        assert (r.status, r.body) == (200, b"ok")
        for hop in ("X-Internal", "Keep-Alive", "Proxy-Authenticate", "Upgrade"):
            assert not r.has_header(hop), hop
        assert r.header("X-Kept") == "yes"


# --------------------------------------------------------------------------------------------------
# path mapping and normalisation


def test_a_public_prefix_maps_onto_a_different_member_prefix_with_the_query_kept(proxy):
    body = echo(proxy.request("GET", "/public/echo?x=1&y=%20z"))
    assert body["raw_uri"] == "/webapps/echo?x=1&y=%20z"
    assert body["prefix"] == "/webapps"


def test_the_bare_public_prefix_maps_to_the_member_prefix_with_a_slash(proxy, raw):
    assert proxy.request("GET", "/raw").status == 200
    assert raw.requests[-1].target == "/rawm/"


def test_the_query_string_is_forwarded_byte_for_byte(proxy, raw):
    q = "a=1&b=%2F%2e..&c=%zz&d=caf%C3%A9&&e"
    assert proxy.request("GET", f"/raw/q?{q}").status == 200
    assert raw.requests[-1].target == f"/rawm/q?{q}"


def test_a_path_that_only_shares_a_prefix_without_a_segment_boundary_gets_404(proxy, raw):
    before = len(raw.requests)
    r = proxy.request("GET", "/rawity/x")
    assert r.status == 404
    assert len(raw.requests) == before


@pytest.mark.parametrize("sent, forwarded", [
    ("/raw/a/../b", "/rawm/b"),
    ("/raw/a/%2e%2E/b", "/rawm/b"),
    ("/raw/./a/./b", "/rawm/a/b"),
    ("/raw//a///b", "/rawm/a/b"),
    ("//raw/a", "/rawm/a"),
    ("/raw/%41%7E", "/rawm/A~"),
    ("/raw/%20%25%C3%A9", "/rawm/%20%25%C3%A9"),
    ("/raw/%252e%252e/x", "/rawm/%252e%252e/x"),
])
def test_the_normalised_path_is_forwarded(proxy, raw, sent, forwarded):
    r = proxy.request("GET", sent)
    assert r.status == 200
    assert raw.requests[-1].target == forwarded


@pytest.mark.parametrize("target", [
    "/raw/a%2Fb",
    "/raw/a%2fb",
    "/raw/..%2F..%2Fetc/passwd",
    "/raw/a%5Cb",
    "/raw/a\\b",
    "/raw/a%00b",
    "/raw/../../etc/passwd",
    "/raw/%2e%2e/%2e%2e/%2e%2e/etc",
])
def test_encoded_slashes_and_climbing_paths_are_refused_and_never_reach_the_backend(proxy, raw, target):
    before_requests = len(raw.requests)
    before_bytes = len(raw.received())
    out = raw_request(proxy.port(), build_request("GET", target, {"Connection": "close"}))
    responses = parse_responses(out)
    assert responses, out
    assert responses[0].status in (400, 404)
    assert len(raw.requests) == before_requests
    assert len(raw.received()) == before_bytes


def test_a_path_climbing_out_of_one_route_into_another_is_routed_by_its_normalised_form(proxy, raw):
    before = len(raw.requests)
    body = echo(proxy.request("GET", "/raw/../webapps/echo"))
    assert body["raw_uri"] == "/webapps/echo"
    assert len(raw.requests) == before


# --------------------------------------------------------------------------------------------------
# balancing and failover


def test_byrequests_spreads_thirty_requests_two_to_one_by_weight(echo_a, echo_b):
    toml = config([{"url": echo_a.url("/webapps"), "weight": 2}, {"url": echo_b.url("/webapps"), "weight": 1}])
    with Ferryman(toml) as f, ClientConn(f.port()) as c:
        members = [c.request("GET", "/webapps/echo").header("X-Member") for _ in range(30)]
    counts = Counter(members)
    assert counts == {echo_a.authority: 20, echo_b.authority: 10}
    # Apache byrequests interleaves: never three in a row on the weight-2 member
    assert all(members[i:i + 3] != [echo_a.authority] * 3 for i in range(28))


def test_byrequests_with_equal_weights_alternates_per_request_not_per_connection(echo_a, echo_b):
    toml = config([echo_a.url("/webapps"), echo_b.url("/webapps")])
    with Ferryman(toml) as f:
        with ClientConn(f.port()) as c:
            first = [c.request("GET", "/webapps/echo").header("X-Member") for _ in range(6)]
        with ClientConn(f.port()) as c:
            second = [c.request("GET", "/webapps/echo").header("X-Member") for _ in range(4)]
    seq = first + second
    assert set(seq) == {echo_a.authority, echo_b.authority}
    assert all(seq[i] != seq[i + 1] for i in range(len(seq) - 1)), seq


def test_a_member_refusing_connections_is_failed_over_and_no_get_or_post_fails(echo_a):
    dead = free_port()
    toml = config([f"http://127.0.0.1:{dead}/webapps", echo_a.url("/webapps")])
    with Ferryman(toml) as f, ClientConn(f.port()) as c:
        statuses = []
        for i in range(8):
            r = c.request("GET", f"/webapps/echo?i={i}")
            statuses.append(r.status)
            assert r.header("X-Member") == echo_a.authority
        r = c.request("POST", "/webapps/echo", body=b"not idempotent but never reached the dead member")
        statuses.append(r.status)
        assert r.header("X-Member") == echo_a.authority
    assert statuses == [200] * 9


def test_a_member_in_error_is_skipped_without_new_connection_attempts_until_retry_elapses(echo_a):
    backend = RawBackend.respond(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
    port = backend.port
    backend.close()  # now refuses
    toml = config([f"http://127.0.0.1:{port}/webapps", echo_a.url("/webapps")], pool_options='retry = "60s"')
    with Ferryman(toml) as f:
        # byrequests alternates, so two requests are enough for one of them to discover the dead member
        assert [f.request("GET", "/webapps/echo").status for _ in range(2)] == [200, 200]
        # restart something on the dead member's port: during `retry` it must not be used
        try:
            revived = socket.socket()
            revived.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            revived.bind(("127.0.0.1", port))
        except OSError:
            pytest.skip("the freed port was taken by another process")
        revived.listen(16)
        revived.settimeout(0.01)
        try:
            members = [f.request("GET", "/webapps/echo").header("X-Member") for _ in range(6)]
            assert members == [echo_a.authority] * 6
            with pytest.raises(OSError):
                revived.accept()  # nobody connected to the member in error
        finally:
            revived.close()


# --------------------------------------------------------------------------------------------------
# request bodies arriving in different packets than the head


@pytest.mark.parametrize("framing", ["content-length", "chunked"])
def test_a_head_and_a_large_body_arriving_in_one_write_are_not_refused_as_a_too_large_head(proxy, raw, framing):
    body = b"q" * 200_000
    if framing == "chunked":
        data = build_request("POST", "/raw/big", {"Transfer-Encoding": "chunked"},
                             b"%x\r\n" % len(body) + body + b"\r\n0\r\n\r\n")
    else:
        data = build_request("POST", "/raw/big", body=body)
    with ClientConn(proxy.port()) as c:
        c.send(data)
        r = c.read_response("POST")
    assert r.status == 200, (r.status, r.body)
    assert raw.requests[-1].body == body


@pytest.mark.parametrize("connection", ["keep-alive", "close"])
def test_a_body_sent_after_the_backend_already_has_the_head_is_streamed_through(connection):
    with RawBackend(keep_alive_handler(lambda conn, req: conn.respond(200, body=b"got %d" % len(req.body)))) \
            as backend, Ferryman(config([backend.url("/m")], "/p", route_options='request_buffer = "0"')) as f, \
            ClientConn(f.port()) as c:
        c.send(b"POST /p/late HTTP/1.1\r\nHost: test.local\r\nContent-Length: 10\r\n"
               b"Connection: " + connection.encode() + b"\r\n\r\n")
        # ferryman streams: the head reaches the backend before the body exists
        wait_until(lambda: b"\r\n\r\n" in backend.received(), 10)
        c.send(b"0123456789")
        r = c.read_response("POST")
        assert (r.status, r.body) == (200, b"got 10")
        assert backend.requests[-1].body == b"0123456789"


def test_the_very_same_request_repeated_on_one_connection_is_forwarded_and_answered_each_time():
    # the connection machines reuse a head read again as the same bytes; each answer is still its own
    sent = []

    def answer(conn, req):
        sent.append(req.target)
        conn.respond(200, body=b"%02d" % len(sent))
    with RawBackend(keep_alive_handler(answer)) as backend, Ferryman(config([backend.url("/m")], "/p")) as f, \
            ClientConn(f.port()) as c:
        got = [(r.status, r.body) for r in (c.request("GET", "/p/same") for _ in range(3))]
        head = c.request("HEAD", "/p/same")
        assert got == [(200, b"01"), (200, b"02"), (200, b"03")]
        assert (head.status, head.body, head.header("Content-Length")) == (200, b"", "2")
        assert sent == ["/m/same"] * 4
        assert len(backend.requests) == 4
