"""Failure, ejection and recovery end to end: a gunicorn member killed under load, a POST never sent twice,
recovery after `retry` and after `passes` health checks, health `expect`/`body`/`timeout`, failonstatus,
passive ejection after consecutive failures, ignore_errors, slow start.

Members that are killed and revived are this module's own gunicorn processes (revived on the same port by
binding it again); RawBackends play members whose answers a test scripts. Waiting for `retry` or a health
interval is done by polling what ferryman shows: the member that answers, or the transition line it logs
on stderr (`pool P member M (route R): old -> new: reason`).

Expected behaviour: what Apache 2.4 mod_proxy_balancer does on failure and recovery (observed), and
invariant 8 of docs/request-safety.md (one final answer; retry only what is safe to retry);
docs/configuration.md (retry, health, passive, failonstatus, ignore_errors, slow_start).
"""

from __future__ import annotations

import os
import re
import select
import signal
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import pytest

from tests.support import (
    BackendConn, ClientConn, Ferryman, Gunicorn, RawBackend, Response, config, free_port, keep_alive_handler,
    refused_port, wait_until,
)

pytestmark = pytest.mark.integration


def get(f: Ferryman, target: str, cookie: str | None = None) -> Response:
    return f.request("GET", target, headers={"Cookie": cookie} if cookie else None)


def transitions(f: Ferryman, route: str, arrow: str) -> list[str]:
    """Transition lines of the member with `route`, e.g. arrow "healthy -> ejected". The documented form is
    `(route R): old -> new: reason`; the colon after `(route R)` is optional here because the active-check
    lines lack it (test_every_transition_line_has_the_documented_form shows that bug on its own)."""
    pattern = re.compile(rf"\(route {re.escape(route)}\):? {re.escape(arrow)}: ")
    return [ln for ln in f.error_log_lines() if pattern.search(ln)]


def wait_transition(f: Ferryman, route: str, arrow: str, count: int = 1, timeout: float = 15) -> str:
    """The `count`-th transition line `arrow` of the member with `route` (waits for it)."""
    wait_until(lambda: len(transitions(f, route, arrow)) >= count, timeout,
               message=f"no {count} x '(route {route}): {arrow}' in the error log:\n"
                       + "\n".join(f.error_log_lines()[-20:]))
    return transitions(f, route, arrow)[count - 1]


def revive(port: int) -> Gunicorn:
    """A new gunicorn that also listens on `port`, the old port of a stopped member."""
    return Gunicorn(extra_args=["--bind", f"127.0.0.1:{port}"])


def kill(g: Gunicorn, sig: int) -> None:
    """Stop (SIGTERM, graceful) or crash (SIGKILL) a gunicorn; return once its port refuses connections
    (its worker, which shares the listening socket, may outlive the master for a moment)."""
    if sig == signal.SIGKILL:
        os.killpg(g.proc.pid, signal.SIGKILL)
        g.proc.wait(10)
    else:
        g.stop()

    def refuses() -> bool:
        try:
            socket.create_connection(("127.0.0.1", g.port), timeout=1).close()
            return False
        except ConnectionRefusedError:
            return True
        except OSError:
            return False

    wait_until(refuses, timeout=10, interval=0.01)


# -- a member killed under load -------------------------------------------------------------------------


@dataclass
class Outcome:
    started: float
    sticky: bool
    status: int
    complete: bool
    member: str | None
    set_cookie: str | None
    explain: str | None


class Load:
    """Client threads sending GETs (half sticky to route r1 by the route cookie) until stopped."""

    def __init__(self, f: Ferryman, threads: int = 6):
        self.f = f
        self.stop = threading.Event()
        self.outcomes: list[Outcome] = []
        self.errors: list[BaseException] = []
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._run, args=(i,), daemon=True) for i in range(threads)]
        for t in self._threads:
            t.start()

    def _run(self, i: int) -> None:
        sticky = i % 2 == 0
        headers = {"Cookie": "sessionid=django1234; ferryman_route_app=.r1"} if sticky else None
        conn = ClientConn(self.f.port(), timeout=5)  # a hang guard: answers take ms
        try:
            while not self.stop.is_set():
                started = time.monotonic()
                try:
                    r = conn.request("GET", "/webapps/echo?i=%d" % i, headers)
                except (EOFError, OSError) as exc:  # no answer at all (a timeout is one: ferryman never answered)
                    with self._lock:
                        self.outcomes.append(Outcome(started, sticky, 0, False, None, None, repr(exc)))
                    conn.close()
                    conn = ClientConn(self.f.port(), timeout=5)  # a hang guard: answers take ms
                    continue
                with self._lock:
                    self.outcomes.append(Outcome(started, sticky, r.status, r.complete, r.header("x-member"),
                                                 r.header("set-cookie"), r.header("ferryman-explain")))
                if not r.complete or r.header("connection", "").lower() == "close":
                    conn.close()
                    conn = ClientConn(self.f.port(), timeout=5)  # a hang guard: answers take ms
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            self.errors.append(exc)
        finally:
            conn.close()

    def snapshot(self) -> list[Outcome]:
        with self._lock:
            return list(self.outcomes)

    def finish(self) -> list[Outcome]:
        self.stop.set()
        for t in self._threads:
            t.join(30)
        return self.snapshot()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["SIGTERM", "SIGKILL"])
def test_a_member_killed_under_load_moves_its_sessions_and_new_requests_with_no_failed_get(echo_b, sig):
    with Gunicorn() as victim:
        toml = config([{"url": victim.url(), "route": "r1"}, {"url": echo_b.url(), "route": "r2"}],
                      pool_options='sticky = "sessionid"\nroute_cookie = {}\nretry = "60s"',
                      listener_options="explain_header = true")
        with Ferryman(toml) as f:
            load = Load(f)
            try:
                wait_until(lambda: sum(o.member == victim.authority for o in load.snapshot()) >= 20, 15)
                kill(victim, sig)
                dead_at = time.monotonic()
                wait_until(lambda: sum(o.started > dead_at for o in load.snapshot()) >= 60, 20)
            finally:
                outcomes = load.finish()
            assert not load.errors, load.errors
            # A crash (SIGKILL) can cut an answer whose head the member had already sent: no proxy can take
            # that back, the client must see it cut (status 200, body short). Every other GET must succeed.
            cut = [o for o in outcomes if o.status == 200 and not o.complete]
            assert all(o.member == victim.authority and o.started < dead_at for o in cut), cut
            if sig == signal.SIGTERM:
                assert not cut, cut  # a graceful stop finishes what it started
            failed = [o for o in outcomes if o.status != 200]
            assert not failed, f"{len(failed)} of {len(outcomes)} GETs failed: {failed[:5]}"
            after = [o for o in outcomes if o.started > dead_at]
            assert {o.member for o in after} == {echo_b.authority}
            moved = [o for o in after if o.sticky]
            assert moved, "no sticky request after the kill"
            # its sessions moved: each is told the new member in a re-issued route cookie
            assert {o.explain.rsplit("(", 1)[1] for o in moved} == {"failover)"}
            assert {o.set_cookie.split(";")[0] for o in moved} == {"ferryman_route_app=.r2"}
            line = wait_transition(f, "r1", "healthy -> ejected")
            assert f"member {victim.url()} (route r1)" in line


# -- a POST is never sent twice -------------------------------------------------------------------------


@pytest.mark.parametrize("death", ["reset", "close"])
def test_a_post_whose_backend_dies_after_receiving_it_gets_502_and_is_sent_nowhere_else(echo_b, death):
    def answer(conn: BackendConn, req) -> str | None:  # noqa: ANN001
        if req.method == "POST":  # the whole POST was read: now the backend dies
            conn.reset() if death == "reset" else conn.close()
            return "close"
        conn.respond(200, {"X-Member": "dying"}, b"ok")
        return None

    with RawBackend(keep_alive_handler(answer)) as dying, RawBackend() as other:
        toml = config([{"url": dying.url("/m"), "route": "d"}, {"url": other.url("/m"), "route": "o"}],
                      pool_options='sticky = "sessionid"\npassive = { fails = 0 }')
        with Ferryman(toml) as f:
            assert get(f, "/webapps/x?sessionid=s.d").header("x-member") == "dying"  # keeps a connection
            body = b"order=42&qty=1"
            posted = [f.request("POST", "/webapps/buy?sessionid=s.d", body=body) for _ in range(2)]
            # the first POST went on the kept connection, the second on a new one: 502 both times
            assert [r.status for r in posted] == [502, 502]
            assert [(q.method, q.body) for q in dying.requests if q.method == "POST"] == [("POST", body)] * 2
            assert not other.requests, [q.raw[:200] for q in other.requests]
            # an idempotent request that meets the same death is retried elsewhere instead
            assert get(f, "/webapps/x?sessionid=s.d").status == 200


def test_a_get_whose_new_backend_connection_is_reset_before_the_request_is_written_is_retried_not_left_hanging(
        echo_b):
    # A stopping gunicorn closes its listening socket; the kernel then resets the connections it had already
    # completed for it. When that reset lands between ferryman's connect and its first write, the request
    # provably never reached the member (so it is always retried, whatever the method). Each
    # cycle: 8 GETs sticky to member "gone" (ignore_errors keeps it chosen), its listener closed as soon as a
    # connection is queued. Client deadline 5 s: a hang guard, the other member answers in milliseconds.
    port = free_port()
    toml = config([{"url": f"http://127.0.0.1:{port}/webapps", "route": "gone", "ignore_errors": True},
                   {"url": echo_b.url(), "route": "b"}],
                  pool_options='sticky = "sessionid"\npassive = { fails = 0 }\nretry_budget = 1.0')
    with Ferryman(toml) as f, ThreadPoolExecutor(8) as pool:
        def one(conn: ClientConn) -> str:
            try:
                with conn:
                    r = conn.request("GET", "/webapps/echo?sessionid=s.gone")
                return f"{r.status} from {r.header('x-member')}"
            except (OSError, EOFError) as exc:
                return f"no answer: {exc!r}"

        results: list[str] = []
        for _ in range(600):  # the reset hits the window in a few percent of cycles
            listener = socket.socket()
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            listener.bind(("127.0.0.1", port))
            listener.listen(64)
            conns = [ClientConn(f.port(), timeout=5) for _ in range(8)]
            answers = [pool.submit(one, c) for c in conns]
            select.select([listener], [], [], 10)  # a connection is queued: the member stops now
            listener.close()
            results += [a.result() for a in answers]
            if any(not r.startswith("200 ") for r in results):
                break
        bad = [r for r in results if r != f"200 from {echo_b.authority}"]
        assert not bad, (f"{len(bad)} of {len(results)} GETs not served by the other member: {bad[:3]}\n"
                         + "\n".join(ln for ln in f.error_log_lines() if "Error" in ln)[:1500])


# -- recovery -------------------------------------------------------------------------------------------


def test_a_refused_member_is_used_again_once_retry_has_passed(echo_b):
    victim = Gunicorn()
    port = victim.port
    toml = config([{"url": victim.url(), "route": "r1"}, {"url": echo_b.url(), "route": "r2"}],
                  pool_options='retry = "1s"')
    back = None
    try:
        with Ferryman(toml) as f:
            assert {get(f, "/webapps/echo").header("x-member") for _ in range(2)} == {victim.authority,
                                                                                      echo_b.authority}
            kill(victim, signal.SIGKILL)
            answers = [get(f, "/webapps/echo") for _ in range(4)]  # the first one meets the refusal
            assert {(r.status, r.header("x-member")) for r in answers} == {(200, echo_b.authority)}
            line = wait_transition(f, "r1", "healthy -> ejected")
            assert "Connection refused; retry in 1s" in line
            back = revive(port)

            def served_by_revived() -> bool:
                r = get(f, "/webapps/echo")
                assert r.status == 200, r.body
                return r.header("x-member") == f"127.0.0.1:{port}"

            wait_until(served_by_revived, timeout=15, interval=0.05)
            assert "request succeeded after its rest" in wait_transition(f, "r1", "ejected -> healthy")
    finally:
        victim.stop()
        if back is not None:
            back.stop()


def test_a_member_ejected_by_health_checks_comes_back_after_passes_checks(echo_b):
    victim = Gunicorn()
    port = victim.port
    toml = config([{"url": victim.url(), "route": "r1"}, {"url": echo_b.url(), "route": "r2"}],
                  pool_options='retry = "1h"\nhealth = { path = "/webapps/status/200", interval = "100ms", '
                               'timeout = "1s", passes = 2, fails = 2 }')
    back = None
    try:
        with Ferryman(toml) as f:
            kill(victim, signal.SIGKILL)
            line = wait_transition(f, "r1", "healthy -> ejected")
            assert "2 consecutive failed checks: connection refused" in line
            assert {get(f, "/webapps/echo").header("x-member") for _ in range(4)} == {echo_b.authority}
            back = revive(port)
            # retry is an hour: only the passing checks can bring it back
            assert wait_transition(f, "r1", "ejected -> healthy").endswith(": 2 checks passed")
            seen = {get(f, "/webapps/echo").header("x-member") for _ in range(4)}
            assert seen == {f"127.0.0.1:{port}", echo_b.authority}
    finally:
        victim.stop()
        if back is not None:
            back.stop()


@pytest.mark.parametrize("returning", [1, 2], ids=["one-member-back", "both-back"])
def test_when_every_member_was_down_members_that_come_back_serve_every_request_at_once(returning):
    # Observed on Apache 2.4: with all members down every request is 503; when they return, the next request
    # is served at once (Apache force-recovers when every member is in error). retry is an hour: only force
    # recovery can bring them back during this test.
    members = [Gunicorn(), Gunicorn()]
    ports = [g.port for g in members]
    toml = config([{"url": g.url(), "route": f"r{i}"} for i, g in enumerate(members)],
                  pool_options='retry = "1h"')
    revived: list[Gunicorn] = []
    try:
        with Ferryman(toml) as f:
            assert [get(f, "/webapps/echo").status for _ in range(2)] == [200, 200]
            for g in members:
                kill(g, signal.SIGKILL)
            assert [get(f, "/webapps/echo").status for _ in range(3)] == [503, 503, 503]
            revived = [revive(port) for port in ports[:returning]]
            answers = [get(f, "/webapps/echo") for _ in range(6)]
            assert [r.status for r in answers] == [200] * 6, [(r.status, r.header("x-member")) for r in answers]
            assert {r.header("x-member") for r in answers} == {f"127.0.0.1:{p}" for p in ports[:returning]}
    finally:
        for g in members + revived:
            g.stop()


# -- one ferryman for the scripted members below --------------------------------------------------------


#: The check path: the echo app answers it 200 with a JSON body holding "ready"; Scripted members answer
#: it as the test says.
HEALTH_PATH = "/echo?ready=1"


class Scripted:
    """A member whose health answer (HEALTH_PATH) the test sets; live requests get `X-Member: name`."""

    def __init__(self, name: str):
        self.name = name
        self.health = (200, b"ready")
        self.hold_health = False
        self.reset_posts = True
        self.backend = RawBackend(keep_alive_handler(self._answer))

    def _answer(self, conn: BackendConn, req) -> str | None:  # noqa: ANN001
        if req.target.startswith(HEALTH_PATH):
            if self.hold_health:
                conn.backend.release.wait(5)
                return "close"
            status, body = self.health
            conn.respond(status, {"Connection": "close"}, body)
            return "close"
        if req.method == "POST" and self.reset_posts:
            conn.reset()
            return "close"
        # Connection: close, so every request meets a new connection (passive health counts those)
        conn.respond(200, {"X-Member": self.name, "Connection": "close"}, b"ok")
        return "close"

    def url(self) -> str:
        return self.backend.url("/m")


@pytest.fixture(scope="module")
def scripted():
    members = {name: Scripted(name) for name in ("checked", "flaky", "ramp", "bouncy")}
    yield members
    for m in members.values():
        m.backend.close()


@pytest.fixture(scope="module")
def front(echo_a, echo_b, scripted):
    a, b = echo_a.url("/webapps"), echo_b.url("/webapps")
    dead = f"http://127.0.0.1:{refused_port()}/webapps"
    checks = 'health = { path = "/echo?ready=1", interval = "100ms", passes = 1, fails = 1'

    def beside_b(url: str, route: str, extra: str = "") -> str:
        """members = [ the member under test, echo_b ]"""
        return f'members = [ {{ url = "{url}", route = "{route}"{extra} }}, {{ url = "{b}", route = "b" }} ]'

    pools = {  # every pool rests a failed member 60s (retry), unless it says otherwise
        "fos": f'retry = "60s"\nfailonstatus = [503]\nmembers = [ {{ url = "{a}", route = "a" }}, '
               f'{{ url = "{b}", route = "b" }} ]',
        "plain": f'retry = "60s"\nmembers = [ {{ url = "{a}", route = "a" }}, {{ url = "{b}", route = "b" }} ]',
        "checks": f'retry = "60s"\nsticky = "sessionid"\n'
                  f'{checks}, timeout = "500ms", expect = "200,202", body = "ready" }}\n'
                  + beside_b(scripted["checked"].url(), "checked"),
        "passive": 'retry = "60s"\nsticky = "sessionid"\npassive = { fails = 3 }\n'
                   + beside_b(scripted["flaky"].url(), "flaky"),
        "ign": 'retry = "60s"\n' + beside_b(dead, "ign", ", ignore_errors = true"),
        "noign": 'retry = "60s"\n' + beside_b(dead + "/", "noign"),
        "backoff": 'sticky = "sessionid"\nretry = "500ms"\npassive = { fails = 1, max_backoff = "1s" }\n'
                   + beside_b(scripted["bouncy"].url(), "bouncy"),
        "longretry": 'retry = "1h"\n' + beside_b(dead + "//", "lr"),
        "ramp": f'retry = "60s"\nslow_start = "1h"\n{checks} }}\n' + beside_b(scripted["ramp"].url(), "ramp"),
    }
    extra = "".join(f'[pool.{name}]\n{body}\n\n' for name, body in pools.items())
    extra += "".join(f'[[route]]\npath = "/{name}"\npool = "{name}"\n\n' for name in pools)
    toml = config([a], "/unused", pool="unused", listener_options="explain_header = true", extra=extra)
    with Ferryman(toml) as f:
        yield f


def test_failonstatus_puts_a_member_in_error_and_the_503_itself_is_passed_on(front, echo_a, echo_b):
    r = get(front, "/fos/status/503")
    assert (r.status, r.body) == (503, b"status 503\n")  # the backend's own answer, not ferryman's
    hit = r.header("x-member")
    route = "a" if hit == echo_a.authority else "b"
    line = wait_transition(front, route, "healthy -> ejected")
    assert line.endswith(": failonstatus 503; retry in 60s")
    other = echo_b.authority if hit == echo_a.authority else echo_a.authority
    assert {get(front, "/fos/echo").header("x-member") for _ in range(6)} == {other}


def test_without_failonstatus_a_backends_own_502_and_503_pass_through_and_rest_nobody(front, echo_a, echo_b):
    answers = [get(front, f"/plain/status/{code}") for code in (503, 502, 503, 502)]
    assert [(r.status, r.body) for r in answers] == [(503, b"status 503\n"), (502, b"status 502\n")] * 2
    assert {r.header("x-member") for r in answers} == {echo_a.authority, echo_b.authority}
    assert {get(front, "/plain/echo").header("x-member") for _ in range(2)} == {echo_a.authority, echo_b.authority}


def test_health_checks_eject_on_an_unexpected_status_a_missing_body_text_or_no_answer_and_restore(
        front, scripted, echo_b):
    m = scripted["checked"]
    sticky = "sessionid=s.checked"
    assert get(front, "/checks/x", sticky).header("x-member") == "checked"
    m.health = (500, b"ready")
    assert "check failed: status 500 (expected 200,202)" in wait_transition(front, "checked", "healthy -> ejected")
    r = get(front, "/checks/x", sticky)  # its sessions fail over while it is out
    assert r.header("x-member") == echo_b.authority and r.header("ferryman-explain").endswith("(failover)")
    m.health = (202, b"all ready")
    assert wait_transition(front, "checked", "ejected -> healthy").endswith(": 1 check passed")
    assert get(front, "/checks/x", sticky).header("x-member") == "checked"
    m.health = (200, b"starting")
    line = wait_transition(front, "checked", "healthy -> ejected", count=2)
    assert "status 200 but the body lacks 'ready'" in line
    m.health = (200, b"ready")
    wait_transition(front, "checked", "ejected -> healthy", count=2)
    m.hold_health = True
    assert "check failed: no answer within 500ms" in wait_transition(front, "checked", "healthy -> ejected", count=3)
    m.hold_health = False
    wait_transition(front, "checked", "ejected -> healthy", count=3)


def test_passive_health_ejects_after_consecutive_failures_only_and_logs_the_reason(front, scripted, echo_b):
    sticky = "?sessionid=s.flaky"

    def post() -> int:
        return front.request("POST", "/passive/order" + sticky, body=b"x=1").status  # never retried

    def served_by() -> str:
        r = get(front, "/passive/echo" + sticky)
        assert r.status == 200
        return r.header("x-member")

    for _ in range(2):
        assert [post(), post()] == [502, 502]
        assert served_by() == "flaky"  # two failures then a success: the count starts again
    assert [post(), post(), post()] == [502, 502, 502]
    assert served_by() == echo_b.authority  # three in a row: ejected, its session fails over
    line = wait_transition(front, "flaky", "healthy -> ejected")
    assert line.endswith(": backoff 60s after 3 failures: backend closed the connection before answering")
    assert len(transitions(front, "flaky", "healthy -> ejected")) == 1


def test_an_ignore_errors_member_is_never_put_in_error(front, echo_b):
    def connect_failures(route: str) -> int:
        return sum(f"(route {route}) failed to connect" in ln for ln in front.error_log_lines())

    for pool in ("ign", "noign"):
        answers = [get(front, f"/{pool}/echo") for _ in range(6)]
        assert {(r.status, r.header("x-member")) for r in answers} == {(200, echo_b.authority)}
    wait_until(lambda: connect_failures("ign") >= 3 and connect_failures("noign") >= 1)
    assert connect_failures("noign") == 1  # in error for retry (60s) after the first refusal
    assert not transitions(front, "ign", "healthy -> ejected")
    assert transitions(front, "noign", "healthy -> ejected")


def test_a_member_back_from_ejection_gets_less_than_its_full_share_during_slow_start(front, scripted, echo_b):
    m = scripted["ramp"]
    before = [get(front, "/ramp/x").header("x-member") for _ in range(10)]
    assert before.count("ramp") == 5  # in service: its full share
    m.health = (500, b"")
    wait_transition(front, "ramp", "healthy -> ejected")
    m.health = (200, b"ok")
    assert "slow start for 1h" in wait_transition(front, "ramp", "ejected -> recovering")
    after = [get(front, "/ramp/x").header("x-member") for _ in range(40)]
    assert 0 < after.count("ramp") < 20, after  # taken back, but not yet with its full half


def test_a_refused_member_rests_exactly_retry_even_when_retry_is_longer_than_passive_max_backoff(front):
    # Apache 2.4 (observed): a member in error is skipped for exactly `retry`; docs: retry is "how long a
    # failed member rests before it is tried again" (max_backoff caps the doubling of passive ejections)
    assert get(front, "/longretry/echo").status == 200  # the refusal is retried on the other member
    connect = next(ln for ln in front.error_log_lines() if "(route lr) failed to connect" in ln)
    assert connect.endswith("; in error for 3600s")
    assert wait_transition(front, "lr", "healthy -> ejected").endswith("Connection refused; retry in 1h")


def test_every_transition_line_has_the_documented_form(front, scripted):
    # `pool P member M (route R): old -> new: reason`, whether a live request or an active check caused it
    m = scripted["checked"]
    n = len(transitions(front, "checked", "healthy -> ejected"))
    m.health = (500, b"ready")  # an active check ejects it ...
    wait_transition(front, "checked", "healthy -> ejected", count=n + 1)
    m.health = (200, b"ready")  # ... and brings it back
    wait_transition(front, "checked", "ejected -> healthy", count=n + 1)
    assert get(front, "/longretry/echo").status == 200  # a live request meets a refusal
    wait_transition(front, "lr", "healthy -> ejected")
    form = re.compile(r"ferryman: pool \S+ member \S+ \(route [^)]+\): (healthy|ejected|recovering) -> "
                      r"(healthy|ejected|recovering): .+")
    lines = [ln for ln in front.error_log_lines() if re.search(r" -> (healthy|ejected|recovering): ", ln)]
    bad = [ln for ln in lines if not form.search(ln)]
    assert not bad, "\n".join(bad)


def test_a_member_that_fails_again_on_probation_rests_twice_as_long_up_to_max_backoff(front, scripted, echo_b):
    # passive.max_backoff: "an ejected member rests retry, doubled each time it is ejected again without
    # recovering in between, up to this". retry 500ms, max_backoff 1s, fails 1: rests of 500ms, 1s, then 1s.
    def post() -> Response:  # sticky to bouncy, which resets every POST; never retried elsewhere
        return front.request("POST", "/backoff/echo?sessionid=s.bouncy", body=b"x=1")

    assert post().status == 502
    rests = [wait_transition(front, "bouncy", "healthy -> ejected")]
    for n in (1, 2):
        # while it rests, its session fails over to b; once the rest is over the POST reaches it again
        wait_until(lambda: post().status == 502, timeout=15, interval=0.05)
        rests.append(wait_transition(front, "bouncy", "ejected -> ejected", count=n))
    assert [ln.split(": ", 3)[-1].split(" after ")[0] for ln in rests] == [
        "backoff 500ms", "backoff 1s", "backoff 1s"], rests
    assert rests[1].endswith("after 1 failure on probation: backend closed the connection before answering")
    r = post()
    assert r.status == 200 and r.header("x-member") == echo_b.authority  # resting again
