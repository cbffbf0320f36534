"""Basic authentication under attack: verified answers cached so bcrypt runs once per credential,
failed logins locking an address out with 429, and how a client certificate and a route's login
combine into Remote-User."""

from __future__ import annotations

import asyncio
import base64
import socket
import ssl
from pathlib import Path

import bcrypt
import pytest

from ferryman.config.loader import load_config
from ferryman.plan import compile_plan
from ferryman.server.runtime import AuthRuntime
from tests.support import Ferryman, RawBackend, keep_alive_handler, parse_responses
from tests.tls_certs import root_ca, write_server

HTPASSWD = "alice:" + bcrypt.hashpw(b"secret", bcrypt.gensalt(4)).decode() + "\n"


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


@pytest.fixture(scope="module")
def backend():
    def answer(conn, req):
        conn.respond(200, {"x-remote-user": req.header("remote-user") or "-"}, b"ok")
    be = RawBackend(keep_alive_handler(answer))
    yield be
    be.close()


def auth_toml(backend, auth: str = "", listener: str = "") -> str:
    return f'''
[[listener]]
name = "front"
bind = "127.0.0.1:0"
{listener}
[pool.app]
members = [{{ url = "http://127.0.0.1:{backend.port}" }}]

[[route]]
path = "/private"
pool = "app"
auth = {{ htpasswd = "users.htpasswd"{auth} }}

[[route]]
path = "/"
pool = "app"
'''


def auth_runtime(tmp_path: Path, backend) -> AuthRuntime:
    (tmp_path / "users.htpasswd").write_text(HTPASSWD)
    (tmp_path / "f.toml").write_text(auth_toml(backend))
    plan = compile_plan(load_config(tmp_path / "f.toml"))
    return AuthRuntime(next(r.auth for r in plan.routes if r.auth is not None))


def test_repeated_and_concurrent_valid_logins_run_bcrypt_once(tmp_path, backend):
    auth = auth_runtime(tmp_path, backend)
    header = basic("alice", "secret").encode()

    async def scenario():
        # a browser opening a page: many requests with the same credentials at once
        first = await asyncio.gather(*(auth.check_slow(header, "10.0.0.1") for _ in range(20)))
        assert all(r == (True, "alice") for r in first)
        later = [auth.check(header, "10.0.0.1", asyncio.get_running_loop().time()) for _ in range(50)]
        assert all(r == (True, "alice") for r in later)
    asyncio.run(scenario())
    assert auth.htpasswd.slow_checks == 1
    assert auth.locked("10.0.0.1", 0) is None


def test_a_burst_of_parallel_guesses_is_cut_off_at_max_failures(tmp_path, backend):
    auth = auth_runtime(tmp_path, backend)  # max_failures 10 by default

    async def scenario():
        guesses = [basic("alice", f"guess{i}").encode() for i in range(100)]
        answers = await asyncio.gather(*(auth.check_slow(g, "10.0.0.2") for g in guesses))
        assert not any(ok for ok, _ in answers)
        assert auth.locked("10.0.0.2", asyncio.get_running_loop().time()) is not None
    asyncio.run(scenario())
    assert auth.htpasswd.slow_checks == 10  # not 100: the rest never reached bcrypt


def request_from(source: str, port: int, target: str, authorization: str | None) -> tuple[int, dict[str, str]]:
    with socket.create_connection(("127.0.0.1", port), timeout=10, source_address=(source, 0)) as s:
        auth = f"Authorization: {authorization}\r\n" if authorization else ""
        s.sendall(f"GET {target} HTTP/1.1\r\nHost: x\r\n{auth}Connection: close\r\n\r\n".encode())
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    resp = parse_responses(data)[0]
    return resp.status, {k.lower(): v for k, v in resp.headers}


def test_repeated_wrong_passwords_lock_the_address_out_with_429_and_others_still_log_in(backend):
    toml = auth_toml(backend, ', max_failures = 3, failure_window = "1m", lockout = "1m"')
    with Ferryman(toml, files={"users.htpasswd": HTPASSWD}) as f:
        port = f.port()
        assert request_from("127.0.0.1", port, "/private/", None)[0] == 401  # a challenge is no failure
        for _ in range(3):
            assert request_from("127.0.0.1", port, "/private/", basic("alice", "wrong"))[0] == 401
        status, headers = request_from("127.0.0.1", port, "/private/", basic("alice", "wrong"))
        assert status == 429 and 1 <= int(headers["retry-after"]) <= 60
        # locked out: even the right password is not checked
        assert request_from("127.0.0.1", port, "/private/", basic("alice", "secret"))[0] == 429
        # another address is not affected, and routes without auth neither
        assert request_from("127.0.0.2", port, "/private/", basic("alice", "secret"))[0] == 200
        assert request_from("127.0.0.1", port, "/public", None)[0] == 200
        f.wait_for_error_log("client 127.0.0.1 locked out of Basic authentication")


def test_a_route_login_names_the_user_even_when_a_client_certificate_names_another(backend, tmp_path):
    server = write_server(tmp_path)
    client_ca = root_ca("client CA")
    (tmp_path / "client-ca.pem").write_bytes(client_ca.pem)
    chain, key = client_ca.client("carol")
    (tmp_path / "carol.pem").write_bytes(chain + key)
    listener = (f'tls = {{ cert = "{server.cert}", key = "{server.key}" }}\n'
                f'tls_client_ca = "{tmp_path / "client-ca.pem"}"')
    with Ferryman(auth_toml(backend, listener=listener), files={"users.htpasswd": HTPASSWD}) as f:
        ctx = ssl.create_default_context(cafile=str(server.ca))
        ctx.load_cert_chain(str(tmp_path / "carol.pem"))

        def get(target: str, authorization: str | None) -> tuple[int, str | None]:
            with socket.create_connection(("127.0.0.1", f.port()), timeout=10) as raw, \
                    ctx.wrap_socket(raw, server_hostname="localhost") as s:
                auth = f"Authorization: {authorization}\r\n" if authorization else ""
                s.sendall(f"GET {target} HTTP/1.1\r\nHost: x\r\n{auth}Connection: close\r\n\r\n".encode())
                data = b""
                while chunk := s.recv(65536):
                    data += chunk
            resp = parse_responses(data)[0]
            return resp.status, resp.header("x-remote-user")
        assert get("/public", None) == (200, "carol")
        assert get("/private/", None)[0] == 401  # the certificate does not replace the route's login
        assert get("/private/", basic("alice", "secret")) == (200, "alice")
