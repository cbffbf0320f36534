"""The admin listener: Prometheus metrics and JSON status of a real ferryman in front of real members,
who may read them, and the TLS handshake counts."""

from __future__ import annotations

import base64
import json
import os
import re
import signal
import socket
import ssl
import subprocess
import sys
import textwrap

import pytest
import trustme
from prometheus_client.parser import text_string_to_metric_families

from tests.support import REPO, ClientConn, Ferryman, RawBackend, config, ferryman_check, require, wait_until

pytestmark = pytest.mark.integration

OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
HTPASSWD = "demo:{SHA}W6ph5Mm5Pz8GgiULbPgzG37mj9g=\n"  # demo / password
_ADMIN = re.compile(r"admin listening on http://(\[[^\]]+\]|[^\s:]+):(\d+)")


def admin_port(f: Ferryman) -> int:
    line = f.wait_for_error_log("admin listening on")
    return int(_ADMIN.search(line).group(2))  # type: ignore[union-attr]


def admin_get(port: int, path: str, host: str = "127.0.0.1", headers: dict[str, str] | None = None):
    with ClientConn(port, host=host) as c:
        return c.request("GET", path, headers)


def scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of /metrics as {(name, sorted labels): value}, parsed by prometheus-client's parser."""
    r = admin_get(port, "/metrics")
    assert r.status == 200 and r.header("content-type", "").startswith("text/plain; version=0.0.4")
    out = {}
    for family in text_string_to_metric_families(r.body.decode()):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def value(samples, name: str, **labels: str) -> float:
    """The sum of `name` over samples whose labels include `labels`."""
    want = set(labels.items())
    return sum(v for (n, lab), v in samples.items() if n == name and want <= set(lab))


def test_metrics_count_requests_by_status_class_with_latency_histograms_and_member_gauges(echo_a):
    member = echo_a.url("/webapps")
    toml = config([member], "/webapps", top='[admin]\nbind = "127.0.0.1:0"\n')
    with Ferryman(toml) as f:
        port = admin_port(f)
        for _ in range(3):
            assert f.request("GET", "/webapps/echo").status == 200
        assert f.request("GET", "/webapps/status/404").status == 404
        assert f.request("GET", "/nowhere").status == 404  # no route: ferryman's own answer
        samples = scrape(port)
        ok = dict(route="/webapps", pool="app", member=member)
        assert value(samples, "ferryman_requests_total", code="2xx", **ok) == 3
        assert value(samples, "ferryman_requests_total", code="4xx", **ok) == 1
        assert value(samples, "ferryman_requests_total", code="4xx", route="-", pool="-", member="-") == 1
        assert value(samples, "ferryman_request_duration_seconds_count", route="/webapps", pool="app") == 4
        assert value(samples, "ferryman_request_duration_seconds_bucket", route="/webapps", pool="app",
                     le="+Inf") == 4
        assert value(samples, "ferryman_request_duration_seconds_sum", route="/webapps", pool="app") > 0
        assert value(samples, "ferryman_backend_response_seconds_count", pool="app", member=member) == 4
        assert value(samples, "ferryman_member_state", pool="app", member=member, state="usable") == 1
        assert value(samples, "ferryman_member_state", pool="app", member=member, state="error") == 0
        assert value(samples, "ferryman_member_healthy", pool="app", member=member) == 1
        # each request came on its own client connection and went back to the idle pool
        assert value(samples, "ferryman_backend_connections", pool="app", member=member, state="busy") == 0
        assert value(samples, "ferryman_backend_connections", pool="app", member=member, state="idle") >= 1
        assert value(samples, "ferryman_reloads_total", result="ok") == 0
        assert ("ferryman_reloads_total", (("result", "refused"),)) in samples


def test_retries_and_ejections_are_counted_when_a_member_refuses_connections(echo_a):
    from tests.support import refused_port
    dead = f"http://127.0.0.1:{refused_port()}/webapps"
    toml = config([dead, echo_a.url("/webapps")], "/webapps", pool_options='lbmethod = "byrequests"',
                  top='[admin]\nbind = "127.0.0.1:0"\n')
    with Ferryman(toml) as f:
        port = admin_port(f)
        for _ in range(2):
            assert f.request("GET", "/webapps/echo").status == 200
        samples = scrape(port)
        assert value(samples, "ferryman_member_ejections_total", pool="app", member=dead) == 1
        assert value(samples, "ferryman_member_state", pool="app", member=dead, state="error") == 1
        assert value(samples, "ferryman_member_healthy", pool="app", member=dead) == 0


def test_status_is_json_with_every_pool_snapshot_listeners_uptime_and_the_configuration_file():
    with RawBackend.respond(OK) as backend, \
            Ferryman(config([backend.url("/m")], "/app", top='[admin]\nbind = "127.0.0.1:0"\n')) as f:
        port = admin_port(f)
        assert f.request("GET", "/app/x").status == 200
        r = admin_get(port, "/status")
        assert r.status == 200 and r.header("content-type") == "application/json"
        status = json.loads(r.body)
        assert status["config"].endswith("ferryman.toml")
        assert status["uptime_seconds"] >= 0 and status["pid"] == f.pid
        assert status["reloads"] == {"ok": 0, "refused": 0}
        assert status["listeners"] == [{"name": "http", "bind": "127.0.0.1:0", "port": f.port(), "tls": False,
                                        "open_connections": 0}]
        [pool] = status["pools"]
        assert pool["name"] == "app" and pool["lbmethod"] == "byrequests"
        [member] = pool["members"]
        assert member["name"] == backend.url("/m") and member["state"] == "usable" and member["requests"] == 1
        assert admin_get(port, "/other").status == 404
        with ClientConn(port) as c:
            assert c.request("POST", "/metrics", body=b"").status == 405


def _non_loopback_address() -> str | None:
    """An address of this machine outside 127/8 and ::1 (the source address towards a test network)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect(("192.0.2.123", 9))  # UDP connect sends nothing: it only picks a route
            addr = s.getsockname()[0]
        except OSError:
            return None
    return None if addr.startswith("127.") or addr == "0.0.0.0" else addr


def test_a_client_not_on_loopback_needs_the_admin_password_and_a_loopback_client_does_not():
    # A connection to one of this machine's own non-loopback addresses comes *from* that address, so the
    # peer is a real non-loopback client without a second machine.
    address = _non_loopback_address()
    require(address, "a non-loopback IPv4 address on this machine (a route to 192.0.2.0/24)")
    toml = config(["http://127.0.0.1:9/m"], "/app",
                  top='[admin]\nbind = "0.0.0.0:0"\nhtpasswd = "admin.htpasswd"\n')
    with Ferryman(toml, files={"admin.htpasswd": HTPASSWD}) as f:
        port = admin_port(f)
        r = admin_get(port, "/metrics", host=address)
        assert r.status == 401 and r.header("www-authenticate") == 'Basic realm="ferryman admin", charset="UTF-8"'
        bad = "Basic " + base64.b64encode(b"demo:wrong").decode()
        assert admin_get(port, "/status", host=address, headers={"Authorization": bad}).status == 401
        good = "Basic " + base64.b64encode(b"demo:password").decode()
        assert admin_get(port, "/status", host=address, headers={"Authorization": good}).status == 200
        assert admin_get(port, "/status", host="127.0.0.1").status == 200


def test_an_admin_bind_off_loopback_without_htpasswd_is_a_config_error_at_its_line():
    toml = config(["http://127.0.0.1:9/m"], "/app", top='[admin]\nbind = "0.0.0.0:9900"\n')
    result = ferryman_check(toml)
    assert result.returncode == 2, result.stderr
    assert re.search(r"ferryman\.toml:2: admin\.bind: '0\.0\.0\.0:9900' is not a loopback address, so the admin "
                     r"listener needs a password: add htpasswd", result.stderr + result.stdout), result.stderr


CA = trustme.CA()
CERT = CA.issue_cert("127.0.0.1", "localhost")


def test_tls_handshakes_are_counted_ok_and_failed_per_listener():
    toml = config(["http://127.0.0.1:9/m"], "/app", listener="https",
                  listener_options='tls = { cert = "front.pem", key = "front.pem" }',
                  top='[admin]\nbind = "127.0.0.1:0"\n')
    with Ferryman(toml, files={"front.pem": CERT.private_key_and_cert_chain_pem.bytes()}) as f:
        port = admin_port(f)
        ctx = ssl.create_default_context()
        CA.configure_trust(ctx)
        with socket.create_connection(("127.0.0.1", f.port())) as raw, \
                ctx.wrap_socket(raw, server_hostname="localhost") as tls:
            tls.sendall(b"GET /nothing HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            assert tls.recv(100).startswith(b"HTTP/1.1 404")
        with socket.create_connection(("127.0.0.1", f.port())) as plain:  # plain HTTP to a TLS port
            plain.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            plain.settimeout(10)
            assert plain.recv(100) == b""  # the TLS layer closes it
        wait_until(lambda: value(scrape(port), "ferryman_tls_handshakes_total", listener="https",
                                 result="failed") == 1, 10)
        assert value(scrape(port), "ferryman_tls_handshakes_total", listener="https", result="ok") == 1



def _tls_round(f: Ferryman, ctx: ssl.SSLContext) -> None:
    """One handshake that succeeds and one that fails (plain HTTP to the TLS port)."""
    with socket.create_connection(("127.0.0.1", f.port())) as raw, \
            ctx.wrap_socket(raw, server_hostname="localhost") as tls:
        tls.sendall(b"GET /nothing HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        assert tls.recv(100).startswith(b"HTTP/1.1 404")
    with socket.create_connection(("127.0.0.1", f.port())) as plain:
        plain.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        plain.settimeout(10)
        assert plain.recv(100) == b""


@pytest.mark.parametrize("workers", [1, 2])
def test_a_reloaded_tls_listener_still_counts_its_handshakes_and_applies_the_new_handshake_timeout(workers):
    def toml(options: str) -> str:
        return config(["http://127.0.0.1:9/m"], "/app", listener="https",
                      listener_options='tls = { cert = "front.pem", key = "front.pem" }\n' + options,
                      top=f'workers = {workers}\n[admin]\nbind = "127.0.0.1:0"\n')
    with Ferryman(toml(""), files={"front.pem": CERT.private_key_and_cert_chain_pem.bytes()}) as f:
        port = admin_port(f)
        ctx = ssl.create_default_context()
        CA.configure_trust(ctx)
        _tls_round(f, ctx)
        f.config_path.write_text(toml('tls_handshake_timeout = "1s"'))
        f.signal(signal.SIGHUP)
        f.wait_for_error_log("reloaded ", timeout=30)
        _tls_round(f, ctx)
        wait_until(lambda: value(scrape(port), "ferryman_tls_handshakes_total", listener="https",
                                 result="failed") == 2, 10, message="the failed handshakes were not both counted")
        assert value(scrape(port), "ferryman_tls_handshakes_total", listener="https", result="ok") == 2
        with socket.create_connection(("127.0.0.1", f.port())) as silent:  # no ClientHello: closed after 1s
            silent.settimeout(5)  # the timeout before the reload was 10s
            assert silent.recv(100) == b""


MULTI = textwrap.dedent("""
    import os, sys
    sys.path.insert(0, sys.argv[1])
    from ferryman.server import metrics
    if sys.argv[2] == "worker":
        m = metrics.Metrics()
        for _ in range(int(sys.argv[3])):
            m.observe(None, None, 200, 0.003, -1.0)
        m.reload(True)
        m.flush()
    else:
        from prometheus_client.parser import text_string_to_metric_families
        text = metrics.render(metrics.metrics_registry_for_admin()).decode()
        for fam in text_string_to_metric_families(text):
            for s in fam.samples:
                if s.name in ("ferryman_requests_total", "ferryman_reloads_total",
                              "ferryman_request_duration_seconds_count"):
                    print(s.name, s.labels.get("code") or s.labels.get("result") or "-", s.value)
""")


def test_in_multiprocess_mode_the_admin_registry_sums_every_worker(tmp_path):
    env = dict(os.environ, PROMETHEUS_MULTIPROC_DIR=str(tmp_path))
    for n in (2, 3):  # two worker processes, each with its own files
        subprocess.run([sys.executable, "-c", MULTI, str(REPO), "worker", str(n)], env=env, check=True, timeout=60)
    out = subprocess.run([sys.executable, "-c", MULTI, str(REPO), "admin"], env=env, check=True, timeout=60,
                         capture_output=True, text=True).stdout.splitlines()
    assert "ferryman_requests_total 2xx 5.0" in out
    assert "ferryman_reloads_total ok 2.0" in out
