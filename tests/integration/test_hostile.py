"""The hostile / malformed request corpus (tests/integration/vectors.py) against a real ferryman.

One ferryman and one recording backend serve the whole module: route ``/webapps`` -> member
``http://127.0.0.1:PORT/webapps`` and a catch-all ``/`` -> ``http://127.0.0.1:PORT/catchall`` (same backend,
so the forwarded target shows which route was chosen). A second listener, the *trap*, is an address that is
not a configured member: nothing may ever connect to it (invariant 5).

Per vector: the raw bytes are sent on a fresh client connection; what the client got (responses, whether the
connection was closed) and every byte the backend received meanwhile are recorded. Attribution is exact: after
each vector a sentinel request goes through ferryman and is removed from the backend's new bytes, so whatever
remains is what the vector caused. Outcomes are cached, so the per-invariant summaries at the end reuse them
(and run any vector not yet run when selected alone).

Guarantees: invariants 1-6 and the "never looser than HAProxy" rule, as docs/request-safety.md states
them. Docs: docs/request-safety.md (its corpus table is checked against vectors.py).
"""

from __future__ import annotations

import itertools
import re
import socket
import time
from dataclasses import dataclass, field

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.integration.vectors import (
    DOC, VECTORS, Either, Forward, Refuse, Vector, render_table,
)
from tests.support import (
    Ferryman, RawBackend, RawRequest, Response, keep_alive_handler, parse_responses, wait_until,
)

pytestmark = pytest.mark.integration

CLIENT_TIMEOUT = 6.0     # hang guard for one vector's answer (header_timeout is 3s)
CLOSE_GRACE = 3.0        # after an answer that must be followed by a close

# --------------------------------------------------------------------------------------------------
# The running setup


@dataclass
class Env:
    ferryman: Ferryman
    backend: RawBackend
    trap: RawBackend
    outcomes: dict[str, "Outcome"] = field(default_factory=dict)
    counter: itertools.count = field(default_factory=itertools.count)

    @property
    def port(self) -> int:
        return self.ferryman.port("http")

    @property
    def member(self) -> str:
        return self.backend.authority

    def subst(self, text: str) -> str:
        return (text.replace("{TRAP}", self.trap.authority).replace("{MEMBER}", self.member)
                .replace("{PORT}", str(self.port)))

    def subst_bytes(self, raw: bytes) -> bytes:
        return (raw.replace(b"{TRAP}", self.trap.authority.encode()).replace(b"{MEMBER}", self.member.encode())
                .replace(b"{PORT}", str(self.port).encode()))


def _answer(conn, req: RawRequest) -> None:
    if req.method == "HEAD":
        conn.send(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n")
    else:
        conn.respond(200, body=b"backend-ok")


def _config(backend: RawBackend) -> str:
    return f"""
[[listener]]
name = "http"
bind = "127.0.0.1:0"
header_timeout = "3s"
access_log = {{ format = "off" }}

[pool.app]
members = [{{ url = "{backend.url('/webapps')}" }}]

[pool.rest]
members = [{{ url = "{backend.url('/catchall')}" }}]

[[route]]
path = "/webapps"
pool = "app"

[[route]]
path = "/"
pool = "rest"

[[route]]
path = "/streamed"
pool = "app"
request_buffer = "0"
"""


@pytest.fixture(scope="module")
def env():
    with RawBackend(keep_alive_handler(_answer)) as backend, RawBackend() as trap, \
            Ferryman(_config(backend)) as f:
        yield Env(f, backend, trap)


# --------------------------------------------------------------------------------------------------
# Running one vector


@dataclass
class Outcome:
    sent: bytes
    client_raw: bytes
    responses: list[Response]
    closed: bool
    parse_error: str | None
    backend_bytes: bytes                    # everything the backend received because of this vector
    backend_requests: list[RawRequest]      # the requests among those bytes the backend could read
    trap_connections: int                   # connections made to the trap during this vector

    @property
    def finals(self) -> list[Response]:
        return [r for r in self.responses if not 100 <= r.status < 200]

    def summary(self) -> str:
        statuses = [r.status for r in self.finals]
        return (f"client got {statuses or 'no response'} (closed={self.closed}"
                f"{', unparsable: ' + self.parse_error if self.parse_error else ''}); "
                f"backend got {len(self.backend_requests)} request(s), {len(self.backend_bytes)} bytes"
                + (f": {self.backend_bytes[:400]!r}" if self.backend_bytes else ""))


def _want(expect) -> int:  # noqa: ANN001
    if isinstance(expect, Refuse):
        return 1
    fwd = expect.forward if isinstance(expect, Either) else expect
    return len(fwd.responses)


def _must_close(expect, finals: list[Response]) -> bool:  # noqa: ANN001
    if isinstance(expect, Refuse):
        return expect.close
    if isinstance(expect, Either) and finals and finals[0].status in expect.refuse.statuses:
        return expect.refuse.close
    fwd = expect.forward if isinstance(expect, Either) else expect
    return fwd.closed or any(r.status >= 400 for r in finals)


def _pieces(data: bytes, cuts: list[int] | None) -> list[bytes]:
    if cuts is None:
        return [data]
    bounds = [0, *sorted(set(c for c in cuts if 0 < c < len(data))), len(data)]
    return [data[a:b] for a, b in zip(bounds, bounds[1:])]


def _converse(port: int, data: bytes, expect, cuts: list[int] | None = None,  # noqa: ANN001
              ) -> tuple[bytes, list[Response], bool, str | None]:
    """Send `data` on a fresh connection (in one write, or cut at `cuts`, one write per piece); read until
    closed, or until the expected answers are in."""
    s = socket.create_connection(("127.0.0.1", port), timeout=CLIENT_TIMEOUT)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    buf = bytearray()
    closed = False
    responses: list[Response] = []
    error: str | None = None
    try:
        try:
            for piece in _pieces(data, cuts):
                s.sendall(piece)
        except (BrokenPipeError, ConnectionResetError):
            pass  # ferryman may answer and close before reading everything (limits)
        deadline = time.monotonic() + CLIENT_TIMEOUT
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            s.settimeout(remaining)
            try:
                chunk = s.recv(1 << 16)
            except socket.timeout:
                break
            except ConnectionResetError:
                closed = True
                break
            if not chunk:
                closed = True
                break
            buf += chunk
            try:
                responses = parse_responses(bytes(buf), eof=False)
                error = None
            except ValueError as exc:
                error = str(exc)
                continue
            finals = [r for r in responses if not 100 <= r.status < 200 and r.complete]
            if not finals:
                continue
            want = 1 if isinstance(expect, Either) and finals[0].status in expect.refuse.statuses else _want(expect)
            if len(finals) >= want:
                if not _must_close(expect, finals):
                    break
                deadline = min(deadline, time.monotonic() + CLOSE_GRACE)
    finally:
        s.close()
    if closed:
        try:
            responses = parse_responses(bytes(buf), eof=True)
            error = None
        except ValueError as exc:
            error = str(exc)
    return bytes(buf), responses, closed, error


def _snapshot(backend: RawBackend) -> dict[int, int]:
    return {c.index: len(c.received) for c in backend.connections}


def _total(backend: RawBackend) -> int:
    return sum(len(c.received) for c in backend.connections)


def run_vector(env: Env, v: Vector, cuts: list[int] | None = None, key: str | None = None) -> Outcome:
    """The outcome of sending `v` (in one write, or cut at `cuts`); cached under `key` (default: the id)."""
    key = key or v.id
    if key in env.outcomes:
        return env.outcomes[key]
    backend = env.backend
    before = _snapshot(backend)
    n_requests = len(backend.requests)
    trap_before = env.trap.connection_count
    data = env.subst_bytes(v.raw)

    client_raw, responses, closed, error = _converse(env.port, data, v.expect, cuts)

    # Sentinel: one more request through ferryman, so that whatever the vector made ferryman send has
    # been sent by the time the sentinel arrives; then wait for the backend's byte count to settle.
    sentinel_target = f"/webapps/__sentinel__/{next(env.counter)}"
    sentinel = (f"GET {sentinel_target} HTTP/1.1\r\nHost: sentinel.test\r\nConnection: close\r\n\r\n").encode()
    _, answers, _, _ = _converse(env.port, sentinel, Forward())
    if not answers or answers[-1].status != 200:
        raise AssertionError(f"[{v.id}] ferryman did not serve the sentinel request after this vector "
                             f"(got {[r.status for r in answers]}): is it still serving?")
    sentinel_req = wait_until(lambda: next((r for r in backend.requests[n_requests:]
                                            if r.target == sentinel_target), None), 10, 0.005,
                              f"sentinel {sentinel_target} did not reach the backend")
    last = -1
    while True:  # settle: two equal readings 30 ms apart
        now = _total(backend)
        if now == last:
            break
        last = now
        time.sleep(0.03)

    pieces = []
    for c in backend.connections:
        new = c.received[before.get(c.index, 0):]
        if sentinel_req in c.requests:
            new = new.replace(sentinel_req.raw, b"", 1)
        pieces.append(new)
    reqs = [r for r in backend.requests[n_requests:] if r is not sentinel_req]
    out = Outcome(data, client_raw, responses, closed, error, b"".join(pieces), reqs,
                  env.trap.connection_count - trap_before)
    env.outcomes[key] = out
    return out


# --------------------------------------------------------------------------------------------------
# What a forwarded request must look like (invariants 1, 4, 5, 6), whatever the vector

TOKEN = rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+"
REQUEST_LINE = re.compile(TOKEN + rb" [\x21-\x7e]+ HTTP/1\.1")
FIELD_LINE = re.compile(rb"(" + TOKEN + rb"):[ \t]*([^\x00-\x08\x0a-\x1f\x7f]*)")
HOP_BY_HOP = {"keep-alive", "te", "trailer", "upgrade", "proxy-connection", "proxy-authorization",
              "proxy-authenticate", "http2-settings"}
UNRESERVED_ESCAPE = re.compile(r"%(?:3[0-9]|4[1-9a-f]|5[0-9a]|6[1-9a-f]|7[0-9a]|2d|2e|5f|7e)", re.I)
MEMBER_PREFIXES = ("/webapps", "/catchall")


def wsgi_name(name: str) -> str:
    """The spelling a header name has to WSGI/CGI: `Remote_User` and `remote-user` are one header."""
    return name.lower().replace("_", "-")


def head_problems(r: RawRequest, env: Env) -> list[str]:
    """Invariant 1 (fresh canonical head, one framing header) and 4/5 (what ferryman vouches for)."""
    problems = []
    raw = r.raw_head
    if not raw.endswith(b"\r\n\r\n"):
        problems.append("head does not end with CRLF CRLF")
    lines = raw[:-4].split(b"\r\n")
    if any(b"\r" in ln or b"\n" in ln for ln in lines):
        problems.append("bare CR or LF inside the head")
    if not REQUEST_LINE.fullmatch(lines[0]):
        problems.append(f"request line not canonical: {lines[0][:120]!r}")
    names: list[str] = []
    for ln in lines[1:]:
        m = FIELD_LINE.fullmatch(ln)
        if m is None:
            problems.append(f"field line not canonical (fold, control byte or bad name): {ln[:120]!r}")
            continue
        names.append(wsgi_name(m.group(1).decode("latin-1")))
    framing = [n for n in names if n in ("content-length", "transfer-encoding")]
    if len(framing) > 1:
        problems.append(f"{len(framing)} framing headers (counting _ aliases): {framing}")
    te = r.header("transfer-encoding")
    if te is not None and te != "chunked":
        problems.append(f"transfer-encoding {te!r} is not exactly 'chunked'")
    cl = r.header("content-length")
    if cl is not None and not re.fullmatch(r"[0-9]+", cl):
        problems.append(f"content-length {cl!r} not canonical")
    if r.body and not framing:
        problems.append("a body without a framing header")
    if names.count("host") != 1:
        problems.append(f"{names.count('host')} Host headers")
    elif r.header("host") != env.member:
        problems.append(f"Host {r.header('host')!r} is not the member authority {env.member}")
    # a WebSocket upgrade is the one hop-by-hop exchange ferryman writes itself, canonically
    websocket = r.header_all("upgrade") == ["websocket"] and r.header_all("connection") == ["upgrade"]
    for n in names:
        if n in HOP_BY_HOP and not (websocket and n == "upgrade"):
            problems.append(f"hop-by-hop header {n} forwarded")
    for v in r.header_all("connection"):
        if v.lower() not in ("close", "keep-alive") and not websocket:
            problems.append(f"client Connection value relayed: {v!r}")
    if names.count("x-forwarded-for") != 1 or r.header("x-forwarded-for") != "127.0.0.1":
        problems.append(f"x-forwarded-for is not ferryman's single value: {r.header_all('x-forwarded-for')} "
                        f"({names.count('x-forwarded-for')} under WSGI spelling)")
    for n in set(names):
        if (n.startswith("x-forwarded-") or n in ("remote-user", "forwarded", "x-real-ip")) and names.count(n) > 1:
            problems.append(f"{n} appears {names.count(n)} times under WSGI spelling")
    for n in ("remote-user", "forwarded", "x-real-ip"):
        if n in names:
            problems.append(f"{n} forwarded (ferryman writes none here: no auth, forwarded=false, untrusted peer)")
    return problems


def body_problems(r: RawRequest) -> list[str]:
    """A chunked body is re-chunked canonically: hex sizes, no extensions, no trailers."""
    if not r.chunked:
        return []
    problems = []
    rest = r.raw[len(r.raw_head):]
    for line in rest.split(b"\r\n"):
        if re.fullmatch(rb"[0-9a-fA-F]+;.*", line):
            problems.append(f"chunk extension forwarded: {line[:80]!r}")
    if r.trailers:
        problems.append(f"trailers forwarded: {r.trailers}")
    return problems


def target_problems(target: str) -> list[str]:
    """Invariant 6: the forwarded target is the normalised one, under a member's path."""
    problems = []
    path, _, query = target.partition("?")
    if not any(path == p or path.startswith(p + "/") for p in MEMBER_PREFIXES):
        problems.append(f"target {target!r} is not under a member path {MEMBER_PREFIXES}")
    if "//" in path:
        problems.append(f"'//' in forwarded path {path!r}")
    segs = path.split("/")
    if any(s in (".", "..") or s.startswith(("..;", ".;")) for s in segs):
        problems.append(f"dot segment in forwarded path {path!r}")
    low = path.lower()
    for bad in ("%2f", "%5c", "%00", "\\", "#"):
        if bad in low:
            problems.append(f"{bad!r} in forwarded path {path!r}")
    if UNRESERVED_ESCAPE.search(path):
        problems.append(f"unreserved escape not decoded in {path!r}")
    if re.search(r"[^\x21-\x7e]", target):
        problems.append(f"byte outside visible ASCII in target {target!r}")
    return problems


def forwarded_problems(r: RawRequest, env: Env) -> list[str]:
    return head_problems(r, env) + body_problems(r) + target_problems(r.target)


# --------------------------------------------------------------------------------------------------
# Checking an outcome against a vector's expectation


def check_refuse(exp: Refuse, o: Outcome) -> list[str]:
    problems = []
    finals = o.finals
    if not finals:
        problems.append("no response at all (every request gets exactly one final response)")
    elif finals[0].status not in exp.statuses:
        problems.append(f"status {finals[0].status}, expected one of {sorted(exp.statuses)}")
    if exp.close and not o.closed:
        problems.append("client connection left open after the refusal")
    if any(100 <= r.status < 200 for r in o.responses):
        problems.append("an interim 1xx (100 Continue) was sent for a request that was then refused")
    if o.backend_bytes:
        problems.append(f"backend received {len(o.backend_bytes)} bytes of a refused request: "
                        f"{o.backend_bytes[:300]!r}")
    return problems


def check_forward(exp: Forward, o: Outcome, env: Env, pieces: bool = False) -> list[str]:
    problems = []
    finals = o.finals
    for i, allowed in enumerate(exp.responses):
        if i >= len(finals):
            problems.append(f"response {i + 1} missing (wanted {sorted(allowed)}; got {[r.status for r in finals]})")
        elif finals[i].status not in allowed:
            problems.append(f"response {i + 1} has status {finals[i].status}, wanted {sorted(allowed)}")
    if exp.closed and not o.closed:
        problems.append("client connection not closed")
    reqs = o.backend_requests
    if len(reqs) != exp.requests:
        problems.append(f"backend received {len(reqs)} requests, expected {exp.requests}")
    accounted = sum(len(r.raw) for r in reqs)
    streamed_head = pieces and exp.later_refused_in_body and len(finals) > len(exp.responses) \
        and finals[-1].status == 400 and o.closed
    if accounted != len(o.backend_bytes) and not streamed_head:
        problems.append(f"backend received {len(o.backend_bytes) - accounted} bytes beyond complete requests: "
                        f"{o.backend_bytes[:300]!r}")
    for r in reqs:
        problems += [f"{r.target}: {p}" for p in forwarded_problems(r, env)]
    if exp.targets is not None:
        got = [r.target for r in reqs]
        want = [env.subst(t) for t in exp.targets]
        if got != want:
            problems.append(f"targets {got}, expected {want}")
    if reqs:
        first = reqs[0]
        for name, value in exp.headers.items():
            values = first.header_all(name)
            if values != [env.subst(value)]:
                problems.append(f"{name}: {values}, expected [{env.subst(value)!r}]")
        if exp.body is not None and first.body != exp.body:
            problems.append(f"body {first.body[:200]!r}, expected {exp.body[:200]!r}")
    for r in reqs:
        names = [wsgi_name(k) for k in r.header_names()]
        for name in exp.absent:
            if wsgi_name(name) in names:
                problems.append(f"{name} (in some spelling) reached the backend: "
                                f"{[(k, v) for k, v in r.headers if wsgi_name(k) == wsgi_name(name)]}")
        head = r.raw_head.decode("latin-1")
        for text in exp.not_in_head:
            if env.subst(text) in head:
                problems.append(f"client value {text!r} reached the backend")
    return problems


def check(v: Vector, o: Outcome, env: Env, pieces: bool = False) -> list[str]:
    exp = v.expect
    if isinstance(exp, Refuse):
        problems = check_refuse(exp, o)
    elif isinstance(exp, Forward):
        problems = check_forward(exp, o, env, pieces)
    else:
        refused = bool(o.finals) and o.finals[0].status in exp.refuse.statuses
        problems = check_refuse(exp.refuse, o) if refused else check_forward(exp.forward, o, env)
    if o.trap_connections:
        problems.append(f"{o.trap_connections} connection(s) to the non-member trap address (invariant 5)")
    return problems


def _report(v: Vector, o: Outcome, problems: list[str]) -> str:
    return (f"[{v.id}] invariant {v.invariant}, source: {v.source}\n  sent: {o.sent[:300]!r}\n  "
            f"expected: {v.expect.describe()}\n  outcome: {o.summary()}\n  problems:\n    - "
            + "\n    - ".join(problems))


# --------------------------------------------------------------------------------------------------
# One test per vector


@pytest.mark.parametrize("vector", VECTORS, ids=[v.id for v in VECTORS])
def test_vector(env: Env, vector: Vector) -> None:
    outcome = run_vector(env, vector)
    problems = check(vector, outcome, env)
    assert not problems, _report(vector, outcome, problems)


# --------------------------------------------------------------------------------------------------
# One summary per invariant (runs any vector not yet run)


def _all(env: Env) -> list[tuple[Vector, Outcome]]:
    return [(v, run_vector(env, v)) for v in VECTORS]


def _failing(env: Env, invariant: int) -> list[str]:
    out = []
    for v, o in _all(env):
        if v.invariant == invariant:
            problems = check(v, o, env)
            if problems:
                out.append(f"{v.id}: " + "; ".join(problems)[:400])
    return out


def _forwarded(env: Env) -> list[tuple[Vector, RawRequest]]:
    return [(v, r) for v, o in _all(env) for r in o.backend_requests]


def test_invariant_1_every_forwarded_head_is_fresh_and_singly_framed(env: Env) -> None:
    """Every request the backend received, over the whole corpus: CRLF-only lines, canonical request line and
    field lines (no fold, no control byte), at most one framing header counting `_` aliases (exactly one when
    there is a body), `transfer-encoding` exactly `chunked`, canonical chunks without extensions or trailers."""
    bad = []
    for v, r in _forwarded(env):
        problems = [p for p in head_problems(r, env) + body_problems(r)
                    if "framing" in p or "canonical" in p or "CR" in p or "chunk" in p or "trailer" in p
                    or "transfer-encoding" in p or "body without" in p]
        if problems:
            bad.append(f"{v.id} {r.target}: {problems}")
    failing = _failing(env, 1)
    assert not bad and not failing, "\n".join(bad + failing)


def test_invariant_2_ambiguous_framing_is_refused_and_closed_with_nothing_forwarded(env: Env) -> None:
    """Every refusal in the corpus (any invariant): a final status, the connection closed, and not one byte
    of the request at the backend; and every invariant-2 vector behaves as the corpus says."""
    bad = []
    for v, o in _all(env):
        exp = v.expect
        refusal = exp if isinstance(exp, Refuse) else (
            exp.refuse if isinstance(exp, Either) and o.finals and o.finals[0].status in exp.refuse.statuses
            else None)
        if refusal is not None and ((refusal.close and not o.closed) or o.backend_bytes or not o.finals):
            bad.append(f"{v.id}: {o.summary()[:300]}")
    failing = _failing(env, 2)
    assert not bad and not failing, "\n".join(["refusals that leaked or did not close:"] + bad
                                              + ["invariant-2 vectors failing:"] + failing)


def test_invariant_3_no_unaccounted_bytes_cross(env: Env) -> None:
    """Pipelined and smuggled bytes come out as whole, separately framed requests or not at all: over the
    corpus the backend never received a byte that is not part of a complete request it could read (a
    refused request contributes no byte)."""
    bad = []
    for v, o in _all(env):
        accounted = sum(len(r.raw) for r in o.backend_requests)
        if accounted != len(o.backend_bytes):
            bad.append(f"{v.id}: {len(o.backend_bytes) - accounted} unaccounted bytes: {o.backend_bytes[:200]!r}")
    failing = _failing(env, 3)
    assert not bad and not failing, "\n".join(bad + failing)


def test_invariant_4_vouched_and_hop_by_hop_headers_are_ferrymans_alone(env: Env) -> None:
    """Over every forwarded request: no hop-by-hop header, no relayed Connection option, X-Forwarded-For is
    ferryman's single value, no Remote-User/Forwarded/X-Real-IP in any spelling, no vouched name twice."""
    bad = []
    for v, r in _forwarded(env):
        problems = [p for p in head_problems(r, env)
                    if "hop-by-hop" in p or "Connection" in p or "forwarded" in p.lower() or "times" in p]
        if problems:
            bad.append(f"{v.id} {r.target}: {problems}")
    failing = _failing(env, 4)
    assert not bad and not failing, "\n".join(bad + failing)


def test_invariant_5_backend_addresses_come_only_from_configuration(env: Env) -> None:
    """The trap (an address named by absolute-form targets, Host headers and CONNECT) is never contacted,
    and every forwarded request carries the member's authority as Host."""
    _all(env)
    assert env.trap.connection_count == 0, f"{env.trap.connection_count} connection(s) reached the trap address"
    bad = [f"{v.id}: Host {r.header_all('host')}" for v, r in _forwarded(env) if r.header_all("host") != [env.member]]
    failing = _failing(env, 5)
    assert not bad and not failing, "\n".join(bad + failing)


def test_invariant_6_every_forwarded_target_is_normalised(env: Env) -> None:
    """Every target the backend received, over the whole corpus, is under a member path and normalised:
    no dot segment, no '//', no %2F/%5C/%00/backslash, unreserved escapes decoded, visible ASCII only."""
    bad = [f"{v.id}: {p}" for v, r in _forwarded(env) for p in target_problems(r.target)]
    failing = _failing(env, 6)
    assert not bad and not failing, "\n".join(bad + failing)


# --------------------------------------------------------------------------------------------------
# The same vectors cut into pieces: one byte per write, and random cuts


def _refused_in_body(v: Vector, o: Outcome) -> bool:
    exp = v.expect
    refusal = exp if isinstance(exp, Refuse) else exp.refuse if isinstance(exp, Either) else None
    return refusal is not None and refusal.stage == "body" and bool(o.finals) and \
        o.finals[0].status in refusal.statuses


def same_outcome(v: Vector, whole: Outcome, split: Outcome) -> list[str]:
    """What must not depend on how the bytes were cut: the answers, the close, and what the backend
    received. A body whose framing breaks after its head was dispatched is the one streaming difference:
    then the backend may have seen the head, but never a complete request (see the next section)."""
    problems = []
    if [r.status for r in whole.finals] != [r.status for r in split.finals]:
        problems.append(f"statuses {[r.status for r in split.finals]} split vs {[r.status for r in whole.finals]} whole")
    if whole.closed != split.closed:
        problems.append(f"closed={split.closed} split vs {whole.closed} whole")
    if _refused_in_body(v, whole):
        if split.backend_requests:
            problems.append(f"a request refused in its body reached the backend complete: {split.summary()}")
    else:
        # every request has its own X-Request-Id: the one header that differs by design
        got = [(r.method, r.target, r.body, [h for h in r.headers if h[0] != "x-request-id"])
               for r in split.backend_requests]
        want = [(r.method, r.target, r.body, [h for h in r.headers if h[0] != "x-request-id"])
                for r in whole.backend_requests]
        if got != want:
            problems.append(f"backend got {got!r:.400} split vs {want!r:.400} whole")
    return problems


@pytest.mark.parametrize("vector", VECTORS, ids=[v.id for v in VECTORS])
def test_vector_sent_one_byte_at_a_time_has_the_same_outcome(env: Env, vector: Vector) -> None:
    whole = run_vector(env, vector)
    data = env.subst_bytes(vector.raw)
    split = run_vector(env, vector, cuts=list(range(len(data))), key=vector.id + "/bytes")
    problems = same_outcome(vector, whole, split)
    if not _refused_in_body(vector, whole):
        problems += check(vector, split, env, pieces=True)
    assert not problems, _report(vector, split, problems)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(vector=st.sampled_from(VECTORS), cuts=st.lists(st.integers(1, 400), min_size=1, max_size=6))
def test_vector_sent_in_random_pieces_has_the_same_outcome(env: Env, vector: Vector, cuts: list[int]) -> None:
    whole = run_vector(env, vector)
    split = run_vector(env, vector, cuts=cuts, key=f"{vector.id}/{sorted(set(cuts))}")
    assert not same_outcome(vector, whole, split), _report(vector, split, same_outcome(vector, whole, split))


# --------------------------------------------------------------------------------------------------
# Beyond one write: a body that breaks its framing after the head was dispatched


def test_a_bad_chunk_in_a_later_read_never_completes_a_request_at_the_backend(env: Env) -> None:
    """A streaming proxy cannot un-send a head it dispatched before the body broke its framing; what it must
    do is answer 400 and close, and abort the backend connection so the backend never sees the request end
    (no terminating chunk, no reuse of that connection). RFC 9112 §7.1; invariants 2 and 3."""
    target = "/webapps/late-bad-chunk"  # as the backend sees it: a route that streams bodies at once
    head = f"POST /streamed/late-bad-chunk HTTP/1.1\r\nHost: test.local\r\nTransfer-Encoding: chunked\r\n\r\n".encode()
    with socket.create_connection(("127.0.0.1", env.port), timeout=CLIENT_TIMEOUT) as s:
        s.sendall(head + b"5\r\nhello\r\n")
        conn = wait_until(lambda: next((c for c in env.backend.connections
                                        if target.encode() in c.received and b"hello" in c.received), None),
                          10, 0.01, "the head and first chunk did not reach the backend")
        s.sendall(b"zz\r\nworld\r\n0\r\n\r\n")
        buf = bytearray()
        try:
            while chunk := s.recv(1 << 16):
                buf += chunk
        except ConnectionResetError:
            pass
    answers = parse_responses(bytes(buf))
    assert [r.status for r in answers] == [400], buf[:300]
    wait_until(lambda: conn.peer_closed, 10, 0.01, "ferryman kept the backend connection of a broken request")
    tail = conn.received[conn.received.index(target.encode()):]
    assert b"world" not in tail and b"0\r\n\r\n" not in tail, tail
    assert not any(r.target == target for r in env.backend.requests)


# --------------------------------------------------------------------------------------------------
# The documentation


def test_docs_request_safety_corpus_table_is_in_sync() -> None:
    """Regenerate with: python -m tests.integration.vectors"""
    assert render_table() in DOC.read_text(), "docs/request-safety.md is stale: run python -m tests.integration.vectors"


def test_every_vector_names_a_source_and_an_invariant() -> None:
    for v in VECTORS:
        assert v.source.strip(), v.id
        assert 1 <= v.invariant <= 6, v.id
        assert re.fullmatch(r"[a-z0-9][a-z0-9-]*", v.id), v.id
