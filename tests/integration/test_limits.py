"""Everything a client can make ferryman hold has a limit and a deadline (invariant 7).

One test per limit, over real sockets; each also shows that a normal client served at the same time is
unaffected. Windows and timeouts are configured small so the tests stay fast.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.support import ClientConn, Ferryman, RawBackend, config, keep_alive_handler, wait_until

pytestmark = pytest.mark.integration

OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"


def _pace(seconds: float) -> None:
    """The gap between two bytes of a deliberately slow client (its traffic pattern, not a wait)."""
    threading.Event().wait(seconds)


def _served_conn(port: int, source: str | None = None) -> ClientConn:
    """A kept-alive connection that got a 200: retried while earlier closes are still being seen."""
    found: list[ClientConn] = []

    def attempt() -> bool:
        conn = ClientConn(port, source=source)
        try:
            if conn.request("GET", "/app/x").status == 200:
                found.append(conn)
                return True
        except (EOFError, ConnectionError):
            pass
        conn.close()
        return False

    wait_until(attempt, timeout=10)
    return found[0]


def _normal_request_works(port: int) -> None:
    """The concurrent normal client: a fresh connection, a GET and a small POST, both answered 200."""
    with ClientConn(port) as c:
        assert c.request("GET", "/app/normal").status == 200
        assert c.request("POST", "/app/normal", body=b"n" * 4096).status == 200


def _no_member_blamed(f: Ferryman) -> None:
    assert not [line for line in f.error_log_lines() if "member" in line and "->" in line], f.error_log_lines()


def _echo_backend() -> RawBackend:
    return RawBackend(keep_alive_handler(lambda conn, req: conn.respond(200, body=b"ok")))


# -- connections ------------------------------------------------------------------------------------

def test_a_connection_over_max_connections_gets_503_and_the_others_keep_working():
    with RawBackend.respond(OK) as backend, \
            Ferryman(config([backend.url("/app")], "/app", listener_options="max_connections = 2")) as f:
        with _served_conn(f.port()) as one, _served_conn(f.port()):
            with ClientConn(f.port()) as three:
                assert three.read_response().status == 503
                assert three.is_closed_by_peer()
            assert one.request("GET", "/app/y").status == 200
        f.wait_for_error_log("max_connections")
        _served_conn(f.port()).close()  # the slots are given back once ferryman sees the closes


def test_one_address_over_max_connections_per_client_gets_503_while_other_and_trusted_addresses_are_served():
    options = 'max_connections_per_client = 2\ntrusted_proxies = ["127.0.0.3"]'
    with RawBackend.respond(OK) as backend, \
            Ferryman(config([backend.url("/app")], "/app", listener_options=options)) as f:
        port = f.port()
        first = _served_conn(port)
        with _served_conn(port):
            with ClientConn(port) as third:
                assert third.read_response().status == 503
                assert third.is_closed_by_peer()
            with ClientConn(port, source="127.0.0.2") as other:  # another address: its own count
                assert other.request("GET", "/app/z").status == 200
            trusted = [_served_conn(port, source="127.0.0.3") for _ in range(3)]  # a proxy is not counted
            for conn in trusted:
                assert conn.request("GET", "/app/t").status == 200
                conn.close()
            assert first.request("GET", "/app/y").status == 200
            line = f.wait_for_error_log("max_connections_per_client")
            assert "127.0.0.1" in line
            f.wait_for_access_log(lambda l: " 503 " in l and "max_connections_per_client" in l)
            first.close()
            _served_conn(port).close()  # the address's slot is given back once ferryman sees the close


def test_after_max_requests_per_connection_the_answer_carries_connection_close():
    with RawBackend.respond(OK) as backend, \
            Ferryman(config([backend.url("/app")], "/app",
                            listener_options="max_requests_per_connection = 3")) as f:
        with ClientConn(f.port()) as c, ClientConn(f.port()) as other:
            assert other.request("GET", "/app/o").status == 200
            answers = [c.request("GET", f"/app/{i}") for i in range(3)]
            assert [r.status for r in answers] == [200, 200, 200]
            assert [r.header("connection") for r in answers[:2]] == [None, None]
            assert answers[2].header("connection") == "close"
            assert c.is_closed_by_peer()
            assert other.request("GET", "/app/o").status == 200  # its own count: 2 of 3
            assert other.request("GET", "/app/o").header("connection") == "close"


def test_an_idle_keep_alive_connection_is_closed_after_keepalive_timeout_while_a_busy_one_stays():
    with RawBackend.respond(OK) as backend, \
            Ferryman(config([backend.url("/app")], "/app", listener_options='keepalive_timeout = "1s"')) as f:
        with ClientConn(f.port()) as idle, ClientConn(f.port()) as busy:
            assert idle.request("GET", "/app/a").status == 200
            started = time.monotonic()
            closed = threading.Event()
            threading.Thread(target=lambda: idle.is_closed_by_peer(10) and closed.set(), daemon=True).start()
            while not closed.is_set() and time.monotonic() - started < 5:
                assert busy.request("GET", "/app/b").status == 200  # requests 0.3 s apart: never idle 1 s
                _pace(0.3)
            assert closed.is_set()
            assert 0.8 < time.monotonic() - started < 4
            assert busy.request("GET", "/app/b").status == 200


# -- request head -----------------------------------------------------------------------------------

def test_a_request_line_over_max_request_line_gets_414_and_another_client_is_served():
    with RawBackend.respond(OK) as backend, \
            Ferryman(config([backend.url("/app")], "/app", top='[limits]\nmax_request_line = "1KiB"')) as f, \
            ClientConn(f.port()) as c:
        c.send(b"GET /app/" + b"a" * 2048 + b" HTTP/1.1\r\nHost: x\r\n\r\n")
        assert c.read_response().status == 414
        assert c.is_closed_by_peer()
        _normal_request_works(f.port())
        assert not any(b"aaaa" in r.raw for r in backend.requests)


@pytest.mark.parametrize("head, what", [
    ("".join(f"X-{i}: v\r\n" for i in range(20)), "too many header lines"),
    ("X-Big: " + "b" * 3000 + "\r\n", "a header block over max_header_size"),
], ids=["count", "size"])
def test_a_head_over_the_header_limits_gets_431_and_another_client_is_served(head, what):
    top = '[limits]\nmax_headers = 10\nmax_header_size = "2KiB"'
    with RawBackend.respond(OK) as backend, Ferryman(config([backend.url("/app")], "/app", top=top)) as f, \
            ClientConn(f.port()) as c:
        c.send(f"GET /app/x HTTP/1.1\r\nHost: x\r\n{head}\r\n".encode())
        assert c.read_response().status == 431, what
        assert c.is_closed_by_peer()
        _normal_request_works(f.port())
        assert backend.requests and all(r.target == "/app/normal" for r in backend.requests)


def test_a_head_trickled_slower_than_header_timeout_gets_408_while_another_client_is_served():
    with RawBackend.respond(OK) as backend, \
            Ferryman(config([backend.url("/app")], "/app", listener_options='header_timeout = "1s"')) as f, \
            ClientConn(f.port()) as slow:
        started = time.monotonic()
        head = b"GET /app/x HTTP/1.1\r\nHost: x\r\nX-A: 1\r\nX-B: 2\r\nX-C: 3\r\nX-D: 4\r\n"
        try:
            for byte in head:  # slowloris: a byte every 0.2 s, never the end of the head
                slow.send(bytes([byte]))
                _normal_request_works(f.port())
                if time.monotonic() - started > 5:
                    break
                _pace(0.2)
        except (BrokenPipeError, ConnectionResetError):
            pass
        assert slow.read_response().status == 408
        assert time.monotonic() - started < 3
        f.wait_for_access_log(lambda l: " 408 " in l and "header_timeout" in l)
        assert all(r.target == "/app/normal" for r in backend.requests)


# -- request body -----------------------------------------------------------------------------------

ROUTES = """
[[route]]
path = "/uploads"
pool = "app"
max_body_size = "64KiB"

[[route]]
path = "/small"
pool = "app"
max_body_size = "1KiB"
"""


def test_a_route_max_body_size_replaces_the_global_one_up_or_down():
    with _echo_backend() as backend, \
            Ferryman(config([backend.url("")], "/app", top='[limits]\nmax_body_size = "8KiB"', extra=ROUTES)) as f:
        with ClientConn(f.port()) as c:  # over the global limit, within the route's own: forwarded
            assert c.request("POST", "/uploads/a", body=b"u" * 32768).status == 200
        with ClientConn(f.port()) as c:
            assert c.request("POST", "/uploads/a", body=b"u" * 70000).status == 413
        with ClientConn(f.port()) as c:  # within the global limit, over the route's: refused
            assert c.request("POST", "/small/a", body=b"s" * 2048).status == 413
        with ClientConn(f.port()) as c:  # a chunked body is counted as it arrives
            c.send(b"POST /small/a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                   b"800\r\n" + b"s" * 2048 + b"\r\n0\r\n\r\n")
            assert c.read_response().status == 413
        with ClientConn(f.port()) as c:
            assert c.request("POST", "/app/a", body=b"g" * 4096).status == 200  # the global limit elsewhere
            assert c.request("POST", "/app/a", body=b"g" * 9000).status == 413
        _normal_request_works(f.port())
        assert [len(r.body) for r in backend.requests if r.method == "POST"] == [32768, 4096, 4096]


@pytest.mark.parametrize("streamed", [False, True], ids=["buffered", "streamed"])
def test_a_post_trickled_below_body_min_rate_gets_408_within_the_window(streamed):
    """Within request_buffer the app never sees the request; past it the body is already streaming to a
    member, whose connection is cut off with the client's (and the member is not blamed)."""
    options = 'body_min_rate = "100/s"\nbody_rate_window = "2s"'
    first = b"f" * 1024 if streamed else b""
    with _echo_backend() as backend, \
            Ferryman(config([backend.url("")], "/app", listener_options=options, route_options='request_buffer = "1KiB"',
                            pool_options="passive = { fails = 1 }")) as f, \
            ClientConn(f.port()) as slow:
        slow.send(b"POST /app/upload HTTP/1.1\r\nHost: x\r\nContent-Length: 2000\r\n\r\n" + first)
        started = time.monotonic()
        if streamed:
            wait_until(lambda: backend.connections and b"POST /upload" in backend.connections[0].received)
        try:
            while time.monotonic() - started < 6:  # a byte every 0.5 s: never idle long, 2 B/s on average
                slow.send(b"x")
                _normal_request_works(f.port())
                _pace(0.5)
        except (BrokenPipeError, ConnectionResetError):
            pass
        assert slow.read_response().status == 408
        assert 1.5 < time.monotonic() - started < 4.5
        assert slow.is_closed_by_peer()
        if streamed:
            wait_until(lambda: backend.connections[0].closed.is_set(), message="the backend's connection was kept")
        else:
            assert b"POST /upload" not in backend.received()
        f.wait_for_error_log(lambda l: "body_min_rate" in l and "127.0.0.1" in l)
        f.wait_for_access_log(lambda l: " 408 " in l and "body_min_rate" in l)
        _normal_request_works(f.port())
        _no_member_blamed(f)


def test_a_body_within_request_buffer_reaches_the_app_whole_in_one_go():
    with _echo_backend() as backend, Ferryman(config([backend.url("")], "/app")) as f, ClientConn(f.port()) as c:
        c.send(b"POST /app/form HTTP/1.1\r\nHost: x\r\nContent-Length: 8\r\n\r\nab")
        _normal_request_works(f.port())
        assert b"/form" not in backend.received()  # the head waits for its body
        c.send(b"cdefgh")
        assert c.read_response().status == 200
        assert [r.body for r in backend.requests if r.target == "/form"] == [b"abcdefgh"]


def test_a_fast_upload_passes_a_tight_body_min_rate():
    options = 'body_min_rate = "1KiB/s"\nbody_rate_window = "1s"'
    with _echo_backend() as backend, \
            Ferryman(config([backend.url("")], "/app", listener_options=options)) as f, ClientConn(f.port()) as c:
        assert c.request("POST", "/app/big", body=b"b" * (4 << 20)).status == 200
        assert [len(r.body) for r in backend.requests] == [4 << 20]


def test_a_body_that_stops_gets_408_not_a_504_and_its_member_is_not_blamed():
    # the pool's read_timeout is shorter than body_timeout: the backend's clock runs out first, while it
    # waits for a body the client does not send
    options = 'body_timeout = "1s"\nbody_min_rate = "0/s"'
    with _echo_backend() as backend, \
            Ferryman(config([backend.url("")], "/app", listener_options=options, route_options='request_buffer = "0"',
                            pool_options='read_timeout = "500ms"\npassive = { fails = 1 }')) as f, \
            ClientConn(f.port()) as stalled:
        stalled.send(b"POST /app/upload HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nhalf")
        started = time.monotonic()
        _normal_request_works(f.port())
        assert stalled.read_response().status == 408
        assert time.monotonic() - started < 3
        _normal_request_works(f.port())
        _no_member_blamed(f)


# -- buffered bytes ---------------------------------------------------------------------------------

BIG = 64 << 20


def _steady(read: Callable[[], int]) -> int:
    """Wait until a growing counter stops growing (over 0.5 s of polls); return its value."""
    seen: list[tuple[float, int]] = []

    def settled() -> bool:
        now, value = time.monotonic(), read()
        seen.append((now, value))
        earlier = [v for t, v in seen if now - t >= 0.5]
        return bool(value) and bool(earlier) and earlier[-1] == value

    wait_until(settled, timeout=20, interval=0.05)
    return seen[-1][1]


def _rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def test_a_client_that_does_not_read_a_large_answer_holds_the_backend_back_not_ferrymans_memory():
    sent = [0]

    def answer(conn, req) -> None:  # noqa: ANN001
        if req.target != "/big":
            conn.respond(200, body=b"ok")
            return
        conn.send(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % BIG)
        block = b"x" * 65536
        while sent[0] < BIG:
            conn.sock.settimeout(30)
            sent[0] += conn.sock.send(block[:BIG - sent[0]])

    with RawBackend(keep_alive_handler(answer)) as backend, Ferryman(config([backend.url("")], "/app")) as f:
        before = _rss(f.pid)
        with ClientConn(f.port()) as reader:
            reader.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
            reader.send(b"GET /app/big HTTP/1.1\r\nHost: x\r\n\r\n")
            held = _steady(lambda: sent[0])
            assert held < 24 << 20, f"the backend could send {held} bytes to a client reading nothing"
            assert _rss(f.pid) - before < 24 << 20
            _normal_request_works(f.port())
            got = reader.read_response()
            assert got.status == 200 and len(got.body) == BIG  # held back, then delivered whole


def test_a_client_uploading_to_a_backend_that_does_not_read_is_held_back():
    def answer(conn, req) -> None:  # noqa: ANN001
        conn.respond(200, body=b"ok")

    with RawBackend(_split_handler(answer)) as backend, Ferryman(config([backend.url("")], "/app")) as f:
        before = _rss(f.pid)
        with ClientConn(f.port()) as uploader:
            uploader.send(b"POST /app/upload HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % BIG)
            uploader.sock.setblocking(False)
            pushed = [0]
            block = b"u" * 65536

            def push() -> int:
                try:
                    while pushed[0] < BIG:
                        pushed[0] += uploader.sock.send(block)
                except BlockingIOError:
                    pass
                return pushed[0]

            held = _steady(push)
            assert held < 24 << 20, f"ferryman took {held} bytes of a body its backend does not read"
            assert _rss(f.pid) - before < 24 << 20
            uploader.sock.setblocking(True)
            _normal_request_works(f.port())


def _split_handler(answer):  # noqa: ANN001, ANN202
    """A backend that stops reading a POST to /upload after its head and answers anything else."""
    def handler(conn, sock) -> None:  # noqa: ANN001
        while True:
            head = conn.read_head()
            if head is None:
                return
            if head[1] == "POST" and head[2] == "/upload":
                conn.backend.release.wait(30)
                return
            conn._buf = head[0] + conn._buf  # read it again as a whole request
            req = conn.read_request()
            if req is None:
                return
            answer(conn, req)
    return handler
