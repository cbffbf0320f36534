"""Throughput with one worker process and with two, through a two-member pool.

    python bench/workers_bench.py [--runs 3] [--duration 10] [--workers 1,2] [--connections 50]

Two nginx backends serve /small (100 bytes). ferryman (access log on, combined format) balances them
with byrequests, once per worker count; with more than one, a master process and that many workers.
wrk (two threads, 50 connections) drives each; the median of `--runs` runs is reported: req/s, p99,
ferryman's CPU time per request (master and workers, from /proc), and the CPU time per request of
everything the benchmark ran (ferryman, backends and wrk), which shows what the machine spent in all.

Nothing is pinned: ferryman with two workers needs both cores, and on a two-core machine wrk and the
backends run on the same two, so the second worker competes with the load generator instead of using
a free core. Read the req/s as a floor; the CPU time per request is what stays comparable.
"""

from __future__ import annotations

import argparse
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_peers as peers  # noqa: E402
from bench_measure import parse_wrk, tree_cpu_seconds  # noqa: E402

HOST = peers.HOST
ALL_CPUS = "0-1023"  # taskset accepts a range wider than the machine: every CPU there is


def ferryman(workdir: Path, backends: list[peers.Server], workers: int) -> peers.Server:
    port = peers.free_port()
    name = f"ferryman-w{workers}"
    members = ", ".join(f'{{ url = "http://{HOST}:{b.port}", route = "m{i + 1}" }}' for i, b in enumerate(backends))
    conf = f"""\
workers = {workers}
shutdown_timeout = "1s"
log = {{ level = "warning" }}

[[listener]]
name = "bench"
bind = "{HOST}:{port}"
access_log = {{ format = "combined", path = "{workdir / (name + '-access.log')}" }}

[pool.backend]
members = [ {members} ]

[[route]]
path = "/"
pool = "backend"
"""
    path = peers._write(workdir / f"{name}.toml", conf)
    return peers.Server(name, [*peers.ferryman_command(), "run", "-c", str(path)], port, workdir,
                        ALL_CPUS,  # type: ignore[arg-type]  # taskset's CPU list, not one CPU
                        workdir / f"{name}-access.log", config=path, env=peers.ferryman_env())


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run(server: peers.Server, backends: list[peers.Server], seconds: int, connections: int
        ) -> tuple[float, float, float, float]:
    """(req/s, p99 ms, ferryman CPU us/request, everything's CPU us/request) of one wrk run."""
    cmd = ["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", "--timeout", "5s", "--latency", f"{server.url}/small"]
    mine = tree_cpu_seconds(server.pid)
    others = sum(tree_cpu_seconds(b.pid) for b in backends)
    wrk = _children_cpu()
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    mine = tree_cpu_seconds(server.pid) - mine
    others = sum(tree_cpu_seconds(b.pid) for b in backends) - others
    wrk = _children_cpu() - wrk
    result = parse_wrk(out)
    if result.errors:
        raise RuntimeError(f"{server.name}: {result.errors} errors")
    n = max(result.requests, 1)
    return result.rps, result.latency_ms["99"], mine / n * 1e6, (mine + others + wrk) / n * 1e6


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--duration", type=int, default=10)
    ap.add_argument("--workers", default="1,2", help="worker counts to measure, comma-separated")
    ap.add_argument("--connections", type=int, default=50)
    args = ap.parse_args()
    if shutil.which("wrk") is None or shutil.which("nginx") is None:
        print("workers_bench needs wrk and nginx", file=sys.stderr)
        return 2
    workdir = Path(tempfile.mkdtemp(prefix="ferryman-workers-bench-"))
    workdir.chmod(0o755)
    started: list[peers.Server] = []
    try:
        backends = []
        for i in range(2):
            sub = workdir / f"b{i}"
            sub.mkdir()
            sub.chmod(0o755)
            b = peers.make_backend(sub, 0)
            b.cpu = ALL_CPUS  # type: ignore[assignment]
            b.start()
            started.append(b)
            b.wait_ready()
            backends.append(b)
        rows = []
        for workers in (int(w) for w in args.workers.split(",")):
            server = ferryman(workdir, backends, workers)
            server.start()
            started.append(server)
            server.wait_ready()
            run(server, backends, 1, args.connections)  # warm-up
            results = [run(server, backends, args.duration, args.connections) for _ in range(args.runs)]
            rps, p99, cpu, total = (statistics.median(r[k] for r in results) for k in range(4))
            rows.append((workers, rps, p99, cpu, total))
            print(f"workers={workers}  {rps:9.0f} req/s  p99 {p99:6.2f} ms  ferryman {cpu:6.1f} us/req  "
                  f"everything {total:6.1f} us/req", flush=True)
            server.stop()
        print("\n| workers | req/s | p99 (ms) | ferryman CPU µs/req | all processes CPU µs/req |")
        print("|---:|---:|---:|---:|---:|")
        for workers, rps, p99, cpu, total in rows:
            print(f"| {workers} | {rps:.0f} | {p99:.2f} | {cpu:.1f} | {total:.1f} |")
        return 0
    finally:
        for s in reversed(started):
            s.stop()
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
