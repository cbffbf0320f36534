"""Helpers for integration tests: real processes, real sockets on 127.0.0.1, no sleeps.

What is here (all usable from any test module):

- `free_port()`, `wait_until(pred, timeout, interval)`, `wait_for_port(host, port, timeout)`:
  readiness by polling against a deadline. Deadlines are hang guards, never measurements.
- `Ferryman(config_toml, files={...})`: writes the config (and any extra files, relative paths resolved in
  the same temporary directory) and runs `python -m ferryman run -c FILE` in its own process group; parses
  `listening on http://HOST:PORT (listener NAME)` so configs can bind port 0. `.port(name)`, `.url(name)`,
  `.access_log_lines()`, `.error_log_lines()`, `.wait_for_access_log(pred)`, `.stop(sig, timeout)`.
- `ferryman_check(config_toml, files)`: runs `python -m ferryman check -c FILE`, returns CompletedProcess.
- `RawBackend(handler)` / `RawBackend.respond(canned)`: a scriptable TCP server recording every byte it
  receives per connection (`.connections[i].received`), with per-connection helpers to read one request,
  answer, close, reset (SO_LINGER 0), or hold until released.
- `raw_request(port, data, ...)`, `ClientConn(port)`: a raw client, and `parse_responses(bytes)` which
  understands Content-Length, chunked, close-delimited, 1xx, HEAD/204/304 bodies and truncation.
- `Gunicorn(app=...)`: gunicorn serving `tests/apps/echo_wsgi.py` on a free port, ready when it answers.
- `config(...)`: a small builder for the common one-listener/one-pool/one-route TOML.
- `require(available, what)`, `require_program(name)`, `require_module(name)`: skip a test whose outside
  dependency (a program, a server, a Python module) is missing, except under CI (`FERRYMAN_CI=1`, set by
  .ci/run), where that is a failure.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import re
import signal as _signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import shutil
import time
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, NamedTuple, TypeVar

REPO = Path(__file__).resolve().parent.parent

#: Set (to anything but "" or "0") by .ci/run: every test must really run there, so a missing outside
#: dependency (Apache, PostgreSQL, a browser...) fails the test instead of skipping it.
CI_ENV = "FERRYMAN_CI"


def in_ci() -> bool:
    """True under CI (`FERRYMAN_CI` set), where `require` fails instead of skipping."""
    return os.environ.get(CI_ENV, "") not in ("", "0")


def require(available: object, what: str) -> None:
    """Skip the calling test (or fixture) when `available` is falsy: `what` (e.g. "apache2 (apt-get install
    apache2)") is missing on this machine. Under CI the same is an error: CI must install and run it all."""
    if available:
        return
    import pytest  # only tests call this

    if in_ci():
        pytest.fail(f"{what} is required: {CI_ENV} is set, so a missing dependency is an error, not a skip",
                    pytrace=False)
    pytest.skip(f"{what} is not available")


def require_program(name: str, hint: str = "", *, path: str | None = None) -> str:
    """The path of the program `name`, or skip (fail under CI). `path`, when given and executable, is
    used as found (a tool outside PATH, e.g. PostgreSQL's versioned bin directory); otherwise `name` is
    looked up on PATH, then in /usr/local/sbin, /usr/sbin and /sbin."""
    if not (path and os.access(path, os.X_OK)):
        search = os.pathsep.join([os.environ.get("PATH", ""), "/usr/local/sbin", "/usr/sbin", "/sbin"])
        path = shutil.which(name, path=search)
    require(path, f"{name}{f' ({hint})' if hint else ''}")
    return path  # type: ignore[return-value]


def require_module(name: str, hint: str = "") -> str:
    """`name` when the Python module is importable here, or skip (fail under CI)."""
    import importlib.util

    found = importlib.util.find_spec(name) is not None
    require(found, f"the Python module {name}{f' ({hint})' if hint else ''}")
    return name
LOOPBACK = "127.0.0.1"

# --------------------------------------------------------------------------------------------------
# Polling


def free_port(host: str = LOOPBACK) -> int:
    """A TCP port that was free a moment ago (prefer binding port 0 where the config allows it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def wait_until(pred: Callable[[], object], timeout: float = 10, interval: float = 0.01,
               message: str | None = None) -> object:
    """Poll `pred` until it returns something truthy; return that. Raise TimeoutError at the deadline."""
    deadline = time.monotonic() + timeout
    ev = threading.Event()  # waiting on an Event that nobody sets: a plain poll interval, not a sync sleep
    while True:
        result = pred()
        if result:
            return result
        if time.monotonic() >= deadline:
            raise TimeoutError(message or f"condition not met within {timeout}s: {pred!r}")
        ev.wait(interval)


def wait_for_port(host: str, port: int, timeout: float = 10) -> None:
    """Wait until something accepts TCP connections on host:port."""
    def accepting() -> bool:
        try:
            with socket.create_connection((host, port), timeout=1):
                return True
        except OSError:
            return False
    wait_until(accepting, timeout, 0.02, f"nothing listening on {host}:{port} after {timeout}s")


# --------------------------------------------------------------------------------------------------
# Responses: a raw parser good enough for pipelined, chunked, truncated answers


class Response(NamedTuple):
    """One parsed response. Unpacks as (status, headers, body) when used as a 3-tuple via `.triple`."""

    status: int
    headers: list[tuple[str, str]]
    body: bytes
    reason: str = ""
    version: str = "HTTP/1.1"
    complete: bool = True          # False: the connection ended before the declared end of the body
    framing: str = "none"          # "content-length" | "chunked" | "close" | "none"
    raw_head: bytes = b""

    @property
    def triple(self) -> tuple[int, list[tuple[str, str]], bytes]:
        return self.status, self.headers, self.body

    def header(self, name: str, default: str | None = None) -> str | None:
        """The first value of header `name` (case-insensitive), or default."""
        low = name.lower()
        for k, v in self.headers:
            if k.lower() == low:
                return v
        return default

    def header_all(self, name: str) -> list[str]:
        low = name.lower()
        return [v for k, v in self.headers if k.lower() == low]

    def has_header(self, name: str) -> bool:
        return bool(self.header_all(name))

    def json(self):  # noqa: ANN201
        import json
        return json.loads(self.body)


class IncompleteResponse(Exception):
    pass


_NO_BODY_STATUS = {204, 304}


def _parse_head(head: bytes) -> tuple[str, int, str, list[tuple[str, str]]]:
    lines = head.split(b"\r\n")
    status_line = lines[0].decode("latin-1")
    parts = status_line.split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/"):
        raise ValueError(f"not an HTTP status line: {status_line!r}")
    version, status = parts[0], int(parts[1])
    reason = parts[2] if len(parts) > 2 else ""
    headers = []
    for line in lines[1:]:
        if not line:
            continue
        name, _, value = line.partition(b":")
        headers.append((name.decode("latin-1"), value.strip(b" \t").decode("latin-1")))
    return version, status, reason, headers


def parse_one_response(buf: bytes, pos: int = 0, method: str = "GET", eof: bool = False
                       ) -> tuple[Response, int] | None:
    """Parse one response starting at buf[pos]. Return (response, next_pos), or None if more bytes are
    needed. With eof=True, a body cut short is returned with complete=False instead of None."""
    end = buf.find(b"\r\n\r\n", pos)
    if end < 0:
        if eof and pos < len(buf):
            raise ValueError(f"connection closed inside a response head: {buf[pos:pos + 200]!r}")
        return None
    raw_head = buf[pos:end]
    version, status, reason, headers = _parse_head(raw_head)
    body_start = end + 4
    lower = {k.lower(): v for k, v in headers}
    te = lower.get("transfer-encoding", "")

    def done(body: bytes, nxt: int, framing: str, complete: bool = True) -> tuple[Response, int]:
        return Response(status, headers, bytes(body), reason, version, complete, framing, bytes(raw_head)), nxt

    if 100 <= status < 200 or status in _NO_BODY_STATUS or method.upper() == "HEAD":
        return done(b"", body_start, "none")
    if "chunked" in te.lower():
        body = bytearray()
        i = body_start
        while True:
            le = buf.find(b"\r\n", i)
            if le < 0:
                return done(bytes(body), len(buf), "chunked", False) if eof else None
            size_txt = buf[i:le].split(b";", 1)[0].strip()
            try:
                size = int(size_txt, 16)
            except ValueError as exc:
                raise ValueError(f"bad chunk size line {buf[i:le]!r}") from exc
            i = le + 2
            if size == 0:
                # trailers until an empty line
                while True:
                    le = buf.find(b"\r\n", i)
                    if le < 0:
                        return done(bytes(body), len(buf), "chunked", False) if eof else None
                    line = buf[i:le]
                    i = le + 2
                    if not line:
                        return done(bytes(body), i, "chunked")
            if len(buf) < i + size + 2:
                if eof:
                    body += buf[i:i + size]
                    return done(bytes(body), len(buf), "chunked", False)
                return None
            body += buf[i:i + size]
            if buf[i + size:i + size + 2] != b"\r\n":
                raise ValueError("chunk data not followed by CRLF")
            i += size + 2
    if "content-length" in lower:
        n = int(lower["content-length"])
        if len(buf) - body_start >= n:
            return done(buf[body_start:body_start + n], body_start + n, "content-length")
        if eof:
            return done(buf[body_start:], len(buf), "content-length", False)
        return None
    # close-delimited
    if not eof:
        return None
    return done(buf[body_start:], len(buf), "close")


def parse_responses(data: bytes, methods: Iterable[str] | None = None, eof: bool = True) -> list[Response]:
    """All responses in `data` (a complete capture, by default up to connection close).

    `methods` gives the request method for each final response in order (HEAD responses carry no body);
    1xx interim responses are returned as their own entries and do not consume a method."""
    methods = list(methods or [])
    out: list[Response] = []
    pos = 0
    finals = 0
    while pos < len(data):
        method = methods[finals] if finals < len(methods) else "GET"
        parsed = parse_one_response(data, pos, method, eof=eof)
        if parsed is None:
            break
        resp, pos = parsed
        out.append(resp)
        if not 100 <= resp.status < 200:
            finals += 1
        if not resp.complete:
            break
    return out


# --------------------------------------------------------------------------------------------------
# A raw client


class ClientConn:
    """One client TCP connection; send raw bytes and read responses one at a time (keep-alive aware)."""

    def __init__(self, port: int, host: str = LOOPBACK, timeout: float = 15, source: str | None = None):
        self.sock = socket.create_connection((host, port), timeout=timeout,
                                             source_address=(source, 0) if source else None)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = bytearray()
        self.eof = False
        self.timeout = timeout

    def __enter__(self) -> "ClientConn":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def request(self, method: str, target: str, headers: dict[str, str] | list[tuple[str, str]] | None = None,
                body: bytes = b"", host: str = "test.local") -> Response:
        """Send one simple HTTP/1.1 request (Content-Length framing when there is a body) and read the answer."""
        self.send(build_request(method, target, headers, body, host))
        return self.read_response(method)

    def _fill(self) -> bool:
        try:
            chunk = self.sock.recv(1 << 20)
        except ConnectionResetError:
            chunk = b""
        if not chunk:
            self.eof = True
            return False
        self.buf += chunk
        return True

    def read_response(self, method: str = "GET", allow_interim: bool = False) -> Response:
        """The next response. 1xx interim responses are skipped unless allow_interim.
        At EOF a partial body is returned with complete=False; EOF before any byte raises EOFError."""
        while True:
            parsed = parse_one_response(self.buf, 0, method, eof=self.eof)
            if parsed is not None:
                resp, nxt = parsed
                del self.buf[:nxt]
                if 100 <= resp.status < 200 and not allow_interim:
                    continue
                return resp
            if self.eof:
                raise EOFError("connection closed before a response"
                               + (f"; had {bytes(self.buf[:200])!r}" if self.buf else ""))
            self._fill()

    def read_until_close(self) -> bytes:
        while not self.eof:
            self._fill()
        data, self.buf = bytes(self.buf), bytearray()
        return data

    def is_closed_by_peer(self, timeout: float = 5) -> bool:
        """True when the peer closes (EOF or reset) within timeout with no further data."""
        self.sock.settimeout(timeout)
        try:
            while not self.eof:
                if not self._fill():
                    return True
            return True
        except socket.timeout:
            return False
        finally:
            self.sock.settimeout(self.timeout)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()


def build_request(method: str, target: str, headers: dict[str, str] | list[tuple[str, str]] | None = None,
                  body: bytes = b"", host: str | None = "test.local", version: str = "HTTP/1.1") -> bytes:
    """A simple well-formed request; adds Host (unless None or given) and Content-Length for a body."""
    items = list(headers.items()) if isinstance(headers, dict) else list(headers or [])
    names = {k.lower() for k, _ in items}
    if host is not None and "host" not in names:
        items.insert(0, ("Host", host))
    if body and "content-length" not in names and "transfer-encoding" not in names:
        items.append(("Content-Length", str(len(body))))
    head = f"{method} {target} {version}\r\n" + "".join(f"{k}: {v}\r\n" for k, v in items) + "\r\n"
    return head.encode("latin-1") + body


def raw_request(port: int, data: bytes, read_until_close: bool = True, timeout: float = 15,
                host: str = LOOPBACK, expect_responses: int = 1, methods: Iterable[str] | None = None,
                shutdown_write: bool = False) -> bytes:
    """Send raw bytes, return the raw answer.

    read_until_close=True reads until the server closes (bounded by `timeout`, which raises).
    Otherwise reads until `expect_responses` final responses are complete, then closes."""
    methods = list(methods or [])
    with socket.create_connection((host, port), timeout=timeout) as s:
        s.sendall(data)
        if shutdown_write:
            s.shutdown(socket.SHUT_WR)
        buf = bytearray()
        while True:
            if not read_until_close:
                try:
                    rs = parse_responses(buf, methods, eof=False)
                except ValueError:
                    rs = []
                if sum(1 for r in rs if not 100 <= r.status < 200 and r.complete) >= expect_responses:
                    return bytes(buf)
            try:
                chunk = s.recv(1 << 20)
            except ConnectionResetError:
                return bytes(buf)
            if not chunk:
                return bytes(buf)
            buf += chunk


class StreamResult(NamedTuple):
    """A response whose body was hashed as it arrived, never held in memory."""

    status: int
    headers: list[tuple[str, str]]
    length: int
    sha256: str
    complete: bool
    framing: str

    def header(self, name: str, default: str | None = None) -> str | None:
        low = name.lower()
        return next((v for k, v in self.headers if k.lower() == low), default)


class _SockReader:
    def __init__(self, sock: socket.socket):
        self.sock = sock
        self.buf = bytearray()
        self.eof = False

    def _fill(self) -> bool:
        try:
            chunk = self.sock.recv(1 << 20)
        except ConnectionResetError:
            chunk = b""
        if not chunk:
            self.eof = True
            return False
        self.buf += chunk
        return True

    def line(self) -> bytes | None:
        while True:
            i = self.buf.find(b"\r\n")
            if i >= 0:
                out = bytes(self.buf[:i])
                del self.buf[:i + 2]
                return out
            if not self._fill():
                return None

    def some(self, limit: int) -> bytes:
        if not self.buf and not self._fill():
            return b""
        out = bytes(self.buf[:limit])
        del self.buf[:limit]
        return out


def stream_exchange(port: int, head: bytes, body: Iterable[bytes] = (), method: str = "GET",
                    timeout: float = 120, host: str = LOOPBACK, chunked_upload: bool = False) -> StreamResult:
    """Send `head`, then the body pieces (framed as chunks when chunked_upload), then read one response,
    hashing its body as it streams. For large bodies: nothing is accumulated in memory."""
    import hashlib
    with socket.create_connection((host, port), timeout=timeout) as s:
        s.sendall(head)
        for piece in body:
            if chunked_upload:
                if piece:
                    s.sendall(b"%x\r\n" % len(piece) + piece + b"\r\n")
            else:
                s.sendall(piece)
        if chunked_upload:
            s.sendall(b"0\r\n\r\n")
        r = _SockReader(s)
        while True:
            status_line = r.line()
            if status_line is None:
                raise EOFError("connection closed before a response head")
            headers: list[tuple[str, str]] = []
            while True:
                ln = r.line()
                if ln is None:
                    raise EOFError("connection closed inside a response head")
                if not ln:
                    break
                n, _, v = ln.partition(b":")
                headers.append((n.decode("latin-1"), v.strip().decode("latin-1")))
            status = int(status_line.split(b" ", 2)[1])
            if not 100 <= status < 200:
                break
        lower = {k.lower(): v for k, v in headers}
        h = hashlib.sha256()
        length = 0
        if method == "HEAD" or status in _NO_BODY_STATUS:
            return StreamResult(status, headers, 0, h.hexdigest(), True, "none")
        if "chunked" in lower.get("transfer-encoding", "").lower():
            while True:
                ln = r.line()
                if ln is None:
                    return StreamResult(status, headers, length, h.hexdigest(), False, "chunked")
                size = int(ln.split(b";")[0].strip(), 16)
                if size == 0:
                    while True:
                        t = r.line()
                        if t is None:
                            return StreamResult(status, headers, length, h.hexdigest(), False, "chunked")
                        if not t:
                            return StreamResult(status, headers, length, h.hexdigest(), True, "chunked")
                left = size
                while left:
                    piece = r.some(left)
                    if not piece:
                        return StreamResult(status, headers, length, h.hexdigest(), False, "chunked")
                    h.update(piece)
                    length += len(piece)
                    left -= len(piece)
                if r.line() != b"":
                    raise ValueError("chunk data not followed by CRLF")
        if "content-length" in lower:
            left = int(lower["content-length"])
            while left:
                piece = r.some(left)
                if not piece:
                    return StreamResult(status, headers, length, h.hexdigest(), False, "content-length")
                h.update(piece)
                length += len(piece)
                left -= len(piece)
            return StreamResult(status, headers, length, h.hexdigest(), True, "content-length")
        while True:
            piece = r.some(1 << 20)
            if not piece:
                return StreamResult(status, headers, length, h.hexdigest(), True, "close")
            h.update(piece)
            length += len(piece)


# --------------------------------------------------------------------------------------------------
# Ferryman as a subprocess

_LISTENING = re.compile(r"listening on (https?)://(\[[^\]]+\]|[^\s:]+):(\d+) \(listener ([^)]+)\)")


class _Reader(threading.Thread):
    """Reads a pipe line by line into a list (thread-safe snapshot via .lines())."""

    def __init__(self, pipe, on_line: Callable[[str], None] | None = None):  # noqa: ANN001
        super().__init__(daemon=True)
        self.pipe = pipe
        self._lines: list[str] = []
        self._lock = threading.Lock()
        self.on_line = on_line
        self.start()

    def run(self) -> None:
        for raw in iter(self.pipe.readline, b""):
            line = raw.decode("utf-8", "replace").rstrip("\r\n")
            with self._lock:
                self._lines.append(line)
            if self.on_line:
                self.on_line(line)
        self.pipe.close()

    def lines(self) -> list[str]:
        with self._lock:
            return list(self._lines)


def single_process(config_toml: str) -> str:
    """`config_toml` with ``workers = 1`` unless it sets ``workers`` itself, so that tests see one process
    with deterministic balancing. The key takes the place of a blank or comment line before the first
    table when there is one, so every line number an error message gives stays the same."""
    try:
        if "workers" in tomllib.loads(config_toml):
            return config_toml
    except tomllib.TOMLDecodeError:
        return config_toml
    lines = config_toml.split("\n")
    for i, line in enumerate(lines):
        stripped = line.strip()
        if stripped.startswith("["):
            break
        if not stripped or stripped.startswith("#"):
            lines[i] = "workers = 1"
            return "\n".join(lines)
    return "workers = 1\n" + config_toml


class FerrymanFailedToStart(RuntimeError):
    pass


class Ferryman:
    """`python -m ferryman run -c <tmp>/ferryman.toml`, ready once every listener said where it listens.

    files: extra files written beside the config ({"users.htpasswd": "...", "certs/a.pem": b"..."}).
    """

    CONFIG_NAME = "ferryman.toml"

    def __init__(self, config_toml: str, files: dict[str, str | bytes] | None = None,
                 ready_timeout: float = 20, env: dict[str, str] | None = None, start: bool = True,
                 extra_args: Iterable[str] = ()):
        self._tmp = tempfile.TemporaryDirectory(prefix="ferryman-test-")
        self.dir = Path(self._tmp.name)
        self.config_path = self.dir / self.CONFIG_NAME
        self.config_toml = config_toml
        for rel, content in (files or {}).items():
            p = self.dir / rel
            p.parent.mkdir(parents=True, exist_ok=True)
            if isinstance(content, bytes):
                p.write_bytes(content)
            else:
                p.write_text(content)
        written = single_process(config_toml)
        #: lines added before the configuration's own (``workers = 1`` when no blank line could hold it)
        self.line_shift = written.count("\n") - config_toml.count("\n")
        self.config_path.write_text(written)
        try:
            self.expected_listeners = [lst["name"] for lst in tomllib.loads(config_toml).get("listener", [])]
        except tomllib.TOMLDecodeError:
            self.expected_listeners = []
        self.env = env
        self.extra_args = list(extra_args)
        self.ready_timeout = ready_timeout
        self.proc: subprocess.Popen | None = None
        self.listeners: dict[str, tuple[str, str, int]] = {}
        self._lock = threading.Lock()
        if start:
            self.start()

    # lifecycle -------------------------------------------------------------------------------------
    def start(self) -> "Ferryman":
        env = dict(os.environ)
        env.setdefault("PYTHONUNBUFFERED", "1")
        env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
        # the default pid file goes to $XDG_RUNTIME_DIR: this temporary directory, removed with it even
        # when the process is killed (`ferryman reload` run by a test needs the same: `self.env_for_cli`)
        env["XDG_RUNTIME_DIR"] = str(self.dir)
        if self.env:
            env.update(self.env)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "ferryman", "run", "-c", str(self.config_path), *self.extra_args],
            cwd=self.dir, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            start_new_session=True,
        )
        self._out = _Reader(self.proc.stdout)
        self._err = _Reader(self.proc.stderr, self._on_err_line)
        try:
            wait_until(self._ready, self.ready_timeout, 0.02)
        except TimeoutError:
            self.kill()
            raise FerrymanFailedToStart(
                f"ferryman did not report every listener {self.expected_listeners} within "
                f"{self.ready_timeout}s; stderr:\n" + "\n".join(self.error_log_lines()[-40:])) from None
        if self.proc.poll() is not None and not self.listeners:
            raise FerrymanFailedToStart(self._exit_message())
        return self

    def _exit_message(self) -> str:
        self._err.join(2)
        return (f"ferryman exited with {self.proc.returncode} before listening; stderr:\n"
                + "\n".join(self.error_log_lines()[-40:]))

    def _on_err_line(self, line: str) -> None:
        m = _LISTENING.search(line)
        if m:
            scheme, host, port, name = m.groups()
            with self._lock:
                self.listeners[name] = (scheme, host, int(port))

    def _ready(self) -> bool:
        assert self.proc is not None
        with self._lock:
            have = set(self.listeners)
        if self.expected_listeners and have >= set(self.expected_listeners):
            return True
        if not self.expected_listeners and have:
            return True
        if self.proc.poll() is not None:
            raise FerrymanFailedToStart(self._exit_message())
        return False

    def env_for_cli(self) -> dict[str, str]:
        """The environment for another ferryman command about this one (`ferryman reload`)."""
        env = dict(os.environ, XDG_RUNTIME_DIR=str(self.dir))
        env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
        return env

    def __enter__(self) -> "Ferryman":
        return self

    def __exit__(self, *exc: object) -> None:
        self.kill()
        self._tmp.cleanup()

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def signal(self, sig: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    def stop(self, sig: int = _signal.SIGTERM, timeout: float = 30) -> int:
        """Send `sig` (SIGTERM by default) and return the exit code; kill and raise if it hangs."""
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise TimeoutError(f"ferryman did not exit within {timeout}s of signal {sig}") from None
        self._out.join(5)
        self._err.join(5)
        return code

    def wait_exit(self, timeout: float = 30) -> int:
        assert self.proc is not None
        return self.proc.wait(timeout)

    def kill(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.proc.pid, _signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(10)
        for r in (getattr(self, "_out", None), getattr(self, "_err", None)):
            if r is not None:
                r.join(2)

    # addresses -------------------------------------------------------------------------------------
    def port(self, name: str | None = None) -> int:
        return self._listener(name)[2]

    def host(self, name: str | None = None) -> str:
        return self._listener(name)[1]

    def url(self, name: str | None = None, path: str = "") -> str:
        scheme, host, port = self._listener(name)
        return f"{scheme}://{host}:{port}{path}"

    def authority(self, name: str | None = None) -> str:
        _, host, port = self._listener(name)
        return f"{host}:{port}"

    def _listener(self, name: str | None) -> tuple[str, str, int]:
        with self._lock:
            if name is None:
                if len(self.listeners) != 1:
                    raise KeyError(f"name a listener, there are {sorted(self.listeners)}")
                return next(iter(self.listeners.values()))
            return self.listeners[name]

    # logs ------------------------------------------------------------------------------------------
    def access_log_lines(self) -> list[str]:
        """stdout lines (the access log when its path is "-")."""
        return self._out.lines()

    def error_log_lines(self) -> list[str]:
        """stderr lines (the error log when its path is "-")."""
        return self._err.lines()

    def wait_for_access_log(self, pred: Callable[[str], bool] | str, timeout: float = 10) -> str:
        """The first access-log line matching pred (a callable or a substring)."""
        match = (lambda line: pred in line) if isinstance(pred, str) else pred
        return wait_until(lambda: next((ln for ln in self.access_log_lines() if match(ln)), None), timeout,
                          0.02, f"no access log line matching {pred!r}")  # type: ignore[return-value]

    def wait_for_error_log(self, pred: Callable[[str], bool] | str, timeout: float = 10) -> str:
        match = (lambda line: pred in line) if isinstance(pred, str) else pred
        return wait_until(lambda: next((ln for ln in self.error_log_lines() if match(ln)), None), timeout,
                          0.02, f"no error log line matching {pred!r}")  # type: ignore[return-value]

    # convenience -----------------------------------------------------------------------------------
    def request(self, method: str, target: str, headers=None, body: bytes = b"",  # noqa: ANN001
                listener: str | None = None, host: str = "test.local", timeout: float = 15) -> Response:
        """One request on a fresh connection (Connection: close is not added; the connection is closed after)."""
        with ClientConn(self.port(listener), timeout=timeout) as c:
            return c.request(method, target, headers, body, host)


def ferryman_check(config_toml: str, files: dict[str, str | bytes] | None = None,
                   name: str = "ferryman.toml", timeout: float = 30) -> subprocess.CompletedProcess:
    """`python -m ferryman check -c <tmp>/<name>`; returns the CompletedProcess (text stdout/stderr)."""
    with tempfile.TemporaryDirectory(prefix="ferryman-check-") as tmp:
        d = Path(tmp)
        for rel, content in (files or {}).items():
            p = d / rel
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_bytes(content) if isinstance(content, bytes) else p.write_text(content)
        (d / name).write_text(config_toml)
        env = dict(os.environ)
        env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
        return subprocess.run([sys.executable, "-m", "ferryman", "check", "-c", name], cwd=d, env=env,
                              capture_output=True, text=True, timeout=timeout)


def config(members: Iterable[str | dict], path: str = "/webapps", *, pool: str = "app",
           pool_options: str = "", route_options: str = "", listener_options: str = "", top: str = "",
           listener: str = "http", bind: str = "127.0.0.1:0", extra: str = "") -> str:
    """TOML for one listener, one pool, one route. Members are URLs or dicts of member keys.

    pool_options / route_options / listener_options are TOML lines added to those tables;
    top goes before the first table; extra after everything (more routes or pools)."""
    def member(m: str | dict) -> str:
        d = {"url": m} if isinstance(m, str) else m
        return "{ " + ", ".join(f"{k} = {_toml_value(v)}" for k, v in d.items()) + " }"
    members_txt = ",\n  ".join(member(m) for m in members)
    return (f"{top}\n"
            f"[[listener]]\nname = \"{listener}\"\nbind = \"{bind}\"\n{listener_options}\n\n"
            f"[pool.{pool}]\n{pool_options}\nmembers = [\n  {members_txt},\n]\n\n"
            f"[[route]]\npath = \"{path}\"\npool = \"{pool}\"\n{route_options}\n\n{extra}\n")


def _toml_value(v: object) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return str(v)
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{ " + ", ".join(f"{k} = {_toml_value(x)}" for k, x in v.items()) + " }"
    raise TypeError(f"no TOML form for {v!r}")


# --------------------------------------------------------------------------------------------------
# RawBackend: a scriptable TCP server that records every byte


@dataclass
class RawRequest:
    method: str
    target: str
    version: str
    headers: list[tuple[str, str]]
    body: bytes
    raw: bytes                       # head + body exactly as received
    raw_head: bytes = b""
    chunked: bool = False
    trailers: list[tuple[str, str]] = field(default_factory=list)

    def header(self, name: str, default: str | None = None) -> str | None:
        low = name.lower()
        return next((v for k, v in self.headers if k.lower() == low), default)

    def header_all(self, name: str) -> list[str]:
        low = name.lower()
        return [v for k, v in self.headers if k.lower() == low]

    def header_names(self) -> list[str]:
        return [k for k, _ in self.headers]


class BackendConn:
    """One accepted connection. Handlers use these helpers; every byte read is recorded in .received."""

    def __init__(self, backend: "RawBackend", sock: socket.socket, index: int):
        self.backend = backend
        self.sock = sock
        self.index = index
        self._received = bytearray()
        self._lock = threading.Lock()
        self._buf = b""
        self.requests: list[RawRequest] = []
        self.closed = threading.Event()
        self.peer_closed = False

    @property
    def received(self) -> bytes:
        with self._lock:
            return bytes(self._received)

    # reading ---------------------------------------------------------------------------------------
    def _recv(self, timeout: float | None = None) -> bytes:
        self.sock.settimeout(timeout if timeout is not None else self.backend.io_timeout)
        try:
            data = self.sock.recv(1 << 20)
        except (ConnectionResetError, OSError) as exc:
            if isinstance(exc, socket.timeout):
                raise
            data = b""
        if data:
            with self._lock:
                self._received += data
        else:
            self.peer_closed = True
        return data

    def _need(self, n: int) -> bool:
        while len(self._buf) < n:
            data = self._recv()
            if not data:
                return False
            self._buf += data
        return True

    def _read_line(self, limit: int = 1 << 20) -> bytes | None:
        while True:
            i = self._buf.find(b"\r\n")
            if i >= 0:
                line, self._buf = self._buf[:i], self._buf[i + 2:]
                return line
            if len(self._buf) > limit:
                raise ValueError("line too long")
            data = self._recv()
            if not data:
                return None
            self._buf += data

    def read_head(self) -> tuple[bytes, str, str, str, list[tuple[str, str]]] | None:
        """Read a request head; None at a clean EOF before any byte."""
        while b"\r\n\r\n" not in self._buf:
            data = self._recv()
            if not data:
                if self._buf:
                    raise EOFError(f"EOF inside a request head: {self._buf[:200]!r}")
                return None
            self._buf += data
        i = self._buf.index(b"\r\n\r\n")
        head, self._buf = self._buf[:i], self._buf[i + 4:]
        lines = head.split(b"\r\n")
        method, target, version = lines[0].decode("latin-1").split(" ", 2)
        headers = []
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            headers.append((name.decode("latin-1"), value.strip(b" \t").decode("latin-1")))
        return head + b"\r\n\r\n", method, target, version, headers

    def read_request(self, read_body: bool = True) -> RawRequest | None:
        """Read one request (head, and its body per Content-Length or chunked unless read_body=False)."""
        got = self.read_head()
        if got is None:
            return None
        raw_head, method, target, version, headers = got
        lower = {k.lower(): v for k, v in headers}
        raw = bytearray(raw_head)
        body = bytearray()
        chunked = "chunked" in lower.get("transfer-encoding", "").lower()
        trailers: list[tuple[str, str]] = []
        if read_body:
            if chunked:
                while True:
                    line = self._read_line()
                    if line is None:
                        raise EOFError("EOF inside a chunked body")
                    raw += line + b"\r\n"
                    size = int(line.split(b";", 1)[0].strip(), 16)
                    if size == 0:
                        while True:
                            t = self._read_line()
                            if t is None:
                                raise EOFError("EOF inside trailers")
                            raw += t + b"\r\n"
                            if not t:
                                break
                            n, _, v = t.partition(b":")
                            trailers.append((n.decode("latin-1"), v.strip().decode("latin-1")))
                        break
                    if not self._need(size + 2):
                        raise EOFError("EOF inside a chunk")
                    body += self._buf[:size]
                    raw += self._buf[:size + 2]
                    self._buf = self._buf[size + 2:]
            elif "content-length" in lower:
                n = int(lower["content-length"])
                if not self._need(n):
                    raise EOFError(f"EOF inside a {n}-byte body")
                body += self._buf[:n]
                raw += self._buf[:n]
                self._buf = self._buf[n:]
        req = RawRequest(method, target, version, headers, bytes(body), bytes(raw), raw_head, chunked, trailers)
        self.requests.append(req)
        self.backend._note_request(req)
        return req

    def read_until_close(self, timeout: float | None = None) -> bytes:
        """Read (and record) until the peer closes; returns the bytes not yet consumed."""
        while True:
            data = self._recv(timeout)
            if not data:
                break
            self._buf += data
        out, self._buf = self._buf, b""
        return out

    # writing ---------------------------------------------------------------------------------------
    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def respond(self, status: int = 200, headers: list[tuple[str, str]] | dict[str, str] | None = None,
                body: bytes = b"", reason: str | None = None, content_length: bool = True) -> None:
        items = list(headers.items()) if isinstance(headers, dict) else list(headers or [])
        if content_length and not any(k.lower() in ("content-length", "transfer-encoding") for k, _ in items):
            items.append(("Content-Length", str(len(body))))
        reason = reason if reason is not None else http.client.responses.get(status, "Status")
        head = f"HTTP/1.1 {status} {reason}\r\n" + "".join(f"{k}: {v}\r\n" for k, v in items) + "\r\n"
        self.send(head.encode("latin-1") + body)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_WR)
        with contextlib.suppress(OSError):
            self.sock.close()
        self.closed.set()

    def reset(self) -> None:
        """Close with RST (SO_LINGER on, 0 s)."""
        with contextlib.suppress(OSError):
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        with contextlib.suppress(OSError):
            self.sock.close()
        self.closed.set()

    def hold(self, timeout: float = 60) -> bool:
        """Wait (reading and recording) until backend.release is set or the peer closes. True if released."""
        while not self.backend.release.is_set():
            try:
                data = self._recv(0.05)
            except socket.timeout:
                timeout -= 0.05
                if timeout <= 0:
                    return False
                continue
            if not data:
                self.backend.release.wait(timeout)
                return self.backend.release.is_set()
            self._buf += data
        return True


Handler = Callable[[BackendConn, socket.socket], None]


class RawBackend:
    """A TCP server on 127.0.0.1:0 that runs `handler(conn, sock)` per connection in a thread.

    After the handler returns, an unclosed connection is drained (recording) until the peer closes.
    `.release` is an Event handlers may wait on (delay / never answer) and tests set.
    """

    def __init__(self, handler: Handler | None = None, io_timeout: float = 30, host: str = LOOPBACK):
        self.handler = handler or keep_alive_handler(lambda conn, req: conn.respond(200, body=b"ok"))
        self.io_timeout = io_timeout
        self.release = threading.Event()
        self._conns: list[BackendConn] = []
        self._requests: list[RawRequest] = []
        self._lock = threading.Lock()
        self._closing = False
        self.errors: list[BaseException] = []
        self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind((host, 0))
        self.listener.listen(128)
        self.host = host
        self.port = self.listener.getsockname()[1]
        self._threads: list[threading.Thread] = []
        self._accept_thread = threading.Thread(target=self._accept_loop, daemon=True)
        self._accept_thread.start()

    @classmethod
    def respond(cls, canned: bytes, keep_alive: bool = True, read_body: bool = True) -> "RawBackend":
        """Answer every request with `canned` bytes; keep the connection for more requests or close it."""
        def handler(conn: BackendConn, sock: socket.socket) -> None:
            while True:
                req = conn.read_request(read_body=read_body)
                if req is None:
                    return
                conn.send(canned)
                if not keep_alive:
                    conn.close()
                    return
        return cls(handler)

    def url(self, path: str = "") -> str:
        return f"http://{self.host}:{self.port}{path}"

    @property
    def authority(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def connections(self) -> list[BackendConn]:
        with self._lock:
            return list(self._conns)

    @property
    def connection_count(self) -> int:
        with self._lock:
            return len(self._conns)

    @property
    def requests(self) -> list[RawRequest]:
        """Every request read so far, over all connections, in the order they were read."""
        with self._lock:
            return list(self._requests)

    def received(self) -> bytes:
        """All bytes from all connections, concatenated in connection order."""
        return b"".join(c.received for c in self.connections)

    def _note_request(self, req: RawRequest) -> None:
        with self._lock:
            self._requests.append(req)

    def _accept_loop(self) -> None:
        while True:
            try:
                sock, _ = self.listener.accept()
            except OSError:
                return
            with self._lock:
                if self._closing:
                    sock.close()
                    return
                conn = BackendConn(self, sock, len(self._conns))
                self._conns.append(conn)
            t = threading.Thread(target=self._serve, args=(conn,), daemon=True)
            self._threads.append(t)
            t.start()

    def _serve(self, conn: BackendConn) -> None:
        try:
            self.handler(conn, conn.sock)
            if not conn.closed.is_set():
                with contextlib.suppress(OSError):
                    conn.read_until_close()
        except Exception as exc:  # recorded for the test to inspect
            if not self._closing:
                self.errors.append(exc)
        finally:
            if not conn.closed.is_set():
                with contextlib.suppress(OSError):
                    conn.sock.close()
                conn.closed.set()

    def close(self) -> None:
        with self._lock:
            self._closing = True
        self.release.set()
        # shutdown first: close() alone does not wake a thread blocked in accept(), and the kernel socket
        # would go on accepting (a "closed" backend must refuse connections)
        with contextlib.suppress(OSError):
            self.listener.shutdown(socket.SHUT_RDWR)
        with contextlib.suppress(OSError):
            self.listener.close()
        self._accept_thread.join(2)
        for c in self.connections:
            with contextlib.suppress(OSError):
                c.sock.shutdown(socket.SHUT_RDWR)
            with contextlib.suppress(OSError):
                c.sock.close()
        for t in self._threads:
            t.join(2)

    def __enter__(self) -> "RawBackend":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def keep_alive_handler(answer: Callable[[BackendConn, RawRequest], object]) -> Handler:
    """A handler reading requests in a loop and calling answer(conn, req) for each; stops at EOF,
    or when answer returns the string "close" (after which the connection is closed)."""
    def handler(conn: BackendConn, sock: socket.socket) -> None:
        while True:
            req = conn.read_request()
            if req is None:
                return
            if answer(conn, req) == "close":
                conn.close()
                return
    return handler


class UnresponsiveListener:
    """A loopback port whose accept queue is full, so TCP connects to it hang (the kernel drops the SYNs)
    until the connecting side's own timeout: the way to provoke a connect timeout without leaving loopback.
    (listen backlog 0 holds one queued connection; a filler connection takes it.)"""

    def __init__(self, host: str = LOOPBACK):
        self.host = host
        self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.listener.bind((host, 0))
        self.listener.listen(0)
        self.port = self.listener.getsockname()[1]
        self._fillers: list[socket.socket] = []
        # fill the queue until a connect no longer completes at once
        for _ in range(8):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.settimeout(0.5)
            try:
                s.connect((host, self.port))
            except (socket.timeout, OSError):
                s.close()
                break
            self._fillers.append(s)

    def url(self, path: str = "") -> str:
        return f"http://{self.host}:{self.port}{path}"

    def close(self) -> None:
        for s in self._fillers:
            with contextlib.suppress(OSError):
                s.close()
        with contextlib.suppress(OSError):
            self.listener.close()

    def __enter__(self) -> "UnresponsiveListener":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def refused_port() -> int:
    """A loopback port on which connections are refused (nothing listens; not reused immediately)."""
    return free_port()


# --------------------------------------------------------------------------------------------------
# gunicorn with the echo app


class MemberProcess:
    """What every app-server member run as a child process has: where it listens (`host`, `port`), its
    log file in a temporary directory, and cleanup on leaving a `with` block. Subclasses start the
    process in `__init__` and say how to `stop` it."""

    host: str
    port: int
    log_path: Path
    _tmp: tempfile.TemporaryDirectory[str]

    def url(self, prefix: str = "/webapps") -> str:
        return f"http://{self.host}:{self.port}{prefix}"

    @property
    def authority(self) -> str:
        return f"{self.host}:{self.port}"

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def stop(self, timeout: float = 10) -> None:
        raise NotImplementedError

    def __enter__(self: _M) -> _M:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
        self._tmp.cleanup()


_M = TypeVar("_M", bound=MemberProcess)


class Gunicorn(MemberProcess):
    """gunicorn (sys.executable -m gunicorn) serving a WSGI app on 127.0.0.1:<free port>.

    Ready once GET <ready_path> answers. `.url(prefix)` gives a member URL such as
    http://127.0.0.1:PORT/webapps."""

    def __init__(self, app: str = "tests.apps.echo_wsgi:app", workers: int = 1, threads: int = 4,
                 ready_path: str = "/webapps/echo", ready_timeout: float = 30, extra_args: Iterable[str] = ()):
        self.app = app
        self.host = LOOPBACK
        self._tmp = tempfile.TemporaryDirectory(prefix="gunicorn-test-")
        self.log_path = Path(self._tmp.name) / "gunicorn.log"
        last_exc: Exception | None = None
        for _attempt in range(3):  # a free port can be taken between free_port() and bind
            self.port = free_port()
            self._log = open(self.log_path, "ab")
            args = [sys.executable, "-m", "gunicorn", "--bind", f"{self.host}:{self.port}",
                    "--workers", str(workers), "--threads", str(threads), "--worker-class", "gthread",
                    "--graceful-timeout", "2", "--timeout", "120", "--keep-alive", "5",
                    "--chdir", str(REPO), "--log-level", "warning", *extra_args, app]
            env = dict(os.environ)
            env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
            self.proc = subprocess.Popen(args, cwd=REPO, env=env, stdin=subprocess.DEVNULL, stdout=self._log,
                                         stderr=subprocess.STDOUT, start_new_session=True)
            try:
                wait_until(lambda: self._answers(ready_path), ready_timeout, 0.05)
                return
            except (TimeoutError, RuntimeError) as exc:
                last_exc = exc
                self.stop()
        raise RuntimeError(f"gunicorn did not start: {last_exc}; log:\n{self.log()}")

    def _answers(self, path: str) -> bool:
        if self.proc.poll() is not None:
            raise RuntimeError(f"gunicorn exited with {self.proc.returncode}")
        try:
            c = http.client.HTTPConnection(self.host, self.port, timeout=2)
            c.request("GET", path)
            ok = c.getresponse().status == 200
            c.close()
            return ok
        except OSError:
            return False

    def stop(self, timeout: float = 10) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, _signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, _signal.SIGKILL)
                self.proc.wait(10)
        with contextlib.suppress(Exception):
            self._log.close()
