"""Two-member pools: what balancing and stickiness cost, beside nginx and HAProxy doing the same.

    python bench/pool_bench.py [--runs 3] [--duration 10]

Two nginx backends (CPU 1) serve /small. Each proxy (CPU 0, access log on, combined format) runs
as a one-member pool, a two-member round-robin pool, and a two-member sticky pool whose requests
carry a session cookie naming the second member: ferryman `sticky = "sessionid"` with
`sessionid=bench.m2`, HAProxy `cookie SRV` with `SRV=m2`, nginx `hash $cookie_sessionid consistent`
(open-source nginx has no cookie stickiness). wrk (-t1 -c50, CPU 1) drives each; the median of
`--runs` runs is reported with p99 and CPU time per request, and each pool's throughput relative
to the same proxy's one-member pool (criterion: balancing costs under 5% of throughput).
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_peers as peers  # noqa: E402
from bench_measure import parse_wrk, tree_cpu_seconds  # noqa: E402

HOST = peers.HOST
COOKIES = {"ferryman": "sessionid=bench.m2", "haproxy": "SRV=m2", "nginx": "sessionid=bench.m2"}


def ferryman(workdir: Path, backends: list[peers.Server], mode: str) -> peers.Server:
    port = peers.free_port()
    name = f"ferryman-{mode}"
    members = ", ".join(f'{{ url = "http://{HOST}:{b.port}", route = "m{i + 1}" }}'
                        for i, b in enumerate(backends if mode != "one" else backends[:1]))
    sticky = 'sticky = "sessionid"\n' if mode == "sticky" else ""
    conf = f"""\
workers = 1
shutdown_timeout = "1s"
log = {{ level = "warning" }}

[[listener]]
name = "bench"
bind = "{HOST}:{port}"
access_log = {{ format = "combined", path = "{workdir / (name + '-access.log')}" }}

[pool.backend]
{sticky}members = [ {members} ]

[[route]]
path = "/"
pool = "backend"
"""
    path = peers._write(workdir / f"{name}.toml", conf)
    return peers.Server(name, [*peers.ferryman_command(), "run", "-c", str(path)], port, workdir, 0,
                        workdir / f"{name}-access.log", config=path, env=peers.ferryman_env())


def nginx(workdir: Path, backends: list[peers.Server], mode: str) -> peers.Server:
    name = f"nginx-{mode}"
    prefix = workdir / name
    prefix.mkdir()
    port = peers.free_port()
    servers = "\n".join(f"        server {HOST}:{b.port};" for b in (backends if mode != "one" else backends[:1]))
    hashing = "        hash $cookie_sessionid consistent;\n" if mode == "sticky" else ""
    conf = peers._nginx_main(prefix) + f"""\
http {{
    access_log {workdir / (name + '-access.log')} combined;
    client_body_temp_path {prefix}/cb; proxy_temp_path {prefix}/pt;
    fastcgi_temp_path {prefix}/f; uwsgi_temp_path {prefix}/u; scgi_temp_path {prefix}/s;
    keepalive_requests 100000000;
    upstream backend {{
{hashing}{servers}
        keepalive {peers.NGINX_UPSTREAM_KEEPALIVE};
        keepalive_requests 100000000;
    }}
    server {{
        listen {HOST}:{port} backlog=4096;
        location / {{
            proxy_pass http://backend;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
        }}
    }}
}}
"""
    return peers._nginx_server(name, workdir, conf, port, 0, workdir / f"{name}-access.log")


def haproxy(workdir: Path, backends: list[peers.Server], mode: str) -> peers.Server:
    name = f"haproxy-{mode}"
    port = peers.free_port()
    cookie = "    cookie SRV insert indirect nocache\n" if mode == "sticky" else ""
    servers = "\n".join(f"    server m{i + 1} {HOST}:{b.port}" + (f" cookie m{i + 1}" if mode == "sticky" else "")
                        for i, b in enumerate(backends if mode != "one" else backends[:1]))
    conf = f"""\
global
    nbthread 1
    maxconn 4096
defaults
    mode http
    timeout connect 5s
    timeout client 300s
    timeout server 300s
    option http-keep-alive
    option forwardfor
    http-reuse always
    log stdout format raw local0 info
    option httplog
frontend bench
    bind {HOST}:{port}
    default_backend app
backend app
    balance roundrobin
{cookie}{servers}
"""
    path = peers._write(workdir / f"{name}.cfg", conf)
    return peers.Server(name, ["haproxy", "-db", "-f", str(path)], port, workdir, 0,
                        workdir / f"{name}-access.log", config=path, stdout_is_access_log=True)


def run(server: peers.Server, cookie: str | None, seconds: int) -> tuple[float, float, float]:
    """(req/s, p99 ms, CPU us/request) of one wrk run."""
    cmd = ["taskset", "-c", "1", "wrk", "-t1", "-c50", f"-d{seconds}s", "--timeout", "5s", "--latency"]
    if cookie:
        cmd += ["-H", f"Cookie: {cookie}"]
    before = tree_cpu_seconds(server.pid)
    out = subprocess.run(cmd + [f"{server.url}/small"], capture_output=True, text=True, check=True).stdout
    cpu = tree_cpu_seconds(server.pid) - before
    result = parse_wrk(out)
    if result.errors:
        raise RuntimeError(f"{server.name}: {result.errors} errors")
    return result.rps, result.latency_ms["99"], cpu / max(result.requests, 1) * 1e6


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--duration", type=int, default=10)
    ap.add_argument("--peers", default="ferryman,nginx,haproxy")
    args = ap.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="ferryman-pool-bench-"))
    workdir.chmod(0o755)
    started: list[peers.Server] = []
    try:
        backends = []
        for i in range(2):
            sub = workdir / f"b{i}"
            sub.mkdir()
            sub.chmod(0o755)
            b = peers.make_backend(sub, 1)
            b.start()
            started.append(b)
            b.wait_ready()
            backends.append(b)
        makers = {"ferryman": ferryman, "nginx": nginx, "haproxy": haproxy}
        rows = []
        for peer in args.peers.split(","):
            base = None
            for mode in ("one", "two", "sticky"):
                server = makers[peer](workdir, backends, mode)
                server.start()
                started.append(server)
                server.wait_ready()
                cookie = COOKIES[peer] if mode == "sticky" else None
                run(server, cookie, 1)  # warm-up
                results = [run(server, cookie, args.duration) for _ in range(args.runs)]
                rps = statistics.median(r[0] for r in results)
                p99 = statistics.median(r[1] for r in results)
                cpu = statistics.median(r[2] for r in results)
                base = rps if mode == "one" else base
                rows.append((peer, mode, rps, p99, cpu, rps / base if base else 1.0))
                print(f"{peer:9} {mode:7} {rps:9.0f} req/s  p99 {p99:6.2f} ms  {cpu:6.1f} us/req  "
                      f"{rows[-1][5]:.3f} x one member", flush=True)
                server.stop()
        print("\n| proxy | pool | req/s | p99 (ms) | CPU µs/req | vs one member |")
        print("|---|---|---:|---:|---:|---:|")
        for peer, mode, rps, p99, cpu, rel in rows:
            print(f"| {peer} | {mode} | {rps:.0f} | {p99:.2f} | {cpu:.1f} | {rel:.3f} |")
        return 0
    finally:
        for s in reversed(started):
            s.stop()
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
