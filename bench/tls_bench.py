#!/usr/bin/env python3
"""TLS termination: ferryman beside nginx and HAProxy, same certificate, same backend, same run.

Two loads per proxy, each with wrk pinned to its own CPU and the proxy to another:

* handshakes: every request on a new connection (``Connection: close``), so each one costs a full
  TLS handshake (wrk resumes no sessions): new handshakes per second and CPU µs per handshake;
* keep-alive: requests over long-lived TLS connections: requests per second and CPU µs per request.

All three proxies use one P-256 ECDSA certificate (made with trustme), TLS 1.2 and 1.3, the X25519,
P-256 and P-384 groups, and the nginx backend of proxy_bench.py. CPU is the proxy's own process
tree, read from /proc before and after each load. Ratios are ferryman / peer (rate) and
peer / ferryman (CPU), so above 1 means ferryman is better.

    python3 bench/tls_bench.py --seconds 5 --connections 16
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_measure import run_wrk, tree_cpu_seconds  # noqa: E402
from bench_peers import (HOST, Server, _nginx_main, _nginx_server, _write, ferryman_command,  # noqa: E402
                         ferryman_env, free_port, make_backend)

PROXY_CPU, CLIENT_CPU, BACKEND_CPU = 0, 1, 1
CLOSE_SCRIPT = 'wrk.headers["Connection"] = "close"\n'


def write_certs(workdir: Path) -> tuple[Path, Path, Path]:
    """(chain, key, chain+key) of a 127.0.0.1 / localhost certificate."""
    import trustme

    ca = trustme.CA()
    leaf = ca.issue_cert("127.0.0.1", "localhost")
    chain, key, both = workdir / "cert.pem", workdir / "key.pem", workdir / "both.pem"
    chain.write_bytes(b"".join(blob.bytes() for blob in leaf.cert_chain_pems))
    key.write_bytes(leaf.private_key_pem.bytes())
    for path in (chain, key):
        path.chmod(0o644)  # a throwaway key for the benchmark: nginx's workers read it
    both.write_bytes(chain.read_bytes() + key.read_bytes())
    return chain, key, both


def make_nginx_tls(workdir: Path, backend: Server, cert: Path, key: Path) -> Server:
    prefix = workdir / "nginx"
    prefix.mkdir(exist_ok=True)
    port = free_port()
    conf = _nginx_main(prefix) + f"""\
http {{
    access_log off;
    client_body_temp_path {prefix}/client_body;
    proxy_temp_path {prefix}/proxy_temp;
    fastcgi_temp_path {prefix}/fastcgi; uwsgi_temp_path {prefix}/uwsgi; scgi_temp_path {prefix}/scgi;
    keepalive_requests 100000000;
    keepalive_timeout 300s;
    upstream backend {{ server {HOST}:{backend.port}; keepalive 64; }}
    server {{
        listen {HOST}:{port} ssl backlog=4096;
        ssl_certificate {cert};
        ssl_certificate_key {key};
        ssl_protocols TLSv1.2 TLSv1.3;
        ssl_ecdh_curve X25519:prime256v1:secp384r1;
        ssl_session_cache off;
        ssl_session_tickets off;
        location / {{
            proxy_pass http://backend;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $host;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Proto $scheme;
        }}
    }}
}}
"""
    return _nginx_server("nginx", workdir, conf, port, PROXY_CPU, None)


def make_haproxy_tls(workdir: Path, backend: Server, both: Path) -> Server:
    port = free_port()
    conf = f"""\
global
    nbthread 1
    maxconn 4096
    ssl-default-bind-options ssl-min-ver TLSv1.2 no-tls-tickets

defaults
    mode http
    timeout connect 5s
    timeout client 300s
    timeout server 300s
    timeout http-keep-alive 300s
    option http-keep-alive
    option forwardfor
    http-reuse always
    no log

frontend bench
    bind {HOST}:{port} ssl crt {both} curves X25519:P-256:P-384 alpn http/1.1
    default_backend app

backend app
    server app1 {HOST}:{backend.port}
"""
    path = _write(workdir / "haproxy.cfg", conf)
    return Server("haproxy", ["haproxy", "-db", "-f", str(path)], port, workdir, PROXY_CPU, None, config=path)


def make_ferryman_tls(workdir: Path, backend: Server, cert: Path, key: Path) -> Server:
    port = free_port()
    conf = f"""\
shutdown_timeout = "1s"
log = {{ level = "warning" }}

[[listener]]
name = "bench"
bind = "{HOST}:{port}"
access_log = {{ format = "off" }}
tls = {{ cert = "{cert}", key = "{key}" }}

[pool.backend]
members = [ {{ url = "http://{HOST}:{backend.port}" }} ]

[[route]]
path = "/"
pool = "backend"
"""
    path = _write(workdir / "ferryman.toml", conf)
    return Server("ferryman", [*ferryman_command(), "run", "-c", str(path)], port, workdir, PROXY_CPU, None,
                  config=path, env=ferryman_env())


def wait_tls_ready(server: Server, timeout: float = 30.0) -> None:
    import socket
    import ssl

    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.proc is not None and server.proc.poll() is not None:
            raise RuntimeError(f"{server.name} exited early\n{server.log_tail()}")
        try:
            with socket.create_connection((HOST, server.port), timeout=1) as raw, ctx.wrap_socket(raw) as s:
                s.sendall(b"GET /small HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n")
                if s.recv(12).startswith(b"HTTP/1.1 200"):
                    return
        except OSError:
            pass
        time.sleep(0.05)
    raise RuntimeError(f"{server.name} not ready over TLS\n{server.log_tail()}")


def measure(server: Server, connections: int, seconds: int, script: str | None) -> dict[str, float]:
    before = tree_cpu_seconds(server.pid)
    wrk = run_wrk(f"https://{HOST}:{server.port}/small", connections, seconds, CLIENT_CPU, script)
    spent = tree_cpu_seconds(server.pid) - before
    return {"rate": wrk.rps, "cpu_us": spent / max(wrk.requests, 1) * 1e6, "errors": wrk.errors,
            "p99_ms": wrk.latency_ms.get("99", 0.0)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=int, default=5)
    ap.add_argument("--connections", type=int, default=16)
    ap.add_argument("--only", nargs="*", default=["ferryman", "nginx", "haproxy"])
    args = ap.parse_args()
    for tool in ("wrk", "taskset", *(t for t in ("nginx", "haproxy") if t in args.only)):
        if shutil.which(tool) is None and not Path("/usr/sbin", tool).exists():
            sys.exit(f"tls_bench needs {tool}")
    results: dict[str, dict[str, dict[str, float]]] = {}
    with tempfile.TemporaryDirectory(prefix="tls-bench-") as tmp:
        workdir = Path(tmp)
        workdir.chmod(0o755)  # the servers' unprivileged workers read files under it
        cert, key, both = write_certs(workdir)
        backend = make_backend(workdir, BACKEND_CPU)
        backend.start()
        try:
            backend.wait_ready()
            makers = {"ferryman": lambda: make_ferryman_tls(workdir, backend, cert, key),
                      "nginx": lambda: make_nginx_tls(workdir, backend, cert, key),
                      "haproxy": lambda: make_haproxy_tls(workdir, backend, both)}
            for name in args.only:
                server = makers[name]()
                server.start()
                try:
                    wait_tls_ready(server)
                    script = workdir / "close.lua"
                    script.write_text(CLOSE_SCRIPT)
                    results[name] = {
                        "handshakes": measure(server, args.connections, args.seconds, str(script)),
                        "keepalive": measure(server, args.connections, args.seconds, None),
                    }
                finally:
                    server.stop()
        finally:
            backend.stop()
    print(f"TLS termination, wrk -c{args.connections} -d{args.seconds}s, proxy on CPU {PROXY_CPU}, "
          f"wrk and backend on CPU {CLIENT_CPU}\n")
    print("| proxy | new handshakes/s | CPU µs/handshake | keep-alive req/s | CPU µs/req | errors |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, r in results.items():
        h, k = r["handshakes"], r["keepalive"]
        print(f"| {name} | {h['rate']:.0f} | {h['cpu_us']:.0f} | {k['rate']:.0f} | {k['cpu_us']:.1f} | "
              f"{int(h['errors'] + k['errors'])} |")
    if "ferryman" in results:
        f = results["ferryman"]
        for name, r in results.items():
            if name == "ferryman":
                continue
            print(f"\nferryman vs {name}: handshakes/s x{f['handshakes']['rate'] / r['handshakes']['rate']:.2f}, "
                  f"CPU/handshake x{r['handshakes']['cpu_us'] / f['handshakes']['cpu_us']:.2f}; keep-alive req/s "
                  f"x{f['keepalive']['rate'] / r['keepalive']['rate']:.2f}, CPU/req "
                  f"x{r['keepalive']['cpu_us'] / f['keepalive']['cpu_us']:.2f} (above 1: ferryman better)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
