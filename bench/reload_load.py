#!/usr/bin/env python3
"""Reloads under load: wrk through ferryman while its configuration is reloaded again and again.

What it does
    Two gunicorn members (tests/apps/echo_wsgi.py) behind one ferryman pool; wrk keeps `--connections`
    keep-alive connections busy on /webapps/echo for `--duration` seconds while `ferryman reload -c`
    is run `--reloads` times, spread over the run: each reload changes the pool's weights, every other
    one adds a route, and one in ten is a broken file (a route naming a pool that does not exist),
    which must be refused while the previous configuration keeps serving. After the run, the last
    route added must answer.

    It prints the requests wrk completed, its socket errors (connect, read, write, timeout), the
    non-2xx answers, req/s, and the reloads done and refused. Exit status 0 when there was no error
    of any kind, 1 otherwise, 2 when wrk or gunicorn is missing.

How to run it
    python bench/reload_load.py                         # 30 s, 60 reloads, 16 connections
    python bench/reload_load.py --duration 10 --reloads 20 --connections 8
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.support import Ferryman, Gunicorn  # noqa: E402


def config(a: str, b: str, i: int) -> str:
    routes = "".join(f'\n[[route]]\npath = "/extra{k}"\npool = "app"\n' for k in range(1, i + 1, 2))
    broken = '\n[[route]]\npath = "/broken"\npool = "missing"\n' if i % 10 == 5 else ""
    return (f'[[listener]]\nname = "http"\nbind = "127.0.0.1:0"\nmax_connections = 1024\n\n'
            f'[pool.app]\nmembers = [{{ url = "{a}", weight = {1 + i % 3} }}, {{ url = "{b}", weight = {1 + (i + 1) % 3} }}]\n\n'
            f'[[route]]\npath = "/webapps"\npool = "app"\n{routes}{broken}')


def parse_wrk(out: str) -> dict[str, float]:
    got: dict[str, float] = {"requests": 0, "connect": 0, "read": 0, "write": 0, "timeout": 0, "non2xx": 0, "rps": 0}
    m = re.search(r"(\d+) requests in", out)
    if m:
        got["requests"] = int(m.group(1))
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    if m:
        got.update(connect=int(m.group(1)), read=int(m.group(2)), write=int(m.group(3)), timeout=int(m.group(4)))
    m = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if m:
        got["non2xx"] = int(m.group(1))
    m = re.search(r"Requests/sec:\s+([\d.]+)", out)
    if m:
        got["rps"] = float(m.group(1))
    return got


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--duration", type=float, default=30.0, help="seconds of load (default 30)")
    ap.add_argument("--reloads", type=int, default=60, help="reloads during the run (default 60)")
    ap.add_argument("--connections", type=int, default=16, help="wrk connections (default 16)")
    args = ap.parse_args()
    wrk = shutil.which("wrk")
    if wrk is None:
        print("wrk is missing (apt-get install wrk)", file=sys.stderr)
        return 2
    with Gunicorn(threads=8) as ga, Gunicorn(threads=8) as gb:
        a, b = ga.url("/webapps"), gb.url("/webapps")
        with Ferryman(config(a, b, 0)) as f:
            url = f"http://127.0.0.1:{f.port()}/webapps/echo"
            wrk_proc = subprocess.Popen([wrk, "-t2", f"-c{args.connections}", f"-d{args.duration:g}s", "--latency", url],
                                        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            started = time.monotonic()
            done = refused = unexpected = 0
            last_route = None
            for i in range(1, args.reloads + 1):
                due = started + 1 + (args.duration - 3) * i / args.reloads
                time.sleep(max(0.0, due - time.monotonic()))  # pacing: reloads spread over the run
                f.config_path.write_text(config(a, b, i))
                r = subprocess.run([sys.executable, "-m", "ferryman", "reload", "-c", str(f.config_path)],
                                   env=f.env_for_cli(), capture_output=True, text=True, timeout=60)
                broken = i % 10 == 5
                if r.returncode == 0 and not broken:
                    done += 1
                    if i % 2:
                        last_route = f"/extra{i}"
                elif r.returncode == 2 and broken:
                    refused += 1
                else:
                    unexpected += 1
                    print(f"reload {i}: exit {r.returncode}: {r.stdout}{r.stderr}", file=sys.stderr)
            out, _ = wrk_proc.communicate(timeout=args.duration + 60)
            answered = f.request("GET", f"{last_route}/echo").status if last_route else 200
    got = parse_wrk(out)
    errors = got["connect"] + got["read"] + got["write"] + got["timeout"]
    print(out)
    print(f"reloads done {done}, refused as expected {refused}, unexpected outcomes {unexpected}")
    print(f"requests {got['requests']:.0f}, failed (non-2xx) {got['non2xx']:.0f}, connection errors {errors:.0f} "
          f"(connect {got['connect']:.0f}, read {got['read']:.0f}, write {got['write']:.0f}, "
          f"timeout {got['timeout']:.0f}), {got['rps']:.0f} req/s; last added route answered {answered}")
    ok = errors == 0 and got["non2xx"] == 0 and unexpected == 0 and got["requests"] > 0 and answered == 200
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
