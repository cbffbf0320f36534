"""Several worker processes under a master (``workers = 2``), end to end with a real ferryman subprocess.

Which worker served a request is observed from outside, never told by ferryman: the backend looks up, while
the connection is open, which process holds the other end of it (/proc/net/tcp gives the socket's inode,
/proc/PID/fd which process has it). Workers are the master's children (/proc/PID/task/PID/children).

Expected behaviour: docs/operations.md, "Workers": the master binds, checks health and replaces workers;
health results, ejections and statuses are shared by every worker; SIGTERM stops everything and exits 0;
SIGHUP replaces the workers one at a time without failing a request.
"""

from __future__ import annotations

import json
import os
import re
import resource
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections import Counter
from pathlib import Path

import pytest

from tests.support import (
    BackendConn, ClientConn, Ferryman, RawBackend, RawRequest, config, free_port, keep_alive_handler, wait_for_port,
    wait_until,
)

pytestmark = pytest.mark.integration

HEALTH_PATH = "/health"


def children(pid: int) -> list[int]:
    """The live child processes of `pid` (its workers, for a master)."""
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(p) for p in text.split()]


def workers_of(f: Ferryman, count: int = 2, timeout: float = 20) -> list[int]:
    """The master's `count` worker pids, once it has that many."""
    return wait_until(lambda: (lambda c: c if len(c) == count else None)(children(f.pid)), timeout,
                      message=f"master has not {count} children")  # type: ignore[return-value]


def _inode_of(local_port: int, remote_port: int) -> str | None:
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if int(fields[1].rsplit(":", 1)[1], 16) == local_port and int(fields[2].rsplit(":", 1)[1], 16) == remote_port:
                return fields[9]
    return None


def owner_of(sock: socket.socket, candidates: list[int]) -> int | None:
    """Which of `candidates` (pids) holds the peer end of `sock`, a loopback connection."""
    inode = _inode_of(sock.getpeername()[1], sock.getsockname()[1])
    if inode is None:
        return None
    link = f"socket:[{inode}]"
    for pid in candidates:
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue
        for fd in fds:
            try:
                if os.readlink(f"/proc/{pid}/fd/{fd}") == link:
                    return pid
            except OSError:
                continue
    return None


class Member:
    """A RawBackend answering its name, that records which ferryman process sent each request.

    health_ok: cleared, its health path answers 503 (its other paths still answer 200).
    status: what it answers on other paths (503 plays a failing member with failonstatus)."""

    def __init__(self, name: str, master_pid: "callable", status: int = 200) -> None:
        self.name = name
        self.status = status
        self.health_ok = threading.Event()
        self.health_ok.set()
        self.senders: list[int | None] = []   # per proxied request (health checks left out)
        self.held = threading.Event()          # a request for /m/slow arrived
        self.release = threading.Event()       # set: /m/slow is answered
        self.lock = threading.Lock()
        self._master_pid = master_pid
        self.backend = RawBackend(self._handler)

    def _handler(self, conn: BackendConn, sock: socket.socket) -> None:
        pid = self._master_pid()
        owner = owner_of(sock, [pid, *children(pid)]) if pid else None

        def answer(c: BackendConn, req: RawRequest) -> None:
            if req.target == HEALTH_PATH:
                c.respond(200 if self.health_ok.is_set() else 503, body=b"health")
                return
            with self.lock:
                self.senders.append(owner)
            if req.target.endswith("/slow"):
                self.held.set()
                self.release.wait(30)
            c.respond(self.status, body=self.name.encode())

        keep_alive_handler(answer)(conn, sock)

    @property
    def requests(self) -> int:
        with self.lock:
            return len(self.senders)

    def url(self) -> str:
        return self.backend.url("/m")

    def close(self) -> None:
        self.release.set()
        self.backend.close()


class Members:
    """Members whose master pid is filled in once ferryman runs."""

    def __init__(self) -> None:
        self.pid = 0
        self.all: list[Member] = []

    def add(self, name: str, status: int = 200) -> Member:
        m = Member(name, lambda: self.pid, status)
        self.all.append(m)
        return m

    def close(self) -> None:
        for m in self.all:
            m.close()


@pytest.fixture
def members():
    ms = Members()
    yield ms
    ms.close()


def start(members: Members, toml: str) -> Ferryman:
    f = Ferryman(toml)
    members.pid = f.pid
    return f


def two_workers(member_list: list[Member], pool_options: str = "", top: str = "") -> str:
    return config([{"url": m.url(), "route": m.name} for m in member_list], "/m",
                  top=f"workers = 2\nshutdown_timeout = \"10s\"\n{top}", pool_options=pool_options)


def body_of(f: Ferryman) -> str:
    r = f.request("GET", "/m/x")
    return r.body.decode()


def test_two_workers_each_serve_requests_from_their_own_process_and_the_master_serves_none(members) -> None:
    a = members.add("a")
    with start(members, two_workers([a])) as f:
        pids = workers_of(f)
        assert f.pid not in pids and len(set(pids)) == 2
        wait_until(lambda: (body_of(f) and set(pids) <= set(a.senders)), 30, 0.0,
                   message="requests over fresh connections never reached both workers")
        assert f.pid not in a.senders
        # the master bound once and said so once
        assert sum("listening on" in ln for ln in f.error_log_lines()) == 1
        assert any(f"master pid {f.pid}: 2 workers serving" in ln for ln in f.error_log_lines())


class Load:
    """Client threads sending requests over fresh connections until stopped; counts outcomes."""

    def __init__(self, f: Ferryman, threads: int = 4) -> None:
        self.f = f
        self.ok = 0
        self.failed: list[str] = []
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.threads = [threading.Thread(target=self._run, daemon=True) for _ in range(threads)]
        for t in self.threads:
            t.start()

    def _run(self) -> None:
        while not self.stopping.is_set():
            try:
                r = self.f.request("GET", "/m/x", timeout=10)
                good = r.status == 200
                why = f"status {r.status}"
            except Exception as exc:  # noqa: BLE001 - every failure is counted, whatever it is
                good, why = False, f"{type(exc).__name__}: {exc}"
            with self.lock:
                if good:
                    self.ok += 1
                else:
                    self.failed.append(why)

    def count(self) -> int:
        with self.lock:
            return self.ok + len(self.failed)

    def wait_for(self, more: int, timeout: float = 30) -> None:
        target = self.count() + more
        wait_until(lambda: self.count() >= target, timeout, 0.01, message=f"load did not reach {target} requests")

    def stop(self) -> None:
        self.stopping.set()
        for t in self.threads:
            t.join(15)


@pytest.mark.slow
def test_a_worker_killed_with_sigkill_under_load_is_replaced_and_only_its_own_requests_fail(members) -> None:
    a, b = members.add("a"), members.add("b")
    with start(members, two_workers([a, b])) as f:
        victim, survivor = workers_of(f)
        load = Load(f)
        try:
            load.wait_for(200)
            os.kill(victim, signal.SIGKILL)
            line = f.wait_for_error_log(f"(pid {victim}) was killed by signal SIGKILL; replacing it")
            assert "worker " in line
            replaced = wait_until(lambda: (lambda c: c if len(c) == 2 and victim not in c else None)(children(f.pid)),
                                  30, message="no replacement worker")
            f.wait_for_error_log("replaced: pid", timeout=30)
            load.wait_for(200)
        finally:
            load.stop()
        print(f"\nSIGKILL of one of 2 workers under 4 client threads: {load.ok} ok, {len(load.failed)} failed "
              f"{Counter(load.failed).most_common(3)}")
        assert survivor in replaced
        # only the requests the killed worker held at that instant may fail: at most one per client thread
        assert len(load.failed) <= 4, load.failed
        assert load.ok >= 400
        assert f.stop() == 0


@pytest.mark.slow
def test_a_member_the_masters_health_checks_mark_down_gets_no_request_from_any_worker(members) -> None:
    a, b = members.add("a"), members.add("b")
    health = f'health = {{ path = "{HEALTH_PATH}", interval = "250ms", fails = 1, passes = 1 }}'
    with start(members, two_workers([a, b], pool_options=health)) as f:
        pids = workers_of(f)
        wait_until(lambda: body_of(f) and set(pids) <= set(a.senders) | set(b.senders), 30, 0.0,
                   message="both workers never served")
        b.health_ok.clear()
        line = f.wait_for_error_log("(route b): healthy -> ejected", timeout=15)
        assert "ferryman[worker" not in line  # the master's prober, not a worker, found it
        before = b.requests
        bodies = Counter(body_of(f) for _ in range(60))
        assert bodies == {"a": 60}
        assert b.requests == before
        assert set(pids) <= set(a.senders[-60:]), "both workers served while b was down"
        # a reload keeps the member's slot, so its new workers and the master's new prober know it is down
        f.signal(signal.SIGHUP)
        f.wait_for_error_log("reloaded ", timeout=30)
        wait_until(lambda: not set(children(f.pid)) & set(pids), 30, message="old workers still running")
        assert Counter(body_of(f) for _ in range(20)) == {"a": 20}
        assert b.requests == before
        b.health_ok.set()
        f.wait_for_error_log("(route b): ejected -> healthy", timeout=15)
        wait_until(lambda: body_of(f) == "b", 10, 0.0, message="b never came back in any worker")
        # checks ran in the master only: its workers sent no health check
        assert not any("ferryman[worker" in ln and "ejected" in ln for ln in f.error_log_lines())


@pytest.mark.slow
def test_passive_ejection_by_one_worker_is_honoured_by_every_other(members) -> None:
    good, bad = members.add("good"), members.add("bad", status=503)
    with start(members, two_workers([good, bad], pool_options='failonstatus = [503]\nretry = "60s"')) as f:
        pids = workers_of(f)
        # sequential requests over fresh connections until both workers have each chosen twice: without a
        # shared table each would send its own second pick (byrequests alternates) to the failing member
        wait_until(lambda: (body_of(f) is not None
                            and all(Counter(good.senders)[p] >= 3 for p in pids)), 60, 0.0,
                   message="both workers did not serve enough requests")
        for _ in range(20):
            body_of(f)
        assert bad.requests == 1, Counter(bad.senders)
        ejections = [ln for ln in f.error_log_lines() if "(route bad)" in ln and "-> ejected" in ln]
        assert len(ejections) == 1 and "ferryman[worker" in ejections[0]


def test_a_member_drained_or_disabled_by_a_reload_gets_no_new_request_from_any_worker(members) -> None:
    a, b, c = members.add("a"), members.add("b"), members.add("c")
    with start(members, two_workers([a, b, c])) as f:
        old = workers_of(f)
        wait_until(lambda: body_of(f) and b.requests and c.requests, 30, 0.0, message="b and c never served")
        drained = config([{"url": a.url(), "route": "a"}, {"url": b.url(), "route": "b", "status": "drain"},
                          {"url": c.url(), "route": "c", "status": "disabled"}], "/m",
                         top='workers = 2\nshutdown_timeout = "10s"')
        f.config_path.write_text(drained)
        f.signal(signal.SIGHUP)
        f.wait_for_error_log("reloaded ", timeout=30)
        new = workers_of(f)
        assert not set(new) & set(old)
        before_b, before_c = b.requests, c.requests
        assert Counter(body_of(f) for _ in range(40)) == {"a": 40}
        assert (b.requests, c.requests) == (before_b, before_c)
        assert set(new) <= set(a.senders[-40:])


def test_a_reload_with_an_invalid_configuration_is_refused_once_with_its_line_and_the_workers_keep_serving(
        members) -> None:
    a = members.add("a")
    with start(members, two_workers([a])) as f:
        old = workers_of(f)
        f.config_path.write_text(f.config_path.read_text().replace('path = "/m"', 'path = "m"'))
        f.signal(signal.SIGHUP)
        f.wait_for_error_log("reload refused")
        problems = [ln for ln in f.error_log_lines() if "ferryman.toml:" in ln and "route[0].path" in ln]
        assert len(problems) == 1, problems
        assert children(f.pid) == old or sorted(children(f.pid)) == sorted(old)
        assert body_of(f) == "a"


def refuses(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2):
            return False
    except ConnectionRefusedError:
        return True


def test_sigterm_stops_accepting_finishes_in_flight_and_exits_0_leaving_no_process(members) -> None:
    a = members.add("a")
    f = start(members, two_workers([a]))
    try:
        pids = workers_of(f)
        port = f.port()
        answers: list[object] = []
        client = threading.Thread(target=lambda: answers.append(f.request("GET", "/m/slow", timeout=30)))
        client.start()
        assert a.held.wait(15)
        f.signal(signal.SIGTERM)
        wait_until(lambda: refuses(port), 10, 0.02, message="still accepting after SIGTERM")
        a.release.set()
        client.join(30)
        assert [(r.status, r.body) for r in answers] == [(200, b"a")]  # type: ignore[attr-defined]
        assert f.wait_exit(30) == 0
        assert not [p for p in pids if Path(f"/proc/{p}").exists()]
        lines = f.error_log_lines()
        assert sum("exited with status 0" in ln for ln in lines) == 2
        assert lines[-1].endswith("stopped")
    finally:
        f.kill()
        f._tmp.cleanup()


@pytest.mark.slow
def test_a_worker_that_keeps_crashing_is_replaced_after_a_growing_pause(members) -> None:
    a = members.add("a")
    with start(members, two_workers([a])) as f:
        victim = workers_of(f)[0]
        loop = " crashes in a row, each within 10s of starting)"
        pauses = ["; replacing it", "; replacing it in 0.5s (2" + loop, "; replacing it in 1s (3" + loop]
        for n, expected in enumerate(pauses, 1):
            os.kill(victim, signal.SIGKILL)
            line = f.wait_for_error_log(f"(pid {victim}) was killed by signal SIGKILL; replacing it", timeout=15)
            assert line.endswith(expected), line
            position = re.search(r"worker (\d+) \(pid", line).group(1)  # type: ignore[union-attr]

            def replacements(p: str = position) -> list[str]:
                return [ln for ln in f.error_log_lines() if f"worker {p} replaced: pid " in ln]

            wait_until(lambda: len(replacements()) == n, 15, message="no replacement")
            victim = int(replacements()[-1].split("replaced: pid ")[1].split()[0])
            wait_until(lambda: victim in children(f.pid), 10, message="the replacement is not the master's child")
        assert len(workers_of(f)) == 2
        assert body_of(f) == "a"


def test_a_reload_that_moves_a_listener_serves_on_the_new_port_and_closes_the_old_one(members) -> None:
    a = members.add("a")
    with start(members, two_workers([a])) as f:
        old_port = f.port()
        new_port = free_port()
        f.config_path.write_text(config([{"url": a.url(), "route": "a"}], "/m", bind=f"127.0.0.1:{new_port}",
                                        top='workers = 2\nshutdown_timeout = "10s"'))
        f.signal(signal.SIGHUP)
        f.wait_for_error_log("reloaded ", timeout=30)
        wait_until(lambda: f.port() == new_port, 10, message="the new listener was not announced")
        assert body_of(f) == "a"
        wait_until(lambda: refuses(old_port), 30, 0.05, message="the removed listener still accepts")
        f.wait_for_error_log("no longer configured")


@pytest.mark.slow
def test_a_rolling_reload_under_load_fails_no_request(members) -> None:
    a, b = members.add("a"), members.add("b")
    with start(members, two_workers([a, b])) as f:
        old = workers_of(f)
        load = Load(f)
        started = time.monotonic()
        try:
            load.wait_for(200)
            f.config_path.write_text(f.config_path.read_text().replace('route = "b"', 'route = "b", weight = 2'))
            f.signal(signal.SIGHUP)
            f.wait_for_error_log("reloaded ", timeout=30)
            wait_until(lambda: not set(children(f.pid)) & set(old), 30, message="old workers still running")
            load.wait_for(200)
        finally:
            load.stop()
        print(f"\nrolling reload of 2 workers under 4 client threads: {load.ok} ok, {len(load.failed)} failed, "
              f"{time.monotonic() - started:.1f}s")
        assert load.failed == []
        assert time.monotonic() - started < 30
        assert f.stop() == 0



_WRITER = r"""
import asyncio, sys
from ferryman.server.accesslog import AccessLog
log = AccessLog("-", "combined", asyncio.new_event_loop())
tag = sys.argv[1].encode()
for i in range(300):
    log._lines = [tag * 60 + b" %d %d" % (i, j) for j in range(120)]  # 8 KiB per flush, over PIPE_BUF
    log.flush()
log.close()  # the writer thread writes everything queued
"""


def test_access_log_lines_two_workers_write_to_one_slow_stdout_pipe_never_interleave() -> None:
    """Workers share the master's stdout; a log collector reading it slowly fills the pipe, and then a
    write of more than PIPE_BUF bytes may be split and mixed with another process's."""
    read_end, write_end = os.pipe()
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[2]))
    writers = [subprocess.Popen([sys.executable, "-c", _WRITER, tag], stdout=write_end, env=env) for tag in "ab"]
    os.close(write_end)
    data = bytearray()
    with os.fdopen(read_end, "rb", buffering=0) as pipe:
        while chunk := pipe.read(700):  # small reads: the pipe stays full, as behind a slow collector
            data += chunk
    assert [w.wait(30) for w in writers] == [0, 0]
    lines = bytes(data).split(b"\n")
    assert lines.pop() == b""
    whole = re.compile(rb"(a{60}|b{60}) \d+ \d+")
    assert len(lines) == 2 * 300 * 120
    assert [ln for ln in lines if not whole.fullmatch(ln)] == []


def test_without_shared_memory_for_the_member_table_one_process_serves_and_says_why(members, tmp_path) -> None:
    """A file size limit below the table's size makes creating it fail (EFBIG), as a full /dev/shm would."""
    a = members.add("a")
    port = free_port()
    (tmp_path / "ferryman.toml").write_text(config([{"url": a.url(), "route": "a"}], "/m", bind=f"127.0.0.1:{port}",
                                                   top="workers = 2"))
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[2]))
    proc = subprocess.Popen(
        [sys.executable, "-m", "ferryman", "run", "-c", "ferryman.toml"], cwd=tmp_path, env=env,
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (1024, 1024)))
    try:
        lines = []
        for line in proc.stderr:  # type: ignore[union-attr]
            lines.append(line)
            if "listening on" in line:
                break
        assert any("cannot create the shared member table" in ln and "serving with one worker process instead of 2"
                   in ln for ln in lines), lines
        members.pid = proc.pid
        assert children(proc.pid) == []
        with ClientConn(port) as c:
            assert c.request("GET", "/m/x").body == b"a"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def _scrape(port: int) -> dict[str, float]:
    """/metrics of the admin listener, parsed by prometheus-client: sample name + labels -> value."""
    from prometheus_client.parser import text_string_to_metric_families

    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as resp:
        text = resp.read().decode()
    return {s.name + repr(sorted(s.labels.items())): s.value
            for fam in text_string_to_metric_families(text) for s in fam.samples}


def test_the_masters_admin_listener_sums_every_workers_metrics_and_ferryman_reload_reaches_the_master(
        members) -> None:
    a = members.add("a")
    admin_port = free_port()
    toml = two_workers([a]) + f'\n[admin]\nbind = "127.0.0.1:{admin_port}"\n'
    with start(members, toml) as f:
        workers = workers_of(f)
        wait_for_port("127.0.0.1", admin_port, 20)
        count = 0
        while not set(workers) <= set(a.senders) and count < 2000:  # until both workers have served
            assert f.request("GET", "/m/x").status == 200
            count += 1
        assert set(workers) <= set(a.senders)
        key = "ferryman_requests_total" + repr(sorted({"route": "/m", "pool": "app", "member": a.url(),
                                                       "code": "2xx"}.items()))
        wait_until(lambda: _scrape(admin_port).get(key, 0) >= count, 20,
                   message="the admin listener's sum never reached the requests sent")
        assert _scrape(admin_port)[key] == count  # every worker's requests, each counted once
        with urllib.request.urlopen(f"http://127.0.0.1:{admin_port}/status", timeout=10) as resp:
            status = json.loads(resp.read())
        assert sorted(w["pid"] for w in status["workers"]) == sorted(workers)
        assert status["pools"][0]["members"][0]["route"] == "a"
        # ferryman reload finds the master through its pid file and reports the outcome
        f.config_path.write_text(f.config_path.read_text().replace('route = "a"', 'route = "a", weight = 3'))
        done = subprocess.run([sys.executable, "-m", "ferryman", "reload", "-c", str(f.config_path)], cwd=f.dir,
                              env=f.env_for_cli(), capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr + done.stdout
        assert "reloaded" in done.stdout + done.stderr
        assert _scrape(admin_port)['ferryman_reloads_total' + repr([("result", "ok")])] == 1
        assert f.stop() == 0


def test_a_reload_whose_new_worker_dies_before_it_is_ready_is_reported_failed_by_ferryman_reload(members) -> None:
    a = members.add("a")
    with start(members, two_workers([a])) as f:
        old = workers_of(f)
        f.config_path.write_text(f.config_path.read_text().replace('route = "a"', 'route = "a", weight = 3'))
        cli = subprocess.Popen([sys.executable, "-m", "ferryman", "reload", "-c", str(f.config_path)], cwd=f.dir,
                               env=f.env_for_cli(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            # the first new worker of the rolling reload is killed while it starts (importing takes far longer
            # than this poll)
            new = wait_until(lambda: [p for p in children(f.pid) if p not in old] or None, 30, 0.002,
                             message="the reload started no new worker")
            os.kill(new[0], signal.SIGKILL)  # type: ignore[index]
            out, err = cli.communicate(timeout=60)
        finally:
            if cli.poll() is None:
                cli.kill()
                cli.wait()
        try:
            f.wait_for_error_log("reload stopped: the new worker 1 did not start")
        except TimeoutError:
            raise AssertionError("\n".join(f.error_log_lines()) + out + err)
        assert cli.returncode == 1, (out, err)
        assert "failed:" in err and "the new worker 1 did not start" in err, err
        assert body_of(f) == "a"  # the previous workers still serve


def test_the_admin_sums_stay_exact_after_a_worker_is_killed_and_after_a_rolling_reload(members) -> None:
    a = members.add("a")
    admin_port = free_port()
    with start(members, two_workers([a]) + f'\n[admin]\nbind = "127.0.0.1:{admin_port}"\n') as f:
        workers = workers_of(f)
        wait_for_port("127.0.0.1", admin_port, 20)
        key = "ferryman_requests_total" + repr(sorted({"route": "/m", "pool": "app", "member": a.url(),
                                                       "code": "2xx"}.items()))
        sent = 0

        def serve_both() -> None:
            nonlocal sent
            seen: set[int] = set()
            while not set(workers_of(f)) <= seen and sent < 4000:
                assert f.request("GET", "/m/x").status == 200
                seen.add(a.senders[-1])
                sent += 1

        serve_both()
        wait_until(lambda: _scrape(admin_port).get(key, 0) == sent, 20, message="sum never reached the count")
        os.kill(workers[0], signal.SIGKILL)  # its counters were written as it served: they still count, once
        wait_until(lambda: workers[0] not in children(f.pid) and len(children(f.pid)) == 2, 20,
                   message="the killed worker was not replaced")
        serve_both()
        wait_until(lambda: _scrape(admin_port).get(key, 0) == sent, 20, message="sum wrong after the kill")
        with urllib.request.urlopen(f"http://127.0.0.1:{admin_port}/status", timeout=10) as resp:
            assert sorted(w["pid"] for w in json.loads(resp.read())["workers"]) == sorted(workers_of(f))
        f.signal(signal.SIGHUP)
        f.wait_for_error_log("reloaded ", timeout=30)
        serve_both()
        wait_until(lambda: _scrape(admin_port).get(key, 0) == sent, 20, message="sum wrong after the reload")
        assert _scrape(admin_port)[key] == sent


def test_a_masters_pid_file_names_it_a_refused_reload_is_reported_refused_and_both_files_go_at_stop(members) -> None:
    a = members.add("a")
    with start(members, two_workers([a], top='pid_file = "run/ferryman.pid"')) as f:
        pid_file = Path(f.dir) / "run" / "ferryman.pid"
        workers = workers_of(f)
        wait_until(lambda: pid_file.exists() and pid_file.read_text().strip() == str(f.pid), 10,
                   message="the pid file never named the master")
        good = f.config_path.read_text()
        f.config_path.write_text(good + '\n[[route]]\npath = "/d"\npool = "nope"\n')
        done = subprocess.run([sys.executable, "-m", "ferryman", "reload", "-c", str(f.config_path)], cwd=f.dir,
                              env=f.env_for_cli(), capture_output=True, text=True, timeout=60)
        assert done.returncode == 2 and "refused: 1 problem(s)" in done.stderr, done
        status = json.loads(Path(str(pid_file) + ".status").read_text())
        assert (status["outcome"], status["pid"]) == ("refused", f.pid)
        assert any("route[1].pool" in reason for reason in status["reasons"])
        assert sorted(children(f.pid)) == sorted(workers)  # no worker was replaced
        assert body_of(f) == "a"
        assert f.stop() == 0
        assert not pid_file.exists() and not Path(str(pid_file) + ".status").exists()
