"""Memory while streaming: 1 GiB up and 1 GiB down through ferryman, RSS sampled all along.

    python bench/stream_memory.py [--size 1GiB]

Starts nginx (Debian package, installed if missing) as the backend: it serves a sparse file for the
download and discards the body of an upload. ferryman sits in front; curl moves the bytes. ferryman's
resident memory (VmRSS) is sampled every 20 ms; the report gives the growth over the idle baseline.
The criterion: growth under 50 MiB for a 1 GiB body either way.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from ferryman.core.units import format_size, parse_size  # noqa: E402

NGINX_CONF = """
worker_processes 1;
daemon off;
error_log {dir}/nginx-error.log;
pid {dir}/nginx.pid;
events {{ worker_connections 64; }}
http {{
  access_log off;
  client_max_body_size 0;
  client_body_temp_path {dir}/body;
  server {{
    listen 127.0.0.1:{port};
    root {dir}/www;
    location = /sink {{ client_body_buffer_size 1m; proxy_pass http://127.0.0.1:{port}/discard; }}
    location = /discard {{ return 204; }}
  }}
}}
"""

FERRYMAN_CONF = """
workers = 1
[[listener]]
name = "bench"
bind = "127.0.0.1:{port}"
access_log = {{ format = "off" }}

[pool.backend]
members = [ {{ url = "http://127.0.0.1:{backend}" }} ]

[[route]]
path = "/"
pool = "backend"
"""


def free_port() -> int:
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def wait_http(port: int, timeout: float = 15) -> None:
    import http.client
    deadline = time.monotonic() + timeout
    while True:
        try:
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            c.request("GET", "/")
            c.getresponse().read()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise SystemExit(f"port {port} did not answer")
            time.sleep(0.05)


class Sampler(threading.Thread):
    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid, self.peak, self.stop = pid, 0, threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            self.peak = max(self.peak, rss(self.pid))
            self.stop.wait(0.02)


def measure(pid: int, cmd: list[str], size: int) -> tuple[int, float]:
    sampler = Sampler(pid)
    sampler.start()
    t0 = time.monotonic()
    out = subprocess.run(cmd + ["-w", "%{size_download} %{size_upload}"], check=True,
                         stdout=subprocess.PIPE, text=True).stdout
    elapsed = time.monotonic() - t0
    sampler.stop.set()
    sampler.join()
    if size not in [int(float(x)) for x in out.split()]:
        raise SystemExit(f"{cmd[-1]}: moved {out} bytes, expected {size}")
    return sampler.peak, elapsed


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", default="1GiB")
    args = ap.parse_args()
    size = parse_size(args.size)
    if not shutil.which("nginx") or not shutil.which("curl"):
        subprocess.run(["apt-get", "install", "-y", "-q", "nginx-light", "curl"], check=True)
    tmp = Path(tempfile.mkdtemp(prefix="ferryman-mem-"))
    tmp.chmod(0o755)  # nginx workers run as an unprivileged user
    (tmp / "www").mkdir()
    (tmp / "body").mkdir()
    with open(tmp / "www" / "big", "wb") as f:
        f.truncate(size)
    upload = tmp / "upload.bin"
    with open(upload, "wb") as f:
        f.truncate(size)
    bport, fport = free_port(), free_port()
    (tmp / "nginx.conf").write_text(NGINX_CONF.format(dir=tmp, port=bport))
    (tmp / "ferryman.toml").write_text(FERRYMAN_CONF.format(port=fport, backend=bport))
    procs = [subprocess.Popen(["nginx", "-c", str(tmp / "nginx.conf"), "-p", str(tmp)])]
    try:
        wait_http(bport)
        procs.append(subprocess.Popen([sys.executable, "-m", "ferryman", "run", "-c", str(tmp / "ferryman.toml")],
                                      stderr=subprocess.DEVNULL))
        wait_http(fport)
        pid = procs[-1].pid
        base = rss(pid)
        url = f"http://127.0.0.1:{fport}"
        down, t_down = measure(pid, ["curl", "-sf", "-o", "/dev/null", f"{url}/big"], size)
        up, t_up = measure(pid, ["curl", "-sf", "-o", "/dev/null", "-H", "Content-Type: application/octet-stream",
                                 "-T", str(upload), "-X", "POST", f"{url}/sink"], size)
        print(f"ferryman RSS at rest: {format_size(base)}")
        for name, peak, secs in (("download", down, t_down), ("upload", up, t_up)):
            growth = peak - base
            verdict = "ok" if growth < 50 * 2**20 else "OVER 50 MiB"
            print(f"{name:8} {format_size(size)}: peak RSS {peak / 2**20:.1f} MiB, growth {growth / 2**20:.1f} MiB "
                  f"({verdict}), {size / secs / 2**20:.0f} MiB/s")
        return 0
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
