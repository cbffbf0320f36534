"""ferryman.core.health: the member state machine (Apache retry and force recovery, active rise/fall,
passive backoff, slow start).

Sources:
  HAPROXY  HAProxy configuration manual, server options `rise`, `fall`, `inter`, `slowstart`: a server goes
           down after `fall` consecutive failed checks and up after `rise` consecutive passing ones
  APHC     Apache mod_proxy_hcheck: hcfails / hcpasses (same meaning)
  APRETRY  Apache mod_proxy BalancerMember `retry`: a worker in error is not used until retry has passed,
           then tried again (also observed on Apache 2.4). apache/httpd
           modules/proxy/proxy_util.c ap_proxy_retry_worker (usable again once now > error_time + retry)
           and ap_proxy_connect_backend (only a usable worker is put in error: a second error while it
           rests changes nothing)
  APFORCE  apache/httpd modules/proxy/mod_proxy_balancer.c force_recovery: every worker in error ->
           the in-error state of all of them is cleared at once
  ENVOY    Envoy outlier detection: consecutive_5xx ejects; ejection time = base_ejection_time x number
           of ejections, bounded by max_ejection_time (ferryman doubles instead of multiplying)
Times are plain numbers; nothing sleeps.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ferryman.core.health import (
    MIN_FACTOR,
    TRANSITIONS,
    IllegalTransition,
    MemberHealth,
    State,
    Transition,
    check_transition,
)


def fail_checks(h: MemberHealth, n: int, now: float = 0.0, reason: str = "connection refused"):
    return [h.observe_check(False, now + i, reason) for i in range(n)]


# -- transition table -------------------------------------------------------------------------------

H, R, P, D, C = State.HEALTHY, State.RESTING, State.PROBATION, State.HELD_DOWN, State.RECOVERING


def test_transition_table_is_explicit() -> None:
    assert TRANSITIONS == {
        (H, R), (C, R), (P, R),                                 # an error, passive fails, failing on probation
        (H, D), (C, D), (R, D), (P, D),                         # active checks fail
        (R, P),                                                 # the rest is over (retry_due) or forced
        (R, H), (R, C), (P, H), (P, C), (D, H), (D, C),         # back: checks pass, a success on probation
        (C, H)}                                                 # the slow start ramp is over


@pytest.mark.parametrize("old, new", [(H, C), (H, H), (C, C), (H, P), (D, R), (D, P), (R, R), (D, D)])
def test_illegal_transitions_raise(old: State, new: State) -> None:
    with pytest.raises(IllegalTransition, match=f"{old.value} to {new.value}"):
        check_transition(old, new)


def test_the_machine_itself_refuses_an_illegal_move() -> None:
    h = MemberHealth("m")
    with pytest.raises(IllegalTransition):
        h._move(State.RECOVERING, "no")  # healthy -> recovering skips the ejection
    assert h.state == "healthy"


@pytest.mark.parametrize("kwargs", [{"passes": 0}, {"fails": 0}, {"passive_fails": -1}, {"retry": -1.0},
                                    {"max_backoff": float("inf")}, {"slow_start": float("nan")}])
def test_bad_parameters_are_refused(kwargs: dict) -> None:
    with pytest.raises(ValueError):
        MemberHealth("m", **kwargs)


# -- active checks ----------------------------------------------------------------------------------

def test_fall_ejects_after_fails_consecutive_failures() -> None:  # HAPROXY fall, APHC hcfails
    h = MemberHealth("m1", passes=2, fails=3, active=True)
    assert fail_checks(h, 2) == [None, None]
    assert not h.is_ejected(2)
    t = h.observe_check(False, 2, "connection refused")
    assert t == Transition("m1", "healthy", "ejected", "3 consecutive failed checks: connection refused")
    assert h.state == "ejected" and h.is_ejected(2)


def test_a_pass_resets_the_failure_count() -> None:
    h = MemberHealth("m", fails=3)
    fail_checks(h, 2)
    h.observe_check(True, 2, "status 200")
    assert fail_checks(h, 2, 3) == [None, None]
    assert h.state == "healthy"


def test_held_down_until_passes_consecutive_passes_whatever_the_time() -> None:  # HAPROXY rise
    h = MemberHealth("m", passes=2, fails=1, retry=1.0)
    t = h.observe_check(False, 0, "status 500 (expected 200-399)")
    assert t is not None and t.reason == "check failed: status 500 (expected 200-399)"
    assert h.is_ejected(10_000)  # not a timed rest
    assert h.observe_check(True, 1, "status 200") is None
    assert h.observe_check(False, 2, "timeout") is None  # breaks the run of passes
    assert h.observe_check(True, 3, "status 200") is None
    t = h.observe_check(True, 4, "status 200")
    assert t == Transition("m", "ejected", "healthy", "2 checks passed")
    assert not h.is_ejected(4)


def test_requests_do_not_bring_back_a_held_down_member() -> None:
    h = MemberHealth("m", passes=1, fails=1)
    h.observe_check(False, 0, "refused")
    assert h.observe_request(True, 1, "200") is None
    assert h.is_ejected(1000)


def test_checks_bring_a_resting_member_back_early() -> None:  # SPEC: active checks end an error early
    h = MemberHealth("m", passes=2, retry=60)
    h.eject(0, "connection refused")
    h.observe_check(True, 1, "status 200")
    t = h.observe_check(True, 2, "status 200")
    assert t is not None and t.new == "healthy" and not h.is_ejected(2)


def test_failing_checks_hold_down_a_resting_member() -> None:
    h = MemberHealth("m", fails=2, retry=5)
    h.eject(0, "connection refused")
    assert h.observe_check(False, 1, "refused") is None
    t = h.observe_check(False, 2, "refused")
    assert t is not None and (t.old, t.new) == ("ejected", "ejected") and "held down" in t.reason
    assert h.is_ejected(100)  # the 5 s rest no longer ends it
    assert h.observe_check(False, 3, "refused") is None  # already held down: nothing new to log


# -- passive ----------------------------------------------------------------------------------------

def test_passive_fails_eject_for_retry() -> None:  # ENVOY consecutive_5xx, nginx max_fails
    h = MemberHealth("m", passive_fails=3, retry=20)
    assert h.observe_request(False, 0, "timeout") is None
    assert h.observe_request(False, 1, "timeout") is None
    t = h.observe_request(False, 2, "timeout")
    assert t == Transition("m", "healthy", "ejected", "backoff 20s after 3 failures: timeout")
    assert h.is_ejected(22) and not h.is_ejected(22.01)


def test_a_success_resets_the_passive_count() -> None:
    h = MemberHealth("m", passive_fails=2)
    h.observe_request(False, 0, "reset")
    h.observe_request(True, 1, "200")
    assert h.observe_request(False, 2, "reset") is None
    assert h.state == "healthy"


def test_passive_fails_zero_disables_passive_ejection() -> None:
    h = MemberHealth("m", passive_fails=0)
    for i in range(100):
        assert h.observe_request(False, i, "reset") is None
    assert h.state == "healthy"


def test_backoff_doubles_without_a_success_and_is_capped() -> None:  # ENVOY max_ejection_time
    h = MemberHealth("m", passive_fails=2, retry=10, max_backoff=35)
    now, lengths = 0.0, []
    h.observe_request(False, now, "timeout")
    h.observe_request(False, now, "timeout")
    for _ in range(4):
        lengths.append(h.snapshot(now)["ejected_until"] - now)
        now = h.snapshot(now)["ejected_until"] + 0.001  # the rest is over: on probation
        assert not h.is_ejected(now) and h.retry_due(now)
        t = h.observe_request(False, now, "timeout")  # the first request fails again
        assert t is not None and (t.old, t.new) == ("ejected", "ejected") and "on probation" in t.reason
    lengths.append(h.snapshot(now)["ejected_until"] - now)
    assert lengths == pytest.approx([10, 20, 35, 35, 35])


def test_the_passive_backoff_is_never_shorter_than_retry() -> None:
    # APRETRY: a member rests at least `retry`; max_backoff caps only the doubling
    h = MemberHealth("m", passive_fails=1, retry=600, max_backoff=300)
    t = h.observe_request(False, 0, "timeout")
    assert t is not None and t.reason == "backoff 10m after 1 failure: timeout"
    assert h.snapshot(0)["ejected_until"] == 600 and h.backoff() == 600


def test_a_success_on_probation_brings_it_back_and_resets_the_doubling() -> None:  # APRETRY
    h = MemberHealth("m", passive_fails=1, retry=10)
    h.observe_request(False, 0, "reset")
    assert h.observe_request(True, 5, "200") is None  # in flight before the ejection: ignored
    assert h.is_ejected(5)
    assert h.observe_request(True, 10.5, "200") is None, "until the pool looks at it, it still rests"
    assert h.retry_due(10.5)
    t = h.observe_request(True, 10.5, "200")
    assert t == Transition("m", "ejected", "healthy", "request succeeded after its rest")
    h.observe_request(False, 11, "reset")
    assert h.snapshot(11)["ejected_until"] == 21  # back to retry, not 20


def test_results_of_requests_in_flight_during_the_rest_are_ignored() -> None:
    h = MemberHealth("m", passive_fails=1, retry=10)
    h.observe_request(False, 0, "reset")
    assert h.observe_request(False, 3, "reset") is None
    assert h.snapshot(3)["ejected_until"] == 10  # not extended


# -- immediate errors (Apache retry) ------------------------------------------------------------------

def test_eject_rests_exactly_retry() -> None:  # APRETRY
    h = MemberHealth("m", retry=60)
    t = h.eject(100, "connection refused")
    assert t == Transition("m", "healthy", "ejected", "connection refused; retry in 60s")
    assert h.is_ejected(160) and not h.is_ejected(160.001)  # APRETRY: usable once now > error time + retry
    assert h.eject(120, "connection refused") is None  # already resting: not extended
    assert h.snapshot(120)["ejected_until"] == 160
    assert h.eject(170, "connection refused") is None, "APRETRY: still in error until the pool retries it"
    assert h.retry_due(170) and h.phase is State.PROBATION
    t = h.eject(170, "connection refused")  # tried again after retry, refused again
    assert t is not None and (t.old, t.new) == ("ejected", "ejected")
    assert h.snapshot(170)["ejected_until"] == 230  # exactly retry again, no doubling


@pytest.mark.parametrize("retry, max_backoff", [(3600, 300), (600, 300), (60, 300)])
def test_eject_rests_exactly_retry_whatever_max_backoff_says(retry: float, max_backoff: float) -> None:
    # APRETRY: `retry = "1h"` rests an hour; max_backoff caps only the doubling of passive rests
    h = MemberHealth("m", retry=retry, max_backoff=max_backoff)
    h.eject(0, "refused")
    assert h.snapshot(0)["ejected_until"] == retry
    assert h.is_ejected(retry) and not h.is_ejected(retry + 0.001)


def test_a_rest_that_is_over_ends_only_when_the_member_is_looked_at() -> None:
    # APRETRY: the in-error flag stays until ap_proxy_retry_worker runs on the worker
    h = MemberHealth("m", retry=10)
    h.eject(0, "refused")
    assert h.down and not h.retry_due(10), "not before: strictly after retry"
    assert h.down and h.phase is State.RESTING, "time alone changes nothing"
    assert h.retry_due(10.5) and not h.down and h.phase is State.PROBATION
    assert h.state == "ejected", "on probation it is still shown as ejected until its first result"
    assert h.observe_request(True, 11, "200") == Transition("m", "ejected", "healthy",
                                                            "request succeeded after its rest")


def test_force_ends_a_rest_at_once_and_leaves_a_held_down_member_down() -> None:
    # APFORCE: the in-error state is cleared whatever is left of retry; health-check failures stay
    resting = MemberHealth("r", retry=3600)
    resting.eject(0, "refused")
    assert resting.force(1) and not resting.down and resting.phase is State.PROBATION
    assert not resting.force(1), "only a resting member is forced"
    held = MemberHealth("h", fails=1)
    held.observe_check(False, 0, "refused")
    assert not held.force(1) and held.down and held.phase is State.HELD_DOWN


def test_a_forced_member_that_fails_again_rests_retry_and_one_that_serves_is_healthy() -> None:
    dead, back = MemberHealth("dead", retry=3600), MemberHealth("back", retry=3600)
    for h in (dead, back):
        h.eject(0, "refused")
        h.force(5)
    t = dead.eject(5, "refused")
    assert t is not None and t.reason == "refused; retry in 1h" and dead.snapshot(5)["ejected_until"] == 3605
    t = back.observe_request(True, 5, "200")
    assert t == Transition("back", "ejected", "healthy", "request succeeded after its rest")
    assert not back.down


def test_immediate_errors_count_for_the_passive_doubling() -> None:
    h = MemberHealth("m", passive_fails=1, retry=10)
    h.eject(0, "refused")
    h.retry_due(10.5)
    t = h.observe_request(False, 10.5, "timeout")  # on probation, fails: second ejection in a row
    assert t is not None and t.reason == "backoff 20s after 1 failure on probation: timeout"


def test_an_ignore_errors_member_never_leaves_service() -> None:
    # Apache status +I: "always considered available"
    h = MemberHealth("m", passive_fails=1, fails=1, active=True, ignore_errors=True)
    assert h.eject(0, "refused") is None
    assert h.observe_request(False, 1, "reset") is None
    assert h.observe_check(False, 2, "refused") is None
    assert not h.down and h.state == "healthy" and not h.is_ejected(2)


# -- slow start -------------------------------------------------------------------------------------

def test_slow_start_ramp_after_recovery() -> None:  # HAPROXY slowstart, nginx slow_start
    h = MemberHealth("m", passes=1, fails=1, slow_start=10)
    assert h.weight_factor(0) == 1.0
    h.observe_check(False, 0, "refused")
    t = h.observe_check(True, 5, "status 200")
    assert t == Transition("m", "ejected", "recovering", "1 check passed; slow start for 10s")
    assert h.weight_factor(5) == pytest.approx(MIN_FACTOR)
    assert h.weight_factor(10) == pytest.approx(MIN_FACTOR + (1 - MIN_FACTOR) / 2)
    assert h.weight_factor(15) == 1.0
    assert h.state == "recovering" and h.snapshot(15)["state"] == "healthy"
    assert h.tick(15) == Transition("m", "recovering", "healthy", "slow start of 10s done")
    assert h.tick(16) is None


def test_failure_during_the_ramp_ejects_again() -> None:
    h = MemberHealth("m", passes=1, fails=1, slow_start=10)
    h.observe_check(False, 0, "refused")
    h.observe_check(True, 1, "ok")
    t = h.observe_check(False, 2, "refused")
    assert t is not None and (t.old, t.new) == ("recovering", "ejected")


def test_no_slow_start_means_full_weight_at_once() -> None:
    h = MemberHealth("m", passes=1, fails=1)
    h.observe_check(False, 0, "x")
    assert h.observe_check(True, 1, "ok").new == "healthy"
    assert h.weight_factor(1) == 1.0


# -- snapshot ---------------------------------------------------------------------------------------

def test_snapshot_fields() -> None:
    h = MemberHealth("m", passive_fails=2, retry=10, active=True)
    h.observe_request(False, 0, "x")
    snap = h.snapshot(0)
    assert snap["state"] == "healthy" and snap["consecutive_request_fails"] == 1 and snap["ejections"] == 0
    assert snap["ejected_until"] is None and snap["active"] is True and snap["next_backoff"] == 10
    h.observe_request(False, 1, "x")
    snap = h.snapshot(1)
    assert snap["state"] == "ejected" and snap["ejected"] and snap["ejected_until"] == 11
    assert snap["ejections"] == 1 and snap["next_backoff"] == 20


# -- properties -------------------------------------------------------------------------------------

ops = st.lists(st.tuples(st.sampled_from(["check", "request", "eject", "tick", "retry", "force"]), st.booleans(),
                         st.floats(0, 50, allow_nan=False)), max_size=80)
params = st.fixed_dictionaries({
    "passes": st.integers(1, 4), "fails": st.integers(1, 4), "passive_fails": st.integers(0, 4),
    "retry": st.floats(0, 100), "max_backoff": st.floats(0, 400), "slow_start": st.sampled_from([0.0, 5.0, 30.0]),
    "active": st.booleans()})


def _apply(h: MemberHealth, op: str, ok: bool, now: float) -> Transition | None:
    if op == "check":
        return h.observe_check(ok, now, "r")
    if op == "request":
        return h.observe_request(ok, now, "r")
    if op == "eject":
        return h.eject(now, "r")
    if op == "retry":
        h.retry_due(now)
        return None
    if op == "force":
        h.force(now)
        return None
    return h.tick(now)


@settings(max_examples=300)
@given(params, st.lists(st.tuples(st.sampled_from(["check", "request", "tick"]), st.floats(0, 50)), max_size=80))
def test_successes_alone_never_eject(kw: dict, steps: list) -> None:
    h = MemberHealth("m", **kw)
    now = 0.0
    for op, dt in steps:
        now += dt
        t = _apply(h, op, True, now)
        assert t is None or t.new != "ejected"
        assert not h.is_ejected(now) and h.state != "ejected"


@settings(max_examples=300)
@given(params, ops)
def test_only_failures_eject_and_timed_ejections_never_exceed_max_backoff_or_retry(kw: dict, steps: list) -> None:
    h = MemberHealth("m", **kw)
    now = 0.0
    for op, ok, dt in steps:
        now += dt
        t = _apply(h, op, ok, now)
        if t is not None:
            assert t.old in ("healthy", "ejected", "recovering") and t.reason
            if t.new == "ejected":
                assert op in ("check", "request", "eject") and (op == "eject" or not ok)
        until = h.snapshot(now)["ejected_until"]
        if until is not None and t is not None and t.new == "ejected":
            assert until - now <= max(kw["max_backoff"], kw["retry"]) + 1e-9
        assert 0 < h.weight_factor(now) <= 1
        assert h.down == (h.phase in (State.RESTING, State.HELD_DOWN)), "`down` is the state, never a second clock"


@settings(max_examples=200)
@given(params, ops, st.lists(st.floats(0, 40), min_size=2, max_size=30))
def test_weight_factor_is_in_range_and_monotone_during_the_ramp(kw: dict, steps: list, offsets: list) -> None:
    h = MemberHealth("m", **kw)
    now = 0.0
    for op, ok, dt in steps:
        now += dt
        _apply(h, op, ok, now)
    # from here on, time alone passes: the factor never goes down and stays in (0, 1]
    factors = [h.weight_factor(now + o) for o in sorted(offsets)]
    assert all(0 < f <= 1 for f in factors)
    if h.state != "ejected":
        assert factors == sorted(factors)


@given(st.integers(1, 10), st.floats(1, 100))
def test_slow_start_ramp_is_strictly_rising_until_full(passes: int, ramp: float) -> None:
    h = MemberHealth("m", passes=passes, fails=1, slow_start=ramp)
    h.observe_check(False, 0, "x")
    for i in range(passes):
        h.observe_check(True, 1 + i, "ok")
    start = float(passes)
    samples = [h.weight_factor(start + ramp * k / 10) for k in range(12)]
    assert samples[0] == pytest.approx(MIN_FACTOR)
    assert all(a < b for a, b in zip(samples[:10], samples[1:11]))
    assert samples[10] == pytest.approx(1.0) and samples[11] == 1.0
