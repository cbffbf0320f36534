"""The minimum body rate: a credit of time bought by bytes, capped at one window."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from ferryman.core.bodyrate import add_bytes, start_credit, too_slow

WINDOW = 10.0
RATE = 500.0  # bytes per second
SPB = 1 / RATE

# (gap since the previous read in seconds, bytes in this read)
reads = st.lists(st.tuples(st.floats(0, 30, allow_nan=False), st.integers(0, 1 << 20)), max_size=60)


def _run(pattern: list[tuple[float, int]], start: float = 100.0):
    """Feed reads as the connection does: check the deadline first, then add the bytes. Yields
    (now, credit before the read, credit after, bytes so far)."""
    credit = start_credit(start, WINDOW)
    now, total = start, 0
    for gap, size in pattern:
        now += gap
        before = credit
        credit = add_bytes(credit, now, size, SPB, WINDOW)
        total += size
        yield now, before, credit, total


def test_a_byte_every_one_and_a_half_seconds_is_too_slow_one_window_after_it_starts():
    credit = start_credit(0.0, WINDOW)
    now = 0.0
    while not too_slow(credit, now):
        now += 1.5
        if not too_slow(credit, now):
            credit = add_bytes(credit, now, 1, SPB, WINDOW)
    assert WINDOW <= now <= WINDOW + 1.5


def test_a_body_at_the_minimum_rate_is_never_too_slow():
    credit = start_credit(0.0, WINDOW)
    for second in range(1, 600):
        assert not too_slow(credit, float(second))
        credit = add_bytes(credit, float(second), int(RATE), SPB, WINDOW)


def test_a_fast_start_buys_at_most_one_window_of_silence():
    credit = add_bytes(start_credit(0.0, WINDOW), 0.5, 100 << 20, SPB, WINDOW)
    assert credit == 0.5 + WINDOW
    assert too_slow(credit, 0.5 + WINDOW)


@given(reads)
def test_the_credit_never_moves_back_and_never_reaches_past_one_window(pattern):
    for now, before, after, _ in _run(pattern):
        assert after >= before
        assert after <= max(before, now + WINDOW)


@given(reads)
def test_the_credit_never_exceeds_what_the_bytes_bought_after_the_grace_window(pattern):
    start = 100.0
    for _, _, credit, total in _run(pattern, start):
        assert credit <= start + WINDOW + total * SPB + 1e-6


@given(st.floats(RATE, 100 * RATE), st.floats(0.001, 0.99 * WINDOW), st.integers(1, 300))
def test_a_steady_sender_at_or_above_the_rate_with_gaps_shorter_than_the_window_is_never_cut(rate, gap, n):
    credit = start_credit(0.0, WINDOW)
    now = 0.0
    for _ in range(n):
        now += gap
        assert not too_slow(credit, now)
        credit = add_bytes(credit, now, int(rate * gap) + 1, SPB, WINDOW)
