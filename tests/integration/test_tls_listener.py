"""TLS listeners end to end: Mozilla profiles (checked by sslyze), key exchange groups, old
protocols refused, client certificates, HTTPS redirects, HSTS, the handshake timeout and the
logging of failed handshakes."""

from __future__ import annotations

import contextlib
import socket
import ssl
import subprocess
import sys
import threading
import time

import pytest

from tests.support import ClientConn, Ferryman, RawBackend, keep_alive_handler, require_module, require_program
from tests.tls_certs import ServerFiles, root_ca, write_server


@pytest.fixture(scope="module")
def backend():
    def answer(conn, req):
        conn.respond(200, {"x-remote-user": req.header("remote-user") or "-"}, b"ok")
    be = RawBackend(keep_alive_handler(answer))
    yield be
    be.close()


@pytest.fixture(scope="module")
def certs(tmp_path_factory) -> ServerFiles:
    return write_server(tmp_path_factory.mktemp("tls"))


def tls_toml(backend, certs: ServerFiles, extra: str = "", listeners: str = "") -> str:
    return f'''
[[listener]]
name = "https"
bind = "127.0.0.1:0"
tls = {{ cert = "{certs.cert}", key = "{certs.key}" }}
{extra}
{listeners}
[pool.app]
members = [{{ url = "http://127.0.0.1:{backend.port}" }}]

[[route]]
path = "/"
pool = "app"
'''


def client_ctx(certs: ServerFiles) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(certs.ca))
    return ctx


def https_get(port: int, ctx: ssl.SSLContext, target: str = "/", headers: str = "") -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        with ctx.wrap_socket(raw, server_hostname="localhost") as s:
            s.sendall(f"GET {target} HTTP/1.1\r\nHost: localhost\r\n{headers}Connection: close\r\n\r\n".encode())
            data = b""
            while chunk := s.recv(65536):
                data += chunk
            return data


def header(resp: bytes, name: str) -> str | None:
    for line in resp.split(b"\r\n\r\n", 1)[0].split(b"\r\n")[1:]:
        k, _, v = line.partition(b":")
        if k.strip().lower() == name.encode():
            return v.strip().decode()
    return None


# -- profiles and groups ---------------------------------------------------------------------------

@pytest.mark.slow
@pytest.mark.parametrize("profile", ["intermediate", "modern"])
def test_sslyze_finds_the_listener_compliant_with_the_mozilla_profile_it_is_set_to(backend, certs, profile):
    require_module("sslyze", "pip install sslyze")
    with Ferryman(tls_toml(backend, certs, f'tls_profile = "{profile}"')) as f:
        run = subprocess.run([sys.executable, "-m", "sslyze", f"--mozilla_config={profile}",
                              f"--certinfo_ca_file={certs.ca}", f"127.0.0.1:{f.port()}"],
                             capture_output=True, text=True, timeout=300)
        out = run.stdout
        assert run.returncode == 0, out[-3000:]
        assert "OK - Compliant" in out, out[-3000:]
        assert "Supported curves:                  X25519, secp256r1, secp384r1" in out


def openssl_handshake(port: int, *args: str) -> str:
    openssl = require_program("openssl")
    run = subprocess.run([openssl, "s_client", "-connect", f"127.0.0.1:{port}", "-servername", "localhost", *args],
                         input="", capture_output=True, text=True, timeout=30)
    return run.stdout + run.stderr


def test_the_listener_offers_exactly_x25519_p256_and_p384_for_key_exchange(backend, certs):
    # TLS 1.3 (the group is chosen apart from the certificate); sslyze covers TLS 1.2 above
    with Ferryman(tls_toml(backend, certs)) as f:
        for group, shown in [("X25519", "X25519"), ("P-256", "ECDH, prime256v1"), ("P-384", "ECDH, secp384r1")]:
            out = openssl_handshake(f.port(), "-groups", group, "-tls1_3")
            assert f"Server Temp Key: {shown}" in out, out
        for group in ("X448", "P-521", "ffdhe2048", "ffdhe3072"):
            out = openssl_handshake(f.port(), "-groups", group, "-tls1_3")
            assert "Server Temp Key" not in out and "Cipher is (NONE)" in out, out


def tls10_client() -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.set_ciphers("DEFAULT:@SECLEVEL=0")
    ctx.minimum_version = ssl.TLSVersion.TLSv1
    ctx.maximum_version = ssl.TLSVersion.TLSv1
    return ctx


@pytest.mark.filterwarnings("ignore:ssl.TLSVersion.TLSv1 is deprecated:DeprecationWarning")
def test_a_client_offering_only_tls_1_0_is_refused(backend, certs):
    # the same client completes a handshake with a server that allows TLS 1.0: it really offers it
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.set_ciphers("DEFAULT:@SECLEVEL=0")
    server_ctx.minimum_version = ssl.TLSVersion.TLSv1
    server_ctx.load_cert_chain(str(certs.cert), str(certs.key))
    lsock = socket.create_server(("127.0.0.1", 0))

    def serve_once():
        conn, _ = lsock.accept()
        try:
            with server_ctx.wrap_socket(conn, server_side=True) as s:
                s.recv(1)
        except (ssl.SSLError, OSError):
            pass
    t = threading.Thread(target=serve_once, daemon=True)
    t.start()
    with tls10_client().wrap_socket(socket.create_connection(lsock.getsockname(), timeout=10)) as s:
        assert s.version() == "TLSv1"
    t.join(10)
    lsock.close()
    with Ferryman(tls_toml(backend, certs)) as f:
        with pytest.raises(ssl.SSLError):
            tls10_client().wrap_socket(socket.create_connection(("127.0.0.1", f.port()), timeout=10))
        line = f.wait_for_error_log("TLS handshake with 127.0.0.1 failed")
        assert "unsupported protocol" in line or "version too low" in line, line


def test_the_modern_profile_refuses_tls_1_2_and_serves_tls_1_3(backend, certs):
    with Ferryman(tls_toml(backend, certs, 'tls_profile = "modern"')) as f:
        ctx = client_ctx(certs)
        ctx.maximum_version = ssl.TLSVersion.TLSv1_2
        with pytest.raises(ssl.SSLError):
            https_get(f.port(), ctx)
        ctx = client_ctx(certs)
        with socket.create_connection(("127.0.0.1", f.port()), timeout=10) as raw:
            with ctx.wrap_socket(raw, server_hostname="localhost") as s:
                assert s.version() == "TLSv1.3"


# -- client certificates ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def client_pki(tmp_path_factory):
    d = tmp_path_factory.mktemp("clients")
    ca = root_ca("ferryman test client CA")
    (d / "client-ca.pem").write_bytes(ca.pem)
    for name, (cn, email, san) in {"alice": ("alice", "alice@example.org", "alice@san.example.org"),
                                   "bob": ("bob", None, None)}.items():
        chain, key = ca.client(cn, email, san)
        (d / f"{name}.pem").write_bytes(chain + key)
    other = root_ca("another CA")
    chain, key = other.client("mallory")
    (d / "mallory.pem").write_bytes(chain + key)
    return d


def mtls_ctx(certs, client_pki, who: str | None) -> ssl.SSLContext:
    ctx = client_ctx(certs)
    if who:
        ctx.load_cert_chain(str(client_pki / f"{who}.pem"))
    return ctx


def mtls_toml(backend, certs, client_pki, verify: str = "require", field: str = "CN") -> str:
    return tls_toml(backend, certs, f'tls_client_ca = "{client_pki / "client-ca.pem"}"\n'
                                    f'tls_verify_client = "{verify}"\ntls_user_field = "{field}"')


def test_a_valid_client_certificate_reaches_the_app_as_remote_user_and_a_forged_one_never(backend, certs,
                                                                                         client_pki):
    with Ferryman(mtls_toml(backend, certs, client_pki)) as f:
        resp = https_get(f.port(), mtls_ctx(certs, client_pki, "alice"), headers="Remote-User: admin\r\n")
        assert resp.startswith(b"HTTP/1.1 200")
        assert header(resp, "x-remote-user") == "alice"
        resp = https_get(f.port(), mtls_ctx(certs, client_pki, "bob"), headers="Remote_User: admin\r\n")
        assert header(resp, "x-remote-user") == "bob"


@pytest.mark.parametrize("field, user", [("emailAddress", "alice@example.org"), ("SAN:email", "alice@san.example.org")])
def test_tls_user_field_picks_the_certificate_field_that_names_the_user(backend, certs, client_pki, field, user):
    with Ferryman(mtls_toml(backend, certs, client_pki, field=field)) as f:
        resp = https_get(f.port(), mtls_ctx(certs, client_pki, "alice"))
        assert header(resp, "x-remote-user") == user
        resp = https_get(f.port(), mtls_ctx(certs, client_pki, "bob"))  # bob's has no such field
        assert header(resp, "x-remote-user") == "-"


def handshake_refused(port: int, ctx: ssl.SSLContext) -> bool:
    """True when the server refuses the handshake (TLS 1.3 reports it at the first read)."""
    try:
        resp = https_get(port, ctx)
    except (ssl.SSLError, ConnectionResetError, BrokenPipeError):
        return True
    return not resp


def test_verify_client_require_refuses_a_client_without_a_certificate_or_with_one_from_another_ca(
        backend, certs, client_pki):
    with Ferryman(mtls_toml(backend, certs, client_pki)) as f:
        assert handshake_refused(f.port(), mtls_ctx(certs, client_pki, None))
        assert handshake_refused(f.port(), mtls_ctx(certs, client_pki, "mallory"))
        assert https_get(f.port(), mtls_ctx(certs, client_pki, "alice")).startswith(b"HTTP/1.1 200")
        f.wait_for_error_log(lambda line: "TLS handshake with 127.0.0.1 failed" in line and "certificate" in line)


def test_verify_client_optional_lets_a_client_without_certificate_in_with_no_remote_user(backend, certs, client_pki):
    with Ferryman(mtls_toml(backend, certs, client_pki, verify="optional")) as f:
        resp = https_get(f.port(), mtls_ctx(certs, client_pki, None), headers="Remote-User: admin\r\n")
        assert resp.startswith(b"HTTP/1.1 200") and header(resp, "x-remote-user") == "-"
        assert header(https_get(f.port(), mtls_ctx(certs, client_pki, "alice")), "x-remote-user") == "alice"
        assert handshake_refused(f.port(), mtls_ctx(certs, client_pki, "mallory"))


# -- redirects and HSTS ----------------------------------------------------------------------------

REDIRECTING = '''
[[listener]]
name = "http"
bind = "127.0.0.1:0"
redirect_https = {to}
{more}
'''


def test_a_plain_listener_redirects_to_https_keeping_path_and_query_and_the_method(backend, certs):
    toml = tls_toml(backend, certs, listeners=REDIRECTING.format(to="8443", more=""))
    with Ferryman(toml) as f:
        with ClientConn(f.port("http")) as c:
            r = c.request("GET", "/a/b?x=1&y=%20", host="www.example.com:8080")
            assert r.status == 301 and r.header("location") == "https://www.example.com:8443/a/b?x=1&y=%20"
            r = c.request("POST", "/form", host="www.example.com", body=b"a=1")
            assert r.status == 308 and r.header("location") == "https://www.example.com:8443/form"
        for bad in ("evil.example/x", "a b", "x@evil.example", "[::1", "host:99999x"):
            with ClientConn(f.port("http")) as c:
                r = c.request("GET", "/", host=bad)
                assert r.status == 400 and r.header("location") is None
        # the TLS listener itself is not redirected
        assert https_get(f.port("https"), client_ctx(certs)).startswith(b"HTTP/1.1 200")


def test_a_configured_origin_or_server_name_is_used_and_the_host_header_ignored(backend, certs):
    toml = tls_toml(backend, certs, listeners=REDIRECTING.format(to='"https://secure.example.com"', more="")
                    + REDIRECTING.replace('"http"', '"http2"').format(to="443", more='server_name = "www.example.com"'))
    with Ferryman(toml) as f:
        r = f.request("GET", "/p?q", listener="http", host="evil.example")
        assert r.status == 301 and r.header("location") == "https://secure.example.com/p?q"
        r = f.request("HEAD", "/p", listener="http2", host="evil.example")
        assert r.status == 301 and r.header("location") == "https://www.example.com/p"


def test_hsts_is_sent_on_every_answer_of_a_tls_listener(backend, certs, tmp_path):
    (tmp_path / "files").mkdir()
    (tmp_path / "files" / "a.txt").write_text("a")
    toml = tls_toml(backend, certs, 'hsts_max_age = "365d"\nhsts_include_subdomains = true') + f"""
[[route]]
path = "/files"
static = "{tmp_path / 'files'}"
"""
    with Ferryman(toml) as f:
        for target in ("/", "/%2e%2e/%2e%2e/etc", "/files/a.txt", "/files/missing"):
            resp = https_get(f.port(), client_ctx(certs), target)
            assert header(resp, "strict-transport-security") == "max-age=31536000; includeSubDomains", resp[:300]


# -- handshake timeout and failure logging ---------------------------------------------------------

def test_a_client_that_connects_and_never_completes_the_handshake_is_closed_after_the_timeout(backend, certs):
    with Ferryman(tls_toml(backend, certs, 'tls_handshake_timeout = "500ms"')) as f:
        start = time.monotonic()
        with socket.create_connection(("127.0.0.1", f.port()), timeout=10) as silent, \
                socket.create_connection(("127.0.0.1", f.port()), timeout=10) as stalled:
            stalled.sendall(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03")  # a ClientHello cut short
            assert silent.recv(100) == b""
            try:
                assert stalled.recv(100) == b""
            except ConnectionResetError:
                pass
        elapsed = time.monotonic() - start
        assert 0.4 < elapsed < 5
        f.wait_for_error_log("handshake timed out")
        # the listener still serves
        assert https_get(f.port(), client_ctx(certs)).startswith(b"HTTP/1.1 200")


def test_failed_handshakes_are_logged_once_per_client_address_within_a_minute(backend, certs):
    with Ferryman(tls_toml(backend, certs)) as f:
        for _ in range(5):
            with socket.create_connection(("127.0.0.1", f.port()), timeout=10) as s:
                s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")  # plain HTTP on the TLS port
                try:
                    while s.recv(100):
                        pass
                except ConnectionResetError:
                    pass
        assert https_get(f.port(), client_ctx(certs)).startswith(b"HTTP/1.1 200")
        line = f.wait_for_error_log("TLS handshake with 127.0.0.1 failed")
        assert "http request" in line or "wrong version" in line, line
        # a failure from another address: once its line is read, every earlier line was too
        with socket.create_connection(("127.0.0.1", f.port()), timeout=10, source_address=("127.0.0.2", 0)) as s:
            s.sendall(b"\x00" * 64)
            with contextlib.suppress(ConnectionResetError):
                s.recv(100)
        f.wait_for_error_log("TLS handshake with 127.0.0.2 failed")
        assert sum("TLS handshake with 127.0.0.1 failed" in ln for ln in f.error_log_lines()) == 1
