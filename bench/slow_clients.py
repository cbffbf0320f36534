"""Slow clients against ferryman: does a normal client still get fast answers?

    python bench/slow_clients.py [--seconds 20] [--connections 250] [--workers 2]

gunicorn (sync workers) serves tests/apps/echo_wsgi.py behind a ferryman listener with its default
limits. A normal client (from 127.0.0.2, so the per-address limit the attack runs into is not its
own) sends GET /echo and a small POST one after the other on a kept-alive connection, and its p99
latency is measured: first unloaded, then while Debian's `slowhttptest` runs each attack from
127.0.0.1 in turn:

- slowloris (-H): heads that never end, a header line every few seconds;
- slow body (-B): POSTs whose body comes a few bytes at a time;
- slow read (-X): requests whose answer is read a few bytes at a time through a tiny TCP window.

slowhttptest ends once ferryman has closed all its connections; it is started again at once, so the
attack lasts the whole measurement, and each run's end ("ended on second 11") shows when ferryman cut it.

The criterion: p99 under attack within 2x the unloaded p99 (with a 5 ms floor: on a loaded 2-core
machine a sub-millisecond p99 doubles on scheduling noise alone), and no failed normal request.
"""

from __future__ import annotations

import argparse
import http.client
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

FERRYMAN_CONF = """
workers = 1  # one process: its CPU is ferryman's (a master's children are not counted)

[[listener]]
name = "bench"
bind = "127.0.0.1:{port}"
access_log = {{ format = "off" }}

[pool.app]
members = [ {{ url = "http://127.0.0.1:{backend}" }} ]

[[route]]
path = "/"
pool = "app"
"""

ATTACKS = {
    "slowloris (-H)": ["-H", "-i", "3", "-x", "24"],
    "slow body (-B)": ["-B", "-i", "3", "-x", "4", "-s", "8192"],
    "slow read (-X)": ["-X", "-k", "4", "-n", "2", "-w", "1", "-y", "64", "-z", "4"],
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(port: int, path: str = "/echo", timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            c.request("GET", path)
            c.getresponse().read()
            c.close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise SystemExit(f"port {port} did not answer")
            threading.Event().wait(0.05)


class SourceConnection(http.client.HTTPConnection):
    def __init__(self, port: int) -> None:
        super().__init__("127.0.0.1", port, timeout=10, source_address=("127.0.0.2", 0))


def normal_client(port: int, seconds: float) -> tuple[list[float], int]:
    """Latencies (s) of a GET and a small POST in turn for `seconds`, and the count of failures."""
    lat: list[float] = []
    failures = 0
    conn = SourceConnection(port)
    end = time.monotonic() + seconds
    body = b"a=1&b=2" * 100
    i = 0
    while time.monotonic() < end:
        i += 1
        t0 = time.perf_counter()
        try:
            if i % 2:
                conn.request("GET", "/echo")
            else:
                conn.request("POST", "/echo", body=body, headers={"Content-Type": "application/x-www-form-urlencoded"})
            resp = conn.getresponse()
            resp.read()
            if resp.status != 200:
                failures += 1
            lat.append(time.perf_counter() - t0)
        except (OSError, http.client.HTTPException):
            failures += 1
            conn.close()
            conn = SourceConnection(port)
        threading.Event().wait(0.01)
    conn.close()
    return lat, failures


def quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))] if ordered else float("nan")


def p99(values: list[float]) -> float:
    return quantile(values, 0.99)


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def summary(output: str) -> str:
    """How one slowhttptest run ended: "ended on 11th second (No open connections left)"."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", output)
    ended = re.findall(r"Test ended on (\d+)\w* second", text)
    status = re.findall(r"Exit status: (.*)", text)
    return f"ended on second {ended[-1] if ended else '?'} ({status[-1].strip() if status else 'stopped'})"


class Attack(threading.Thread):
    """slowhttptest run again each time it ends (its connections were all closed) until stopped."""

    def __init__(self, cmd: list[str]) -> None:
        super().__init__(daemon=True)
        self.cmd, self.stopping, self.runs = cmd, threading.Event(), []
        self.proc: subprocess.Popen[str] | None = None

    def run(self) -> None:
        while not self.stopping.is_set():
            self.proc = subprocess.Popen(self.cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            self.runs.append(summary(self.proc.communicate()[0]))

    def stop(self) -> None:
        self.stopping.set()
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
        self.join(20)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=20, help="length of each attack (and of the unloaded run)")
    ap.add_argument("--connections", type=int, default=250, help="slowhttptest -c")
    ap.add_argument("--workers", type=int, default=2, help="gunicorn sync workers")
    ap.add_argument("--control", action="store_true",
                    help="also measure the normal client straight at gunicorn during each attack on ferryman: "
                         "the machine's own noise, without ferryman in the normal client's path")
    args = ap.parse_args()
    if not shutil.which("slowhttptest"):
        raise SystemExit("slowhttptest is not installed (apt-get install slowhttptest)")
    tmp = Path(tempfile.mkdtemp(prefix="ferryman-slow-"))
    gport, fport = free_port(), free_port()
    (tmp / "ferryman.toml").write_text(FERRYMAN_CONF.format(port=fport, backend=gport))
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    procs = [subprocess.Popen([sys.executable, "-m", "gunicorn", "-w", str(args.workers), "-b", f"127.0.0.1:{gport}",
                               "--log-level", "warning", "tests.apps.echo_wsgi:app"], cwd=REPO, env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)]
    try:
        wait_http(gport)
        procs.append(subprocess.Popen([sys.executable, "-m", "ferryman", "run", "-c", str(tmp / "ferryman.toml")],
                                      cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=open(tmp / "err.log", "w")))
        wait_http(fport)
        fpid = procs[-1].pid
        cpu = cpu_seconds(fpid)
        base, base_fail = normal_client(fport, args.seconds)
        floor = max(2 * p99(base), 0.005)
        if args.control:
            control = normal_client(gport, args.seconds)[0]
            print(f"control, straight to gunicorn, unloaded: p50 {quantile(control, 0.5) * 1000:.2f} ms, "
                  f"p99 {p99(control) * 1000:.2f} ms")
        print(f"unloaded: {len(base)} requests, p50 {quantile(base, 0.5) * 1000:.2f} ms, p99 {p99(base) * 1000:.2f} ms, "
              f"{base_fail} failed; ferryman CPU {cpu_seconds(fpid) - cpu:.1f} s")
        ok = base_fail == 0
        for name, flags in ATTACKS.items():
            target = f"http://127.0.0.1:{fport}/" + ("bytes?size=262144" if "-X" in flags else "echo")
            attack = Attack(["slowhttptest", *flags, "-c", str(args.connections), "-r", "200",
                             "-l", str(int(args.seconds) + 5), "-p", "3", "-u", target])
            cpu = cpu_seconds(fpid)
            attack.start()
            threading.Event().wait(3)  # let the attack open its connections before measuring
            lat, fail = normal_client(fport, args.seconds)
            control = normal_client(gport, args.seconds)[0] if args.control else []
            attack.stop()
            verdict = "ok" if p99(lat) <= floor and fail == 0 else "OVER"
            ok = ok and verdict == "ok"
            print(f"{name}: {len(lat)} requests, p50 {quantile(lat, 0.5) * 1000:.2f} ms, p99 {p99(lat) * 1000:.2f} ms "
                  f"({verdict}: limit {floor * 1000:.2f} ms), {fail} failed; ferryman CPU "
                  f"{cpu_seconds(fpid) - cpu:.1f} s; slowhttptest runs: {'; '.join(attack.runs)}")
            if control:
                print(f"  control, straight to gunicorn meanwhile: p50 {quantile(control, 0.5) * 1000:.2f} ms, "
                      f"p99 {p99(control) * 1000:.2f} ms")
        warnings = [line for line in (tmp / "err.log").read_text().splitlines() if "WARNING" in line]
        print(f"ferryman warnings: {len(warnings)}" + "".join(f"\n  {w}" for w in warnings[:8]))
        return 0 if ok else 1
    finally:
        for p in reversed(procs):
            p.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
