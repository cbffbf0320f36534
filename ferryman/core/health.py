"""Member state: whether a pool member may take traffic, as one pure state machine.

Theory of operation
-------------------
Every member of a pool has exactly one `MemberHealth`, and it alone decides whether the member is out of
service for a failure; the pool (`ferryman.core.balancer`) asks it and feeds it, and keeps no error
clock of its own. (The administrative status, enabled/disabled/drain/hot-standby/stopped, is
configuration and lives on the member.) Nothing here reads a clock or does I/O: every method takes
``now`` (monotonic seconds) and returns the `Transition` it caused, or None, for the caller to log.

Who feeds it: the pool, with live request outcomes (`observe_request`) and immediate errors (`eject`:
connection refused, ``failonstatus``, ``failontimeout``); the prober, with active check results
(`observe_check`); and the pool again when it retries a resting member (`retry_due`) or force-recovers a
pool whose members are all resting (`force`).

States (`State`) and the only moves between them (`TRANSITIONS`; anything else raises
`IllegalTransition`)::

    healthy, recovering --(immediate error / passive fails)--> resting
    healthy, recovering --(active checks fail)---------------> held-down
    resting --(retry_due: its rest is over / force)----------> probation
    resting, probation --(active checks fail)----------------> held-down
    probation --(fails again: a longer rest)-----------------> resting
    resting, probation, held-down --(back: checks pass, or a request succeeds on probation)
                                    --> healthy, or recovering when slow start is configured
    recovering --(ramp over)---------------------------------> healthy

- **resting** is Apache's *in error* (``PROXY_WORKER_IN_ERROR``): out for a timed rest. An immediate
  error rests it exactly ``retry`` (Apache ``retry``), however many came before; an error while it
  already rests changes nothing (Apache marks only a usable worker in error). ``passive_fails``
  consecutive failed live requests (nginx ``max_fails``, Envoy ``consecutive_5xx``) rest it for a
  backoff: ``retry``, doubled for each further rest that follows without a successful request in between,
  capped at ``max_backoff`` but never shorter than ``retry`` (Envoy ``base_ejection_time`` and
  ``max_ejection_time``). ``passive_fails = 0`` turns passive ejection off.
- A rest ends the way Apache's does: not by itself, but when the pool next looks at the member after it
  (`retry_due`, Apache ``ap_proxy_retry_worker``: strictly after ``retry`` has passed), or when every member
  of the pool is resting and the pool forces recovery (`force`, Apache ``force_recovery``). The member is
  then on **probation**: it takes traffic, and its first result decides. A success brings it back; a
  failure rests it again, a passive failure for twice as long. Results of requests that end while it
  rests or is held down were sent before: they are ignored.
- **held-down**: ``fails`` consecutive failed active checks (HAProxy ``fall``, Apache ``hcfails``) take
  it out until ``passes`` consecutive checks pass (HAProxy ``rise``, Apache ``hcpasses``), whatever the
  time; force recovery does not touch it (Apache's health-check failure is not *in error* either).
  Passing checks also end a rest early. A passing check does not reset the passive doubling: only a
  successful live request proves the member serves.
- **recovering**: with ``slow_start`` > 0 a member that comes back ramps up: `weight_factor` rises
  linearly from `MIN_FACTOR` to 1 over ``slow_start`` seconds (nginx ``slow_start``, HAProxy
  ``slowstart``). A member on probation gets `MIN_FACTOR` too, so the ramp starts where probation left off.
- ``ignore_errors`` (Apache status ``+I``): never leaves service, whatever fails.

`down` is the one flag the balancer reads on its hot path: True exactly in the states resting and
held-down. Logs and `state` name the states healthy / ejected / recovering (resting, probation and
held-down are all "ejected" there); `snapshot` shows the precise one as ``phase``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import Enum

from ferryman.core.units import format_duration

#: Share of its weight a member gets at the start of a slow-start ramp (and on probation): enough to
#: be tried, small enough not to be swamped while its caches and connection pools warm up.
MIN_FACTOR = 0.1


class State(Enum):
    """Member states; the values are what `snapshot` shows as ``phase``."""

    HEALTHY = "healthy"
    RESTING = "resting"        # out for a timed rest (Apache: in error)
    PROBATION = "probation"    # the rest is over; its first result decides
    HELD_DOWN = "held-down"    # out until active checks pass
    RECOVERING = "recovering"  # back in service, slow start ramp running

    @property
    def shown(self) -> str:
        """The name logs and `MemberHealth.state` use: healthy, ejected or recovering."""
        return _SHOWN[self]


_SHOWN = {State.HEALTHY: "healthy", State.RESTING: "ejected", State.PROBATION: "ejected",
          State.HELD_DOWN: "ejected", State.RECOVERING: "recovering"}
_OUT = frozenset({State.HEALTHY, State.RECOVERING})  # in service: may be taken out
_EJECTED = frozenset({State.RESTING, State.PROBATION, State.HELD_DOWN})  # out, or on trial after it

#: Every allowed state change (see the module docstring).
TRANSITIONS: frozenset[tuple[State, State]] = frozenset(
    {(s, State.RESTING) for s in _OUT | {State.PROBATION}}
    | {(s, State.HELD_DOWN) for s in _OUT | {State.RESTING, State.PROBATION}}
    | {(State.RESTING, State.PROBATION)}
    | {(s, back) for s in _EJECTED for back in (State.HEALTHY, State.RECOVERING)}
    | {(State.RECOVERING, State.HEALTHY)}
)


class IllegalTransition(ValueError):
    """A state change that `TRANSITIONS` does not allow: a bug in this module, never an input."""


def check_transition(old: State, new: State) -> None:
    """Raise `IllegalTransition` unless ``old -> new`` is in `TRANSITIONS`."""
    if (old, new) not in TRANSITIONS:
        raise IllegalTransition(f"can't go from {old.value} to {new.value}")


@dataclass(frozen=True, slots=True)
class Transition:
    """A state change worth logging: ``member`` went from ``old`` to ``new`` because of ``reason``
    (``old`` and ``new`` are the logged names: healthy, ejected, recovering)."""

    member: str
    old: str
    new: str
    reason: str


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def _dur(seconds: float) -> str:
    return format_duration(seconds) if math.isfinite(seconds) and seconds >= 0 else str(seconds)


class MemberHealth:
    """The state of one member (see the module docstring).

    Args:
        name: the member's name, for `Transition` and logs.
        passes: consecutive passing checks that bring a member back (HAProxy rise). Default 1.
        fails: consecutive failed checks that hold it down (HAProxy fall). Default 1.
        passive_fails: consecutive failed live requests that rest it; 0: never. Default 3.
        retry: the rest after an immediate error, and the first passive backoff (Apache retry). Default 60.
        max_backoff: longest passive backoff (never below `retry`). Default 300.
        slow_start: seconds of weight ramp after coming back; 0: full weight at once. Default 0.
        active: active checks are configured for this member (shown in `snapshot`).
        ignore_errors: never taken out of service (Apache status +I).

    Raises:
        ValueError: passes or fails below 1, passive_fails below 0, a negative or non-finite duration.
    """

    __slots__ = ("name", "passes", "fails", "passive_fails", "retry", "max_backoff", "slow_start",
                 "active", "ignore_errors", "down", "_state", "_check_fails", "_check_passes",
                 "_request_fails", "_until", "_streak", "_ejections", "_ramp_start")

    def __init__(self, name: str, *, passes: int = 1, fails: int = 1, passive_fails: int = 3,
                 retry: float = 60.0, max_backoff: float = 300.0, slow_start: float = 0.0,
                 active: bool = False, ignore_errors: bool = False) -> None:
        self.name = name
        self._settings(passes, fails, passive_fails, retry, max_backoff, slow_start, active, ignore_errors)
        #: True exactly while resting or held down: the member takes no traffic (see `retry_due`, `force`)
        self.down = False
        self._state = State.HEALTHY
        self._check_fails = 0      # consecutive failed checks
        self._check_passes = 0     # consecutive passing checks
        self._request_fails = 0    # consecutive failed live requests
        self._until = 0.0          # end of the timed rest (meaningful while resting)
        self._streak = 0           # rests since the last successful request (the doubling)
        self._ejections = 0        # times taken out, ever
        self._ramp_start = 0.0     # when the slow start ramp began (state recovering)

    # -- queries ------------------------------------------------------------------------------------

    @property
    def phase(self) -> State:
        """The precise state."""
        return self._state

    @property
    def state(self) -> str:
        """``"healthy"``, ``"ejected"`` or ``"recovering"`` as last updated (see `tick`)."""
        return self._state.shown

    def is_ejected(self, now: float) -> bool:
        """True while the member must get no traffic at `now`: held down, or resting and its rest not
        over. (A rest that is over ends when the pool next looks at the member: see `retry_due`.)"""
        return self.down and (self._state is State.HELD_DOWN or now <= self._until)

    def weight_factor(self, now: float) -> float:
        """The share of its weight the member gets now, in (0, 1]: 1 in service after the ramp, rising
        linearly from `MIN_FACTOR` during slow start, `MIN_FACTOR` while ejected or on probation when slow
        start is configured."""
        if self.slow_start <= 0:
            return 1.0
        state = self._state
        if state is State.RECOVERING:
            elapsed = now - self._ramp_start
            if elapsed >= self.slow_start:
                return 1.0
            return min(1.0, max(MIN_FACTOR, MIN_FACTOR + (1.0 - MIN_FACTOR) * elapsed / self.slow_start))
        if state is State.HEALTHY:
            return 1.0
        return MIN_FACTOR

    def backoff(self) -> float:
        """How long the next passive rest would last: `retry` doubled per rest since the last successful
        request, capped at `max_backoff`, never below `retry`."""
        cap = max(self.max_backoff, self.retry)
        if self._streak >= 64:  # 2**64 * retry is past any cap; avoid float overflow
            return cap
        return min(cap, self.retry * 2.0 ** self._streak)

    def snapshot(self, now: float) -> dict[str, object]:
        """Plain data for status pages and tests; does not change anything."""
        state = self._state
        if state is State.RECOVERING and now - self._ramp_start >= self.slow_start:
            state = State.HEALTHY
        return {
            "state": state.shown,
            "phase": state.value,
            "ejected": self.is_ejected(now),
            "held_down": state is State.HELD_DOWN,
            "ejected_until": self._until if state is State.RESTING else None,
            "consecutive_check_fails": self._check_fails,
            "consecutive_check_passes": self._check_passes,
            "consecutive_request_fails": self._request_fails,
            "ejections": self._ejections,
            "next_backoff": self.backoff(),
            "weight_factor": self.weight_factor(now),
            "active": self.active,
            "ignore_errors": self.ignore_errors,
        }

    # -- events -------------------------------------------------------------------------------------

    def retry_due(self, now: float) -> bool:
        """The pool looks at a resting member (Apache ``ap_proxy_retry_worker``): once its rest is over
        (strictly after), it goes on probation. Returns True when the member may take traffic now."""
        if self._state is State.RESTING and now > self._until:
            self._move(State.PROBATION, "rest over")
        return not self.down

    def force(self, now: float) -> bool:
        """Force recovery (Apache ``force_recovery``): a resting member goes on probation at once,
        whatever is left of its rest. Held-down members stay down. Returns True when it was resting."""
        if self._state is State.RESTING:
            self._move(State.PROBATION, "forced recovery")
            return True
        return False

    def tick(self, now: float) -> Transition | None:
        """Apply what time alone changes and is worth logging: the end of a slow-start ramp
        (``recovering -> healthy``). The ``observe_*`` methods and `eject` call it first."""
        if self._state is State.RECOVERING and now - self._ramp_start >= self.slow_start:
            return self._move(State.HEALTHY, f"slow start of {_dur(self.slow_start)} done")
        return None

    def observe_check(self, ok: bool, now: float, reason: str) -> Transition | None:
        """An active check passed (`ok`) or failed (`reason` says why, or what passed).

        Returns:
            The transition: held down after ``fails`` consecutive failures (also when it was resting or
            on probation), back after ``passes`` consecutive passes; else the end of a slow start, or None.
        """
        settled = self.tick(now)
        if ok:
            self._check_fails = 0
            self._check_passes += 1
            if self._state in _EJECTED and self._check_passes >= self.passes:
                return self._recover(now, f"{_plural(self._check_passes, 'check')} passed")
            return settled
        self._check_passes = 0
        self._check_fails += 1
        if self._check_fails < self.fails or self.ignore_errors or self._state is State.HELD_DOWN:
            return settled
        why = f"{self._check_fails} consecutive failed checks: {reason}" if self._check_fails > 1 \
            else f"check failed: {reason}"
        if self._state in _EJECTED:  # resting or on probation: now held down, no new ejection
            return self._move(State.HELD_DOWN, why + " (held down until checks pass)")
        return self._take_out(State.HELD_DOWN, why)

    def observe_request(self, ok: bool, now: float, reason: str) -> Transition | None:
        """A live request to the member succeeded or failed (reset, timeout, malformed answer); passive
        outlier detection.

        Returns:
            The transition: rested for the backoff after ``passive_fails`` consecutive failures (or after
            one failure on probation), back after a success on probation; else None.
        """
        settled = self.tick(now)
        if self.down:
            return settled  # in flight before it was taken out (or retried): says nothing new
        if ok:
            self._request_fails = 0
            self._streak = 0
            if self._state is State.PROBATION:
                return self._recover(now, "request succeeded after its rest")
            return settled
        if self.ignore_errors:
            return settled
        self._request_fails += 1
        if self._state is State.PROBATION:  # failed again before any success
            length = self.backoff()
            return self._rest(now, length, f"backoff {_dur(length)} after "
                              f"{_plural(self._request_fails, 'failure')} on probation: {reason}")
        if self.passive_fails == 0 or self._request_fails < self.passive_fails:
            return settled
        length = self.backoff()
        return self._rest(now, length, f"backoff {_dur(length)} after "
                          f"{_plural(self._request_fails, 'failure')}: {reason}")

    def eject(self, now: float, reason: str) -> Transition | None:
        """An immediate error (connection refused, TLS failure, ``failonstatus``): rest exactly ``retry``,
        Apache's rule. Ignored while the member already rests or is held down (Apache puts only a usable
        worker in error), and for ``ignore_errors``."""
        settled = self.tick(now)
        if self.down or self.ignore_errors:
            return settled
        return self._rest(now, self.retry, f"{reason}; retry in {_dur(self.retry)}")

    def _settings(self, passes: int, fails: int, passive_fails: int, retry: float, max_backoff: float,
                  slow_start: float, active: bool, ignore_errors: bool) -> None:
        """Check every setting first, then take them all (a bad one changes nothing)."""
        if passes < 1 or fails < 1:
            raise ValueError(f"passes and fails must be 1 or more, not {passes} and {fails}")
        if passive_fails < 0:
            raise ValueError(f"passive_fails must be 0 or more, not {passive_fails}")
        for what, v in (("retry", retry), ("max_backoff", max_backoff), ("slow_start", slow_start)):
            if not (math.isfinite(v) and v >= 0):
                raise ValueError(f"{what} must be a finite duration of 0 or more, not {v!r}")
        self.passes = passes
        self.fails = fails
        self.passive_fails = passive_fails
        self.retry = float(retry)
        self.max_backoff = float(max_backoff)
        self.slow_start = float(slow_start)
        self.active = active
        self.ignore_errors = ignore_errors

    def reconfigure(self, *, passes: int, fails: int, passive_fails: int, retry: float, max_backoff: float,
                    slow_start: float, active: bool, ignore_errors: bool, now: float = 0.0) -> Transition | None:
        """Take new settings (a configuration reload), keeping the state, its clocks and counters: a
        resting member rests until the same moment, a held-down one stays down while checks remain.

        Two settings free a member that nothing else could: without active checks (``active`` now False)
        nothing would ever pass to end a hold-down, and ``ignore_errors`` now set means it never leaves
        service; either brings a held-down or resting member back at once.

        Raises:
            ValueError: as the constructor does, with nothing changed.
        """
        self._settings(passes, fails, passive_fails, retry, max_backoff, slow_start, active, ignore_errors)
        if self._state is State.HELD_DOWN and not active:
            return self._recover(now, "active checks removed from the configuration")
        if self.down and ignore_errors:
            return self._recover(now, "ignore_errors set in the configuration")
        return None

    # -- internals ----------------------------------------------------------------------------------

    def _move(self, new: State, reason: str) -> Transition:
        old = self._state
        check_transition(old, new)
        self._state = new
        self.down = new is State.RESTING or new is State.HELD_DOWN
        return Transition(self.name, old.shown, new.shown, reason)

    def _take_out(self, new: State, reason: str) -> Transition:
        self._ejections += 1
        self._streak += 1
        self._request_fails = 0
        self._check_passes = 0
        return self._move(new, reason)

    def _rest(self, now: float, length: float, reason: str) -> Transition:
        self._until = now + length
        return self._take_out(State.RESTING, reason)

    def _recover(self, now: float, reason: str) -> Transition:
        self._until = 0.0
        self._check_fails = 0
        self._request_fails = 0
        if self.slow_start > 0:
            self._ramp_start = now
            return self._move(State.RECOVERING, f"{reason}; slow start for {_dur(self.slow_start)}")
        return self._move(State.HEALTHY, reason)

    # -- sharing between processes ---------------------------------------------------------------------

    def shared(self) -> tuple[State, float, float, int, int]:
        """What other processes serving the same pool must agree on: (state, end of the rest, start of the
        slow-start ramp, rests since the last successful request, ejections). The consecutive-failure
        counters are not part of it: each process counts what it saw."""
        return (self._state, self._until, self._ramp_start, self._streak, self._ejections)

    def adopt(self, state: State, until: float, ramp_start: float, streak: int, ejections: int) -> None:
        """Take the state another process decided (see `shared`), without a transition of its own: that
        process already logged it. Counters that lead to the next move start over when the state changes."""
        if state is not self._state:
            self._check_fails = 0
            self._check_passes = 0
            self._request_fails = 0
        self._state = state
        self.down = state is State.RESTING or state is State.HELD_DOWN
        self._until = until
        self._ramp_start = ramp_start
        self._streak = streak
        self._ejections = ejections
