"""MemberHealth.reconfigure: a reload changes a member's settings and keeps its state and clocks."""

from __future__ import annotations

import pytest

from ferryman.core.health import MemberHealth, State

SETTINGS = dict(passes=2, fails=2, passive_fails=3, retry=60.0, max_backoff=300.0, slow_start=0.0, active=True,
                ignore_errors=False)


def test_a_resting_member_keeps_resting_until_the_same_moment_with_new_settings() -> None:
    h = MemberHealth("m", retry=60.0)
    h.eject(100.0, "connection refused")
    assert h.reconfigure(**{**SETTINGS, "retry": 5.0}, now=101.0) is None  # type: ignore[arg-type]
    assert h.phase is State.RESTING and h.is_ejected(159.0)
    assert h.retry == 5.0
    assert not h.is_ejected(160.5)


def test_a_held_down_member_stays_down_while_checks_remain_and_comes_back_when_they_go() -> None:
    h = MemberHealth("m", fails=1, active=True)
    h.observe_check(False, 1.0, "status 500")
    assert h.phase is State.HELD_DOWN
    assert h.reconfigure(**SETTINGS, now=2.0) is None  # type: ignore[arg-type]
    assert h.phase is State.HELD_DOWN
    t = h.reconfigure(**{**SETTINGS, "active": False}, now=3.0)  # type: ignore[arg-type]
    assert t is not None and (t.old, t.new) == ("ejected", "healthy") and "checks removed" in t.reason
    assert not h.is_ejected(3.0)


def test_ignore_errors_set_by_a_reload_brings_a_resting_member_back() -> None:
    h = MemberHealth("m")
    h.eject(0.0, "refused")
    t = h.reconfigure(**{**SETTINGS, "ignore_errors": True}, now=1.0)  # type: ignore[arg-type]
    assert t is not None and t.new == "healthy" and not h.is_ejected(1.0)


def test_counters_carry_over() -> None:
    h = MemberHealth("m", passive_fails=3)
    h.observe_request(False, 0.0, "reset")
    h.observe_request(False, 0.1, "reset")
    h.reconfigure(**SETTINGS, now=0.2)  # type: ignore[arg-type]
    assert h.observe_request(False, 0.3, "reset") is not None  # the third consecutive failure rests it
    assert h.phase is State.RESTING


def test_invalid_settings_are_refused_with_nothing_changed() -> None:
    h = MemberHealth("m", retry=60.0)
    with pytest.raises(ValueError):
        h.reconfigure(**{**SETTINGS, "passes": 0, "retry": 1.0})  # type: ignore[arg-type]
    assert h.retry == 60.0
