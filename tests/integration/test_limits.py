"""Listener limits: a connection over `max_connections` gets a short 503 and is closed (invariant 7)."""

from __future__ import annotations

import pytest

from tests.support import ClientConn, Ferryman, RawBackend, config, wait_until

pytestmark = pytest.mark.integration

OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"


def test_a_connection_over_max_connections_gets_503_and_the_others_keep_working():
    with RawBackend.respond(OK) as backend, \
            Ferryman(config([backend.url("/app")], "/app", listener_options="max_connections = 2")) as f:
        with ClientConn(f.port()) as one, ClientConn(f.port()) as two:
            for conn in (one, two):
                conn.request("GET", "/app/x")
                assert conn.read_response().status == 200
            with ClientConn(f.port()) as three:
                assert three.read_response().status == 503
                assert three.is_closed_by_peer()
            one.request("GET", "/app/y")
            assert one.read_response().status == 200
        f.wait_for_error_log("max_connections")

        def served() -> bool:
            with ClientConn(f.port()) as again:
                again.request("GET", "/app/z")
                try:
                    return again.read_response().status == 200
                except EOFError:
                    return False

        wait_until(served, timeout=10)  # the slots are given back once ferryman sees the closes
