"""The servers proxy_bench.py runs: the nginx backend and the proxies under test.

Each `make_*` function writes a private configuration into the run's temporary directory and
returns a `Server` that is not started yet. Nothing here reads or changes a system configuration:
every pid file, lock, log and temp path lives in that directory.
"""

from __future__ import annotations

import contextlib
import grp
import http.client
import os
import pwd
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from bench_measure import process_tree

HOST = "127.0.0.1"
REPO = Path(__file__).resolve().parent.parent
APACHE_MODULES = Path("/usr/lib/apache2/modules")

SMALL_BODY = b"ferryman benchmark: a small response body, served by the nginx backend ".ljust(99, b".") + b"\n"
BIG_BODY = bytes(range(256)) * 256  # 65536 bytes, every byte value
BODIES = {"/small": SMALL_BODY, "/64k": BIG_BODY}
assert len(SMALL_BODY) == 100 and len(BIG_BODY) == 65536

# Idle backend connections each nginx worker caches. The usual value; with more client connections
# than this in flight, nginx opens and closes backend connections per request (costs CPU).
NGINX_UPSTREAM_KEEPALIVE = 64

# Apache's and nginx's "combined" format, written out for the servers that do not predefine it.
COMBINED = r'%h %l %u %t \"%r\" %>s %b \"%{Referer}i\" \"%{User-Agent}i\"'


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


@dataclass
class Server:
    """One server process (and its workers), pinned to a CPU, in its own process group."""

    name: str
    cmd: list[str]
    port: int
    workdir: Path
    cpu: int
    access_log: Path | None = None
    config: Path | None = None
    env: dict[str, str] = field(default_factory=dict)
    stdout_is_access_log: bool = False  # HAProxy writes its access log to stdout
    proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    @property
    def output(self) -> Path:
        return self.workdir / f"{self.name}.out"

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self) -> None:
        """Launch under `taskset -c CPU` (it execs, so the pid is the server's own)."""
        stdout_path = self.access_log if self.stdout_is_access_log else self.output
        assert stdout_path is not None
        with open(self.output, "wb") as out, open(stdout_path, "ab") as stdout:
            self.proc = subprocess.Popen(
                ["taskset", "-c", str(self.cpu), *self.cmd],
                stdin=subprocess.DEVNULL, stdout=stdout, stderr=out,
                cwd=self.workdir, env={**os.environ, **self.env},
                start_new_session=True,  # its own process group: stop() reaches the workers too
            )  # fmt: skip

    def wait_ready(self, timeout: float = 30.0) -> None:
        """Poll with real HTTP requests until /small answers 200; raise with the log tail if not."""
        deadline = time.monotonic() + timeout
        last_error = "no attempt"
        while time.monotonic() < deadline:
            if self.proc is None or self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited early\n{self.log_tail()}")
            try:
                status, _ = http_get(self.port, "/small", timeout=1.0)
                if status == 200:
                    return
                last_error = f"HTTP {status}"
            except OSError as exc:
                last_error = str(exc)
            time.sleep(0.05)
        raise RuntimeError(f"{self.name} not ready after {timeout:g}s ({last_error})\n{self.log_tail()}")

    def verify(self) -> None:
        """Every process must be pinned, every path must come back 200 with the backend's body."""
        for pid in process_tree(self.pid):
            with contextlib.suppress(ProcessLookupError):
                if os.sched_getaffinity(pid) != {self.cpu}:
                    raise RuntimeError(f"{self.name}: pid {pid} is not pinned to CPU {self.cpu}")
        for path, body in BODIES.items():
            status, got = http_get(self.port, path)
            if status != 200 or got != body:
                raise RuntimeError(
                    f"{self.name} {path}: HTTP {status}, {len(got)} bytes; "
                    f"expected 200 and the backend's {len(body)} bytes"
                )

    def stop(self) -> None:
        """SIGTERM the process group, SIGKILL it if it lingers."""
        if self.proc is None or self.proc.poll() is not None:
            return
        for sig, grace in ((signal.SIGTERM, 5.0), (signal.SIGKILL, 5.0)):
            try:
                os.killpg(self.proc.pid, sig)
            except ProcessLookupError:
                return
            try:
                self.proc.wait(grace)
                return
            except subprocess.TimeoutExpired:
                continue

    def log_tail(self, lines: int = 15) -> str:
        try:
            text = self.output.read_text(errors="replace").splitlines()[-lines:]
        except OSError:
            return ""
        return "\n".join("    | " + line for line in text)


def http_get(port: int, path: str, timeout: float = 5.0) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection(HOST, port, timeout=timeout)
    try:
        conn.request("GET", path, headers={"User-Agent": "proxy_bench"})
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def _log_path(workdir: Path, name: str, access_log: bool) -> Path | None:
    return workdir / f"{name}-access.log" if access_log else None


# --------------------------------------------------------------------------- nginx


def _nginx_server(name: str, workdir: Path, conf: str, port: int, cpu: int, log: Path | None) -> Server:
    prefix = workdir / name
    prefix.mkdir(exist_ok=True)
    path = _write(prefix / "nginx.conf", conf)
    # -e: the startup error log too, so nginx never opens /var/log/nginx.
    cmd = ["nginx", "-p", f"{prefix}/", "-c", str(path), "-e", str(prefix / "error.log")]
    return Server(name, cmd, port, workdir, cpu, log, config=path)


def _nginx_main(prefix: Path) -> str:
    """The part shared by both nginx configurations: one worker, foreground, private paths."""
    return f"""\
daemon off;
master_process on;
worker_processes 1;
worker_rlimit_nofile 65536;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
events {{ worker_connections 8192; multi_accept on; }}
"""


def make_backend(workdir: Path, cpu: int) -> Server:
    """nginx serving /small (100 bytes) and /64k (65536 bytes) from files, no access log."""
    prefix = workdir / "backend"
    www = prefix / "www"
    www.mkdir(parents=True)
    for path, body in BODIES.items():
        (www / path.lstrip("/")).write_bytes(body)
    port = free_port()
    conf = _nginx_main(prefix) + f"""\
http {{
    access_log off;
    default_type text/plain;
    sendfile on;
    tcp_nopush on;
    # Proxies keep their backend connections: never make them reconnect.
    keepalive_requests 100000000;
    keepalive_timeout 300s;
    server {{
        listen {HOST}:{port} backlog=4096;
        root {www};
        location / {{ }}
    }}
}}
"""
    return _nginx_server("backend", workdir, conf, port, cpu, None)


def make_nginx(workdir: Path, backend: Server, cpu: int, access_log: bool) -> Server:
    """nginx as a reverse proxy, the way it is usually deployed in front of an app."""
    prefix = workdir / "nginx"
    prefix.mkdir(exist_ok=True)
    log = _log_path(workdir, "nginx", access_log)
    port = free_port()
    conf = _nginx_main(prefix) + f"""\
http {{
    access_log {f"{log} combined" if log else "off"};
    client_body_temp_path {prefix}/client_body;
    proxy_temp_path {prefix}/proxy_temp;
    fastcgi_temp_path {prefix}/fastcgi; uwsgi_temp_path {prefix}/uwsgi; scgi_temp_path {prefix}/scgi;
    keepalive_requests 100000000;
    keepalive_timeout 300s;

    upstream backend {{
        server {HOST}:{backend.port};
        keepalive {NGINX_UPSTREAM_KEEPALIVE};
        keepalive_requests 100000000;
    }}
    server {{
        listen {HOST}:{port} backlog=4096;
        location / {{
            proxy_pass http://backend;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $host;
            proxy_set_header X-Real-IP $remote_addr;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Proto $scheme;
            proxy_set_header X-Forwarded-Host $host;
            # Room for a 64 KiB response in memory (the default 8 x 4k spills it to temp files).
            proxy_buffers 16 8k;
        }}
    }}
}}
"""
    return _nginx_server("nginx", workdir, conf, port, cpu, log)


# --------------------------------------------------------------------------- HAProxy


def make_haproxy(workdir: Path, backend: Server, cpu: int, access_log: bool) -> Server:
    """HAProxy, one process and one thread; its access log goes to stdout, i.e. to a file."""
    log = _log_path(workdir, "haproxy", access_log)
    port = free_port()
    # HAProxy logs to syslog or a stream; "stdout" is the file we redirect it to. The log-format
    # is Apache's combined format, so every proxy writes the same line.
    logging = (
        """\
    log stdout format raw local0 info
    option httplog
    http-request capture req.hdr(Referer) len 128
    http-request capture req.hdr(User-Agent) len 128
    log-format "%ci - - [%trl] \\"%HM %HU %HV\\" %ST %B \\"%[capture.req.hdr(0)]\\" \\"%[capture.req.hdr(1)]\\""
"""
        if log
        else "    no log\n"
    )
    conf = f"""\
global
    nbthread 1
    maxconn 4096

defaults
    mode http
    timeout connect 5s
    timeout client 300s
    timeout server 300s
    timeout http-keep-alive 300s
    option http-keep-alive
    option forwardfor
    http-reuse always

frontend bench
    bind {HOST}:{port}
{logging}    default_backend app

backend app
    server app1 {HOST}:{backend.port}
"""
    path = _write(workdir / "haproxy.cfg", conf)
    cmd = ["haproxy", "-db", "-f", str(path)]
    return Server("haproxy", cmd, port, workdir, cpu, log, config=path, stdout_is_access_log=log is not None)


# --------------------------------------------------------------------------- Apache


def _apache_user_lines() -> str:
    """Apache refuses to run its children as root: name an unprivileged user when we are root."""
    if os.geteuid() != 0:
        return ""
    for user in ("www-data", "daemon", "nobody"):
        try:
            entry = pwd.getpwnam(user)
        except KeyError:
            continue
        return f"User {user}\nGroup {grp.getgrgid(entry.pw_gid).gr_name}"
    raise RuntimeError("no unprivileged user (www-data, daemon, nobody) for Apache's children")


def make_apache(workdir: Path, backend: Server, cpu: int, access_log: bool) -> Server:
    """Apache 2.4, event MPM with one child process, mod_proxy_balancer with one member."""
    root = workdir / "apache"
    root.mkdir(exist_ok=True)
    log = _log_path(workdir, "apache", access_log)
    port = free_port()
    modules = [
        ("mpm_event_module", "mod_mpm_event.so"),
        ("authz_core_module", "mod_authz_core.so"),
        ("slotmem_shm_module", "mod_slotmem_shm.so"),
        ("proxy_module", "mod_proxy.so"),
        ("proxy_http_module", "mod_proxy_http.so"),
        ("proxy_balancer_module", "mod_proxy_balancer.so"),
        ("lbmethod_byrequests_module", "mod_lbmethod_byrequests.so"),
    ]
    loads = "\n".join(f"LoadModule {name} {APACHE_MODULES / so}" for name, so in modules)
    conf = f"""\
ServerRoot {root}
ServerName {HOST}
PidFile {root}/httpd.pid
DefaultRuntimeDir {root}
Mutex file:{root} default
ErrorLog {root}/error.log
LogLevel warn
{loads}
{_apache_user_lines()}
Listen {HOST}:{port}

# One child process whose threads serve every connection (the event MPM parks idle keep-alive
# connections without a thread).
StartServers 1
ServerLimit 1
ThreadLimit 512
ThreadsPerChild 512
MaxRequestWorkers 512
MinSpareThreads 1
MaxSpareThreads 512
MaxConnectionsPerChild 0
ListenBacklog 4096

KeepAlive On
MaxKeepAliveRequests 0
KeepAliveTimeout 300

LogFormat "{COMBINED}" combined
{f"CustomLog {log} combined" if log else "# access log off"}

<Proxy balancer://b>
    BalancerMember http://{HOST}:{backend.port}
</Proxy>
ProxyPass / balancer://b/
ProxyPassReverse / balancer://b/
"""
    path = _write(root / "httpd.conf", conf)
    cmd = ["apache2", "-d", str(root), "-f", str(path), "-DFOREGROUND"]
    return Server("apache", cmd, port, workdir, cpu, log, config=path)


# --------------------------------------------------------------------------- ferryman


def ferryman_command() -> list[str]:
    return [sys.executable, "-m", "ferryman"]


def ferryman_env() -> dict[str, str]:
    """Run this checkout's ferryman even when it is not pip-installed."""
    path = os.environ.get("PYTHONPATH")
    return {"PYTHONPATH": f"{REPO}{os.pathsep}{path}" if path else str(REPO)}


def ferryman_problem() -> str | None:
    """Why ferryman cannot be benchmarked, or None if `python -m ferryman run --help` works."""
    try:
        done = subprocess.run(
            [*ferryman_command(), "run", "--help"],
            capture_output=True, text=True, timeout=60, cwd=REPO, env={**os.environ, **ferryman_env()},
        )  # fmt: skip
    except (OSError, subprocess.TimeoutExpired) as exc:
        return str(exc)
    if done.returncode != 0:
        lines = (done.stderr or done.stdout).strip().splitlines()
        return lines[-1] if lines else f"exit status {done.returncode}"
    return None


def make_ferryman(workdir: Path, backend: Server, cpu: int, access_log: bool) -> Server:
    """ferryman from this checkout, one process, with the minimal one-pool configuration."""
    log = _log_path(workdir, "ferryman", access_log)
    port = free_port()
    access = f'{{ format = "combined", path = "{log}" }}' if log else '{ format = "off" }'
    conf = f"""\
workers = 1
shutdown_timeout = "1s"
log = {{ level = "warning" }}

[[listener]]
name = "bench"
bind = "{HOST}:{port}"
access_log = {access}

[pool.backend]
members = [ {{ url = "http://{HOST}:{backend.port}" }} ]

[[route]]
path = "/"
pool = "backend"
"""
    path = _write(workdir / "ferryman.toml", conf)
    cmd = [*ferryman_command(), "run", "-c", str(path)]
    return Server("ferryman", cmd, port, workdir, cpu, log, config=path, env=ferryman_env())


# --------------------------------------------------------------------------- the floor


def make_floor(workdir: Path, backend: Server, cpu: int, access_log: bool) -> Server:
    """bench/floor.py: the least a Python proxy (uvloop + httptools) does per request; it writes no
    access log whatever `access_log` says (it has none: it is the floor)."""
    port = free_port()
    cmd = [sys.executable, str(Path(__file__).resolve().parent / "floor.py"),
           "--listen", f"{HOST}:{port}", "--backend", f"{HOST}:{backend.port}"]
    return Server("floor", cmd, port, workdir, cpu)


PROXIES = {
    "ferryman": make_ferryman,
    "floor": make_floor,
    "nginx": make_nginx,
    "haproxy": make_haproxy,
    "apache": make_apache,
}
