"""Load with failures: steady GETs and POSTs through a two-member pool while members are SIGKILLed and
restarted, every request counted. Shared by tests/integration/test_load_with_failures.py (short) and
bench/load_with_failures.py (long).

Members are gunicorn (gthread) serving tests/apps/recording_wsgi.py, each recording every request it
receives (`METHOD ID`) in its own file. Client threads send, on keep-alive connections, GETs
(`?id=<unique>`) and POSTs (body `<unique>`), half each at random. A killer SIGKILLs a member's whole
process group, waits, restarts it on the same port, waits for it to answer, and moves to the next kill
(alternating members), so one member is always up.

Counted: each request's outcome at the client (a status, or "lost": no final response at all, or
"truncated"), and each id's records at the members. The rules checked (invariant 8):
- lost = 0: every request got exactly one final response (the member's, or ferryman's 502/503);
- no complete answer carries another request's body;
- no POST id recorded twice (over both members): a non-idempotent request is never repeated;
- every POST answered 200 was recorded exactly once;
- no GET gets 502/503: one that may have reached the killed member is idempotent and is retried on the other;
- what cannot be retried fails only at a kill (within 2 s after it), a few per kill (at most two per client
  thread: the request it had in flight, and one sent on a pooled connection the member closed as it died,
  before ferryman read that close): a POST that may have reached the killed member (502), and an answer the
  member was killed in the middle of writing (gunicorn writes the head and the body in two sends), which the
  client receives truncated (short of its Content-Length, then closed), never complete (invariant 9).
"""

from __future__ import annotations

import collections
import contextlib
import http.client
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from tests.support import REPO, ClientConn, Ferryman, build_request, config, free_port, wait_until

APP = "tests.apps.recording_wsgi:app"


class RecordingMember:
    """One gunicorn member on a fixed port that can be SIGKILLed and started again on that port."""

    def __init__(self, directory: Path, name: str, threads: int = 8) -> None:
        self.name = name
        self.port = free_port()
        self.record = directory / f"{name}.records"
        self.log_path = directory / f"{name}.log"
        self.threads = threads
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/m"

    def start(self, timeout: float = 30) -> None:
        env = dict(os.environ, RECORD_FILE=str(self.record))
        env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "gunicorn", "--bind", f"127.0.0.1:{self.port}", "--workers", "1",
                 "--threads", str(self.threads), "--worker-class", "gthread", "--keep-alive", "30",
                 "--graceful-timeout", "1", "--log-level", "warning", "--chdir", str(REPO), APP],
                cwd=REPO, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True)
        self.starts += 1
        wait_until(self._answers, timeout, 0.05, f"member {self.name} did not answer within {timeout}s")

    def _answers(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise RuntimeError(f"gunicorn {self.name} exited: {self.log_path.read_text(errors='replace')[-2000:]}")
        try:
            c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2)
            c.request("GET", "/m/ready")
            ok = c.getresponse().status == 200
            c.close()
            return ok
        except OSError:
            return False

    def kill(self) -> None:
        """SIGKILL the whole process group (arbiter and worker at once), and reap it."""
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    def records(self) -> list[tuple[str, str]]:
        try:
            lines = self.record.read_bytes().decode().splitlines()
        except FileNotFoundError:
            return []
        return [tuple(line.split(" ", 1)) for line in lines if line]  # type: ignore[misc]


@dataclass
class Report:
    duration: float = 0.0
    kills: list[str] = field(default_factory=list)
    sent: collections.Counter[str] = field(default_factory=collections.Counter)          # by method
    outcomes: collections.Counter[tuple[str, str]] = field(default_factory=collections.Counter)  # (method, outcome)
    lost: int = 0
    truncated: int = 0
    post_duplicates: list[str] = field(default_factory=list)
    post_ok_not_recorded_once: list[str] = field(default_factory=list)
    post_failed_recorded: int = 0
    get_retried: int = 0          # GET ids recorded by both members (reached the killed one, retried)
    kill_times: list[float] = field(default_factory=list)       # seconds after the start
    failures_away_from_kills: list[tuple[str, str, str, float]] = field(default_factory=list)
    served_after_restart: dict[str, int] = field(default_factory=dict)
    wrong_answers: list[tuple] = field(default_factory=list)  # (id, body got, s after start, framing, head)
    proxy_log: list[str] = field(default_factory=list)         # ferryman's log lines (warnings and errors)
    threads: int = 0

    @property
    def total(self) -> int:
        return sum(self.sent.values())

    def failed(self, method: str) -> int:
        return sum(n for (m, o), n in self.outcomes.items() if m == method and o != "200")

    def summary(self) -> str:
        rows = ", ".join(f"{m} {o}: {n}" for (m, o), n in sorted(self.outcomes.items()))
        return (f"{self.total} requests in {self.duration:.1f}s ({self.total / max(self.duration, 1e-9):.0f}/s) "
                f"through 2 members, {len(self.kills)} SIGKILL+restart ({', '.join(self.kills)}); {rows}; "
                f"lost {self.lost}, truncated (cut by a kill, seen as cut) {self.truncated}, duplicated POSTs {len(self.post_duplicates)}, "
                f"POSTs answered 200 but not recorded exactly once {len(self.post_ok_not_recorded_once)}, "
                f"failed POSTs that had reached a member {self.post_failed_recorded}, "
                f"GETs recorded twice (reached the killed member, retried) {self.get_retried}; "
                f"failures away from a kill {len(self.failures_away_from_kills)}; "
                f"served after restart: {self.served_after_restart}"
                + (f"; WRONG ANSWERS (id, body, s): {self.wrong_answers[:5]}" if self.wrong_answers else ""))

    def check(self, kills: int) -> None:
        """The rules in the module docstring; AssertionError names the first broken one."""
        assert self.lost == 0, self.summary()
        assert not self.wrong_answers, self.summary()
        assert not self.post_duplicates, (self.post_duplicates[:10], self.summary())
        assert not self.post_ok_not_recorded_once, (self.post_ok_not_recorded_once[:10], self.summary())
        assert self.outcomes[("GET", "502")] == self.outcomes[("GET", "503")] == 0, self.summary()
        assert not self.failures_away_from_kills, (self.failures_away_from_kills[:5], self.summary())
        assert self.failed("POST") + self.outcomes[("GET", "truncated")] <= 2 * self.threads * kills, self.summary()
        assert all(o in ("200", "502", "503", "truncated") for _, o in self.outcomes), self.summary()


class _Client(threading.Thread):
    def __init__(self, index: int, port: int, stop: threading.Event, seed: int) -> None:
        super().__init__(daemon=True, name=f"load-client-{index}")
        self.index = index
        self.port = port
        self.stop = stop
        self.rng = random.Random(seed)
        self.results: list[tuple[str, str, str, int]] = []   # (method, id, outcome, time ns)
        self.wrong: list[tuple] = []  # (id, body received, when, framing, head): not this request's answer

    def run(self) -> None:
        conn: ClientConn | None = None
        seq = 0
        while not self.stop.is_set():
            seq += 1
            ident = f"c{self.index}-{seq}"
            method = "POST" if self.rng.random() < 0.5 else "GET"
            if conn is None:
                conn = ClientConn(self.port, timeout=30)
            try:
                if method == "POST":
                    conn.send(build_request("POST", "/p/order", body=ident.encode()))
                else:
                    conn.send(build_request("GET", f"/p/item?id={ident}"))
                resp = conn.read_response(method)
                outcome = str(resp.status) if resp.complete else "truncated"
                if resp.complete and resp.status == 200 and resp.body != b"ok " + ident.encode():
                    outcome = "wrong body"
                    self.wrong.append((ident, resp.body[:80], time.monotonic(), resp.framing, resp.raw_head))
                closing = (resp.header("connection") or "").lower() == "close" or not resp.complete
            except (OSError, EOFError, ValueError) as exc:
                outcome = f"lost ({type(exc).__name__})"
                closing = True
            self.results.append((method, ident, outcome, time.monotonic_ns()))
            if closing:
                conn.close()
                conn = None
        if conn is not None:
            conn.close()


def run(duration: float = 12.0, kills: int = 2, threads: int = 6, down: float = 0.5,
        log=print) -> Report:  # noqa: ANN001
    """Run the scenario: `kills` SIGKILL+restart cycles spread over `duration` seconds of load."""
    report = Report(threads=threads)
    with tempfile.TemporaryDirectory(prefix="ferryman-faultload-") as tmp:
        members = [RecordingMember(Path(tmp), "a"), RecordingMember(Path(tmp), "b")]
        try:
            for m in members:
                m.start()
            toml = config([m.url() for m in members], "/p",
                          pool_options='retry = "300ms"\nconnect_timeout = "2s"\nresponse_timeout = "20s"')
            with Ferryman(toml) as f:
                stop = threading.Event()
                clients = [_Client(i, f.port(), stop, seed=i) for i in range(threads)]
                start = time.monotonic()
                for c in clients:
                    c.start()
                restarted_at: dict[str, int] = {}
                slot = duration / (kills + 1)
                for k in range(kills):
                    stop.wait(max(0.0, start + slot * (k + 1) - time.monotonic()))
                    victim = members[k % 2]
                    report.kill_times.append(time.monotonic() - start)
                    victim.kill()
                    report.kills.append(victim.name)
                    log(f"{time.monotonic() - start:5.1f}s SIGKILL member {victim.name}")
                    stop.wait(down)
                    victim.start()
                    restarted_at[victim.name] = len(victim.records())
                    log(f"{time.monotonic() - start:5.1f}s member {victim.name} answers again")
                stop.wait(max(0.0, start + duration - time.monotonic()))
                stop.set()
                for c in clients:
                    c.join(60)
                    assert not c.is_alive(), f"{c.name} is stuck"
                report.duration = time.monotonic() - start
                report.proxy_log = [ln for ln in f.error_log_lines() if "listening" not in ln]
        finally:
            for m in members:
                m.kill()
        records = collections.Counter()
        for m in members:
            recs = m.records()
            records.update(recs)
            if m.name in restarted_at:
                report.served_after_restart[m.name] = len(recs) - restarted_at[m.name]
    for c in clients:
        report.wrong_answers += [(i, b, round(t - start, 2), fr, h) for i, b, t, fr, h in c.wrong]
        for method, ident, outcome, when in c.results:
            if outcome != "200":
                at = when / 1e9 - start
                if not any(k <= at <= k + 2.0 for k in report.kill_times):
                    report.failures_away_from_kills.append((method, ident, outcome, round(at, 2)))
            report.sent[method] += 1
            if outcome.startswith("lost"):
                report.lost += 1
            elif outcome == "truncated":
                report.truncated += 1
            report.outcomes[(method, outcome)] += 1
            n = records[(method, ident)]
            if method == "POST":
                if n > 1:
                    report.post_duplicates.append(ident)
                if outcome == "200" and n != 1:
                    report.post_ok_not_recorded_once.append(ident)
                if outcome != "200" and n:
                    report.post_failed_recorded += 1
            elif n > 1:
                report.get_retried += 1
    return report
