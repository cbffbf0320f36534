"""Listener limits: a connection over `max_connections` gets a short 503 and is closed (invariant 7)."""

from __future__ import annotations

import pytest

from tests.support import ClientConn, Ferryman, RawBackend, config, wait_until

pytestmark = pytest.mark.integration

OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"


def _served_conn(port: int) -> ClientConn:
    """A kept-alive connection that got a 200: retried while earlier closes are still being seen."""
    found: list[ClientConn] = []

    def attempt() -> bool:
        conn = ClientConn(port)
        try:
            if conn.request("GET", "/app/x").status == 200:
                found.append(conn)
                return True
        except EOFError:
            pass
        conn.close()
        return False

    wait_until(attempt, timeout=10)
    return found[0]


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
