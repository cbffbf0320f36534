"""Load with failures: GETs and POSTs keep flowing through a two-member pool of real gunicorn members while
one member at a time is SIGKILLed and restarted. Nothing is lost, no POST is repeated, no GET fails
(invariant 8). The scenario and its rules are in tests/failover_load.py; bench/load_with_failures.py runs
it longer.
"""

from __future__ import annotations

import pytest

from tests import failover_load
from tests.support import require_module

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_members_killed_and_restarted_under_load_lose_no_request_repeat_no_post_and_fail_no_get():
    require_module("gunicorn")
    kills = 2
    report = failover_load.run(duration=12.0, kills=kills, threads=6)
    print(report.summary())
    report.check(kills)
    assert report.total > 200, report.summary()  # it really was under load
    assert report.sent["GET"] and report.sent["POST"]
    # the killed members came back and took their share again
    assert report.kills == ["a", "b"]
    assert all(n > 0 for n in report.served_after_restart.values()), report.summary()
