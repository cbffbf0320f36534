"""Retry budget: retries may add only a share of a pool's traffic, so they cannot multiply an outage.

After Envoy's retry budget (`retry_budget.budget_percent` with `min_retry_concurrency` as a floor) and
the Finagle/Linkerd "retry budget" (a ratio of requests over a sliding window plus a minimum rate): a
retry is allowed while the retries of the last `window` seconds, this one included, stay within
`max(ratio * requests, min_per_second * window)`. The floor keeps a quiet pool able to retry at all.

Counting is in `BUCKETS` time buckets of `window / BUCKETS` seconds each, so memory and cost are fixed
whatever the request rate. The buckets are read conservatively: retries are summed over every bucket that
overlaps the last `window` seconds (possibly a little more), requests only over buckets wholly inside it
(possibly a little less). So at the moment a retry is allowed, the true count of retries in the `window`
seconds that end there never exceeds `max(ratio * true requests, min_per_second * window)`.

Pure: time is passed in as `now` (seconds, monotonic, never decreasing); no clock, no locks (one event
loop uses it).
"""

from __future__ import annotations

BUCKETS = 10


class RetryBudget:
    """Retries allowed while retries <= ratio * requests over a sliding `window` (10 s), with a floor of
    `min_per_second` retries per second of window.

    Call `record_request(now)` once per original request (not for retries), and `try_retry(now)` before
    each retry: it answers True and counts the retry, or False when the budget is spent (answer with the
    failure at hand instead of retrying).
    """

    __slots__ = ("ratio", "min_per_second", "window", "_width", "_ids", "_requests", "_retries", "_floor")

    def __init__(self, ratio: float = 0.2, min_per_second: int = 3, window: float = 10.0) -> None:
        if ratio < 0 or min_per_second < 0 or window <= 0:
            raise ValueError(f"expected ratio >= 0, min_per_second >= 0 and window > 0, not "
                             f"{ratio}, {min_per_second}, {window}")
        self.ratio = ratio
        self.min_per_second = min_per_second
        self.window = window
        self._width = window / BUCKETS
        self._floor = min_per_second * window
        n = BUCKETS + 1  # the current bucket and the BUCKETS before it
        self._ids = [-1] * n
        self._requests = [0] * n
        self._retries = [0] * n

    def _slot(self, now: float) -> tuple[int, int]:
        """(bucket id, slot) for `now`; a slot holding an older bucket is emptied first."""
        b = int(now // self._width)
        i = b % (BUCKETS + 1)
        if self._ids[i] != b:
            self._ids[i] = b
            self._requests[i] = 0
            self._retries[i] = 0
        return b, i

    def record_request(self, now: float) -> None:
        """Count one request (an original attempt, not a retry)."""
        b = int(now // self._width)
        i = b % (BUCKETS + 1)
        if self._ids[i] == b:
            self._requests[i] += 1
        else:
            self._ids[i] = b
            self._requests[i] = 1
            self._retries[i] = 0

    def counts(self, now: float) -> tuple[int, int]:
        """(requests, retries) as the budget counts them at `now` (requests low, retries high)."""
        b = int(now // self._width)
        requests = retries = 0
        for i, bid in enumerate(self._ids):
            age = b - bid
            if 0 <= age <= BUCKETS:
                retries += self._retries[i]
                if age < BUCKETS:
                    requests += self._requests[i]
        return requests, retries

    def allowed(self, now: float) -> float:
        """The most retries the window ending at `now` may hold."""
        requests, _ = self.counts(now)
        return max(self.ratio * requests, self._floor)

    def try_retry(self, now: float) -> bool:
        """True, and the retry is counted, when one more retry fits the budget; False otherwise."""
        requests, retries = self.counts(now)
        if retries + 1 > max(self.ratio * requests, self._floor):
            return False
        _, i = self._slot(now)
        self._retries[i] += 1
        return True
