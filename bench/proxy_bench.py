#!/usr/bin/env python3
"""Benchmark ferryman against the Python floor, nginx, HAProxy and Apache mod_proxy_balancer as reverse proxies.

What it measures
    Requests per second, latency (p50, p99) and the proxy's CPU time per request, for each proxy
    in front of the same fast backend, with the same client:

    * backend: nginx serving /small (100-byte body) and /64k (65536-byte body) from files,
      1 worker, no access log, pinned to CPU 1;
    * proxies: ferryman, nginx, HAProxy and Apache (event MPM, mod_proxy_balancer), each with one
      worker process/thread, pinned to CPU 0, each proxying / to the backend over HTTP/1.1 with
      backend keep-alive, each writing an access log in combined format to a file (by default);
    * the floor (bench/floor.py): the least a Python proxy does per request (uvloop + httptools,
      request heads re-serialised, responses relayed by their framing, no access log), on CPU 0 too;
      ferryman's CPU µs per request is printed beside the floor's, nginx's and HAProxy's;
    * client: wrk, one thread pinned to CPU 1, keep-alive, at 50 and 256 connections;
    * CPU time per request: utime + stime of the proxy's process tree from /proc/PID/stat,
      before and after each wrk run, divided by the requests wrk completed;
    * the backend alone (no proxy) is run once per scenario as the baseline.

    Each scenario runs every proxy `--runs` times (in rotating order, so background load spreads
    evenly) after a short warm-up, and reports the median of each metric. Before each run it waits
    (up to `--settle` s) for both CPUs to go quiet, and it reports the CPU time that other
    processes took on each CPU during the run, so a number skewed by a shared machine is flagged. Every proxy is checked
    to return the backend's exact bodies before it is measured. Only 127.0.0.1 is ever contacted.

How to run it (as root on Debian/Ubuntu: missing nginx, haproxy, apache2, wrk are apt-get installed)
    python bench/proxy_bench.py                      # all peers, 3 runs x 10 s, access logs on
    python bench/proxy_bench.py --quick              # smoke check: 1 run x 3 s
    python bench/proxy_bench.py --peers ferryman,nginx --scenarios small:50 --access-log off

Output: a text table, the same as Markdown (for docs/benchmarks.md), and JSON with every run
in bench/results/<timestamp>.json. Exit status: 0 when every requested peer was measured,
1 when one was skipped (its reason is printed), 2 on bad usage.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_peers as peers  # noqa: E402
from bench_measure import VARY_SCRIPT, CpuSample, CpuUsage, run_wrk, wait_until_quiet  # noqa: E402
from bench_report import BASELINE, Result, Run, cpu_summary, markdown_table, rows, text_table  # noqa: E402

PROXY_CPU = 0  # the proxy under test runs alone on this CPU
CLIENT_CPU = 1  # wrk and the backend share this one
RESULTS_DIR = Path(__file__).resolve().parent / "results"
DEFAULT_SCENARIOS = "small:50,small:256,64k:50,64k:256"
NOISE_WARNING = 0.05  # warn when other work used more than 5 % of the proxy's CPU
CLIENT_BOUND = 0.03  # warn when the client CPU was less idle than this
QUIET = 0.10  # before each run, wait (up to --settle s) until both CPUs are less busy than this

# Binary -> Debian packages that provide it, in order of preference.
PACKAGES = {
    "taskset": ["util-linux"],
    "wrk": ["wrk"],
    "nginx": ["nginx-light", "nginx"],
    "haproxy": ["haproxy"],
    "apache2": ["apache2"],
}
PEER_BINARY = {"nginx": "nginx", "haproxy": "haproxy", "apache": "apache2"}


def say(message: str) -> None:
    print(message, flush=True)


# --------------------------------------------------------------------------- command line


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Benchmark ferryman against the Python floor, nginx, HAProxy and Apache as reverse proxies "
        "(wrk on 127.0.0.1; proxy pinned to CPU 0, wrk and the backend to CPU 1).",
        epilog="example: python bench/proxy_bench.py --quick --peers ferryman,nginx",
    )
    parser.add_argument("--peers", default=",".join(peers.PROXIES),
                        help="comma-separated proxies to measure (default: %(default)s)")
    parser.add_argument("--scenarios", default=DEFAULT_SCENARIOS,
                        help="comma-separated PATH:CONNECTIONS, PATH one of small, 64k "
                             "(default: %(default)s)")
    parser.add_argument("--duration", type=int, help="whole seconds per wrk run (default: 10; --quick: 3)")
    parser.add_argument("--runs", type=int, help="runs per peer and scenario; the median is reported "
                        "(default: 3; --quick: 1)")
    parser.add_argument("--warmup", type=int, help="whole seconds of unmeasured load before a peer's "
                        "runs in each scenario, 0 for none (default: 1)")
    parser.add_argument("--quick", action="store_true", help="smoke check: 1 run of 3 s per peer and scenario")
    parser.add_argument("--access-log", choices=("on", "off"), default="on",
                        help="access logs of every proxy, combined format to a file (default: on)")
    parser.add_argument("--settle", type=float, default=20.0,
                        help="before each run, wait up to this many seconds for both CPUs to be under "
                             f"{QUIET * 100:.0f}%% busy (shared machines); 0 to skip (default: %(default)s)")
    parser.add_argument("--no-baseline", action="store_true", help="skip wrk against the backend directly")
    parser.add_argument("--vary-heads", action="store_true",
                        help="every request's head differs from the one before (wrk script adding ?n=COUNTER): "
                        "no head is ever read twice, so no proxy answers one from a memo")
    parser.add_argument("--results-dir", type=Path, default=RESULTS_DIR,
                        help="where the JSON results go (default: bench/results)")
    parser.add_argument("--keep-workdir", action="store_true",
                        help="keep the temporary directory with configurations and logs")
    args = parser.parse_args(argv)
    defaults = {"runs": 1, "duration": 3} if args.quick else {"runs": 3, "duration": 10}
    for key, value in {**defaults, "warmup": 1}.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    args.peers = [p.strip() for p in args.peers.split(",") if p.strip()]
    unknown = [p for p in args.peers if p not in peers.PROXIES]
    if unknown or not args.peers:
        parser.error(f"--peers: unknown {', '.join(unknown) or '(none given)'}; choose from {', '.join(peers.PROXIES)}")
    try:
        args.scenarios = parse_scenarios(args.scenarios)
    except ValueError as exc:
        parser.error(f"--scenarios: {exc}")
    if args.runs < 1 or args.duration < 1 or args.warmup < 0:
        parser.error("--runs and --duration must be 1 or more, --warmup 0 or more")
    return args


def parse_scenarios(text: str) -> list[tuple[str, int]]:
    """'small:50,64k:256' -> [('/small', 50), ('/64k', 256)]."""
    out = []
    for item in filter(None, (s.strip() for s in text.split(","))):
        name, _, conns = item.partition(":")
        path = "/" + name.strip().lstrip("/")
        if path not in peers.BODIES or not conns.strip().isdigit() or int(conns) < 1:
            raise ValueError(f"{item!r} is not PATH:CONNECTIONS with PATH one of small, 64k")
        out.append((path, int(conns)))
    if not out:
        raise ValueError("no scenario given")
    return out


# --------------------------------------------------------------------------- machine set-up


def ensure_packages(binaries: list[str]) -> None:
    """apt-get install whatever provides a missing binary (waiting for a busy apt/dpkg lock)."""
    missing = [b for b in binaries if shutil.which(b) is None]
    if not missing:
        return
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        sys.exit(f"missing {', '.join(missing)}: install them (Debian: apt-get install "
                 f"{' '.join(PACKAGES[b][0] for b in missing)}) or run as root on Debian")
    for binary in missing:
        for package in PACKAGES[binary]:
            say(f"installing {package} (for {binary}) with apt-get; waits for another apt-get's lock ...")
            if apt_get("install", "-y", "--no-install-recommends", package) or (
                apt_get("update") and apt_get("install", "-y", "--no-install-recommends", package)
            ):
                break
        if shutil.which(binary) is None:
            sys.exit(f"could not install {binary} (tried {', '.join(PACKAGES[binary])})")


def apt_get(*args: str) -> bool:
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    cmd = ["apt-get", "-o", "DPkg::Lock::Timeout=900", "-q", *args]
    return subprocess.run(cmd, env=env, stdout=subprocess.DEVNULL).returncode == 0


def raise_open_file_limit() -> None:
    """Servers and wrk inherit this: 256 connections through a proxy need 512+ descriptors."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def check_cpus() -> None:
    if max(PROXY_CPU, CLIENT_CPU) >= (os.cpu_count() or 1):
        sys.exit(f"needs CPUs {PROXY_CPU} and {CLIENT_CPU}; this machine has {os.cpu_count()}")


def stop_on_sigterm() -> None:
    """Turn SIGTERM/SIGHUP into KeyboardInterrupt so the `finally` that stops servers runs."""

    def interrupt(signum: int, _frame: object) -> None:
        raise KeyboardInterrupt(signal.Signals(signum).name)

    signal.signal(signal.SIGTERM, interrupt)
    signal.signal(signal.SIGHUP, interrupt)


# --------------------------------------------------------------------------- servers


def start_backend(workdir: Path) -> peers.Server:
    backend = peers.make_backend(workdir, CLIENT_CPU)
    backend.start()
    backend.wait_ready()
    backend.verify()
    say(f"backend: nginx on {backend.url} (pid {backend.pid}, CPU {CLIENT_CPU})")
    return backend


def start_peer(name: str, workdir: Path, backend: peers.Server, access_log: bool,
               started: list[peers.Server]) -> peers.Server:
    """Start one proxy (into `started`, for cleanup), wait for it with real requests and check
    that it returns the backend's bodies."""
    if name == "ferryman":
        problem = peers.ferryman_problem()
        if problem:
            raise RuntimeError(f"`python -m ferryman run --help` fails: {problem}")
    server = peers.PROXIES[name](workdir, backend, PROXY_CPU, access_log)
    started.append(server)
    server.start()
    server.wait_ready()
    server.verify()
    return server


def start_peers(names: list[str], workdir: Path, backend: peers.Server, access_log: bool,
                started: list[peers.Server]) -> tuple[list[peers.Server], dict[str, str]]:
    """Start every requested proxy; return those ready and {name: why} for those that failed."""
    ready, skipped = [], {}
    for name in names:
        try:
            server = start_peer(name, workdir, backend, access_log, started)
        except (OSError, RuntimeError) as exc:  # one broken peer must not sink the others
            skipped[name] = str(exc).splitlines()[0]
            say(f"{name}: SKIPPED, {exc}")
            continue
        ready.append(server)
        say(f"{name}: ready on {server.url} (pid {server.pid}, CPU {PROXY_CPU}), bodies verified")
    return ready, skipped


def versions(names: list[str]) -> dict[str, str]:
    """One version line per program used."""
    commands = {
        "nginx": ["nginx", "-v"],
        "haproxy": ["haproxy", "-v"],
        "apache": ["apache2", "-v"],
        "wrk": ["wrk", "-v"],
        "ferryman": [*peers.ferryman_command(), "--version"],
    }
    out = {"python": platform.python_version()}
    for name in ("wrk", "nginx", *names):
        if name in out or name not in commands:
            continue
        try:
            done = subprocess.run(commands[name], capture_output=True, text=True, timeout=30,
                                  cwd=peers.REPO, env={**os.environ, **peers.ferryman_env()})
            text = (done.stdout + done.stderr).strip().splitlines()
            out[name] = text[0] if text else "?"
        except (OSError, subprocess.TimeoutExpired) as exc:
            out[name] = f"? ({exc})"
    return out


def machine() -> dict[str, str]:
    info = {"kernel": platform.release(), "cpus": str(os.cpu_count())}
    with contextlib.suppress(OSError):
        info["debian"] = Path("/etc/debian_version").read_text().strip()
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            info["cpu"] = line.split(":", 1)[1].strip()
            break
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal"):
            info["memory"] = f"{int(line.split()[1]) / 2**20:.1f} GiB"
            break
    return info


# --------------------------------------------------------------------------- measuring


def measure(target: peers.Server, backend: peers.Server, path: str, connections: int, seconds: int,
            script: str | None = None) -> Run:
    """One wrk run against `target`, with the CPU spent meanwhile by it, by the backend and wrk,
    and by everything else on each CPU."""
    pids = {"target": target.pid, "backend": backend.pid}
    before = CpuSample.take(pids, (PROXY_CPU, CLIENT_CPU))
    wrk = run_wrk(target.url + path, connections, seconds, CLIENT_CPU, script)
    usage = CpuUsage.between(before, CpuSample.take(pids, (PROXY_CPU, CLIENT_CPU)))
    spent = usage.procs["target"]
    ours_on_cpu0 = spent if target.cpu == PROXY_CPU else 0.0
    ours_on_cpu1 = usage.children + usage.procs["backend"]  # wrk (a reaped child) + the backend
    return Run(
        rps=wrk.rps,
        p50_ms=wrk.latency_ms["50"],
        p99_ms=wrk.latency_ms["99"],
        requests=wrk.requests,
        errors=wrk.errors,
        cpu_us_per_req=spent / max(wrk.requests, 1) * 1e6,
        proc_cpu_share=usage.share(spent),
        cpu0_other_share=max(0.0, usage.share(usage.cpus[PROXY_CPU].task - ours_on_cpu0)),
        cpu1_other_share=max(0.0, usage.share(usage.cpus[CLIENT_CPU].task - ours_on_cpu1)),
        cpu0_idle_share=min(1.0, usage.share(usage.cpus[PROXY_CPU].idle)),
        cpu1_idle_share=min(1.0, usage.share(usage.cpus[CLIENT_CPU].idle)),
    )


def settle(args: argparse.Namespace) -> None:
    """Before a measured run: let other people's work on this machine pass, up to --settle s."""
    if args.settle <= 0:
        return
    waited = wait_until_quiet((PROXY_CPU, CLIENT_CPU), QUIET, args.settle)
    if waited >= 1:
        say(f"  (waited {waited:.0f} s for the machine to go quiet)")


def warm_up(servers: list[peers.Server], path: str, connections: int, seconds: int,
            script: str | None = None) -> None:
    for server in servers:
        run_wrk(server.url + path, connections, seconds, CLIENT_CPU, script)


def run_scenario(path: str, connections: int, servers: list[peers.Server],
                 backend: peers.Server, args: argparse.Namespace) -> list[Result]:
    """The baseline once, then `args.runs` rounds over the proxies in rotating order."""
    results = []
    if not args.no_baseline:
        base = Result(path, connections, BASELINE)
        settle(args)
        base.runs.append(measure(backend, backend, path, connections, args.duration, args.wrk_script))
        report_run(base, base.runs[-1], "")
        results.append(base)
    if args.warmup > 0:
        warm_up(servers, path, connections, args.warmup, args.wrk_script)
    by_peer = {s.name: Result(path, connections, s.name) for s in servers}
    for i in range(args.runs):
        order = servers[i % len(servers):] + servers[: i % len(servers)] if servers else []
        for server in order:
            result = by_peer[server.name]
            settle(args)
            result.runs.append(measure(server, backend, path, connections, args.duration, args.wrk_script))
            report_run(result, result.runs[-1], f" run {i + 1}/{args.runs}")
    return results + list(by_peer.values())


def report_run(result: Result, run: Run, which: str) -> None:
    noise = "".join(
        f", CPU{cpu} other load {share:.0%}"
        for cpu, share in ((PROXY_CPU, run.cpu0_other_share), (CLIENT_CPU, run.cpu1_other_share))
        if share > NOISE_WARNING
    )
    errors = f", {run.errors} ERRORS" if run.errors else ""
    say(f"  {result.scenario:<13} {result.peer:<16}{which}: {run.rps:>9,.0f} req/s  p50 {run.p50_ms:6.2f} ms"
        f"  p99 {run.p99_ms:6.2f} ms  {run.cpu_us_per_req:6.1f} µs CPU/req  CPU {run.proc_cpu_share:4.0%}"
        f"  idle CPU{PROXY_CPU} {run.cpu0_idle_share:3.0%} CPU{CLIENT_CPU} {run.cpu1_idle_share:3.0%}{errors}{noise}")


def access_log_lines(servers: list[peers.Server]) -> dict[str, int]:
    """Lines each proxy wrote to its access log: proof that logging was really on."""
    out = {}
    for server in servers:
        if server.access_log is not None:
            try:
                with open(server.access_log, "rb") as f:
                    out[server.name] = sum(1 for _ in f)
            except OSError:
                out[server.name] = 0
    return out


# --------------------------------------------------------------------------- main


def estimated_seconds(args: argparse.Namespace, peer_count: int) -> float:
    per_scenario = peer_count * (args.runs * args.duration + args.warmup)
    if not args.no_baseline:
        per_scenario += args.duration
    return len(args.scenarios) * per_scenario


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    check_cpus()
    binaries = ["taskset", "wrk", "nginx"] + [PEER_BINARY[p] for p in args.peers if p in PEER_BINARY]
    ensure_packages(list(dict.fromkeys(binaries)))
    raise_open_file_limit()
    stop_on_sigterm()
    access_log = args.access_log == "on"
    say(f"access logs: {'ON (combined format, to files)' if access_log else 'OFF'}; "
        f"{args.runs} run(s) x {args.duration:g} s per peer and scenario, median reported; "
        f"proxy on CPU {PROXY_CPU}, wrk -t1 and backend on CPU {CLIENT_CPU}")

    workdir = Path(tempfile.mkdtemp(prefix="proxy-bench-"))
    workdir.chmod(0o755)  # the servers' unprivileged workers read files under it
    args.wrk_script = None
    if args.vary_heads:
        script = workdir / "vary.lua"
        script.write_text(VARY_SCRIPT)
        args.wrk_script = str(script)
        say("every request head differs from the one before (wrk adds ?n=COUNTER)")
    started: list[peers.Server] = []
    try:
        backend = start_backend(workdir)
        started.append(backend)
        servers, skipped = start_peers(args.peers, workdir, backend, access_log, started)
        minutes = estimated_seconds(args, len(servers)) / 60
        say(f"measuring {', '.join(s.name for s in servers) or 'no proxy'}: about {minutes:.0f} min")
        results = []
        for path, connections in args.scenarios:
            results += run_scenario(path, connections, servers, backend, args)
        logged = access_log_lines(servers)
        configs = {s.name: s.config.read_text() for s in started if s.config is not None}
    except KeyboardInterrupt:
        say("interrupted: stopping every server started")
        return 130
    except (OSError, RuntimeError, ValueError, subprocess.TimeoutExpired) as exc:
        say(f"FAILED: {exc}")
        return 1
    finally:
        for server in reversed(started):
            server.stop()
        if args.keep_workdir:
            say(f"configurations and logs kept in {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)

    publish(results, skipped, logged, configs, access_log, args)
    return 1 if skipped else 0


def warn_if(results: list[Result], condition, what: str) -> None:  # noqa: ANN001
    hits = [f"{r.scenario} {r.peer}" for r in results if r.runs and condition(r)]
    if hits:
        say(f"NOTE: {what}: {'; '.join(hits)}")


def publish(results: list[Result], skipped: dict[str, str], logged: dict[str, int],
            configs: dict[str, str], access_log: bool, args: argparse.Namespace) -> None:
    """Print the text and Markdown tables and write the JSON file."""
    table = rows(results, list(skipped))
    say("")
    say(f"access logs {'ON' if access_log else 'OFF'}; medians of {args.runs} run(s) x {args.duration:g} s; "
        f"'peer CPU' = proxy CPU time / wall time (100% = the whole of CPU {PROXY_CPU})")
    say(text_table(table))
    say("")
    for line in cpu_summary(results):
        say(line)
    warn_if(results, lambda r: max(r.median("cpu0_other_share"), r.median("cpu1_other_share")) > NOISE_WARNING,
            f"other processes used more than {NOISE_WARNING:.0%} of a CPU (numbers less reliable)")
    warn_if(results, lambda r: r.peer != BASELINE and r.median("cpu1_idle_share") < CLIENT_BOUND,
            f"CPU {CLIENT_CPU} (wrk + backend) was under {CLIENT_BOUND:.0%} idle: the client side may be "
            "the limit, so differences between proxies are understated")
    for name, why in skipped.items():
        say(f"NOTE: {name} pending, not measured: {why}")
    if access_log:
        say("access log lines written: " + ", ".join(f"{k} {v:,}" for k, v in logged.items()))
    say("\nMarkdown:\n")
    say(markdown_table(table))

    args.results_dir.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%dT%H%M%S")
    out = args.results_dir / f"{stamp}.json"
    document = {
        "timestamp": stamp,
        "command": " ".join(["python", "bench/proxy_bench.py", *sys.argv[1:]]),
        "machine": machine(),
        "versions": versions(args.peers),
        "access_log": access_log,
        "vary_heads": args.vary_heads,
        "access_log_lines": logged,
        "duration_s": args.duration,
        "runs": args.runs,
        "warmup_s": args.warmup,
        "pinning": {"proxy_cpu": PROXY_CPU, "wrk_and_backend_cpu": CLIENT_CPU},
        "settle_s": args.settle,
        "skipped": skipped,
        "results": [r.summary() for r in results],
        "cpu_us_per_req_beside_ferryman": cpu_summary(results),
        "configs": configs,
    }
    out.write_text(json.dumps(document, indent=2) + "\n")
    say(f"\nJSON: {out}")


if __name__ == "__main__":
    sys.exit(main())
