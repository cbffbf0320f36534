"""ferryman's own error answers and what causes each: 404 no route, 413 body too large, 502 backend failed after
the request may have reached it, 503 no usable member, 504 backend timeouts; truncated backend responses
reach the client truncated; bytes after a response's end never make a connection reusable.

Guarantees: invariants 2, 3, 8 and 9 of docs/request-safety.md.
"""

from __future__ import annotations

import contextlib
import time

import pytest

from tests.support import (
    ClientConn,
    Ferryman,
    RawBackend,
    UnresponsiveListener,
    build_request,
    config,
    free_port,
    keep_alive_handler,
    parse_responses,
    raw_request,
    wait_until,
)

pytestmark = pytest.mark.integration


@contextlib.contextmanager
def proxied(handler, **config_kwargs):
    """A RawBackend running `handler` behind a fresh ferryman: /p/... -> backend /m/..."""
    with RawBackend(handler) as backend, Ferryman(config([backend.url("/m")], "/p", **config_kwargs)) as f:
        yield backend, f


def assert_ferryman_error(resp, status, *secrets):
    """A small text/plain body from ferryman naming no internal address."""
    assert resp.status == status, (resp.status, resp.body[:300])
    assert (resp.header("Content-Type") or "").startswith("text/plain")
    assert len(resp.body) < 2048
    for s in secrets:
        assert str(s).encode() not in resp.body
        assert all(str(s) not in v for _, v in resp.headers)


# --------------------------------------------------------------------------------------------------
# 404 / 413


def test_a_path_matching_no_route_gets_404_from_ferryman_and_no_backend_contact():
    with proxied(keep_alive_handler(lambda c, r: c.respond(200, body=b"ok"))) as (backend, f):
        r = f.request("GET", "/nothere/x")
        assert_ferryman_error(r, 404, backend.port)
        assert backend.connection_count == 0


def test_a_body_over_max_body_size_gets_413_and_is_not_forwarded():
    with proxied(keep_alive_handler(lambda c, r: c.respond(200, body=b"ok")),
                 top='[limits]\nmax_body_size = "1KiB"') as (backend, f):
        out = raw_request(f.port(), build_request("POST", "/p/up", body=b"x" * 2000))
        responses = parse_responses(out)
        assert_ferryman_error(responses[0], 413, backend.port)
        assert backend.requests == []
        # within the limit it is forwarded
        assert f.request("POST", "/p/up", body=b"x" * 1024).status == 200
        assert backend.requests[-1].body == b"x" * 1024


def test_expect_100_continue_with_a_declared_length_over_the_limit_gets_413_and_no_100():
    with proxied(keep_alive_handler(lambda c, r: c.respond(200, body=b"ok")),
                 top='[limits]\nmax_body_size = "1KiB"') as (backend, f), ClientConn(f.port()) as c:
        c.send(b"POST /p/up HTTP/1.1\r\nHost: test.local\r\nContent-Length: 5000\r\nExpect: 100-continue\r\n\r\n")
        first = c.read_response("POST", allow_interim=True)
        assert first.status == 413
        assert backend.requests == []


def test_expect_100_continue_on_a_path_with_no_route_gets_404_and_no_100():
    with proxied(keep_alive_handler(lambda c, r: c.respond(200, body=b"ok"))) as (backend, f), \
            ClientConn(f.port()) as c:
        c.send(b"POST /elsewhere HTTP/1.1\r\nHost: test.local\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n")
        assert c.read_response("POST", allow_interim=True).status == 404


# --------------------------------------------------------------------------------------------------
# 502


def _reset_after_request(conn, sock):
    if conn.read_request() is not None:
        conn.reset()


def test_a_backend_resetting_after_reading_a_post_gets_502_and_the_post_is_not_retried():
    with proxied(_reset_after_request) as (backend, f):
        r = f.request("POST", "/p/order", body=b"buy one")
        assert_ferryman_error(r, 502, backend.port, "127.0.0.1")
        assert [req.method for req in backend.requests] == ["POST"]


def test_a_get_reset_by_its_only_backend_gets_502():
    with proxied(_reset_after_request) as (backend, f):
        r = f.request("GET", "/p/x")
        assert_ferryman_error(r, 502, backend.port)
        assert backend.requests and all(req.target == "/m/x" for req in backend.requests)


def test_a_backend_closing_without_answering_gets_502():
    def close_after_request(conn, sock):
        if conn.read_request() is not None:
            conn.close()
    with proxied(close_after_request) as (backend, f):
        assert_ferryman_error(f.request("POST", "/p/x", body=b"1"), 502, backend.port)


MALFORMED = {
    "not http": b"garbage\r\n\r\n",
    "bad status code": b"HTTP/1.1 2000 OK\r\nContent-Length: 2\r\n\r\nok",
    "two different content lengths": b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nok",
    "content length not a number": b"HTTP/1.1 200 OK\r\nContent-Length: abc\r\n\r\nok",
    "content length and chunked": (b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n"
                                   b"2\r\nok\r\n0\r\n\r\n"),
    "transfer coding other than final chunked": (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, gzip\r\n\r\n"
                                                 b"2\r\nok\r\n0\r\n\r\n"),
    "space before colon": b"HTTP/1.1 200 OK\r\nX-Bad : x\r\nContent-Length: 2\r\n\r\nok",
    "obs-fold": b"HTTP/1.1 200 OK\r\nX-Folded: a\r\n b\r\nContent-Length: 2\r\n\r\nok",
    "NUL in a header value": b"HTTP/1.1 200 OK\r\nX-Nul: a\x00b\r\nContent-Length: 2\r\n\r\nok",
    "bad chunk size": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nok\r\n0\r\n\r\n",
}


@pytest.mark.parametrize("case", list(MALFORMED))
def test_a_malformed_backend_response_gets_502(case):
    canned = MALFORMED[case]

    def answer(conn, sock):
        if conn.read_request() is not None:
            conn.send(canned)
            conn.close()
    with proxied(answer) as (backend, f):
        out = raw_request(f.port(), build_request("POST", "/p/x", body=b"1"), read_until_close=False)
        responses = parse_responses(out, eof=False) or parse_responses(out)
        assert responses, out
        # a chunked response whose head was fine may already have started: then it must be cut, not 200-complete
        if case == "bad chunk size" and responses[0].status == 200:
            assert not responses[0].complete
        else:
            assert_ferryman_error(responses[0], 502, backend.port)


# --------------------------------------------------------------------------------------------------
# 503


def test_every_member_refusing_connections_gets_503_naming_no_member():
    dead1, dead2 = free_port(), free_port()
    toml = config([f"http://127.0.0.1:{dead1}/m", f"http://127.0.0.1:{dead2}/m"], "/p")
    with Ferryman(toml) as f:
        for _ in range(3):
            assert_ferryman_error(f.request("GET", "/p/x"), 503, dead1, dead2, "127.0.0.1")


def test_a_pool_whose_members_are_all_disabled_gets_503():
    with RawBackend() as backend:
        toml = config([{"url": backend.url("/m"), "status": "disabled"}], "/p")
        with Ferryman(toml) as f:
            assert_ferryman_error(f.request("GET", "/p/x"), 503, backend.port)
        assert backend.connection_count == 0


def test_members_come_back_after_all_were_refusing():
    # Apache force-recovers when every member is in error: once one is back, the next request is served
    backend = RawBackend.respond(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
    port = backend.port
    backend.close()
    toml = config([f"http://127.0.0.1:{port}/m"], "/p", pool_options='retry = "60s"')
    with Ferryman(toml) as f:
        assert f.request("GET", "/p/x").status == 503
        import socket
        try:
            revived = socket.socket()
            revived.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            revived.bind(("127.0.0.1", port))
        except OSError:
            pytest.skip("the freed port was taken by another process")
        revived.listen(8)
        import threading

        def serve_one():
            s, _ = revived.accept()
            buf = b""
            while b"\r\n\r\n" not in buf:
                buf += s.recv(4096)
            s.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nback")
            s.close()
        t = threading.Thread(target=serve_one, daemon=True)
        t.start()
        try:
            r = f.request("GET", "/p/x")
            assert (r.status, r.body) == (200, b"back")
        finally:
            revived.close()


# --------------------------------------------------------------------------------------------------
# 504


def test_a_backend_not_answering_within_response_timeout_gets_504():
    def hold(conn, sock):
        if conn.read_request() is not None:
            conn.hold(60)
    with proxied(hold, pool_options='response_timeout = "500ms"') as (backend, f):
        start = time.monotonic()
        r = f.request("POST", "/p/slow", body=b"x", timeout=30)
        assert_ferryman_error(r, 504, backend.port)
        assert time.monotonic() - start < 20  # hang guard: the timeout fired, not our socket's
        assert len(backend.requests) == 1


def test_a_get_to_a_backend_not_answering_within_response_timeout_gets_504():
    def hold(conn, sock):
        if conn.read_request() is not None:
            conn.hold(60)
    with proxied(hold, pool_options='response_timeout = "500ms"') as (backend, f):
        assert_ferryman_error(f.request("GET", "/p/slow", timeout=30), 504, backend.port)


def test_a_backend_whose_connect_hangs_past_connect_timeout_gets_504():
    # loopback cannot drop packets, but a full accept queue makes the kernel ignore SYNs: connect() hangs
    with UnresponsiveListener() as hole:
        toml = config([hole.url("/m")], "/p", pool_options='connect_timeout = "300ms"')
        with Ferryman(toml) as f:
            r = f.request("GET", "/p/x", timeout=30)
            assert_ferryman_error(r, 504, hole.port)


def test_a_response_body_idle_past_read_timeout_reaches_the_client_truncated():
    def head_then_stall(conn, sock):
        if conn.read_request() is not None:
            conn.send(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n" + b"a" * 10)
            conn.hold(60)
    with proxied(head_then_stall, pool_options='read_timeout = "500ms"') as (backend, f):
        out = raw_request(f.port(), build_request("GET", "/p/x"), timeout=30)
        [resp] = parse_responses(out)
        assert resp.status == 200
        assert not resp.complete
        assert resp.body == b"a" * 10


# --------------------------------------------------------------------------------------------------
# truncation and framing


def test_a_backend_response_cut_short_of_its_content_length_reaches_the_client_truncated():
    def cut(conn, sock):
        if conn.read_request() is not None:
            conn.send(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n" + b"b" * 10)
            conn.close()
    with proxied(cut) as (backend, f):
        out = raw_request(f.port(), build_request("GET", "/p/x"), timeout=30)  # returns only once closed
        [resp] = parse_responses(out)
        assert resp.status == 200
        assert resp.header("Content-Length") == "100"
        assert not resp.complete
        assert resp.body == b"b" * 10


def test_a_chunked_backend_response_cut_before_its_last_chunk_reaches_the_client_without_a_last_chunk():
    def cut(conn, sock):
        if conn.read_request() is not None:
            conn.send(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n")
            conn.close()
    with proxied(cut) as (backend, f):
        out = raw_request(f.port(), build_request("GET", "/p/x"), timeout=30)
        [resp] = parse_responses(out)
        assert resp.status == 200
        assert resp.framing == "chunked"
        assert not resp.complete
        assert resp.body == b"hello"
        assert not out.endswith(b"0\r\n\r\n")


def test_bytes_after_a_backend_responses_end_are_not_taken_as_the_next_response():
    def extra(conn, sock):
        while conn.read_request() is not None:
            conn.send(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
                      b"HTTP/1.1 200 OK\r\nContent-Length: 8\r\n\r\nsmuggled")
    with proxied(extra) as (backend, f), ClientConn(f.port()) as c:
        first = c.request("GET", "/p/1")
        assert (first.status, first.body) == (200, b"ok")
        second = c.request("GET", "/p/2")
        assert second.body != b"smuggled"
        assert (second.status, second.body) == (200, b"ok")
        # the polluted backend connection was not reused
        assert backend.connection_count == 2


def test_a_backend_connection_closed_while_idle_in_the_pool_is_not_an_error_for_the_next_request():
    def one_then_close(conn, sock):
        if conn.read_request() is not None:
            conn.respond(200, body=b"ok")   # keep-alive response, then the backend closes the idle connection
            conn.close()
    with proxied(one_then_close) as (backend, f):
        assert f.request("POST", "/p/1", body=b"a").status == 200
        from tests.support import wait_until
        wait_until(lambda: backend.connections[0].closed.is_set(), 5)
        r = f.request("POST", "/p/2", body=b"b")
        assert (r.status, r.body) == (200, b"ok")
        assert [req.body for req in backend.requests] == [b"a", b"b"]


# --------------------------------------------------------------------------------------------------
# Failures on reused keep-alive connections


def _resets_reused_connections(conn, sock):
    """Answer the first request of a connection, then reset the connection on its second."""
    if conn.read_request() is None:
        return
    conn.respond(200, body=b"fresh")
    if conn.read_request() is not None:
        conn.reset()


def test_a_member_resetting_every_reused_connection_is_ejected_eventually():
    with proxied(_resets_reused_connections, pool_options="passive = { fails = 3 }") as (backend, f):
        statuses = []
        for i in range(12):
            statuses.append(f.request("GET", f"/p/{i}").status)
            if any("-> ejected" in ln for ln in f.error_log_lines()):
                break
        f.wait_for_error_log("-> ejected")
        # every request was still answered: the reused-connection failures were retried on fresh ones
        assert set(statuses) <= {200, 503}, statuses
        assert statuses[0] == 200


def test_a_pooled_connection_closed_by_the_backend_while_idle_is_replaced_without_an_error():
    """Invariant 8: a pooled connection found closed before any byte was written is not a failure."""
    def handler(conn, sock):
        if conn.read_request() is None:
            return
        conn.respond(200, body=b"once")
        conn.close()  # keep-alive promised, then closed while idle

    with proxied(handler, pool_options="passive = { fails = 1 }") as (backend, f):
        assert f.request("GET", "/p/1").status == 200
        wait_until(lambda: backend.connections[0].closed.is_set(), 10, 0.01)
        for i in range(3):
            assert f.request("GET", f"/p/{i}").status == 200
        assert not any("ejected" in ln for ln in f.error_log_lines())
