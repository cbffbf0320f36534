"""Holes at the seams between hardening features, each found by attacking them together."""

from __future__ import annotations

from tests.support import ClientConn, Ferryman, RawBackend, config, free_port, keep_alive_handler


def _echo_backend() -> RawBackend:
    return RawBackend(keep_alive_handler(lambda conn, req: conn.respond(200, body=b"ok")))


def test_a_buffered_post_over_the_replay_size_refused_by_one_member_reaches_the_next_with_all_its_bytes():
    # the body waits whole in request_buffer before a member is chosen; the first member refuses the
    # connection (it provably never saw a byte), so the next one must get the very same body
    refused = f"http://127.0.0.1:{free_port()}"
    body = bytes(range(256)) * 800  # 200 KiB: over what is kept for retries after a member saw it
    with _echo_backend() as backend, \
            Ferryman(config([refused, backend.url("")], "/app", route_options='request_buffer = "1MiB"',
                            pool_options='response_timeout = "5s"\nread_timeout = "5s"')) as f:
        for i in range(2):
            with ClientConn(f.port()) as c:
                assert c.request("POST", f"/app/up{i}", body=body).status == 200
        f.wait_for_error_log("failed to connect")
        assert [(r.target, r.body == body) for r in backend.requests] == [("/up0", True), ("/up1", True)]
