"""Smuggling and queue poisoning at the connection level, both directions.

Each test reproduces one way a request or a response could be mistaken for another: an upgrade request
whose body the parser skips, bytes after a backend response read together with it, a request line split
across reads, a backend head with no size limit, and the framing and header rules a backend answer must
meet. Invariants 1-3 of docs/request-safety.md; RFC 9112 sections 3, 6.1 and 6.3.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time

import pytest

from tests.support import (
    ClientConn, Ferryman, RawBackend, config, keep_alive_handler, parse_responses, raw_request, wait_until,
)

pytestmark = pytest.mark.integration


@contextlib.contextmanager
def proxied(handler, **config_kwargs):
    """A RawBackend running `handler` behind a fresh ferryman: /p/... -> backend /m/..."""
    with RawBackend(handler) as backend, Ferryman(config([backend.url("/m")], "/p", **config_kwargs)) as f:
        yield backend, f


def ok_handler(conn, req):
    conn.respond(200, body=b"ok:" + req.target.encode())


# --------------------------------------------------------------------------------------------------
# An upgrade request with a body (the parser skips the body of an upgrade request)


@pytest.mark.parametrize("framing", [b"Content-Length: 5\r\n\r\nhello",
                                     b"Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"],
                         ids=["content-length", "chunked"])
def test_an_upgrade_request_with_a_body_gets_400_and_reaches_no_backend(framing):
    with proxied(keep_alive_handler(ok_handler)) as (backend, f):
        raw = (b"POST /p/a HTTP/1.1\r\nHost: test.local\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"
               + framing)
        answers = parse_responses(raw_request(f.port(), raw))
        assert [r.status for r in answers] == [400]
        # the next client is served on its own, clean request
        r = f.request("GET", "/p/next", headers={"Remote-User": "admin"})
        assert r.status == 200 and r.body == b"ok:/m/next"
        assert [q.target for q in backend.requests] == ["/m/next"]
        assert b"/m/a" not in backend.received()
        assert all(q.header("remote-user") is None for q in backend.requests)


def test_a_smuggled_request_in_an_upgrade_body_never_reaches_a_pooled_connection():
    """The attack itself: the body declared by the upgrade request is a request carrying Remote-User; the
    next client's request must not be eaten as that body, and the forged header must reach no app."""
    smuggled = b"GET /m/admin HTTP/1.1\r\nHost: x\r\nRemote-User: admin\r\n\r\n"
    with proxied(keep_alive_handler(ok_handler)) as (backend, f):
        raw = (b"POST /p/a HTTP/1.1\r\nHost: test.local\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"
               b"Content-Length: %d\r\n\r\n" % len(smuggled)) + smuggled
        raw_request(f.port(), raw)
        for i in range(3):
            assert f.request("GET", f"/p/n{i}").body == f"ok:/m/n{i}".encode()
        assert b"Remote-User: admin" not in backend.received()
        assert "/m/admin" not in [q.target for q in backend.requests]


# --------------------------------------------------------------------------------------------------
# Bytes after a response's declared end (response queue poisoning)


def test_bytes_after_a_response_are_never_relayed_as_the_answer_to_a_pipelined_request():
    forged = b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nforged"

    answered = []

    def handler(conn, sock):
        while (req := conn.read_request()) is not None:
            answered.append(req.target)
            if len(answered) == 1:
                conn.send(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nfirst" + forged)
            else:
                conn.respond(200, body=b"real:" + req.target.encode())

    with proxied(handler) as (backend, f), ClientConn(f.port()) as c:
        c.send(b"GET /p/1 HTTP/1.1\r\nHost: t\r\n\r\nGET /p/2 HTTP/1.1\r\nHost: t\r\n\r\n")
        one = c.read_response()
        two = c.read_response()
        assert one.body == b"first"
        assert two.body == b"real:/m/2"
        # the poisoned connection was closed, never reused: the second request went on a fresh one
        wait_until(lambda: backend.connections[0].peer_closed, 10, 0.01,
                   "ferryman kept a backend connection that sent bytes after its response")
        assert [len(cn.requests) for cn in backend.connections] == [1, 1]
        assert b"forged" not in bytes(c.buf)


def test_bytes_after_a_response_close_the_backend_connection_and_the_client_keeps_its_answer():
    def handler(conn, sock):
        while (req := conn.read_request()) is not None:
            conn.send(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokGARBAGE")

    with proxied(handler) as (backend, f), ClientConn(f.port()) as c:
        assert c.request("GET", "/p/1").body == b"ok"
        assert c.request("GET", "/p/2").body == b"ok"
        assert backend.connection_count == 2
        wait_until(lambda: all(cn.peer_closed for cn in backend.connections), 10, 0.01)


def test_bytes_arriving_on_an_idle_backend_connection_close_it():
    relayed = threading.Event()
    count = [0]

    def handler(conn, sock):
        while (req := conn.read_request()) is not None:
            count[0] += 1
            if count[0] == 1:
                conn.send(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                relayed.wait(10)  # the client has its answer: the connection now sits idle in ferryman's pool
                conn.send(b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nforged")
            else:
                conn.respond(200, body=b"real:" + req.target.encode())

    with proxied(handler) as (backend, f), ClientConn(f.port()) as c:
        assert c.request("GET", "/p/1").body == b"ok"
        relayed.set()
        wait_until(lambda: backend.connections[0].peer_closed, 10, 0.01,
                   "ferryman kept an idle backend connection that sent unsolicited bytes")
        assert c.request("GET", "/p/2").body == b"real:/m/2"
        assert [len(cn.requests) for cn in backend.connections] == [1, 1]
        assert b"forged" not in bytes(c.buf)


# --------------------------------------------------------------------------------------------------
# The request line is checked wherever a read starts or ends


def _split_send(port: int, pieces: list[bytes]) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for p in pieces:
            s.sendall(p)
            time.sleep(0.05)  # separate reads on ferryman's side (not a synchronisation)
        s.shutdown(socket.SHUT_WR)
        buf = b""
        with contextlib.suppress(ConnectionResetError):
            while chunk := s.recv(1 << 16):
                buf += chunk
        return buf


@pytest.mark.parametrize("cut", [1, 3, 4, 5, 8, 12], ids=lambda n: f"cut-at-{n}")
def test_a_doubled_space_in_a_request_line_split_across_reads_is_refused(cut):
    line = b"GET  /p/x HTTP/1.1\r\nHost: t\r\n\r\n"
    with proxied(keep_alive_handler(ok_handler)) as (backend, f):
        out = _split_send(f.port(), [line[:cut], line[cut:]])
        assert [r.status for r in parse_responses(out)] == [400]
        assert backend.received() == b""


def test_a_doubled_space_before_the_version_in_a_pipelined_request_is_refused_in_its_turn():
    data = (b"GET /p/a HTTP/1.1\r\nHost: t\r\n\r\n"
            b"GET /p/b  HTTP/1.1\r\nHost: t\r\n\r\n")
    with proxied(keep_alive_handler(ok_handler)) as (backend, f):
        answers = parse_responses(raw_request(f.port(), data))
        assert [r.status for r in answers] == [200, 400]
        assert [q.target for q in backend.requests] == ["/m/a"]


@pytest.mark.parametrize("body", [b"a  b", b"\nGET  x", b"x\r\nPOST /p  HTTP/1.1\r\n"],
                         ids=["two-spaces", "line-like", "request-line-like"])
def test_a_body_containing_two_spaces_is_forwarded_intact(body):
    data = b"POST /p/up HTTP/1.1\r\nHost: t\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)
    with proxied(keep_alive_handler(ok_handler)) as (backend, f):
        answers = parse_responses(raw_request(f.port(), data + b"GET /p/after HTTP/1.1\r\nHost: t\r\n"
                                              b"Connection: close\r\n\r\n"))
        assert [r.status for r in answers] == [200, 200]
        assert backend.requests[0].body == body
        assert backend.requests[1].target == "/m/after"


def test_a_chunked_body_containing_two_spaces_is_forwarded_intact():
    data = (b"POST /p/up HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"4\r\na  b\r\n0\r\n\r\nGET /p/after HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
    with proxied(keep_alive_handler(ok_handler)) as (backend, f):
        answers = parse_responses(raw_request(f.port(), data))
        assert [r.status for r in answers] == [200, 200]
        assert backend.requests[0].body == b"a  b"


# --------------------------------------------------------------------------------------------------
# A backend's response head has a size limit (nginx: "upstream sent too big header")


@pytest.mark.parametrize("head", [b"X-Big: " + b"a" * (2 << 20) + b"\r\n",
                                  b"".join(b"X-H%d: v\r\n" % i for i in range(20000))],
                         ids=["one-2MiB-line", "20000-lines"])
def test_a_response_head_over_max_response_head_gets_502(head):
    def handler(conn, sock):
        while conn.read_request() is not None:
            conn.send(b"HTTP/1.1 200 OK\r\n" + head + b"Content-Length: 2\r\n\r\nok")

    with proxied(handler) as (backend, f):
        r = f.request("GET", "/p/x")
        assert r.status == 502
        assert len(r.body) < 2048


def test_max_response_head_is_configurable():
    head = b"X-Big: " + b"a" * 3000 + b"\r\n"

    def handler(conn, sock):
        while conn.read_request() is not None:
            conn.send(b"HTTP/1.1 200 OK\r\n" + head + b"Content-Length: 2\r\n\r\nok")

    with proxied(handler) as (backend, f):
        assert f.request("GET", "/p/x").status == 200
    with proxied(handler, pool_options='max_response_head = "2KiB"') as (backend, f):
        assert f.request("GET", "/p/x").status == 502


# --------------------------------------------------------------------------------------------------
# Response framing and headers only ferryman writes


def test_an_http_1_0_response_with_transfer_encoding_gets_502():
    """RFC 9112 6.1: a Transfer-Encoding in an HTTP/1.0 message is a framing fault."""
    canned = b"HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n"
    with proxied(keep_alive_handler(lambda c, r: c.send(canned) or "close")) as (backend, f):
        assert f.request("GET", "/p/x").status == 502


def test_an_empty_host_with_a_port_gets_400():
    with proxied(keep_alive_handler(ok_handler)) as (backend, f):
        for host in (b":80", b":"):
            out = raw_request(f.port(), b"GET /p/x HTTP/1.1\r\nHost: " + host + b"\r\n\r\n")
            assert [r.status for r in parse_responses(out)] == [400], host
        assert backend.requests == []


def test_a_backend_cannot_send_a_ferryman_explain_header():
    def handler(conn, req):
        conn.respond(200, headers=[("Ferryman-Explain", "pool=forged"), ("X-Kept", "1")], body=b"ok")

    with proxied(keep_alive_handler(handler)) as (backend, f):
        r = f.request("GET", "/p/x")
        assert r.status == 200 and r.header("X-Kept") == "1"
        assert r.header("ferryman-explain") is None
    with proxied(keep_alive_handler(handler), listener_options="explain_header = true") as (backend, f):
        r = f.request("GET", "/p/x")
        assert r.header_all("ferryman-explain") != [] and "forged" not in r.header("ferryman-explain")
        assert len(r.header_all("ferryman-explain")) == 1


def test_the_upgrade_smuggling_attack_on_gunicorn_forges_no_remote_user(echo_a):
    """The attack against a real gthread gunicorn: an upgrade request declares a body holding a request with
    `Remote-User: admin`; the next clients' requests must never be read as that body, and the forged header
    must never reach the app."""
    smuggled = b"GET /webapps/echo HTTP/1.1\r\nHost: x\r\nRemote-User: admin\r\nContent-Length: 40\r\n\r\n"
    with Ferryman(config([echo_a.url("/webapps")], "/webapps")) as f:
        raw = (b"POST /webapps/echo HTTP/1.1\r\nHost: t\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"
               b"Content-Length: %d\r\n\r\n" % len(smuggled)) + smuggled
        assert [r.status for r in parse_responses(raw_request(f.port(), raw))] == [400]
        for _ in range(4):
            r = f.request("GET", "/webapps/echo")
            assert r.status == 200
            echoed = r.json()["headers"]
            assert not any(k.lower().replace("_", "-") in ("remote-user", "http-remote-user") for k in echoed), echoed


# --------------------------------------------------------------------------------------------------
# Response-side vectors, sent by the backend one byte at a time and behind a pipelined request


RESPONSE_VECTORS = {
    "ok": (b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", 200),
    "chunked": (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n", 200),
    "interim-then-final": (b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", 200),
    "two-lengths": (b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nok", 502),
    "length-and-chunked": (b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n"
                           b"2\r\nok\r\n0\r\n\r\n", 502),
    "space-before-colon": (b"HTTP/1.1 200 OK\r\nX-Bad : x\r\nContent-Length: 2\r\n\r\nok", 502),
    "obs-fold": (b"HTTP/1.1 200 OK\r\nX-Folded: a\r\n b\r\nContent-Length: 2\r\n\r\nok", 502),
    "http10-te": (b"HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n", 502),
    "unsolicited-101": (b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n", 502),
    "bytes-after": (b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokHTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\n"
                    b"forged", 200),
}


def _trickle_backend(canned: bytes, mode: str):
    """A backend answering the first request of its first connection with `canned` (byte by byte, or in
    one write), and every later request normally."""
    count = [0]

    def handler(conn, sock):
        while (req := conn.read_request()) is not None:
            count[0] += 1
            if count[0] == 1:
                if mode == "bytes":
                    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                    for i in range(len(canned)):
                        conn.send(canned[i:i + 1])
                else:
                    conn.send(canned)
            else:
                conn.respond(200, body=b"real:" + req.target.encode())
    return handler


@pytest.mark.parametrize("mode", ["whole", "bytes"])
@pytest.mark.parametrize("name", list(RESPONSE_VECTORS))
def test_a_response_vector_has_the_same_outcome_byte_by_byte_and_never_answers_the_pipelined_request(name, mode):
    canned, status = RESPONSE_VECTORS[name]
    if name == "bytes-after" and mode == "bytes":
        # Bytes that trickle in after a complete response may arrive after the next pipelined request was
        # already sent on that connection; then they are indistinguishable from its answer (true of any
        # HTTP/1.1 proxy). What is guaranteed: in the same read they are refused (the "whole" case and the
        # tests above), and arriving on an idle connection they close it.
        pytest.skip("timing-dependent by nature; covered by the same-read and idle-connection tests")
    with proxied(_trickle_backend(canned, mode)) as (backend, f), ClientConn(f.port()) as c:
        c.send(b"GET /p/1 HTTP/1.1\r\nHost: t\r\n\r\nGET /p/2 HTTP/1.1\r\nHost: t\r\n\r\n")
        first = c.read_response()
        assert first.status == status, (first.status, first.body[:200])
        if status == 200:
            assert first.body == b"ok"
        second = c.read_response()
        assert second.body == b"real:/m/2"  # from its own request, never from bytes of the first answer
        assert b"forged" not in bytes(c.buf)
        if status == 502:  # the faulty connection was closed (the backend saw EOF or a reset), never reused
            first_conn = backend.connections[0]
            wait_until(lambda: first_conn.peer_closed or first_conn.closed.is_set(), 10, 0.01)
            assert len(backend.connections[0].requests) == 1
