"""Member state and member choice for a pool: the decision, with no sockets and no clock.

Theory of operation. A `Pool` holds one `Member` per configured BalancerMember. The I/O layer asks
`pool.pick(now, exclude)` for a member, reports what happened (`mark_error` when a connection could
not be made), and keeps its own sockets. Time is passed in as `now` (seconds, monotonic), so every
rule here is a plain function of its inputs and is tested directly.

Rules, after Apache 2.4 mod_proxy_balancer:
- A member in error is skipped until `retry` seconds have passed, then tried again.
- Lower `lbset` tiers are used first; within a tier, hot-standby members are used only when no
  other member of that tier is usable.
- When every member is in error, errors are forgotten and all are tried (Apache's force recovery),
  so a pool whose members all came back serves the next request at once.
- `byrequests` is Apache's weighted request counting: every usable member gains its weight, the
  member with the highest score wins and pays the sum of the weights; ties go to the first member.
The `Strategy` interface is what later balancing methods implement.
"""

from __future__ import annotations

from typing import Protocol, Sequence

ENABLED = "enabled"
DISABLED = "disabled"
DRAIN = "drain"
HOT_STANDBY = "hot-standby"
STOPPED = "stopped"


class Member:
    """Runtime state of one pool member; identity and address come from configuration only."""

    __slots__ = ("index", "name", "route", "weight", "status", "lbset", "error_until",
                 "lbstatus", "inflight", "requests", "failures", "bytes_in", "bytes_out")

    def __init__(self, index: int, name: str, route: str | None = None, weight: int = 1,
                 status: str = ENABLED, lbset: int = 0) -> None:
        self.index = index
        self.name = name
        self.route = route
        self.weight = weight
        self.status = status
        self.lbset = lbset
        self.error_until = 0.0
        self.lbstatus = 0
        self.inflight = 0
        self.requests = 0
        self.failures = 0
        self.bytes_in = 0
        self.bytes_out = 0

    def in_error(self, now: float) -> bool:
        return self.error_until > now

    def is_usable(self, now: float) -> bool:
        """May take new, unsticky requests (hot standby is decided by the pool)."""
        return self.status in (ENABLED, HOT_STANDBY) and self.error_until <= now


class Strategy(Protocol):
    """A balancing method: choose among `candidates` (all usable, in configuration order)."""

    def choose(self, candidates: Sequence[Member]) -> Member: ...


class ByRequests:
    """Apache `lbmethod=byrequests`: weighted request counting, same sequence as Apache."""

    def choose(self, candidates: Sequence[Member]) -> Member:
        best = candidates[0]
        total = 0
        for m in candidates:
            m.lbstatus += m.weight
            total += m.weight
            if m.lbstatus > best.lbstatus:
                best = m
        best.lbstatus -= total
        return best


class Pool:
    """The members of one pool and the rule that picks among them."""

    def __init__(self, name: str, members: Sequence[Member], retry: float,
                 strategy: Strategy | None = None) -> None:
        self.name = name
        self.members = list(members)
        self.retry = retry
        self.strategy: Strategy = strategy or ByRequests()
        self._single = self.members[0] if len(self.members) == 1 else None

    def candidates(self, now: float, exclude: frozenset[int] | set[int] = frozenset()) -> list[Member]:
        """Usable members of the lowest lbset that has any (Apache 2.4
        `proxy_balancer_get_best_worker`): its primaries, else its hot standbys."""
        usable = [m for m in self.members if m.index not in exclude and m.is_usable(now)]
        if not usable:
            return usable
        low = min(m.lbset for m in usable)
        tier = [m for m in usable if m.lbset == low]
        primary = [m for m in tier if m.status != HOT_STANDBY]
        return primary or tier

    def pick(self, now: float, exclude: frozenset[int] | set[int] = frozenset()) -> Member | None:
        """The member for a new request, or None when no member is usable (answer 503)."""
        single = self._single
        if single is not None and not exclude and single.status == ENABLED:
            if single.error_until > now:
                single.error_until = 0.0  # force recovery: the only member is all there is
            return single
        cands = self.candidates(now, exclude)
        if not cands:
            if exclude or not self._all_in_error(now):
                return None
            for m in self.members:  # Apache: every member in error -> try them all again
                m.error_until = 0.0
            cands = self.candidates(now, exclude)
            if not cands:
                return None
        return self.strategy.choose(cands)

    def _all_in_error(self, now: float) -> bool:
        live = [m for m in self.members if m.status in (ENABLED, HOT_STANDBY)]
        return bool(live) and all(m.in_error(now) for m in live)

    def mark_error(self, member: Member, now: float) -> None:
        """The member failed in a way that says it is down: rest it for `retry` seconds."""
        member.error_until = now + self.retry
        member.failures += 1
