"""Member health: a pure state machine fed by active checks, live requests and immediate errors.

Theory of operation
-------------------
Each member has one `MemberHealth`. Nothing here reads a clock or does I/O: every method takes
``now`` (monotonic seconds) and returns the `Transition` it caused, or None. The prober
(`ferryman.server.prober`) feeds active check results, the pool (`ferryman.core.balancer`) feeds live
request outcomes and immediate errors, and logs the transitions.

States (`State`) and the only moves between them (`TRANSITIONS`; anything else raises
`IllegalTransition`)::

    healthy ----------(fails / passive fails / immediate error)----------> ejected
    ejected ---(recovered, no slow start)---> healthy
    ejected ---(recovered, slow start)------> recovering --(ramp over)---> healthy
    recovering --------(fails / passive fails / immediate error)---------> ejected
    ejected ---(failed again after its rest / checks now hold it down)---> ejected

How a member is ejected:

- **Active checks** (HAProxy ``fall``, Apache ``hcfails``): ``fails`` consecutive failed checks eject
  it, and it stays out, whatever the time, until ``passes`` consecutive checks pass (HAProxy ``rise``,
  Apache ``hcpasses``). "Held down" below.
- **Passive** (nginx ``max_fails``, Envoy ``consecutive_5xx``): ``passive_fails`` consecutive failed live
  requests eject it for a backoff: ``retry`` the first time, doubled for each further ejection that
  follows without a successful request in between, capped at ``max_backoff`` (Envoy
  ``base_ejection_time`` and ``max_ejection_time``). A successful request resets both the count and
  the doubling. ``passive_fails = 0`` turns this off.
- **Immediate errors** (`MemberHealth.eject`: connection refused, ``failonstatus``): Apache's ``retry``:
  out for exactly ``retry`` (capped at ``max_backoff``), however many came before; it counts as an
  ejection for the doubling of a later passive ejection.

How it comes back:

- Once the backoff has passed the member is **on probation** (Apache: a worker in error is tried again
  once ``retry`` has passed): `MemberHealth.is_ejected` is False and it takes traffic again, still in
  state ``ejected``. Its first request decides: a success brings it back; a failure ejects it again
  at once, for twice as long (it never succeeded since it was ejected). Results of requests that were
  already in flight while it rested are ignored.
- Active checks also bring a member back **early**: ``passes`` consecutive passing checks end any
  ejection, held down or resting. A held-down member comes back only that way. A passing check
  does not reset the passive doubling: only a successful live request proves the member serves.
- With ``slow_start`` > 0 a member that comes back is ``recovering``: `MemberHealth.weight_factor`
  rises linearly from `MIN_FACTOR` to 1 over ``slow_start`` seconds (nginx ``slow_start``, HAProxy
  ``slowstart``), then it is ``healthy`` again. A member on probation also gets `MIN_FACTOR`, so the
  ramp starts where the probation left off.

``ignore_errors`` members are never ejected; the pool handles that flag, not this class.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import StrEnum

from ferryman.core.units import format_duration

#: Share of its weight a member gets at the start of a slow-start ramp (and on probation): enough to
#: be tried, small enough not to be swamped while its caches and connection pools warm up.
MIN_FACTOR = 0.1


class State(StrEnum):
    """Health states; the values are what logs and snapshots show."""

    HEALTHY = "healthy"
    EJECTED = "ejected"
    RECOVERING = "recovering"  # back in service, slow start ramp running


#: Every allowed state change. ``ejected -> ejected`` is a re-ejection: failed again on probation, or
#: active checks now hold down a member that was resting.
TRANSITIONS: frozenset[tuple[State, State]] = frozenset({
    (State.HEALTHY, State.EJECTED),
    (State.EJECTED, State.HEALTHY),
    (State.EJECTED, State.RECOVERING),
    (State.EJECTED, State.EJECTED),
    (State.RECOVERING, State.HEALTHY),
    (State.RECOVERING, State.EJECTED),
})


class IllegalTransition(ValueError):
    """A state change that `TRANSITIONS` does not allow: a bug in this module, never an input."""


def check_transition(old: State, new: State) -> None:
    """Raise `IllegalTransition` unless ``old -> new`` is in `TRANSITIONS`."""
    if (old, new) not in TRANSITIONS:
        raise IllegalTransition(f"can't go from {old.value} to {new.value}")


@dataclass(frozen=True, slots=True)
class Transition:
    """A state change worth logging: ``member`` went from ``old`` to ``new`` because of ``reason``."""

    member: str
    old: str
    new: str
    reason: str


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def _dur(seconds: float) -> str:
    return format_duration(seconds) if math.isfinite(seconds) and seconds >= 0 else str(seconds)


class MemberHealth:
    """The health of one member (see the module docstring).

    Args:
        name: the member's name, for `Transition` and logs.
        passes: consecutive passing checks that bring a member back (HAProxy rise). Default 1.
        fails: consecutive failed checks that eject it (HAProxy fall). Default 1.
        passive_fails: consecutive failed live requests that eject it; 0: never. Default 3.
        retry: first passive backoff, and the rest after an immediate error (Apache retry). Default 60.
        max_backoff: longest timed ejection. Default 300.
        slow_start: seconds of weight ramp after coming back; 0: full weight at once. Default 0.
        active: active checks are configured for this member (shown in `snapshot`).

    Raises:
        ValueError: passes or fails below 1, passive_fails below 0, a negative or non-finite duration.
    """

    __slots__ = ("name", "passes", "fails", "passive_fails", "retry", "max_backoff", "slow_start",
                 "active", "_state", "_check_fails", "_check_passes", "_request_fails", "_until",
                 "_held", "_streak", "_ejections", "_ramp_start")

    def __init__(self, name: str, *, passes: int = 1, fails: int = 1, passive_fails: int = 3,
                 retry: float = 60.0, max_backoff: float = 300.0, slow_start: float = 0.0,
                 active: bool = False) -> None:
        if passes < 1 or fails < 1:
            raise ValueError(f"passes and fails must be 1 or more, not {passes} and {fails}")
        if passive_fails < 0:
            raise ValueError(f"passive_fails must be 0 or more, not {passive_fails}")
        for what, v in (("retry", retry), ("max_backoff", max_backoff), ("slow_start", slow_start)):
            if not (math.isfinite(v) and v >= 0):
                raise ValueError(f"{what} must be a finite duration of 0 or more, not {v!r}")
        self.name = name
        self.passes = passes
        self.fails = fails
        self.passive_fails = passive_fails
        self.retry = float(retry)
        self.max_backoff = float(max_backoff)
        self.slow_start = float(slow_start)
        self.active = active
        self._state = State.HEALTHY
        self._check_fails = 0      # consecutive failed checks
        self._check_passes = 0     # consecutive passing checks
        self._request_fails = 0    # consecutive failed live requests
        self._until = 0.0          # end of the timed rest (meaningful while ejected)
        self._held = False         # held down by active checks until `passes` pass
        self._streak = 0           # ejections since the last successful request (the doubling)
        self._ejections = 0        # ejections ever
        self._ramp_start = 0.0     # when the slow start ramp began (state recovering)

    # -- queries ------------------------------------------------------------------------------------

    @property
    def state(self) -> str:
        """``"healthy"``, ``"ejected"`` or ``"recovering"`` as last updated (see `tick`)."""
        return self._state.value

    def is_ejected(self, now: float) -> bool:
        """True while the member must get no traffic: held down by active checks, or resting. False
        on probation (the rest has passed) and when in service."""
        return self._state is State.EJECTED and (self._held or now < self._until)

    def weight_factor(self, now: float) -> float:
        """The share of its weight the member gets now, in (0, 1]: 1 in service after the ramp,
        rising linearly from `MIN_FACTOR` during slow start, `MIN_FACTOR` on probation when slow
        start is configured."""
        if self.slow_start <= 0:
            return 1.0
        if self._state is State.RECOVERING:
            elapsed = now - self._ramp_start
            if elapsed >= self.slow_start:
                return 1.0
            return min(1.0, max(MIN_FACTOR, MIN_FACTOR + (1.0 - MIN_FACTOR) * elapsed / self.slow_start))
        if self._state is State.EJECTED:
            return MIN_FACTOR
        return 1.0

    def backoff(self) -> float:
        """How long the next passive ejection would last: `retry` doubled per ejection since the last
        successful request, capped at `max_backoff`."""
        if self._streak >= 64:  # 2**64 * retry is past any cap; avoid float overflow
            return min(self.max_backoff, self.retry * 2.0 ** 64)
        return min(self.max_backoff, self.retry * float(2 ** self._streak))

    def snapshot(self, now: float) -> dict[str, object]:
        """Plain data for status pages and tests; does not change anything."""
        state = self._state
        if state is State.RECOVERING and now - self._ramp_start >= self.slow_start:
            state = State.HEALTHY
        return {
            "state": state.value,
            "ejected": self.is_ejected(now),
            "held_down": self._held,
            "ejected_until": self._until if self._state is State.EJECTED and not self._held else None,
            "consecutive_check_fails": self._check_fails,
            "consecutive_check_passes": self._check_passes,
            "consecutive_request_fails": self._request_fails,
            "ejections": self._ejections,
            "next_backoff": self.backoff(),
            "weight_factor": self.weight_factor(now),
            "active": self.active,
        }

    # -- events -------------------------------------------------------------------------------------

    def tick(self, now: float) -> Transition | None:
        """Apply what time alone changes: the end of a slow-start ramp (``recovering -> healthy``).
        The ``observe_*`` methods and `eject` call it first."""
        if self._state is State.RECOVERING and now - self._ramp_start >= self.slow_start:
            return self._move(State.HEALTHY, f"slow start of {_dur(self.slow_start)} done")
        return None

    def observe_check(self, ok: bool, now: float, reason: str) -> Transition | None:
        """An active check passed (`ok`) or failed (`reason` says why, or what passed).

        Returns:
            The transition: ejected after ``fails`` consecutive failures (or now held down when it
            was resting), back after ``passes`` consecutive passes; else the end of a slow start, or
            None.
        """
        settled = self.tick(now)
        if ok:
            self._check_fails = 0
            self._check_passes += 1
            if self._state is State.EJECTED and self._check_passes >= self.passes:
                return self._recover(now, f"{_plural(self._check_passes, 'check')} passed")
            return settled
        self._check_passes = 0
        self._check_fails += 1
        if self._check_fails < self.fails:
            return settled
        why = f"{self._check_fails} consecutive failed checks: {reason}" if self._check_fails > 1 \
            else f"check failed: {reason}"
        if self._state is State.EJECTED:
            if self._held:
                return settled
            self._held = True
            return self._move(State.EJECTED, why + " (held down until checks pass)")
        self._held = True
        self._until = now
        return self._eject(why)

    def observe_request(self, ok: bool, now: float, reason: str) -> Transition | None:
        """A live request to the member succeeded or failed (reset, timeout, malformed answer,
        ``failonstatus``); passive outlier detection.

        Returns:
            The transition: ejected for the backoff after ``passive_fails`` consecutive failures (or
            after one failure on probation), back after a success on probation; else None.
        """
        settled = self.tick(now)
        if self._state is State.EJECTED and self.is_ejected(now):
            return settled  # in flight before the ejection: says nothing new
        if ok:
            self._request_fails = 0
            self._streak = 0
            if self._state is State.EJECTED:
                return self._recover(now, "request succeeded after its rest")
            return settled
        self._request_fails += 1
        if self._state is State.EJECTED:  # on probation: failed again before any success
            return self._rest(now, self.backoff(), f"backoff {_dur(self.backoff())} after "
                              f"{_plural(self._request_fails, 'failure')} on probation: {reason}")
        if self.passive_fails == 0 or self._request_fails < self.passive_fails:
            return settled
        return self._rest(now, self.backoff(), f"backoff {_dur(self.backoff())} after "
                          f"{_plural(self._request_fails, 'failure')}: {reason}")

    def eject(self, now: float, reason: str) -> Transition | None:
        """An immediate error (connection refused, TLS failure, ``failonstatus``): rest for ``retry``
        (capped at ``max_backoff``), Apache's rule. Ignored while the member already rests or is held
        down.
        """
        settled = self.tick(now)
        if self.is_ejected(now):
            return settled
        length = min(self.retry, self.max_backoff)
        return self._rest(now, length, f"{reason}; retry in {_dur(length)}")

    # -- internals ----------------------------------------------------------------------------------

    def _move(self, new: State, reason: str) -> Transition:
        old = self._state
        check_transition(old, new)
        self._state = new
        return Transition(self.name, old.value, new.value, reason)

    def _eject(self, reason: str) -> Transition:
        self._ejections += 1
        self._streak += 1
        self._request_fails = 0
        self._check_passes = 0
        return self._move(State.EJECTED, reason)

    def _rest(self, now: float, length: float, reason: str) -> Transition:
        self._until = now + length
        return self._eject(reason)

    def _recover(self, now: float, reason: str) -> Transition:
        self._held = False
        self._until = 0.0
        self._check_fails = 0
        self._request_fails = 0
        if self.slow_start > 0:
            self._ramp_start = now
            return self._move(State.RECOVERING, f"{reason}; slow start for {_dur(self.slow_start)}")
        return self._move(State.HEALTHY, reason)
