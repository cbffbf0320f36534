"""The response corpus (tests/integration/response_vectors.py) against a real ferryman.

One ferryman and one scripted backend serve the module: route ``/r`` -> member ``http://BACKEND/r``. A request
for ``/r/<id>?split=<how>`` is answered with the case's bytes, written whole, one byte per write, or cut at the
given offsets (bytes after a message's declared end always go in the same write as its end: arriving later
they are indistinguishable from the next answer, on any HTTP/1.1 proxy). Any other request gets a normal
answer naming its target, so a pipelined request shows whether it got its own answer.

Per case the client sees the expected answer in a freshly written head; for a refused or connection-ending
answer ferryman closes that backend connection; the outcome does not depend on how the backend cut its bytes;
and pipelined behind a valid exchange on the same backend connection, neither neighbour is disturbed.
Invariants 1-3 of docs/request-safety.md, backend side; RFC 9112 §4-§7.
"""

from __future__ import annotations

import random
import re
import socket
import time
from dataclasses import dataclass
from urllib.parse import parse_qs, urlsplit

import pytest

from tests.integration.response_vectors import (
    DOC, RESPONSE_VECTORS, Reject, Relay, REither, RVector, render_table,
)
from tests.support import BackendConn, Ferryman, RawBackend, Response, parse_responses, wait_until

pytestmark = pytest.mark.integration

BY_ID = {v.id: v for v in RESPONSE_VECTORS}
CLIENT_TIMEOUT = 8.0


def _pieces(v: RVector, split: str) -> list[bytes]:
    raw = v.raw
    end = len(raw) - v.trailing  # the trailing bytes ride with the message's last byte
    if split == "whole":
        cuts: list[int] = []
    elif split == "bytes":
        cuts = list(range(1, end))
    else:
        cuts = [int(c) for c in split.split(",") if c]
    bounds = [0, *sorted({c for c in cuts if 0 < c < end}), len(raw)]
    return [raw[a:b] for a, b in zip(bounds, bounds[1:])]


@dataclass
class Served:
    conn: BackendConn
    index: int          # position of the vector's request among the connection's requests


class Script:
    """The backend's handler: answers /r/<id> with the case's bytes and anything else normally."""

    def __init__(self) -> None:
        self.served: dict[str, Served] = {}

    def __call__(self, conn: BackendConn, sock: socket.socket) -> None:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        while (req := conn.read_request()) is not None:
            url = urlsplit(req.target)
            vid = url.path.rsplit("/", 1)[-1]
            query = parse_qs(url.query)
            v = BY_ID.get(vid)
            if v is None or "tag" not in query:
                body = b"real:" + req.target.encode()
                if req.method == "HEAD":
                    conn.send(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(body))
                else:
                    conn.respond(200, body=body)
                continue
            # the first time the vector is sent: a GET cut inside its head is tried again on a fresh
            # connection (nothing was relayed), and the outcome is about the connection that saw the fault
            self.served.setdefault(query["tag"][0], Served(conn, len(conn.requests) - 1))
            try:
                for piece in _pieces(v, query["split"][0]):
                    conn.send(piece)
            except OSError:
                return  # ferryman gave up on a faulty answer and closed the connection: expected
            if v.backend_closes:
                conn.close()
                return


CONFIG = """
[[listener]]
name = "http"
bind = "127.0.0.1:0"
access_log = {{ format = "off" }}

[pool.r]
members = [{{ url = "{url}" }}]

[[route]]
path = "/r"
pool = "r"
"""


@dataclass
class Env:
    ferryman: Ferryman
    backend: RawBackend
    script: Script
    counter: int = 0

    def tag(self) -> str:
        self.counter += 1
        return str(self.counter)


@pytest.fixture(scope="module")
def env():
    script = Script()
    with RawBackend(script) as backend, Ferryman(CONFIG.format(url=backend.url("/r"))) as f:
        yield Env(f, backend, script)


# --------------------------------------------------------------------------------------------------
# One exchange


@dataclass
class Outcome:
    responses: list[Response]
    raw: bytes
    closed: bool
    error: str | None
    served: Served | None

    def summary(self) -> str:
        return (f"client got {[(r.status, r.complete, r.body[:60]) for r in self.responses]} closed={self.closed}"
                + (f" unparsable: {self.error}" if self.error else "") + f"; raw {self.raw[:300]!r}")


def _converse(port: int, data: bytes, methods: list[str], want: int) -> tuple[bytes, list[Response], bool, str | None]:
    s = socket.create_connection(("127.0.0.1", port), timeout=CLIENT_TIMEOUT)
    buf = bytearray()
    closed = False
    responses: list[Response] = []
    error = None
    deadline = time.monotonic() + CLIENT_TIMEOUT
    try:
        s.sendall(data)
        while (remaining := deadline - time.monotonic()) > 0:
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
                responses = parse_responses(bytes(buf), methods, eof=False)
            except ValueError as exc:
                error = str(exc)
                continue
            if len([r for r in responses if r.complete]) >= want:
                break
    finally:
        s.close()
    if closed:
        try:
            responses = parse_responses(bytes(buf), methods, eof=True)
            error = None
        except ValueError as exc:
            error = str(exc)
    return bytes(buf), responses, closed, error


def _request(method: str, target: str) -> bytes:
    return f"{method} {target} HTTP/1.1\r\nHost: test.local\r\n\r\n".encode()


def exchange(env: Env, v: RVector, split: str, pipelined: bool = False) -> tuple[Outcome, str]:
    tag = env.tag()
    target = f"/r/{v.id}?split={split}&tag={tag}"
    if pipelined:
        data = (_request("GET", f"/r/before-{tag}") + _request(v.method, target) + _request("GET", f"/r/after-{tag}"))
        methods, want = ["GET", v.method, "GET"], 3
    else:
        data, methods, want = _request(v.method, target), [v.method], 1
    raw, responses, closed, error = _converse(env.ferryman.port(), data, methods, want)
    served = wait_until(lambda: env.script.served.get(tag), 10, 0.005, f"[{v.id}] the backend never got the request")
    return Outcome(responses, raw, closed, error, served), tag


# --------------------------------------------------------------------------------------------------
# What a relayed head must look like

TOKEN = rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+"
STATUS_LINE = re.compile(rb"HTTP/1\.1 [1-5][0-9][0-9] [\x20-\x7e\x80-\xff]*")
FIELD_LINE = re.compile(rb"(" + TOKEN + rb"): ([^\x00-\x08\x0a-\x1f\x7f]*)")
HOP_BY_HOP = {"keep-alive", "te", "trailer", "upgrade", "proxy-connection", "proxy-authenticate", "proxy"}


def head_problems(r: Response) -> list[str]:
    problems = []
    lines = r.raw_head.split(b"\r\n")
    if not STATUS_LINE.fullmatch(lines[0]):
        problems.append(f"status line not canonical: {lines[0]!r}")
    names = []
    for ln in lines[1:]:
        m = FIELD_LINE.fullmatch(ln)
        if m is None:
            problems.append(f"field line not canonical: {ln[:100]!r}")
            continue
        names.append(m.group(1).decode().lower())
    framing = [n for n in names if n in ("content-length", "transfer-encoding")]
    if len(framing) > 1:
        problems.append(f"{len(framing)} framing headers: {framing}")
    if r.header("transfer-encoding") not in (None, "chunked"):
        problems.append(f"transfer-encoding {r.header('transfer-encoding')!r}")
    for n in names:
        if n in HOP_BY_HOP:
            problems.append(f"hop-by-hop header {n} relayed")
    for value in r.header_all("connection"):
        if value.lower() not in ("close", "keep-alive"):
            problems.append(f"backend Connection value relayed: {value!r}")
    return problems


# --------------------------------------------------------------------------------------------------
# Checking one outcome


def _backend_closed(served: Served) -> bool:
    try:
        wait_until(lambda: served.conn.peer_closed or served.conn.closed.is_set(), 5, 0.005)
        return True
    except AssertionError:
        return False


def _is_refusal(exp: Reject, r: Response | None, closed: bool) -> bool:
    if r is None:
        return False
    if r.status == 502 and r.complete:
        return True
    return exp.stage == "body" and not r.complete and closed


def check(v: RVector, o: Outcome, position: int = 0, later: Response | None = None) -> list[str]:
    """`position`: index of the vector's answer among the client's responses; `later`: the answer to a request
    pipelined after it (None if there was none, or the connection ended)."""
    problems: list[str] = []
    finals = [r for r in o.responses if not 100 <= r.status < 200]
    r = finals[position] if len(finals) > position else None
    exp = v.expect
    reject: Reject | None = exp if isinstance(exp, Reject) else None
    relay: Relay | None = exp if isinstance(exp, Relay) else None
    if isinstance(exp, REither):
        if _is_refusal(exp.reject, r, o.closed):
            reject = exp.reject
        else:
            relay = exp.relay
    if r is None:
        problems.append("no final answer at all")
    elif reject is not None:
        if not _is_refusal(reject, r, o.closed):
            problems.append(f"status {r.status} (complete={r.complete}), expected a 502 refusal")
        if b"forged" in o.raw or b"Evil" in o.raw or b"smuggled" in o.raw.lower():
            problems.append("bytes of the faulty answer reached the client")
        if not _backend_closed(o.served):
            problems.append("ferryman kept the backend connection that sent a faulty answer")
    else:
        assert relay is not None
        if r.status != relay.status:
            problems.append(f"status {r.status}, expected {relay.status}")
        problems += head_problems(r)
        if relay.truncated:
            if r.complete:
                problems.append("a cut answer reached the client as complete")
            if not o.closed:
                problems.append("client connection kept after a cut answer")
        elif not r.complete:
            problems.append("answer incomplete")
        if relay.body is not None and r.body != relay.body:
            problems.append(f"body {r.body[:100]!r}, expected {relay.body!r}")
        for name, value in relay.headers.items():
            if r.header_all(name) != [value]:
                problems.append(f"{name}: {r.header_all(name)}, expected [{value!r}]")
        for name in relay.absent:
            if r.has_header(name):
                problems.append(f"{name} relayed: {r.header_all(name)}")
        if b"forged" in o.raw or b"GARBAGE" in o.raw or b"1e3-4dcd" in o.raw:
            problems.append("bytes after the declared end reached the client")
        if not relay.reuse and not _backend_closed(o.served):
            problems.append("ferryman kept a backend connection it must close")
    if later is not None and not later.body.startswith(b"real:/r/after-"):
        problems.append(f"the pipelined next request got a foreign answer: {later.body[:100]!r}")
    return problems


def _report(v: RVector, split: str, o: Outcome, problems: list[str]) -> str:
    return (f"[{v.id}] split={split}, source: {v.source}\n  backend sent: {v.raw[:300]!r}\n  expected: "
            f"{v.expect.describe()}\n  outcome: {o.summary()}\n  problems:\n    - " + "\n    - ".join(problems))


def _splits(v: RVector) -> list[str]:
    rng = random.Random(v.id)
    end = len(v.raw) - v.trailing
    out = ["whole", "bytes"]
    for _ in range(2):
        out.append(",".join(str(rng.randint(1, max(1, end - 1))) for _ in range(rng.randint(1, 5))))
    return out


# --------------------------------------------------------------------------------------------------
# The tests


@pytest.mark.parametrize("vector", RESPONSE_VECTORS, ids=[v.id for v in RESPONSE_VECTORS])
def test_response_vector_gets_its_expected_outcome_however_the_backend_cuts_it(env: Env, vector: RVector) -> None:
    """Whole, one byte per write and two seeded random splits: each outcome meets the expectation, and
    the same statuses reach the client every time."""
    seen = []
    for split in _splits(vector):
        o, _ = exchange(env, vector, split)
        problems = check(vector, o)
        assert not problems, _report(vector, split, o, problems)
        # (a body refused part-way may have streamed more or less of itself: its status and cut are compared)
        seen.append([(r.status, r.complete) for r in o.responses if not 100 <= r.status < 200])
    assert all(s == seen[0] for s in seen), f"[{vector.id}] outcome depends on the split: {seen}"


@pytest.mark.parametrize("vector", RESPONSE_VECTORS, ids=[v.id for v in RESPONSE_VECTORS])
def test_response_vector_pipelined_behind_a_valid_exchange_disturbs_neither_neighbour(env: Env, vector: RVector) -> None:
    """Three pipelined requests: a valid one, the vector's, a valid one. The vector's answer arrives on the backend
    connection that just served the first (a reused connection), the first answer is untouched, and the third
    gets its own answer or, when the vector's answer was cut, the connection ends; never bytes of the vector."""
    split = "bytes" if len(vector.raw) < 400 else "whole"
    o, tag = exchange(env, vector, split, pipelined=True)
    finals = [r for r in o.responses if not 100 <= r.status < 200]
    assert finals and finals[0].body == f"real:/r/before-{tag}".encode(), _report(vector, split, o, ["first answer"])
    assert o.served is not None and o.served.index >= 1, "the vector was not answered on a reused connection"
    later = finals[2] if len(finals) > 2 else None
    problems = check(vector, o, position=1, later=later)
    cut = len(finals) > 1 and not finals[1].complete
    if later is None and not (cut and o.closed):
        problems.append("the third request got no answer though the second ended cleanly")
    assert not problems, _report(vector, split, o, problems)


def test_the_response_corpus_has_over_a_hundred_cases_each_with_a_source() -> None:
    assert len(RESPONSE_VECTORS) >= 100
    for v in RESPONSE_VECTORS:
        assert v.source.strip() and re.fullmatch(r"[a-z0-9][a-z0-9-]*", v.id), v.id


def test_docs_request_safety_response_table_is_in_sync() -> None:
    """Regenerate with: python -m tests.integration.response_vectors"""
    assert render_table() in DOC.read_text(), \
        "docs/request-safety.md is stale: run python -m tests.integration.response_vectors"
