"""Access log lines a person can read and a machine can parse: combined format escaping, JSON lines."""

from __future__ import annotations

import json
import re

import pytest

from tests.support import Ferryman, RawBackend, config

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
