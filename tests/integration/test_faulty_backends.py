"""Backends that fail in every way a TCP peer can: what the client gets, which retry applies, and that no
poisoned connection stays in the pool.

Each test scripts the first request(s) a pool receives to fail one way, checks the client's outcome and
how often the request reached a member, then checks the pool is clean: the following requests are answered,
and each reaches a member as a fresh, canonically framed request on a connection that carried no fault and
holds no byte that is not part of a request (invariant 3), while every faulted connection ferryman could
still use was closed by ferryman.

Retry rule (invariant 8): a request that provably never reached a member (connection refused, a pooled
connection found closed before the write) is tried on another member whatever its method; one that may have
reached it is tried again only when idempotent with its whole body kept, and only while nothing of the answer
has been relayed. A member that answered wrongly (garbage, an unsolicited 101) or too slowly is not asked
again for that request: it may be working on it.

Guarantees: invariants 3, 8 and 9 of docs/request-safety.md. The table in docs/security.md ("Faulty
backends") names these tests.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from typing import Callable

import pytest

from tests.support import (
    BackendConn,
    ClientConn,
    Ferryman,
    RawBackend,
    RawRequest,
    build_request,
    config,
    free_port,
    parse_responses,
    raw_request,
    wait_until,
)

pytestmark = pytest.mark.integration

FINE = b"fine"
Fault = Callable[[BackendConn, RawRequest], None]


class Script:
    """Request behaviour shared by every member of a pool: the n-th request the pool receives (counted over
    all members) gets `faults[n]`; every later request a normal keep-alive answer. A fault returns when it is
    done with its connection; that connection then takes no further request from the script."""

    def __init__(self, *faults: Fault) -> None:
        self.faults = list(faults)
        self.lock = threading.Lock()
        self.count = 0
        self.faulted: list[BackendConn] = []
        self.served: list[tuple[BackendConn, RawRequest]] = []
        self.backends: list[RawBackend] = []

    def handler(self, conn: BackendConn, sock: socket.socket) -> None:
        while True:
            req = conn.read_request()
            if req is None:
                return
            with self.lock:
                n = self.count
                self.count += 1
            if n < len(self.faults):
                with self.lock:
                    self.faulted.append(conn)
                self.faults[n](conn, req)
                return
            with self.lock:
                self.served.append((conn, req))
            conn.respond(200, {"X-Member": str(conn.backend.port)}, FINE)

    def members(self, n: int) -> contextlib.ExitStack:
        stack = contextlib.ExitStack()
        self.backends = [stack.enter_context(RawBackend(self.handler)) for _ in range(n)]
        return stack


#: a route that streams a request body to the member as it arrives (nothing read ahead of the choice)
STREAMED = 'request_buffer = "0"'


@contextlib.contextmanager
def pool(script: Script, members: int = 2, pool_options: str = "", extra_members: tuple[str, ...] = (),
         route_options: str = ""):
    """`members` RawBackends running `script` behind a fresh ferryman: /p/... -> member /m/..."""
    with script.members(members):
        urls = [*extra_members, *(b.url("/m") for b in script.backends)]
        with Ferryman(config(urls, "/p", pool_options=pool_options, route_options=route_options)) as f:
            yield f


def seen(script: Script, target: str) -> int:
    """How many times a request for `target` reached any member."""
    return sum(1 for b in script.backends for r in b.requests if r.target == target)


def stall(conn: BackendConn) -> None:
    """Read (and record) until ferryman closes the connection: a member that went quiet."""
    with contextlib.suppress(OSError):
        conn.read_until_close(timeout=30)


def assert_pool_clean(f: Ferryman, script: Script, closed_by_ferryman: bool = True, n: int = 4) -> None:
    """The following requests succeed, each on a clean connection, framed canonically; every faulted
    connection took no further request, and (unless the member closed it itself) ferryman closed it."""
    start = len(script.served)
    with ClientConn(f.port()) as c:  # one client connection: its requests would reuse any pooled connection
        for i in range(n):
            r = c.request("GET", f"/p/after{i}")
            assert (r.status, r.body) == (200, FINE), (r.status, r.body[:200])
    after = script.served[start:]
    assert [req.target for _, req in after] == [f"/m/after{i}" for i in range(n)]
    for conn, req in after:
        assert conn not in script.faulted
        assert req.raw.startswith(f"{req.method} {req.target} HTTP/1.1\r\n".encode())
        assert req.body == b"" and not req.chunked and req.header("content-length") is None
        assert req.header("transfer-encoding") is None
        # every byte the connection carried belongs to a request it read: nothing stray, nothing unframed
        assert conn.received == b"".join(q.raw for q in conn.requests), conn.received[-300:]
    for conn in script.faulted:
        # the faulted connection took no further request: not one byte of one was written to it
        assert not any(conn is c for c, _ in after) and b"/m/after" not in conn.received
        if closed_by_ferryman:
            wait_until(lambda conn=conn: conn.closed.is_set() or conn.peer_closed, 10,
                       message="ferryman kept a faulted backend connection open")


def read_partial(c: ClientConn, want: bytes, timeout: float = 10) -> None:
    """Read from the client connection until `want` is in what arrived (an answer is under way)."""
    deadline = time.monotonic() + timeout
    while want not in c.buf:
        assert time.monotonic() < deadline, bytes(c.buf[:300])
        assert c._fill(), f"closed before {want!r}: {bytes(c.buf[:300])!r}"


# --------------------------------------------------------------------------------------------------
# Connection refused: provably never reached, so any method goes to another member


@pytest.mark.parametrize("method", ["GET", "POST"])
def test_a_member_refusing_connections_is_skipped_and_the_request_is_served_by_another_whatever_its_method(method):
    script = Script()
    refused = f"http://127.0.0.1:{free_port()}/m"
    with pool(script, members=1, extra_members=(refused,)) as f:
        for i in range(3):
            r = f.request(method, f"/p/r{i}", body=b"id=%d" % i if method == "POST" else b"")
            assert (r.status, r.body) == (200, FINE)
            assert seen(script, f"/m/r{i}") == 1
        f.wait_for_error_log("failed to connect")  # and the refusing member rests (pool retry)
        assert_pool_clean(f, script)


def test_a_pool_whose_only_member_refuses_connections_answers_503():
    with Ferryman(config([f"http://127.0.0.1:{free_port()}/m"], "/p")) as f:
        assert f.request("POST", "/p/x", body=b"a").status == 503
        assert f.request("GET", "/p/x").status == 503


# --------------------------------------------------------------------------------------------------
# Reset after the member read the request, before any byte of an answer


def reset_after_request(conn: BackendConn, req: RawRequest) -> None:
    conn.reset()


def test_a_get_reset_before_any_answer_is_retried_on_the_other_member_and_succeeds():
    script = Script(reset_after_request)
    with pool(script) as f:
        r = f.request("GET", "/p/x")
        assert (r.status, r.body) == (200, FINE)
        assert [sum(1 for q in b.requests if q.target == "/m/x") for b in script.backends] == [1, 1]
        assert_pool_clean(f, script)


def test_a_post_reset_before_any_answer_gets_502_and_is_never_sent_again():
    script = Script(reset_after_request)
    with pool(script) as f:
        r = f.request("POST", "/p/order", body=b"id=1")
        assert r.status == 502
        assert seen(script, "/m/order") == 1
        assert_pool_clean(f, script)


@pytest.mark.parametrize("sent", [b"HTTP/1.1 200 OK\r\nContent-Le", b"HTTP/1.1 100 Continue\r\n\r\n"],
                         ids=["half a head", "an interim response"])
@pytest.mark.parametrize("method", ["GET", "POST"])
def test_a_member_cut_inside_its_answers_head_is_a_failure_before_the_answer_get_retried_post_502(sent, method):
    """Nothing of the answer was relayed, so it is the same as a reset before any byte: the retry rule decides."""
    def cut_in_head(conn: BackendConn, req: RawRequest) -> None:
        conn.send(sent)
        conn.reset()

    script = Script(cut_in_head)
    with pool(script) as f:
        r = f.request(method, "/p/x", body=b"id=1" if method == "POST" else b"")
        if method == "GET":
            assert (r.status, r.body) == (200, FINE)
            assert seen(script, "/m/x") == 2
        else:
            assert r.status == 502
            assert seen(script, "/m/x") == 1
        assert_pool_clean(f, script, closed_by_ferryman=False)


# --------------------------------------------------------------------------------------------------
# Reset after the head, mid-body: the answer has started, so it can only be cut


def test_a_response_reset_mid_body_reaches_the_client_truncated_and_is_not_retried():
    release = threading.Event()

    def head_then_reset(conn: BackendConn, req: RawRequest) -> None:
        conn.send(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n" + b"a" * 10)
        release.wait(20)
        conn.reset()

    script = Script(head_then_reset)
    with pool(script) as f:
        with ClientConn(f.port()) as c:
            c.send(build_request("GET", "/p/x"))
            read_partial(c, b"a" * 10)  # the head and part of the body were relayed before the reset
            release.set()
            resp = c.read_response()
            assert resp.status == 200 and not resp.complete and resp.body == b"a" * 10
            assert c.is_closed_by_peer()
        assert seen(script, "/m/x") == 1
        assert_pool_clean(f, script, closed_by_ferryman=False)


def test_a_member_resetting_while_the_request_body_is_still_uploading_gets_502_and_the_client_is_closed():
    def reset_after_head(conn: BackendConn, req: RawRequest) -> None:
        conn.reset()

    script = Script()
    script.handler = _head_only(script, reset_after_head)  # type: ignore[method-assign]
    with pool(script, route_options=STREAMED) as f, ClientConn(f.port()) as c:
        c.send(b"POST /p/upload HTTP/1.1\r\nHost: test.local\r\nContent-Length: 1000000\r\n\r\n" + b"u" * 1000)
        r = c.read_response("POST")
        assert r.status == 502
        assert r.header("connection") == "close"  # the rest of the body is unread: the connection cannot stay
        assert c.is_closed_by_peer()
        assert seen(script, "/m/upload") == 1
        assert_pool_clean(f, script, closed_by_ferryman=False)


def test_a_member_answering_before_reading_the_whole_request_body_leaves_a_connection_never_reused():
    """The member answered early and kept the connection: the rest of the body is still on its way to it, so
    that connection is closed, never pooled."""
    def early(conn: BackendConn, req: RawRequest) -> None:
        conn.respond(200, body=b"early")
        stall(conn)

    script = Script()
    script.handler = _head_only(script, early)  # type: ignore[method-assign]
    with pool(script, members=1, route_options=STREAMED) as f, ClientConn(f.port()) as c:
        c.send(b"POST /p/upload HTTP/1.1\r\nHost: test.local\r\nContent-Length: 100000\r\n\r\n" + b"v" * 1000)
        r = c.read_response("POST")
        assert (r.status, r.body) == (200, b"early")
        assert r.header("connection") == "close"
        assert_pool_clean(f, script)


def test_a_member_announcing_close_but_leaving_the_connection_open_gets_it_closed_by_ferryman():
    def close_announced(conn: BackendConn, req: RawRequest) -> None:
        conn.respond(200, {"Connection": "close"}, b"bye")
        stall(conn)

    script = Script(close_announced)
    with pool(script, members=1) as f:
        r = f.request("GET", "/p/x")
        assert (r.status, r.body) == (200, b"bye")
        assert_pool_clean(f, script)


def _head_only(script: Script, fault: Fault):  # noqa: ANN202
    """A handler whose first request is read head only (its body left unread) and meets `fault`; the
    following requests are served by the script as usual."""
    plain = Script.handler.__get__(script)

    def handler(conn: BackendConn, sock: socket.socket) -> None:
        with script.lock:
            first = script.count == 0
            if first:
                script.count += 1
        if not first:
            return plain(conn, sock)
        req = conn.read_request(read_body=False)
        if req is None:
            return None
        with script.lock:
            script.faulted.append(conn)
        fault(conn, req)
        return None
    return handler


# --------------------------------------------------------------------------------------------------
# Not HTTP at all


def test_garbage_instead_of_a_status_line_gets_502_and_the_connection_is_closed_not_reused():
    def garbage(conn: BackendConn, req: RawRequest) -> None:
        conn.send(b"SSH-2.0-OpenSSH_9.2\r\n\r\n")
        stall(conn)  # left open: ferryman must close it

    script = Script(garbage)
    with pool(script) as f:
        assert f.request("GET", "/p/x").status == 502
        assert seen(script, "/m/x") == 1  # the member answered (wrongly): not asked again
        assert_pool_clean(f, script)


# --------------------------------------------------------------------------------------------------
# Stalls at each stage


def test_a_member_silent_after_the_request_gets_504_after_response_timeout_and_is_not_retried():
    def silent(conn: BackendConn, req: RawRequest) -> None:
        stall(conn)

    script = Script(silent)
    with pool(script, pool_options='response_timeout = "400ms"') as f:
        start = time.monotonic()
        assert f.request("GET", "/p/x", timeout=30).status == 504
        assert time.monotonic() - start < 15  # hang guard: ferryman's deadline fired
        assert seen(script, "/m/x") == 1
        assert_pool_clean(f, script)


def test_a_member_stalling_mid_head_gets_504_after_response_timeout():
    def half_head(conn: BackendConn, req: RawRequest) -> None:
        conn.send(b"HTTP/1.1 200 OK\r\nContent-Le")
        stall(conn)

    script = Script(half_head)
    with pool(script, pool_options='response_timeout = "400ms"') as f:
        assert f.request("GET", "/p/x", timeout=30).status == 504
        assert seen(script, "/m/x") == 1
        assert_pool_clean(f, script)


def test_a_member_dribbling_its_head_a_byte_at_a_time_still_gets_504_at_response_timeout():
    stop = threading.Event()

    def dribble(conn: BackendConn, req: RawRequest) -> None:
        head = b"HTTP/1.1 200 OK\r\n" + b"X-Slow: " + b"y" * 1000
        with contextlib.suppress(OSError):
            for byte in head:
                if stop.wait(0.05):
                    break
                conn.send(bytes([byte]))
        stall(conn)

    script = Script(dribble)
    with pool(script, pool_options='response_timeout = "600ms"') as f:
        start = time.monotonic()
        try:
            assert f.request("GET", "/p/x", timeout=30).status == 504
            assert time.monotonic() - start < 15  # each byte did not restart the clock
        finally:
            stop.set()
        assert_pool_clean(f, script)


def test_a_member_stalling_mid_body_reaches_the_client_truncated_after_read_timeout():
    def half_body(conn: BackendConn, req: RawRequest) -> None:
        conn.send(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n" + b"b" * 10)
        stall(conn)

    script = Script(half_body)
    with pool(script, pool_options='read_timeout = "400ms"') as f:
        out = raw_request(f.port(), build_request("GET", "/p/x"), timeout=30)
        [resp] = parse_responses(out)
        assert resp.status == 200 and not resp.complete and resp.body == b"b" * 10
        assert seen(script, "/m/x") == 1
        assert_pool_clean(f, script)


# --------------------------------------------------------------------------------------------------
# Truncated bodies: the client must see them truncated, never complete (invariant 9)


def test_a_content_length_body_cut_short_reaches_the_client_short_of_its_content_length_then_closed():
    def short(conn: BackendConn, req: RawRequest) -> None:
        conn.send(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n" + b"c" * 10)
        conn.close()

    script = Script(short)
    with pool(script) as f, ClientConn(f.port()) as c:
        c.send(build_request("GET", "/p/x"))
        resp = c.read_response()
        assert resp.status == 200 and resp.header("content-length") == "100"
        assert not resp.complete and resp.body == b"c" * 10
        assert seen(script, "/m/x") == 1
        assert_pool_clean(f, script, closed_by_ferryman=False)


def test_a_chunked_body_cut_before_its_last_chunk_reaches_the_client_without_one_then_closed():
    def cut(conn: BackendConn, req: RawRequest) -> None:
        conn.send(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n")
        conn.close()

    script = Script(cut)
    with pool(script) as f:
        out = raw_request(f.port(), build_request("GET", "/p/x"), timeout=30)
        [resp] = parse_responses(out)
        assert (resp.status, resp.framing, resp.body, resp.complete) == (200, "chunked", b"hello", False)
        assert not out.endswith(b"0\r\n\r\n")
        assert_pool_clean(f, script, closed_by_ferryman=False)


def test_a_body_cut_short_for_an_http_1_0_client_ends_in_a_reset_never_a_clean_close():
    """An HTTP/1.0 client reads a body of unknown length up to the close: a clean close would pass the cut
    body off as complete, so the connection is reset instead."""
    def cut(conn: BackendConn, req: RawRequest) -> None:
        conn.send(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n")
        conn.close()

    script = Script(cut)
    with pool(script) as f:
        with socket.create_connection(("127.0.0.1", f.port()), timeout=15) as s:
            s.sendall(b"GET /p/x HTTP/1.0\r\nHost: test.local\r\n\r\n")
            got = b""
            with pytest.raises(ConnectionResetError):
                while True:
                    data = s.recv(65536)
                    if not data:
                        break  # a clean end: the truncated body would look complete
                    got += data
        assert got.startswith(b"HTTP/1.1 200 ") or got.startswith(b"HTTP/1.0 200 ") or got == b"", got[:200]
        assert_pool_clean(f, script, closed_by_ferryman=False)


def test_a_close_delimited_body_ended_by_a_reset_reaches_the_client_truncated_not_complete():
    """A body delimited by the member's close is complete at a clean close (FIN); a reset ends it abnormally,
    so the HTTP/1.1 client gets the chunked body with no last chunk."""
    release = threading.Event()

    def until_close_then_reset(conn: BackendConn, req: RawRequest) -> None:
        conn.send(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\npartial")
        release.wait(20)
        conn.reset()

    script = Script(until_close_then_reset)
    with pool(script) as f, ClientConn(f.port()) as c:
        c.send(build_request("GET", "/p/x"))
        read_partial(c, b"partial")
        release.set()
        resp = c.read_response()
        assert (resp.status, resp.framing, resp.body, resp.complete) == (200, "chunked", b"partial", False)
        assert c.is_closed_by_peer()
        assert_pool_clean(f, script, closed_by_ferryman=False)


def test_a_body_cut_short_for_an_http_1_0_client_over_tls_ends_without_close_notify(tmp_path):
    """Over TLS a clean end is close_notify: a cut body must end without one (an abrupt end the client's TLS
    layer reports), never with it."""
    import ssl

    import trustme

    def cut(conn: BackendConn, req: RawRequest) -> None:
        conn.send(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n")
        conn.close()

    ca = trustme.CA()
    ca.issue_cert("127.0.0.1").private_key_and_cert_chain_pem.write_to_path(str(tmp_path / "front.pem"))
    script = Script(cut)
    with script.members(1):
        tls = f'tls = {{ cert = "{tmp_path / "front.pem"}", key = "{tmp_path / "front.pem"}" }}'
        with Ferryman(config([script.backends[0].url("/m")], "/p", listener_options=tls)) as f:
            ctx = ssl.create_default_context()
            ca.configure_trust(ctx)
            raw = socket.create_connection(("127.0.0.1", f.port()), timeout=15)
            with ctx.wrap_socket(raw, server_hostname="127.0.0.1", suppress_ragged_eofs=False) as s:
                s.sendall(b"GET /p/x HTTP/1.0\r\nHost: test.local\r\n\r\n")
                got = b""
                with pytest.raises((ssl.SSLError, ConnectionResetError)):
                    while True:
                        data = s.recv(65536)
                        if not data:
                            break  # close_notify: the truncated body would look complete
                        got += data
            assert script.backends[0].requests


# --------------------------------------------------------------------------------------------------
# Bytes after the declared end


@pytest.mark.parametrize("when", ["same write", "later write"])
def test_bytes_after_a_responses_end_leave_the_client_its_answer_and_the_connection_is_never_reused(when):
    answered = threading.Event()

    def extra(conn: BackendConn, req: RawRequest) -> None:
        answer = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nfirst"
        smuggled = b"HTTP/1.1 200 OK\r\nContent-Length: 8\r\n\r\nsmuggled"
        if when == "same write":
            conn.send(answer + smuggled)
        else:
            conn.send(answer)
            answered.wait(10)  # the client has its answer: the connection sits idle in the pool
            with contextlib.suppress(OSError):
                conn.send(smuggled)
        stall(conn)

    script = Script(extra)
    with pool(script, members=1) as f:
        r = f.request("GET", "/p/x")
        assert (r.status, r.body) == (200, b"first")
        answered.set()
        # ferryman closes the connection on its own (the pool may not hand it out again)
        wait_until(lambda: script.faulted[0].peer_closed, 10, message="polluted connection left open")
        assert_pool_clean(f, script)


# --------------------------------------------------------------------------------------------------
# A pooled keep-alive connection the member closes at the moment it is reused


def close_on_reuse(reset: bool) -> Fault:
    def fault(conn: BackendConn, req: RawRequest) -> None:
        conn.reset() if reset else conn.close()
    return fault


def first_then(script_fault: Fault) -> Script:
    """A script whose first request is answered normally on a keep-alive connection and whose second
    (arriving on that same pooled connection) meets `script_fault`."""
    def ok(conn: BackendConn, req: RawRequest) -> None:
        conn.respond(200, body=FINE)
        nxt = conn.read_request()
        if nxt is not None:
            with script.lock:
                script.faulted.append(conn)
                script.count += 1
            script_fault(conn, nxt)

    script = Script(ok)
    return script


@pytest.mark.parametrize("reset", [False, True], ids=["closed", "reset"])
def test_a_get_on_a_pooled_connection_closed_at_reuse_is_retried_on_a_fresh_connection(reset):
    script = first_then(close_on_reuse(reset))
    with pool(script, members=1) as f, ClientConn(f.port()) as c:
        assert c.request("GET", "/p/1").status == 200
        r = c.request("GET", "/p/2")
        assert (r.status, r.body) == (200, FINE)
        [backend] = script.backends
        # the same request twice: on the reused connection, then on a fresh one
        assert [(q.target, conn.index) for conn in backend.connections for q in conn.requests] == [
            ("/m/1", 0), ("/m/2", 0), ("/m/2", 1)]
        assert_pool_clean(f, script, closed_by_ferryman=False)


@pytest.mark.parametrize("reset", [False, True], ids=["closed", "reset"])
def test_a_post_on_a_pooled_connection_closed_after_it_arrived_gets_502_and_is_never_sent_again(reset):
    script = first_then(close_on_reuse(reset))
    with pool(script, members=1) as f, ClientConn(f.port()) as c:
        assert c.request("GET", "/p/1").status == 200
        r = c.request("POST", "/p/order", body=b"id=7")
        assert r.status == 502
        assert seen(script, "/m/order") == 1
        assert_pool_clean(f, script, closed_by_ferryman=False)


def test_a_post_on_a_pooled_connection_the_member_closed_while_idle_goes_on_a_fresh_connection():
    """Closed before the write: provably never reached, so even a POST is sent (once) on a new connection."""
    def one_then_close(conn: BackendConn, req: RawRequest) -> None:
        conn.respond(200, body=FINE)
        conn.close()

    script = Script(one_then_close)
    with pool(script, members=1) as f:
        assert f.request("GET", "/p/1").status == 200
        wait_until(lambda: script.faulted[0].closed.is_set(), 10)
        r = f.request("POST", "/p/order", body=b"id=8")
        assert (r.status, r.body) == (200, FINE)
        assert seen(script, "/m/order") == 1
        assert_pool_clean(f, script, closed_by_ferryman=False)


def test_a_post_taking_a_pooled_connection_whose_close_is_not_yet_read_goes_on_a_fresh_connection():
    """The member answers and closes at once; a POST pipelined behind the first request takes the connection
    from the pool before ferryman has read that close (the answer and the close arrive in one read). The
    close is already there to be seen, so the POST provably never reached the member: it is sent, once, on a
    fresh connection instead of failing with 502."""
    def answer_then_close(conn: BackendConn, req: RawRequest) -> None:
        # corked: the answer and the close (FIN) leave in one segment, so ferryman reads them together
        conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_CORK, 1)
        conn.send(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nfirst")
        conn.sock.shutdown(socket.SHUT_WR)
        stall(conn)

    script = Script(answer_then_close)
    with pool(script, members=1) as f, ClientConn(f.port()) as c:
        for _ in range(3):  # repeated: the race is the point, each round starts a new faulted connection
            script.count = 0
            c.send(build_request("GET", "/p/1") + build_request("POST", "/p/order", body=b"id=9"))
            first, second = c.read_response("GET"), c.read_response("POST")
            assert (first.status, first.body) == (200, b"first")
            assert (second.status, second.body) == (200, FINE)
        assert seen(script, "/m/order") == 3  # once per round, never twice
        assert_pool_clean(f, script, closed_by_ferryman=False)


def test_posts_to_a_tls_member_still_reuse_its_live_pooled_connection(tmp_path):
    """The check a POST makes before taking a pooled connection passes a live TLS connection (TLS records
    such as session tickets are not a close): the POSTs share one backend connection."""
    import ssl

    import trustme

    ca = trustme.CA()
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server_ctx)
    ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    conns: list[int] = []
    bodies: list[bytes] = []

    def serve() -> None:
        with contextlib.suppress(OSError):
            while True:
                raw, _ = listener.accept()
                conns.append(raw.fileno())
                threading.Thread(target=answer, args=(server_ctx.wrap_socket(raw, server_side=True),),
                                 daemon=True).start()

    def answer(tls: ssl.SSLSocket) -> None:
        buf = b""
        with contextlib.suppress(OSError), tls:
            while True:
                while b"\r\n\r\n" not in buf:
                    data = tls.recv(65536)
                    if not data:
                        return
                    buf += data
                head, buf = buf.split(b"\r\n\r\n", 1)
                length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n")
                               if line.lower().startswith(b"content-length:")), 0)
                while len(buf) < length:
                    buf += tls.recv(65536)
                bodies.append(buf[:length])
                buf = buf[length:]
                tls.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\ntls-ok")

    threading.Thread(target=serve, daemon=True).start()
    try:
        toml = config([f"https://127.0.0.1:{port}/m"], "/p", pool_options=f'tls = {{ ca = "{tmp_path / "ca.pem"}" }}')
        with Ferryman(toml) as f, ClientConn(f.port()) as c:
            for i in range(4):
                r = c.request("POST", "/p/order", body=b"id=%d" % i)
                assert (r.status, r.body) == (200, b"tls-ok")
        assert bodies == [b"id=%d" % i for i in range(4)]
        assert len(conns) == 1
    finally:
        listener.close()


# --------------------------------------------------------------------------------------------------
# Interim (1xx) responses


EARLY_HINTS = b"HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\r\n"
CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"


@pytest.mark.parametrize(("pool_options", "count"), [("", 32), ("max_interim_responses = 2", 2)],
                         ids=["default 32", "configured 2"])
def test_interim_responses_up_to_max_interim_responses_are_dropped_and_the_final_answer_arrives(pool_options, count):
    def interims(conn: BackendConn, req: RawRequest) -> None:
        run = (EARLY_HINTS + CONTINUE) * (count // 2)
        for i in range(0, len(run), 100):
            conn.send(run[i:i + 100])  # cut anywhere, heads straddling writes
        conn.respond(200, body=b"final")
        for more in iter(conn.read_request, None):  # the connection stays usable
            with script.lock:
                script.served.append((conn, more))
            conn.respond(200, {"X-Member": str(conn.backend.port)}, FINE)

    script = Script(interims)
    with pool(script, members=1, pool_options=pool_options) as f, ClientConn(f.port()) as c:
        c.send(build_request("GET", "/p/x"))
        r = c.read_response(allow_interim=True)
        assert (r.status, r.body) == (200, b"final")  # ferryman forwards no interim response
        # within the bound the answer was correct: the connection is reused afterwards
        r = c.request("GET", "/p/y")
        assert (r.status, r.body) == (200, FINE)
        assert sum(1 for conn, _ in script.served if conn in script.faulted) == 1
        script.faulted.clear()  # the interims' connection answered correctly: reusing it is fine
        assert_pool_clean(f, script)


def test_one_interim_response_over_max_interim_responses_gets_502_though_a_final_answer_follows():
    def one_too_many(conn: BackendConn, req: RawRequest) -> None:
        conn.send(EARLY_HINTS + CONTINUE + EARLY_HINTS + b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nfinal")
        stall(conn)  # left open: ferryman must close it

    script = Script(one_too_many)
    with pool(script, pool_options="max_interim_responses = 2") as f:
        r = f.request("GET", "/p/x")
        assert r.status == 502 and b"final" not in r.body
        assert seen(script, "/m/x") == 1  # the member answered (wrongly): not asked again, even for a GET
        assert_pool_clean(f, script)


def test_an_endless_storm_of_interim_responses_gets_a_prompt_502_and_the_member_counted_as_failing():
    stop, cut = threading.Event(), threading.Event()

    def endless(conn: BackendConn, req: RawRequest) -> None:
        try:
            while not stop.wait(0.01):
                conn.send(b"HTTP/1.1 103 Early Hints\r\nLink: </a.js>; rel=preload\r\n\r\n" * 20)
        except OSError:
            cut.set()  # ferryman closed the connection

    script = Script(endless)
    # response_timeout far away, and one failure ejects: the 502 comes from the bound, and counts
    with pool(script, pool_options='response_timeout = "60s"\npassive = { fails = 1 }') as f:
        try:
            start = time.monotonic()
            assert f.request("GET", "/p/x", timeout=30).status == 502
            assert time.monotonic() - start < 10  # the bound ended it, not the 60 s response_timeout
            wait_until(cut.is_set, 10, message="ferryman kept reading the storm after its 502")
        finally:
            stop.set()
        assert seen(script, "/m/x") == 1  # the member answered (wrongly): not asked again, even for a GET
        f.wait_for_error_log("-> ejected")
        assert_pool_clean(f, script, closed_by_ferryman=False)


# --------------------------------------------------------------------------------------------------
# A protocol switch nobody asked for


@pytest.mark.parametrize("upgrade", [None, "h2c"])
def test_a_101_the_request_did_not_ask_for_gets_502_and_the_connection_is_closed(upgrade):
    def switch(conn: BackendConn, req: RawRequest) -> None:
        conn.send(b"HTTP/1.1 101 Switching Protocols\r\nConnection: upgrade\r\nUpgrade: h2c\r\n\r\n"
                  b"\x00\x00\x12\x04\x00\x00\x00\x00\x00")
        stall(conn)

    script = Script(switch)
    headers = {"Connection": "Upgrade, HTTP2-Settings", "Upgrade": upgrade, "HTTP2-Settings": "AAMAAABkAAQAAP__"} \
        if upgrade else None
    with pool(script) as f:
        r = f.request("GET", "/p/x", headers=headers)
        assert r.status == 502
        assert seen(script, "/m/x") == 1
        assert script.backends and all(q.header("upgrade") is None for b in script.backends for q in b.requests)
        assert_pool_clean(f, script)


# --------------------------------------------------------------------------------------------------
# The docs table


def test_the_faulty_backends_table_in_docs_security_names_every_test_here_and_no_other():
    import re
    from pathlib import Path

    docs = (Path(__file__).resolve().parents[2] / "docs" / "security.md").read_text()
    section = docs.split("## Faulty backends", 1)[1].split("\n## ", 1)[0]
    named = set(re.findall(r"`(test_[a-z0-9_]+)`", section))
    here = {name for name in globals() if name.startswith("test_")} - {
        "test_the_faulty_backends_table_in_docs_security_names_every_test_here_and_no_other"}
    assert named == here, (sorted(named - here), sorted(here - named))

