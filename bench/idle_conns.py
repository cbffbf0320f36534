"""10,000 idle keep-alive connections held open: ferryman's memory, and a request served meanwhile.

    python bench/idle_conns.py [--connections 10000]

ferryman serves a small file from a static route (no backend needed: what is measured is the cost of
a client connection). The bench raises its own open-file limit, opens the connections from 50 loopback
addresses (as many clients would; one address would run into max_connections_per_client), sends one
request on each and reads the answer, so every connection is an idle kept-alive one. ferryman's
resident memory (VmRSS) is read before and while they are held, and a normal request is made on a new
connection while they are. The criterion: RSS under 300 MiB with 10,000 held, the request answered.
"""

from __future__ import annotations

import argparse
import http.client
import resource
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
workers = 1  # one process holds them all: its RSS is the figure

[[listener]]
name = "bench"
bind = "127.0.0.1:{port}"
access_log = {{ format = "off" }}
keepalive_timeout = "10m"
max_connections = {max_connections}

[pool.unused]
members = [ {{ url = "http://127.0.0.1:9" }} ]

[[route]]
path = "/"
static = "{www}"
"""

REQUEST = b"GET /small.txt HTTP/1.1\r\nHost: bench\r\n\r\n"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def get(port: int) -> tuple[int, float]:
    t0 = time.perf_counter()
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    c.request("GET", "/small.txt")
    resp = c.getresponse()
    resp.read()
    c.close()
    return resp.status, time.perf_counter() - t0


def wait_http(port: int, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            get(port)
            return
        except OSError:
            if time.monotonic() > deadline:
                raise SystemExit(f"port {port} did not answer")
            threading.Event().wait(0.05)


def open_idle(port: int, n: int) -> list[socket.socket]:
    """`n` connections, each with one request answered: idle kept-alive connections."""
    socks: list[socket.socket] = []
    for i in range(n):
        s = socket.create_connection(("127.0.0.1", port), timeout=10,
                                     source_address=(f"127.0.1.{1 + i % 50}", 0))
        s.sendall(REQUEST)
        got = b""
        while b"\r\n\r\n" not in got or not got.endswith(b"small\n"):
            chunk = s.recv(4096)
            if not chunk:
                raise SystemExit(f"connection {i} closed: {got[:200]!r}")
            got += chunk
        if not got.startswith(b"HTTP/1.1 200"):
            raise SystemExit(f"connection {i}: {got[:200]!r}")
        socks.append(s)
    return socks


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--connections", type=int, default=10000)
    args = ap.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = args.connections + 256
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(want, hard) if hard != resource.RLIM_INFINITY else want, hard))
    tmp = Path(tempfile.mkdtemp(prefix="ferryman-idle-"))
    (tmp / "www").mkdir()
    (tmp / "www" / "small.txt").write_text("small\n")
    port = free_port()
    (tmp / "ferryman.toml").write_text(FERRYMAN_CONF.format(port=port, www=tmp / "www",
                                                            max_connections=args.connections + 1000))
    proc = subprocess.Popen([sys.executable, "-m", "ferryman", "run", "-c", str(tmp / "ferryman.toml")], cwd=REPO,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    socks: list[socket.socket] = []
    try:
        wait_http(port)
        for _ in range(50):  # warm up: first requests fill caches, not per-connection memory
            get(port)
        base = rss(proc.pid)
        t0 = time.monotonic()
        socks = open_idle(port, args.connections)
        opened = time.monotonic() - t0
        held = rss(proc.pid)
        status, latency = get(port)
        still = sum(1 for s in socks[:: max(1, len(socks) // 200)] if _alive(s))
        per = (held - base) / max(1, len(socks))
        verdict = "ok" if held < 300 * 2**20 and status == 200 else "OVER"
        print(f"{len(socks)} idle keep-alive connections opened in {opened:.1f} s")
        print(f"ferryman RSS: {base / 2**20:.1f} MiB before, {held / 2**20:.1f} MiB while held ({verdict}: "
              f"limit 300 MiB); {per / 1024:.1f} KiB per idle connection")
        print(f"a new request while they are held: {status} in {latency * 1000:.1f} ms; "
              f"sampled held connections still open: {still}/{len(socks[:: max(1, len(socks) // 200)])}")
        return 0 if verdict == "ok" else 1
    finally:
        for s in socks:
            s.close()
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
        shutil.rmtree(tmp, ignore_errors=True)


def _alive(s: socket.socket) -> bool:
    """Still open and silent: ferryman has neither written to it nor closed it."""
    s.setblocking(False)
    try:
        s.recv(1, socket.MSG_PEEK)  # data or EOF: ferryman wrote to it or closed it
        return False
    except BlockingIOError:
        return True
    except OSError:
        return False
    finally:
        s.setblocking(True)


if __name__ == "__main__":
    raise SystemExit(main())
