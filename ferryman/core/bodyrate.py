"""Minimum request-body rate: a credit of time that received bytes buy, capped at one window.

A body starts with one window of credit (the grace period: a connection that is slow to start is not
judged at once). Each received byte buys ``1 / min_rate`` seconds more, but the credit never reaches
further than one window past now, so a client cannot bank speed early and trickle later. The body is
too slow once the clock passes the credit: it has then averaged less than `min_rate` over a stretch
longer than the window. A POST trickling a byte every 1.5 s at a 500 B/s minimum is cut one window
after its last fast burst.

The credit only moves forward, so the connection's deadline (the earlier of it and the idle timeout)
moves forward too and never re-arms a timer. Time is passed in; nothing here reads a clock.
"""

from __future__ import annotations


def start_credit(now: float, window: float) -> float:
    """The credit of a body that starts (or resumes after ferryman paused it) at `now`."""
    return now + window


def add_bytes(credit: float, now: float, size: int, seconds_per_byte: float, window: float) -> float:
    """The credit after `size` bytes arrive at `now`: ``size * seconds_per_byte`` more, at most one
    window past `now`, never less than before."""
    more = credit + size * seconds_per_byte
    cap = now + window
    if more <= cap:
        return more
    return cap if cap > credit else credit


def too_slow(credit: float, now: float) -> bool:
    """The body has fallen below the minimum rate: the clock has passed its credit."""
    return now >= credit
