"""ferryman.core.budget: the retry budget (Envoy retry_budget, Finagle/Linkerd retry budgets).

Sources:
  ENVOY   Envoy API, config.cluster.v3.CircuitBreakers.Thresholds.RetryBudget: budget_percent of active
          requests, min_retry_concurrency as a floor that is always allowed
  CONFIG  ferryman/config/schema.py Pool.retry_budget: "Retries a pool may add, as a share of its requests
          over the last 10 s (at least 3 per second are always allowed), so retries cannot multiply an
          outage."
Time is passed in as `now` (seconds); nothing here sleeps.
"""

from __future__ import annotations

import bisect

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ferryman.core.budget import RetryBudget


def retries_allowed(budget: RetryBudget, now: float, attempts: int = 10_000) -> int:
    n = 0
    while n < attempts and budget.try_retry(now):
        n += 1
    return n


def test_a_quiet_pool_may_still_retry_min_per_second_for_each_second_of_the_window():
    # CONFIG "at least 3 per second are always allowed"; ENVOY min_retry_concurrency
    budget = RetryBudget(ratio=0.2, min_per_second=3, window=10.0)
    assert retries_allowed(budget, 0.0) == 30


def test_a_busy_pool_may_retry_its_ratio_of_the_requests_in_the_window():
    budget = RetryBudget(ratio=0.2, min_per_second=3, window=10.0)
    for i in range(1000):
        budget.record_request(i * 0.009)           # 1000 requests over 9 s
    assert retries_allowed(budget, 9.0) == 200


def test_retries_are_refused_once_spent_and_allowed_again_as_the_window_moves_on():
    budget = RetryBudget(ratio=0.5, min_per_second=0, window=10.0)
    for _ in range(10):
        budget.record_request(0.0)
    assert retries_allowed(budget, 0.5) == 5
    assert not budget.try_retry(5.0)
    for _ in range(10):
        budget.record_request(12.0)                # the first ten left the window, and the first retries
    assert retries_allowed(budget, 12.5) == 5
    assert retries_allowed(budget, 25.0) == 0, "no requests in the window: no ratio to spend"


def test_a_budget_of_zero_never_retries_beyond_the_floor():
    budget = RetryBudget(ratio=0.0, min_per_second=0)
    for _ in range(100):
        budget.record_request(1.0)
    assert not budget.try_retry(1.0)


def test_refused_retries_are_not_counted():
    budget = RetryBudget(ratio=0.0, min_per_second=1, window=10.0)
    assert retries_allowed(budget, 0.0, attempts=50) == 10
    assert budget.counts(0.0) == (0, 10)


def test_counts_are_conservative_near_the_edge_of_the_window():
    # requests only from buckets wholly inside the window (never more than the truth), retries from
    # every bucket that touches it (never fewer)
    budget = RetryBudget(ratio=1.0, min_per_second=0, window=10.0)
    budget.record_request(0.5)
    assert budget.try_retry(0.5)
    assert budget.counts(9.9) == (1, 1)
    assert budget.counts(10.2) == (0, 1), "bucket 0 is partly outside (0.2, 10.2]: its request no longer counts"
    assert budget.counts(11.0) == (0, 0)


@pytest.mark.parametrize("kwargs", [dict(ratio=-0.1), dict(min_per_second=-1), dict(window=0.0)])
def test_a_budget_refuses_nonsense_settings(kwargs):
    with pytest.raises(ValueError):
        RetryBudget(**kwargs)


# (time step, requests recorded then, retries attempted then)
event_st = st.tuples(st.sampled_from([0.0, 0.0, 0.01, 0.3, 0.999, 1.0, 2.5, 7.0, 11.0]),
                     st.integers(0, 30), st.integers(0, 12))


@settings(max_examples=400, deadline=None)
@given(ratio=st.sampled_from([0.0, 0.1, 0.2, 0.5, 1.0]), min_per_second=st.integers(0, 5),
       window=st.sampled_from([1.0, 10.0, 30.0]), events=st.lists(event_st, min_size=1, max_size=60))
def test_a_budget_never_allows_more_retries_in_a_window_than_its_share_of_the_requests(
        ratio, min_per_second, window, events):
    budget = RetryBudget(ratio=ratio, min_per_second=min_per_second, window=window)
    now = 0.0
    requests: list[float] = []
    retries: list[float] = []
    for step, n_requests, n_retries in events:
        now += step * window / 10.0
        for _ in range(n_requests):
            budget.record_request(now)
            requests.append(now)
        for _ in range(n_retries):
            if budget.try_retry(now):
                retries.append(now)
                # the window (now - window, now] that ends at this retry, counted exactly
                start = now - window
                in_window_retries = len(retries) - bisect.bisect_right(retries, start)
                in_window_requests = len(requests) - bisect.bisect_right(requests, start)
                assert in_window_retries <= ratio * in_window_requests + min_per_second * window
                assert in_window_retries <= max(ratio * in_window_requests, min_per_second * window)


@settings(max_examples=200, deadline=None)
@given(rate=st.integers(10, 200), ratio=st.sampled_from([0.1, 0.2, 0.5]))
def test_a_steady_pool_gets_at_least_nine_tenths_of_its_ratio(rate, ratio):
    # the conservative edge costs at most one bucket (a tenth of the window) of requests
    budget = RetryBudget(ratio=ratio, min_per_second=0, window=10.0)
    for i in range(rate * 20):
        budget.record_request(i / rate)
    now = 20.0 - 1.0 / rate
    assert retries_allowed(budget, now) >= int(ratio * rate * 9)
