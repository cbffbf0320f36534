"""Protocol upgrades (WebSocket) as a byte tunnel, on raw sockets: the upgrade request reaches the member
chosen as usual with ferryman's own Upgrade/Connection headers; a 101 turns both connections into a tunnel
with backpressure both ways and an idle timeout; a 101 nobody asked for is a backend protocol error.

Apache: ProxyPass upgrade=websocket (mod_proxy_wstunnel); nginx: proxy_http_version 1.1 + Upgrade.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time

import pytest

from tests.support import ClientConn, Ferryman, RawBackend, config, parse_responses, raw_request, wait_until

pytestmark = pytest.mark.integration

UPGRADE = (b"GET /p/ws HTTP/1.1\r\nHost: t\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"
           b"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n")
SWITCH = (b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
          b"Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n")


@contextlib.contextmanager
def proxied(handler, **kwargs):
    with RawBackend(handler) as backend, Ferryman(config([backend.url("/m")], "/p", **kwargs)) as f:
        yield backend, f


def echo_tunnel(conn, sock):
    """Switch on an upgrade request, then echo every byte back prefixed, until the peer closes."""
    req = conn.read_request()
    if req is None:
        return
    if req.header("upgrade") != "websocket":
        conn.respond(426, body=b"upgrade required")
        return
    conn.send(SWITCH)
    rest = conn._buf
    conn._buf = b""
    if rest:
        conn.send(b"echo:" + rest)
    while True:
        data = conn._recv()
        if not data:
            return
        conn.send(b"echo:" + data)


def read_switch(s: socket.socket) -> bytes:
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = s.recv(65536)
        assert chunk, f"closed before the 101: {buf!r}"
        buf += chunk
    head, _, rest = buf.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 101"), head
    return rest


def recv_exactly(s: socket.socket, n: int) -> bytes:
    buf = b""
    while len(buf) < n:
        chunk = s.recv(n - len(buf))
        assert chunk, f"closed after {len(buf)} of {n} bytes"
        buf += chunk
    return buf


def test_a_websocket_upgrade_switches_to_a_tunnel_carrying_bytes_both_ways():
    with proxied(echo_tunnel) as (backend, f), socket.create_connection(("127.0.0.1", f.port()), 10) as s:
        s.sendall(UPGRADE)
        assert read_switch(s) == b""
        req = backend.requests[0]
        assert req.header("upgrade") == "websocket" and req.header("connection").lower() == "upgrade"
        assert req.header("sec-websocket-key") == "dGhlIHNhbXBsZSBub25jZQ=="
        for msg in (b"ping", b"\x00\x01binary\xff", b"HTTP/1.1 200 OK\r\n\r\n"):
            s.sendall(msg)
            assert recv_exactly(s, 5 + len(msg)) == b"echo:" + msg


def test_the_101_head_keeps_the_websocket_headers_and_is_logged():
    with proxied(echo_tunnel) as (backend, f), socket.create_connection(("127.0.0.1", f.port()), 10) as s:
        s.sendall(UPGRADE)
        buf = b""
        while b"\r\n\r\n" not in buf:
            buf += s.recv(65536)
        head = buf.split(b"\r\n\r\n")[0].lower()
        assert b"sec-websocket-accept: s3pplmbitxaq9kygzzhzrbk+xoo=" in head
        assert b"upgrade: websocket" in head and b"connection: upgrade" in head
        f.wait_for_access_log(lambda ln: '"GET /p/ws HTTP/1.1" 101' in ln)


def test_bytes_sent_right_after_the_upgrade_request_reach_the_backend_through_the_tunnel():
    with proxied(echo_tunnel) as (backend, f), socket.create_connection(("127.0.0.1", f.port()), 10) as s:
        s.sendall(UPGRADE + b"early")
        rest = read_switch(s)
        assert rest + recv_exactly(s, 10 - len(rest)) == b"echo:early"


def test_an_upgrade_request_with_a_body_is_refused_and_reaches_no_backend():
    with proxied(echo_tunnel) as (backend, f):
        data = UPGRADE.replace(b"\r\n\r\n", b"\r\nContent-Length: 4\r\n\r\nbody")
        assert [r.status for r in parse_responses(raw_request(f.port(), data))] == [400]
        assert backend.connection_count == 0


def test_a_101_to_a_request_that_did_not_ask_for_it_is_a_502():
    def handler(conn, sock):
        if conn.read_request() is not None:
            conn.send(SWITCH + b"garbage")

    with proxied(handler) as (backend, f):
        assert f.request("GET", "/p/x").status == 502


def test_with_websocket_false_the_upgrade_is_not_forwarded_and_a_101_is_refused():
    with proxied(echo_tunnel, route_options="websocket = false") as (backend, f), ClientConn(f.port()) as c:
        c.send(UPGRADE)
        r = c.read_response()
        assert r.status == 426  # the member saw a plain request: no Upgrade crossed
        assert backend.requests[0].header("upgrade") is None
        assert c.is_closed_by_peer()


def test_an_h2c_upgrade_is_answered_as_plain_http():
    with proxied(echo_tunnel) as (backend, f):
        data = UPGRADE.replace(b"Upgrade: websocket", b"Upgrade: h2c")
        answers = parse_responses(raw_request(f.port(), data))
        assert [r.status for r in answers] == [426]
        assert backend.requests[0].header("upgrade") is None


def test_an_idle_tunnel_is_closed_after_tunnel_idle_timeout():
    with proxied(echo_tunnel, route_options='tunnel_idle_timeout = "1s"') as (backend, f), \
            socket.create_connection(("127.0.0.1", f.port()), 10) as s:
        s.sendall(UPGRADE)
        read_switch(s)
        s.sendall(b"x")
        assert recv_exactly(s, 6) == b"echo:x"
        started = time.monotonic()
        s.settimeout(10)
        assert s.recv(10) == b""  # closed by ferryman, not by the 10 s guard
        assert 0.8 <= time.monotonic() - started < 8
        wait_until(lambda: backend.connections[0].peer_closed, 10, 0.01)


def test_traffic_keeps_a_tunnel_open_past_its_idle_timeout():
    with proxied(echo_tunnel, route_options='tunnel_idle_timeout = "1s"') as (backend, f), \
            socket.create_connection(("127.0.0.1", f.port()), 10) as s:
        s.sendall(UPGRADE)
        read_switch(s)
        deadline = time.monotonic() + 2.5
        ev = threading.Event()
        while time.monotonic() < deadline:
            s.sendall(b"k")
            assert recv_exactly(s, 6) == b"echo:k"
            ev.wait(0.3)  # traffic every 0.3 s, under the 1 s idle timeout


def test_a_quiet_backend_does_not_close_a_tunnel_the_client_keeps_busy_before_tunnel_idle_timeout():
    """Traffic in either direction keeps a tunnel open: the pool's read_timeout (the idle clock of an
    HTTP answer) does not apply once the connection is a tunnel, even after the backend spoke once."""
    def handler(conn, sock):
        req = conn.read_request()
        if req is None:
            return
        conn.send(SWITCH)
        while data := conn._recv():
            if b"ping" in data:
                conn.send(b"pong")

    with proxied(handler, pool_options='read_timeout = "1s"', route_options='tunnel_idle_timeout = "10s"') \
            as (backend, f), socket.create_connection(("127.0.0.1", f.port()), 10) as s:
        s.sendall(UPGRADE)
        read_switch(s)
        s.sendall(b"ping")
        assert recv_exactly(s, 4) == b"pong"  # the backend spoke once
        deadline = time.monotonic() + 2.5
        ev = threading.Event()
        while time.monotonic() < deadline:  # then only the client talks, past read_timeout
            s.sendall(b"k")
            ev.wait(0.3)
        s.sendall(b"ping")
        assert recv_exactly(s, 4) == b"pong"


def test_the_backend_closing_mid_tunnel_closes_the_client_after_its_last_bytes():
    def handler(conn, sock):
        if conn.read_request() is None:
            return
        conn.send(SWITCH + b"last words")
        conn.close()

    with proxied(handler) as (backend, f), socket.create_connection(("127.0.0.1", f.port()), 10) as s:
        s.sendall(UPGRADE)
        got = read_switch(s)
        while chunk := s.recv(65536):
            got += chunk
        assert got == b"last words"


def test_the_client_closing_mid_tunnel_closes_the_backend_connection():
    with proxied(echo_tunnel) as (backend, f):
        s = socket.create_connection(("127.0.0.1", f.port()), 10)
        s.sendall(UPGRADE)
        read_switch(s)
        s.close()
        wait_until(lambda: backend.connections and backend.connections[0].peer_closed, 10, 0.01,
                   "the backend side of the tunnel stayed open")


def test_a_tunnel_applies_backpressure_from_a_backend_that_does_not_read():
    release = threading.Event()
    got = bytearray()

    def handler(conn, sock):
        if conn.read_request() is None:
            return
        conn.send(SWITCH)
        release.wait(30)
        while len(got) < total:
            data = conn._recv()
            if not data:
                return
            got.extend(data)
        conn.send(b"done")

    total = 32 << 20
    with proxied(handler) as (backend, f), socket.create_connection(("127.0.0.1", f.port()), 10) as s:
        s.sendall(UPGRADE)
        read_switch(s)
        s.setblocking(False)
        sent = 0
        block = b"z" * 65536
        stalled_since = None
        while sent < total:
            try:
                sent += s.send(block[: min(len(block), total - sent)])
                stalled_since = None
            except BlockingIOError:
                stalled_since = stalled_since or time.monotonic()
                if time.monotonic() - stalled_since > 1.0:
                    break  # the tunnel stopped taking bytes: backpressure reached the client
                threading.Event().wait(0.01)
        assert sent < total // 2, f"ferryman took {sent} bytes from the client with the backend not reading"
        release.set()
        s.setblocking(True)
        s.settimeout(30)
        s.sendall(b"z" * (total - sent))
        assert recv_exactly(s, 4) == b"done"
        assert len(got) == total


def test_a_tunnel_applies_backpressure_from_a_client_that_does_not_read():
    sent = [0]
    stalled = threading.Event()

    def handler(conn, sock):
        if conn.read_request() is None:
            return
        conn.send(SWITCH)
        sock.setblocking(False)
        block = b"y" * 65536
        stalled_since = None
        while sent[0] < (64 << 20):
            try:
                sent[0] += sock.send(block)
                stalled_since = None
            except BlockingIOError:
                stalled_since = stalled_since or time.monotonic()
                if time.monotonic() - stalled_since > 1.0:
                    stalled.set()
                    return
                threading.Event().wait(0.01)

    with proxied(handler) as (backend, f), socket.create_connection(("127.0.0.1", f.port()), 10) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
        s.sendall(UPGRADE)
        read_switch(s)
        assert stalled.wait(30), f"the backend could push {sent[0]} bytes through a client that reads nothing"
        assert sent[0] < 32 << 20


def test_an_upgrade_follows_sticky_routing_like_any_request():
    with RawBackend(echo_tunnel) as a, RawBackend(echo_tunnel) as b, \
            Ferryman(config([{"url": a.url("/m"), "route": "r1"}, {"url": b.url("/m"), "route": "r2"}], "/p",
                            pool_options='sticky = "sessionid"')) as f:
        for _ in range(3):
            with socket.create_connection(("127.0.0.1", f.port()), 10) as s:
                s.sendall(UPGRADE.replace(b"\r\n\r\n", b"\r\nCookie: sessionid=abc.r2\r\n\r\n"))
                read_switch(s)
        assert a.connection_count == 0 and len(b.requests) == 3
