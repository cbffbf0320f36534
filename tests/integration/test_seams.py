"""Holes at the seams between hardening features, each found by attacking them together."""

from __future__ import annotations

import base64
import socket
import ssl
from pathlib import Path

import bcrypt

from tests.support import ClientConn, Ferryman, RawBackend, config, free_port, keep_alive_handler, wait_until
from tests.tls_certs import write_server


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


HTPASSWD = "alice:" + bcrypt.hashpw(b"secret", bcrypt.gensalt(4)).decode() + "\n"


def sso_toml(backend: RawBackend) -> str:
    return f'''
[[listener]]
name = "front"
bind = "127.0.0.1:0"
trusted_proxies = ["127.0.0.1"]
[pool.app]
members = [{{ url = "http://127.0.0.1:{backend.port}" }}]
[[route]]
path = "/private"
pool = "app"
auth = {{ htpasswd = "users.htpasswd", trusted_header = "X-Auth-User" }}
'''


def test_a_route_with_trusted_header_takes_the_user_from_a_trusted_proxy_and_never_from_anyone_else():
    users: list[str | None] = []

    def answer(conn, req):  # noqa: ANN001
        users.append(req.header("remote-user"))
        conn.respond(200, {}, b"ok")
    alice = "Basic " + base64.b64encode(b"alice:secret").decode()
    with RawBackend(keep_alive_handler(answer)) as backend, \
            Ferryman(sso_toml(backend), files={"users.htpasswd": HTPASSWD}) as f:
        with ClientConn(f.port()) as proxy:  # 127.0.0.1: the single sign-on proxy in front
            assert proxy.request("GET", "/private/a", headers={"Host": "x", "X-Auth-User": "bob"}).status == 200
            assert proxy.request("GET", "/private/b", headers={"Host": "x", "Authorization": alice}).status == 200
        with ClientConn(f.port(), source="127.0.0.2") as stranger:
            r = stranger.request("GET", "/private/c", headers={"Host": "x", "X-Auth-User": "bob"})
            assert r.status == 401 and r.header("www-authenticate")
            assert stranger.request("GET", "/private/d", headers={"Host": "x", "Authorization": alice,
                                                                   "X-Auth-User": "bob"}).status == 200
        assert users == ["bob", "alice", "alice"]


def test_logging_in_with_ones_own_account_between_guesses_does_not_reset_the_lockout():
    # a user of the site guessing another's password: a success must not wipe the failures before it
    mallory = "Basic " + base64.b64encode(b"mallory:mine").decode()
    users = HTPASSWD + "mallory:" + bcrypt.hashpw(b"mine", bcrypt.gensalt(4)).decode() + "\n"
    with RawBackend(keep_alive_handler(lambda conn, req: conn.respond(200, {}, b"ok"))) as backend, \
            Ferryman(sso_toml(backend).replace('trusted_header = "X-Auth-User"', "max_failures = 3"),
                     files={"users.htpasswd": users}) as f, ClientConn(f.port()) as c:
        statuses = []
        for guess in (None, "a", "b", None, "c", None):  # mallory's own login, then from the cache
            creds = mallory if guess is None else "Basic " + base64.b64encode(b"alice:" + guess.encode()).decode()
            statuses.append(c.request("GET", "/private/x", headers={"Host": "x", "Authorization": creds}).status)
        assert statuses == [200, 401, 401, 200, 429, 429]


def test_a_body_larger_than_the_connect_buffer_but_within_request_buffer_is_read_whole_and_served():
    # request_buffer may be up to 16 MiB; reading must not pause for good before it is reached
    body = b"q" * (1 << 20)
    with _echo_backend() as backend, \
            Ferryman(config([backend.url("")], "/app", route_options='request_buffer = "2MiB"')) as f, \
            ClientConn(f.port(), timeout=10) as c:
        assert c.request("POST", "/app/big", body=body).status == 200
        assert [(r.target, len(r.body)) for r in backend.requests] == [("/big", len(body))]


def test_failed_logins_of_a_real_and_of_an_unknown_user_get_the_same_answers_up_to_the_lockout():
    # the status of each attempt (401 or 429) must not tell a name in the file from one that is not
    with RawBackend(keep_alive_handler(lambda conn, req: conn.respond(200, {}, b"ok"))) as backend, \
            Ferryman(sso_toml(backend).replace('trusted_header = "X-Auth-User"', "max_failures = 2"),
                     files={"users.htpasswd": HTPASSWD}) as f:
        answers = {}
        for user, source in (("alice", "127.0.0.2"), ("nobody", "127.0.0.3")):
            with ClientConn(f.port(), source=source) as c:
                answers[user] = [c.request("GET", "/private/x", headers={
                    "Host": "x", "Authorization": "Basic " + base64.b64encode(f"{user}:guess{i}".encode()).decode()
                }).status for i in range(3)]
        assert answers["alice"] == answers["nobody"] == [401, 429, 429]


def _tls_status(port: int, ca: Path, source: str) -> int | None:
    """The status of a GET over TLS from `source`; None when the connection is refused or cut."""
    ctx = ssl.create_default_context(cafile=str(ca))
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=5, source_address=(source, 0)) as raw, \
                ctx.wrap_socket(raw, server_hostname="localhost") as s:
            s.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
            data = s.recv(100)
    except (OSError, ssl.SSLError):
        return None
    return int(data.split()[1]) if data.startswith(b"HTTP/1.1 ") else None


def test_connections_still_in_their_tls_handshake_count_against_max_connections_per_client(tmp_path):
    # a client opening connections and never finishing a handshake must not hold more than its share
    certs = write_server(tmp_path)
    with _echo_backend() as backend, Ferryman(config(
            [backend.url("")], "/", listener_options=f'tls = {{ cert = "{certs.cert}", key = "{certs.key}" }}\n'
            'max_connections_per_client = 2\ntls_handshake_timeout = "60s"')) as f:
        assert _tls_status(f.port(), certs.ca, "127.0.0.1") == 200
        silent = [socket.create_connection(("127.0.0.1", f.port())) for _ in range(2)]
        try:
            wait_until(lambda: _tls_status(f.port(), certs.ca, "127.0.0.1") is None, timeout=10,
                       message="a third connection was served while two were held in their handshakes")
            assert _tls_status(f.port(), certs.ca, "127.0.0.2") == 200  # other addresses are unaffected
            f.wait_for_error_log("over max_connections_per_client")
        finally:
            for s in silent:
                s.close()
        wait_until(lambda: _tls_status(f.port(), certs.ca, "127.0.0.1") == 200, timeout=10,
                   message="the slots of closed handshakes were not given back")
