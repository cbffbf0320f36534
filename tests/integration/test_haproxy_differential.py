"""Every request vector against a real HAProxy and against ferryman: "never looser than HAProxy".

HAProxy (Debian's /usr/sbin/haproxy, started once for the module in the foreground with a generated
configuration in a temporary directory: mode http, one backend) and ferryman (the configuration of
tests/integration/test_hostile.py) each sit in front of their own recording backend. Each vector of
tests/integration/vectors.py is sent whole on one fresh connection to each proxy; what each backend received
is the set of complete requests it could read.

The rule, per vector: ferryman never forwards a request HAProxy refused (ferryman's backend receives no more
complete requests than HAProxy's); and where both forward, each request ferryman forwards is canonical
(one framing header, a normalised target: the checks of test_hostile) and equivalent to HAProxy's (same
method, the same path once HAProxy's target is normalised and mapped through the route, the same query and
body bytes). Where ferryman refuses and HAProxy forwards is allowed; that list is printed by the last test
(run with ``-s`` or see docs/security.md).
"""

from __future__ import annotations

import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from ferryman.core.paths import normalize_path, split_target
from ferryman.errors import PathRejected
from tests.integration.test_hostile import (
    Env, _answer, _config, forwarded_problems, run_vector,
)
from tests.integration.vectors import VECTORS, Either, Forward, Vector
from tests.support import (
    Ferryman, RawBackend, RawRequest, free_port, keep_alive_handler, parse_responses, require_program,
    wait_for_port,
)

pytestmark = pytest.mark.integration

HAPROXY_CFG = """
global
    maxconn 200

defaults
    mode http
    timeout connect 2s
    timeout client 3s
    timeout server 3s
    timeout http-request 2s

frontend fe
    bind 127.0.0.1:{port}
    default_backend be

backend be
    server s1 {backend}
"""


class HAProxy:
    def __init__(self, program: str, backend: RawBackend) -> None:
        self.dir = tempfile.TemporaryDirectory(prefix="ferryman-haproxy-")
        self.port = free_port()
        cfg = Path(self.dir.name) / "haproxy.cfg"
        cfg.write_text(HAPROXY_CFG.format(port=self.port, backend=backend.authority))
        self.log = open(Path(self.dir.name) / "haproxy.log", "w+b")  # noqa: SIM115
        self.proc = subprocess.Popen([program, "-db", "-f", str(cfg)], stdout=self.log, stderr=subprocess.STDOUT)
        try:
            wait_for_port("127.0.0.1", self.port, 15)
        except Exception:
            self.stop()
            raise

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.log.close()
        self.dir.cleanup()


class Side:
    """HAProxy with its backend and its trap: the requests each vector made reach the backend."""

    def __init__(self, haproxy: HAProxy, backend: RawBackend, trap: RawBackend) -> None:
        self.haproxy, self.backend, self.trap = haproxy, backend, trap
        self.results: dict[str, list[RawRequest]] = {}

    def subst(self, raw: bytes) -> bytes:
        return (raw.replace(b"{TRAP}", self.trap.authority.encode())
                .replace(b"{MEMBER}", self.backend.authority.encode())
                .replace(b"{PORT}", str(self.haproxy.port).encode()))

    def run(self, v: Vector) -> list[RawRequest]:
        if v.id in self.results:
            return self.results[v.id]
        before = len(self.backend.requests)
        fwd = v.expect.forward if isinstance(v.expect, Either) else v.expect
        want = fwd.requests if isinstance(fwd, Forward) else 1
        with socket.create_connection(("127.0.0.1", self.haproxy.port), timeout=6) as s:
            buf = bytearray()
            try:
                s.sendall(self.subst(v.raw))
            except OSError:
                pass
            # read until HAProxy closes, or until as many answers as the corpus expects requests are in and
            # nothing more comes for 200 ms (no half-close: HAProxy would drop pipelined requests after it)
            deadline = time.monotonic() + 6
            while (left := deadline - time.monotonic()) > 0:
                try:
                    done = len([r for r in parse_responses(bytes(buf), eof=False) if r.complete]) >= want
                except ValueError:
                    done = False
                s.settimeout(min(left, 0.2) if done else left)
                try:
                    chunk = s.recv(1 << 16)
                except socket.timeout:
                    break
                except OSError:
                    break
                if not chunk:
                    break
                buf += chunk
        # the client connection is over: whatever HAProxy forwarded for it has been answered by now;
        # settle: two equal readings 30 ms apart
        last = -1
        while (now := len(self.backend.received())) != last:
            last = now
            time.sleep(0.03)
        got = self.backend.requests[before:]
        self.results[v.id] = got
        return got


@pytest.fixture(scope="module")
def haproxy_side():
    program = require_program("haproxy", "apt-get install haproxy", path="/usr/sbin/haproxy")
    with RawBackend(keep_alive_handler(_answer)) as backend, RawBackend() as trap:
        h = HAProxy(program, backend)
        try:
            yield Side(h, backend, trap)
        finally:
            h.stop()


@pytest.fixture(scope="module")
def ferryman_side():
    with RawBackend(keep_alive_handler(_answer)) as backend, RawBackend() as trap, \
            Ferryman(_config(backend)) as f:
        yield Env(f, backend, trap)


def expected_target(haproxy_target: str) -> str | None:
    """HAProxy's forwarded target as ferryman would forward it: origin-form, normalised, mapped through the
    route (`/webapps` to the member's `/webapps`, anything else to the catch-all member's `/catchall`).
    None when ferryman's path rules refuse it."""
    target = haproxy_target.encode("latin-1")
    low = target.lower()
    if low.startswith((b"http://", b"https://")):
        rest = target.split(b"//", 1)[1]
        cut = min((i for i in (rest.find(b"/"), rest.find(b"?")) if i >= 0), default=len(rest))
        target = rest[cut:] or b"/"
        if target.startswith(b"?"):
            target = b"/" + target
    try:
        path, query = split_target(target)
        norm = normalize_path(path)
    except PathRejected:
        return None
    if not (norm == b"/webapps" or norm.startswith(b"/webapps/")):
        norm = b"/catchall" + (b"" if norm == b"/" else norm)
    return (norm + query).decode("latin-1")


def compare(v: Vector, env: Env, theirs: list[RawRequest]) -> list[str]:
    ours = run_vector(env, v).backend_requests
    problems: list[str] = []
    if len(ours) > len(theirs):
        problems.append(f"ferryman forwarded {len(ours)} request(s), HAProxy only {len(theirs)}: "
                        f"{[r.target for r in ours]} vs {[r.target for r in theirs]}")
    for mine, hers in zip(ours, theirs):
        problems += [f"{mine.target}: {p}" for p in forwarded_problems(mine, env)]
        if mine.method != hers.method:
            problems.append(f"method {mine.method} vs HAProxy's {hers.method}")
        want = expected_target(hers.target)
        if want is None:
            problems.append(f"ferryman forwarded {mine.target!r} for HAProxy's {hers.target!r}, a path its own "
                            "rules refuse")
        elif mine.target != want:
            problems.append(f"target {mine.target!r}, HAProxy forwarded {hers.target!r} (normalised: {want!r})")
        if mine.body != hers.body:
            problems.append(f"body {mine.body[:80]!r} vs HAProxy's {hers.body[:80]!r}")
    return problems


@pytest.mark.parametrize("vector", VECTORS, ids=[v.id for v in VECTORS])
def test_ferryman_never_forwards_what_haproxy_refuses_and_forwards_the_same_request_where_both_do(
        haproxy_side: Side, ferryman_side: Env, vector: Vector) -> None:
    theirs = haproxy_side.run(vector)
    problems = compare(vector, ferryman_side, theirs)
    assert not problems, (f"[{vector.id}] source: {vector.source}\n  HAProxy forwarded "
                          f"{[(r.method, r.target, r.body[:40]) for r in theirs]}\n  ferryman: "
                          f"{run_vector(ferryman_side, vector).summary()}\n  problems:\n    - " + "\n    - ".join(problems))


def stricter_than_haproxy(haproxy_side: Side, ferryman_side: Env) -> list[tuple[Vector, int, int]]:
    out = []
    for v in VECTORS:
        theirs = len(haproxy_side.run(v))
        ours = len(run_vector(ferryman_side, v).backend_requests)
        if ours < theirs:
            out.append((v, ours, theirs))
    return out


def test_the_vectors_ferryman_refuses_and_haproxy_forwards_are_listed(haproxy_side: Side, ferryman_side: Env,
                                                                       capsys: pytest.CaptureFixture[str]) -> None:
    """Allowed by the rule, and kept visible: printed here, summarised in docs/security.md."""
    rows = stricter_than_haproxy(haproxy_side, ferryman_side)
    both = sum(1 for v in VECTORS if haproxy_side.run(v) and run_vector(ferryman_side, v).backend_requests)
    neither = sum(1 for v in VECTORS if not haproxy_side.run(v) and not run_vector(ferryman_side, v).backend_requests)
    lines = [f"{len(VECTORS)} vectors: both forward {both}, both refuse {neither}",
             f"{len(rows)} of {len(VECTORS)} vectors: ferryman forwards fewer requests than HAProxy "
             "(allowed: stricter)"]
    lines += [f"  {v.id}: ferryman {ours}, HAProxy {theirs}" for v, ours, theirs in rows]
    with capsys.disabled():
        print("\n" + "\n".join(lines))
    assert all(ours < theirs for _, ours, theirs in rows)
    # the corpus is not trivial for HAProxy either: it refuses a good part of it
    refused_by_both = [v for v in VECTORS if not haproxy_side.run(v) and not run_vector(ferryman_side, v).backend_requests]
    assert len(refused_by_both) > len(VECTORS) // 3, len(refused_by_both)
