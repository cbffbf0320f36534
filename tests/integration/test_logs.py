"""Access log lines a person can read and a machine can parse: combined format escaping, JSON lines."""

from __future__ import annotations

import json
import os
import re
import select
import signal
import socket
import time

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.support import ClientConn, Ferryman, RawBackend, config, free_port, require, wait_until

pytestmark = pytest.mark.integration

OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"


def test_a_combined_line_escapes_quotes_backslashes_and_non_ascii_like_apache():
    with RawBackend.respond(OK) as backend, Ferryman(config([backend.url("/m")], "/app")) as f:
        agent = 'a "quoted" \\ agent \xe9'
        assert f.request("GET", "/app/x?q=1", headers={"User-Agent": agent, "Referer": "http://r/"}).status == 200
        line = f.wait_for_access_log("/app/x?q=1")
        assert '"GET /app/x?q=1 HTTP/1.1" 200 2 "http://r/" "a \\"quoted\\" \\\\ agent \\xe9"' in line
        assert re.search(r" time=\d+ request_id=[0-9a-f]{16}-[0-9a-f]+$", line), line
        assert " pool=app member=" in line and " route=- decision=balanced time=" in line


def test_a_json_line_carries_the_request_its_answer_and_the_balancing_decision():
    with RawBackend.respond(OK) as backend, \
            Ferryman(config([backend.url("/m")], "/app", listener_options='access_log = { format = "json" }')) as f:
        assert f.request("GET", "/app/j", headers={"User-Agent": "ua"}).status == 200
        entry = json.loads(f.wait_for_access_log("/app/j"))
        assert {k: entry[k] for k in ("method", "target", "protocol", "status", "bytes", "user_agent",
                                      "pool", "member", "decision")} == {
            "method": "GET", "target": "/app/j", "protocol": "HTTP/1.1", "status": 200, "bytes": 2,
            "user_agent": "ua", "pool": "app", "member": backend.url("/m"), "decision": "balanced"}
        assert entry["duration_ms"] >= 0


# -- request ids -------------------------------------------------------------------------------------

def _rid(line: str) -> str:
    m = re.search(r" request_id=(\S+)$", line)
    assert m, line
    return m.group(1)


def test_every_request_gets_one_request_id_in_the_app_and_in_its_access_log_line(echo_a):
    with Ferryman(config([echo_a.url("/webapps")], "/webapps")) as f:
        r1 = f.request("GET", "/webapps/echo?n=1", headers=[("X-Request-Id", "forged"), ("x_request_id", "x")])
        r2 = f.request("GET", "/webapps/echo?n=2")
        seen = [r.json()["headers"] for r in (r1, r2)]
        ids = [h["X-Request-Id"] for h in seen]
        assert all(re.fullmatch(r"[0-9a-f]{16}-[0-9a-f]+", i) for i in ids) and ids[0] != ids[1]
        assert "forged" not in ids
        assert _rid(f.wait_for_access_log("/webapps/echo?n=1")) == ids[0]
        assert _rid(f.wait_for_access_log("/webapps/echo?n=2")) == ids[1]


def test_a_trusted_proxy_keeps_its_valid_request_id_and_an_invalid_one_is_replaced(echo_a):
    toml = config([echo_a.url("/webapps")], "/webapps", top='trusted_proxies = ["127.0.0.1"]',
                  listener_options='access_log = { format = "json" }')
    with Ferryman(toml) as f:
        kept = f.request("GET", "/webapps/echo?k=1", headers={"X-Request-Id": "edge-7f3a.1:2"})
        assert kept.json()["headers"]["X-Request-Id"] == "edge-7f3a.1:2"
        assert json.loads(f.wait_for_access_log("/webapps/echo?k=1"))["request_id"] == "edge-7f3a.1:2"
        for bad in ("has space", "a" * 129, 'quo"te'):
            r = f.request("GET", "/webapps/echo?k=2", headers={"X-Request-Id": bad})
            got = r.json()["headers"]["X-Request-Id"]
            assert got != bad and re.fullmatch(r"[0-9a-f]{16}-[0-9a-f]+", got)


def test_a_backend_error_names_the_request_id_in_the_error_log_and_the_access_log():
    from tests.support import refused_port
    dead = f"http://127.0.0.1:{refused_port()}/m"
    with Ferryman(config([dead], "/app")) as f:
        assert f.request("GET", "/app/down").status == 503
        rid = _rid(f.wait_for_access_log("/app/down"))
        line = f.wait_for_error_log(lambda ln: "failed to connect" in ln)
        assert f"failed to connect for request_id={rid}: " in line and "Connection refused" in line


def test_an_app_sees_exactly_one_request_id_header():
    with RawBackend.respond(OK) as backend, Ferryman(config([backend.url("/m")], "/app")) as f:
        assert f.request("GET", "/app/one", headers={"X-Request-Id": "from-client"}).status == 200
        [req] = backend.requests
        assert len(req.header_all("x-request-id")) == 1 and req.header("x-request-id") != "from-client"


# -- reopening and failing log files -----------------------------------------------------------------

class FileLoggedFerryman(Ferryman):
    """A ferryman whose error log is a file: ready once its listener (on a known port) accepts."""

    def __init__(self, toml: str, port: int) -> None:
        self.fixed_port = port
        super().__init__(toml)

    def _ready(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise RuntimeError(f"ferryman exited with {self.proc.returncode}")
        try:
            socket.create_connection(("127.0.0.1", self.fixed_port), 0.5).close()
        except OSError:
            return False
        self.listeners["http"] = ("http", "127.0.0.1", self.fixed_port)
        return True


@pytest.mark.parametrize("workers", [1, 2])
def test_sigusr1_reopens_the_access_and_error_logs_after_logrotate_renamed_them(workers):
    """With several workers the master reopens its own log and passes the signal on to every worker."""
    port = free_port()
    with RawBackend.respond(OK) as backend:
        toml = config([backend.url("/m")], "/app", top=f'workers = {workers}\n[log]\npath = "error.log"\n',
                      bind=f"127.0.0.1:{port}",
                      listener_options='access_log = { path = "access.log" }')
        with FileLoggedFerryman(toml, port) as f:
            access, error = f.dir / "access.log", f.dir / "error.log"
            assert f.request("GET", "/app/before").status == 200
            wait_until(lambda: "/app/before" in access.read_text(), 10)
            access.rename(f.dir / "access.log.1")
            error.rename(f.dir / "error.log.1")
            f.signal(signal.SIGUSR1)
            # every process says so in the new error log once it has reopened (the master, then each worker)
            reopened = 1 if workers == 1 else 1 + workers
            wait_until(lambda: error.exists() and error.read_text().count("log files reopened") == reopened, 10)
            wait_until(access.exists, 10)  # the access log's writer thread reopens it in its turn
            for _ in range(20):  # over fresh connections: with two workers, both serve some
                assert f.request("GET", "/app/after").status == 200
            wait_until(lambda: access.read_text().count("/app/after") == 20, 10)
            assert "/app/after" not in (f.dir / "access.log.1").read_text()
            assert "/app/before" in (f.dir / "access.log.1").read_text()


def test_a_failed_access_log_write_is_counted_and_reported_once_not_swallowed():
    require(os.path.exists("/dev/full"), "/dev/full (writes to it fail with ENOSPC, as on a full disk)")
    with RawBackend.respond(OK) as backend:
        toml = config([backend.url("/m")], "/app", top='[admin]\nbind = "127.0.0.1:0"\n',
                      listener_options='access_log = { path = "/dev/full" }')
        with Ferryman(toml) as f:
            port = int(re.search(r"admin listening on http://[^:]+:(\d+)",
                                 f.wait_for_error_log("admin listening on")).group(1))
            for i in range(3):
                assert f.request("GET", f"/app/{i}").status == 200

            def lost() -> float:
                with ClientConn(port) as c:
                    text = c.request("GET", "/metrics").body.decode()
                return sum(s.value for fam in text_string_to_metric_families(text) for s in fam.samples
                           if s.name == "ferryman_access_log_lost_lines_total")

            wait_until(lambda: lost() == 3, 10)
            reports = [ln for ln in f.error_log_lines() if "access log /dev/full: write failed" in ln]
            assert len(reports) == 1 and "No space left on device" in reports[0]


def test_an_access_log_that_cannot_be_written_does_not_stall_requests(tmp_path):
    # A FIFO nobody reads: once its 64 KiB buffer is full, every write to it blocks, as on a stuck disk.
    fifo = tmp_path / "access.fifo"
    os.mkfifo(fifo)
    reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)  # lets ferryman open it; never read until the end
    try:
        # one connection carries every request (no max_requests_per_connection cut at 1000)
        toml_options = f'access_log = {{ path = "{fifo}" }}\nmax_requests_per_connection = 0'
        with RawBackend.respond(OK) as backend, \
                Ferryman(config([backend.url("/m")], "/app", listener_options=toml_options)) as f:
            with ClientConn(f.port(), timeout=10) as c:
                for i in range(1500):  # ~250 KB of log lines: far past what the FIFO holds
                    assert c.request("GET", f"/app/{i:04d}?pad={'x' * 60}").status == 200
            got = b""
            deadline = time.monotonic() + 20
            while b"/app/1499?" not in got and time.monotonic() < deadline:
                try:
                    got += os.read(reader, 1 << 16)
                except BlockingIOError:
                    wait_until(lambda: select.select([reader], [], [], 0.1)[0], 10)
            assert b"/app/0000?" in got and b"/app/1499?" in got
    finally:
        os.close(reader)


def test_a_retried_get_carries_the_same_request_id_to_both_members_and_into_the_access_log():
    from tests.integration.test_faulty_backends import Script, pool, reset_after_request

    script = Script(reset_after_request)
    with pool(script) as f:
        r = f.request("GET", "/p/rid")
        assert r.status == 200
        ids = [[v for k, v in q.headers if k.lower() == "x-request-id"] for b in script.backends for q in b.requests
               if q.target == "/m/rid"]
        assert len(ids) == 2 and ids[0] == ids[1] and len(ids[0]) == 1, ids
        f.wait_for_access_log(lambda line: "/p/rid" in line and f"request_id={ids[0][0]}" in line)
