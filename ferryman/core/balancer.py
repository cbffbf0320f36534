"""Member choice for a pool: the decision, with no sockets and no clock.

Theory of operation. A `Pool` holds one `Member` per configured BalancerMember, each with its
administrative `status` (configuration: enabled, disabled, drain, hot-standby, stopped) and its
`MemberHealth` (`ferryman.core.health`), the one place that decides whether a member is out of service
for a failure: the pool keeps no error clock of its own. For every attempt the I/O layer asks
`pool.choose(now, ctx)` for a `Decision` (the member, or None for a 503, and why) and then reports what
happened: `pool.report(member, ok, now, reason)` for the outcome of a request that reached the member
(passive health), `pool.mark_error(member, now, reason)` when the member is provably down (connect
refused, failonstatus, failontimeout: Apache's *in error*, a rest of exactly `retry`). Both return the
health `Transition` to log, or None. The I/O layer also keeps the member's counters while the request
runs (`inflight` +1 when sent and -1 when done, `requests`, `bytes_in`, `bytes_out`): bybusyness, p2c
and bytraffic read them, nothing here writes them. Time is passed in as `now` (seconds, monotonic) and
randomness as `ctx.rng`, so every rule is a plain function of its inputs and is tested directly.

`choose` follows Apache 2.4 mod_proxy_balancer's proxy_balancer_pre_request step for step (apache/httpd
modules/proxy/mod_proxy_balancer.c force_recovery, find_session_route, find_route_worker, and
modules/proxy/proxy_util.c ap_proxy_balancer_get_best_worker), so the same weights and the same
sequence of requests and failures give the same picks and the same scores:

1. Force recovery. The members are looked at in order: one that is not resting (Apache: not in error)
   ends the look; one whose rest is over goes on probation (`MemberHealth.retry_due`) and ends it too.
   When every one is resting, every rest ends at once (`MemberHealth.force`) and the next request is
   served by a member that is back, while a request that meets one that is still dead fails over.
   One deliberate difference: a member that is disabled, draining or stopped ends the look in Apache,
   so a single disabled member keeps every other from being force-recovered; here only enabled and
   hot-standby members count. A retry forces too (Apache runs this before every attempt), so a request
   whose member has just refused goes to one that is back, but it never returns to a member in
   `ctx.exclude`: Apache may spend its retry on the member that just failed, ferryman does not.
2. A sticky route picks the member with that route, primaries before hot standbys, if it can take the
   request: enabled, draining or hot standby (Apache's PROXY_WORKER_IS_USABLE does not test DRAIN),
   not excluded, and not resting or held down (a rest that is over ends here: `retry_due`). A route no
   member has is no route (balanced). A route whose member is unusable fails over to balancing, or, with
   `nofailover` (Apache `nofailover=On`, `sticky_force`), gets no member at all.
3. A sticky pick counts in the request-count bookkeeping (Apache's default `updatelbstatus`, used by all
   of byrequests, bybusyness and bytraffic): every member that can take a request (enabled, draining or
   hot standby, any lbset, not resting or held down) gains its weight and the chosen one pays the sum.
   So after four sticky requests to B, the next four unsticky ones go to A.
4. Balanced picks: `lbset` tiers in ascending order; in each, the enabled and hot-standby members are
   looked at (a resting one whose rest is over goes on probation; draining ones are skipped); its usable
   primaries, else its usable hot standbys, are the candidates; the first tier with any wins.

A rest that is over ends only when a member is looked at (Apache clears its in-error flag the same way),
so a resting member in a tier that is not reached, or a draining one, stays out of the sticky bookkeeping
until then, exactly as in Apache. Weights are scaled by `health.weight_factor(now)` (slow start).

Strategies (one class each; Apache's lbmethods are reproduced step for step): `ByRequests`,
`ByBusyness`, `ByTraffic`, and two that Apache lacks: `P2C` (power of two choices) and `Hash`
(weighted rendezvous hashing).
"""

from __future__ import annotations

import hashlib
import math
import random
from zlib import crc32
from dataclasses import dataclass
from typing import Any, Protocol, Sequence

from ferryman.core.health import MemberHealth, State, Transition

ENABLED = "enabled"
DISABLED = "disabled"
DRAIN = "drain"
HOT_STANDBY = "hot-standby"
STOPPED = "stopped"

_LIVE = frozenset({ENABLED, HOT_STANDBY})              # may take unsticky requests
_STICKY_OK = frozenset({ENABLED, HOT_STANDBY, DRAIN})  # may take sticky requests (Apache IS_USABLE)

# Decision reasons
STICKY = "sticky"
BALANCED = "balanced"
HASHED = "hashed"
FAILOVER = "failover"
STANDBY = "hot-standby"
NO_MEMBER = "no-member"
STICKY_NOFAILOVER = "sticky-nofailover"


class Member:
    """One pool member: its identity and weight (configuration), its state (`health`), its counters.

    `inflight`, `requests`, `bytes_in` and `bytes_out` are kept by the I/O layer (they are what
    bybusyness, p2c and bytraffic read); `failures` counts reported failures; `lbstatus` is the
    request-count score of Apache's byrequests; `eweight` is the weight in effect (weight scaled by slow
    start), refreshed by the pool at each pick. `health` is given, or made by the `Pool` from its
    `retry` (with passive ejection off).
    """

    __slots__ = ("index", "name", "route", "weight", "status", "lbset", "lbstatus", "inflight",
                 "requests", "failures", "bytes_in", "bytes_out", "health", "eweight", "_own_health")

    def __init__(self, index: int, name: str, route: str | None = None, weight: int = 1,
                 status: str = ENABLED, lbset: int = 0, health: MemberHealth | None = None) -> None:
        self.index = index
        self.name = name
        self.route = route
        self.weight = weight
        self.status = status
        self.lbset = lbset
        self.lbstatus: float = 0
        self.inflight = 0
        self.requests = 0
        self.failures = 0
        self.bytes_in = 0
        self.bytes_out = 0
        self.health: MemberHealth = health if health is not None else MemberHealth(name, passive_fails=0)
        self._own_health: MemberHealth | None = None if health is not None else self.health
        self.eweight: float = weight

    @property
    def ignore_errors(self) -> bool:
        """Never taken out of service (Apache status +I); kept by `health`."""
        return self.health.ignore_errors

    @ignore_errors.setter
    def ignore_errors(self, value: bool) -> None:
        self.health.ignore_errors = value

    def in_error(self, now: float) -> bool:
        """Out of service for a failure at `now`: resting and its rest not over, or held down."""
        return self.health.is_ejected(now)

    def is_usable(self, now: float) -> bool:
        """May take new, unsticky requests at `now` (hot standby is decided by the pool)."""
        return self.status in _LIVE and not self.health.is_ejected(now)

    def effective_weight(self, now: float) -> float:
        """`weight` scaled by the slow-start ramp of its health."""
        h = self.health
        if h.slow_start <= 0:
            return self.weight
        f = h.weight_factor(now)
        return self.weight if f >= 1.0 else self.weight * f


class PickContext:
    """What one request brings to the choice. Every field may be left at its default.

    route: the sticky route the request asked for (None: none). hash_key: what `Hash` hashes.
    exclude: indexes of members already tried for this request (a retry). rng: randomness for `P2C`.
    nofailover: a sticky route whose member is unusable gets no member (Apache nofailover=On).
    """

    __slots__ = ("route", "hash_key", "exclude", "rng", "nofailover")

    def __init__(self, route: str | None = None, hash_key: bytes | None = None,
                 exclude: set[int] | frozenset[int] = frozenset(), rng: random.Random | None = None,
                 nofailover: bool = False) -> None:
        self.route = route
        self.hash_key = hash_key
        self.exclude = exclude
        self.rng = rng
        self.nofailover = nofailover

    def __repr__(self) -> str:
        return (f"PickContext(route={self.route!r}, hash_key={self.hash_key!r}, exclude={set(self.exclude)!r}, "
                f"nofailover={self.nofailover!r})")


_NO_CONTEXT = PickContext()


@dataclass(slots=True)
class Decision:
    """The outcome of `Pool.choose`: the member (None: answer 503), why, and the route asked for.

    reason: "sticky" (the route's member), "balanced" (no route, or a route no member has),
    "hashed" (Hash on a key), "failover" (the route's member is unusable; balanced instead),
    "hot-standby" (balanced onto a hot standby), "no-member" (nothing usable),
    "sticky-nofailover" (the route's member is unusable and nofailover is set).
    """

    member: Member | None
    reason: str
    route: str | None

    def explain(self) -> str:
        """One line for humans and logs, e.g. "sticky route http-1 -> member http://a:1 (sticky)"."""
        m = self.member
        target = "no member" if m is None else f"member {m.name}"
        if m is not None and m.status == HOT_STANDBY and self.reason != STANDBY:
            target += " (a hot standby)"
        if self.route is None:
            head = "no route"
        elif self.reason in (FAILOVER, STICKY_NOFAILOVER):
            head = f"sticky route {self.route} unusable"
        elif self.reason == STICKY:
            head = f"sticky route {self.route}"
        else:
            head = f"sticky route {self.route} unknown"
        return f"{head} -> {target} ({self.reason})"


# == strategies ==========================================================================================


class Strategy(Protocol):
    """A balancing method: choose among `candidates` (all usable, in configuration order, never empty).

    Candidates' `eweight` holds their weight in effect; `ctx` may be None (no key, no rng).
    """

    name: str

    def choose(self, candidates: Sequence[Member], ctx: PickContext | None = None) -> Member: ...


class ByRequests:
    """Apache `lbmethod=byrequests`: weighted request counting, the same sequence as Apache.

    mod_lbmethod_byrequests.c is_best_byrequests/find_best_byrequests: every candidate gains its weight
    (`lbstatus += lbfactor`), the highest score wins (the first on ties, a strict `>`), and the winner pays
    the sum of the weights, so the sum of scores never changes and each member gets its share exactly
    over each cycle. Members that are out neither gain nor pay, and resume where they were.
    """

    name = "byrequests"

    def choose(self, candidates: Sequence[Member], ctx: PickContext | None = None) -> Member:
        best = candidates[0]
        total: float = 0
        for m in candidates:
            w = m.eweight
            m.lbstatus += w
            total += w
            if m.lbstatus > best.lbstatus:
                best = m
        best.lbstatus -= total
        return best


class ByBusyness:
    """Apache `lbmethod=bybusyness`: fewest requests in flight; ties by byrequests' score.

    mod_lbmethod_bybusyness.c is_best_bybusyness: every candidate gains its weight in `lbstatus` as in
    byrequests; the best is the one with the fewest busy (in flight, unweighted) requests, and among
    equal busy counts the highest `lbstatus` (first on ties); the winner pays the sum of the weights. With
    equal load it therefore behaves exactly like byrequests, weights included.
    """

    name = "bybusyness"

    def choose(self, candidates: Sequence[Member], ctx: PickContext | None = None) -> Member:
        best = candidates[0]
        total: float = 0
        for m in candidates:
            w = m.eweight
            m.lbstatus += w
            total += w
            if m.inflight < best.inflight or (m.inflight == best.inflight and m.lbstatus > best.lbstatus):
                best = m
        best.lbstatus -= total
        return best


class ByTraffic:
    """Apache `lbmethod=bytraffic`: the lowest weighted byte count wins.

    mod_lbmethod_bytraffic.c is_best_bytraffic: traffic = transferred/lbfactor + read/lbfactor (each
    divided separately, integer division), the lowest wins, the first on ties (strict `<`). Byte counts
    are never reset (Apache resets them only from the balancer-manager), and `lbstatus` is not used.
    """

    name = "bytraffic"

    def choose(self, candidates: Sequence[Member], ctx: PickContext | None = None) -> Member:
        best = candidates[0]
        w = best.eweight
        low = best.bytes_out // w + best.bytes_in // w
        for m in candidates:
            w = m.eweight
            t = m.bytes_out // w + m.bytes_in // w
            if t < low:
                low = t
                best = m
        return best


class P2C:
    """Power of two choices (nginx `random two least_conn`, Envoy least_request): two distinct candidates
    drawn at random in proportion to their weights; the one with fewer requests in flight per unit of
    weight wins, the first drawn on ties. Randomness is `ctx.rng` when given, else the strategy's own.

    Drawing by weight and breaking ties toward the first draw means an idle pool is shared exactly in
    proportion to the weights, while a busy or slow member is avoided without scanning every member.
    """

    name = "p2c"

    def __init__(self, rng: random.Random | None = None) -> None:
        self.rng = rng if rng is not None else random.Random()

    def choose(self, candidates: Sequence[Member], ctx: PickContext | None = None) -> Member:
        n = len(candidates)
        if n == 1:
            return candidates[0]
        rng = ctx.rng if ctx is not None and ctx.rng is not None else self.rng
        total: float = 0
        for m in candidates:
            total += m.eweight
        a = _weighted(candidates, total, rng.random(), None)
        b = _weighted(candidates, total - a.eweight, rng.random(), a)
        # fewer in flight per weight: a.inflight / a.w <= b.inflight / b.w, without dividing
        return a if a.inflight * b.eweight <= b.inflight * a.eweight else b


def _weighted(candidates: Sequence[Member], total: float, u: float, skip: Member | None) -> Member:
    """The candidate at `u` (in [0, 1)) of the cumulative weights, leaving out `skip`."""
    x = u * total
    last = candidates[0]
    for m in candidates:
        if m is skip:
            continue
        last = m
        x -= m.eweight
        if x < 0:
            return m
    return last  # float rounding at the very end


_MASK64 = (1 << 64) - 1
_TWO_TO_MINUS_53 = 1.0 / (1 << 53)


def _seed64(name: str) -> int:
    """A member's stable 64-bit seed (the same in every process, unlike `hash()` of a str)."""
    return int.from_bytes(hashlib.blake2b(name.encode(), digest_size=8).digest(), "little")


class Hash:
    """Consistent hashing on `ctx.hash_key`: weighted rendezvous (highest random weight) hashing.

    Each member scores a key with `-weight / ln(u)`, where u in (0, 1) is a hash of the key and the
    member's name (Schindelhauer and Schomaker's weighted HRW; the same rule as Traefik's `hrw`); the
    highest score wins, so each member gets its weight's share of keys. A member that leaves takes only
    its own keys with it (every other key's best member is unchanged), and a member that joins takes
    about weight/total of the keys, from all the others. Members are identified by name, not position,
    so reordering the configuration moves nothing. Without a key, requests are balanced by `ByRequests`.
    """

    name = "hash"

    def __init__(self) -> None:
        self.fallback = ByRequests()
        self._seeds: dict[str, int] = {}

    def seed(self, m: Member) -> int:
        """The member's 64-bit seed, from its name (cached)."""
        s = self._seeds.get(m.name)
        if s is None:
            s = self._seeds[m.name] = _seed64(m.name)
        return s

    def choose(self, candidates: Sequence[Member], ctx: PickContext | None = None) -> Member:
        key = ctx.hash_key if ctx is not None else None
        if key is None:
            return self.fallback.choose(candidates, ctx)
        if len(candidates) == 1:
            return candidates[0]
        # the key's CRC-32 is only an input to a strong per-member mix, so its linearity does not matter;
        # it is stable across processes (the same key maps to the same member after a restart)
        k = crc32(key)
        seeds = self._seeds
        best = candidates[0]
        top = -1.0
        log = math.log
        for m in candidates:
            s = seeds.get(m.name)
            if s is None:
                s = self.seed(m)
            x = k ^ s  # MurmurHash3's fmix64 (Appleby, public domain): bijective, full avalanche
            x ^= x >> 33
            x = (x * 0xFF51AFD7ED558CCD) & _MASK64
            x ^= x >> 33
            x = (x * 0xC4CEB9FE1A85EC53) & _MASK64
            x ^= x >> 33
            u = ((x >> 11) + 0.5) * _TWO_TO_MINUS_53  # in (0, 1), never 0 or 1
            score = -m.eweight / log(u)
            if score > top:
                top = score
                best = m
        return best


STRATEGIES: dict[str, type] = {"byrequests": ByRequests, "bybusyness": ByBusyness, "bytraffic": ByTraffic,
                               "p2c": P2C, "hash": Hash}


def make_strategy(lbmethod: str) -> Strategy:
    """A fresh strategy for a pool's `lbmethod` (a strategy may keep per-pool state)."""
    try:
        cls = STRATEGIES[lbmethod]
    except KeyError:
        raise ValueError(f"unknown lbmethod {lbmethod!r}; expected one of {', '.join(STRATEGIES)}") from None
    strategy: Strategy = cls()
    return strategy


# == the pool ============================================================================================


class Pool:
    """The members of one pool and the rules that pick among them (see the module docstring)."""

    def __init__(self, name: str, members: Sequence[Member], retry: float,
                 strategy: Strategy | None = None) -> None:
        self.name = name
        self.members = list(members)
        self.retry = retry
        self.strategy: Strategy = strategy or ByRequests()
        for m in self.members:
            if m.health is m._own_health:  # no health given: rest `retry` after an error, no passive
                m.health = m._own_health = MemberHealth(m.name, retry=retry, passive_fails=0,
                                                        ignore_errors=m.health.ignore_errors)
        self._single = self.members[0] if len(self.members) == 1 else None
        # lbset tiers in ascending order, members in configuration order within each
        self._tiers = [[m for m in self.members if m.lbset == lbset]
                       for lbset in sorted({m.lbset for m in self.members})]
        # route -> members with it, primaries before hot standbys (Apache find_route_worker's order)
        routes: dict[str, list[Member]] = {}
        for m in sorted(self.members, key=lambda m: m.status == HOT_STANDBY):
            if m.route:
                routes.setdefault(m.route, []).append(m)
        self._routes = {r: tuple(ms) for r, ms in routes.items()}

    # -- choice ------------------------------------------------------------------------------------------

    def choose(self, now: float, ctx: PickContext = _NO_CONTEXT) -> Decision:
        """The member for a request, and why (see the module docstring for the rules)."""
        exclude = ctx.exclude
        single = self._single
        if single is not None and not exclude and not single.health.down and single.status == ENABLED:
            # a one-member pool: nothing to weigh (its scores would gain and pay its own weight)
            if ctx.route is not None and ctx.route == single.route:
                return Decision(single, STICKY, ctx.route)
            return Decision(single, HASHED if ctx.hash_key is not None and isinstance(self.strategy, Hash)
                            else BALANCED, ctx.route)
        self._force_recovery(now)
        route = ctx.route
        if route is None:
            return self._balanced(now, ctx, BALANCED)
        owners = self._routes.get(route)
        if owners is None:  # Apache: a route no member has is no route
            return self._balanced(now, ctx, BALANCED)
        for m in owners:  # Apache find_route_worker
            if m.status in _STICKY_OK and not (exclude and m.index in exclude) \
                    and (not m.health.down or m.health.retry_due(now)):
                self._account(m, now)
                return Decision(m, STICKY, route)
        if ctx.nofailover:
            return Decision(None, STICKY_NOFAILOVER, route)
        return self._balanced(now, ctx, FAILOVER)

    def _balanced(self, now: float, ctx: PickContext, reason: str) -> Decision:
        cands = self._tier(now, ctx.exclude)
        if not cands:
            return Decision(None, NO_MEMBER, ctx.route)
        m = self.strategy.choose(cands, ctx)
        if reason == BALANCED:
            if m.status == HOT_STANDBY:
                reason = STANDBY
            elif ctx.hash_key is not None and isinstance(self.strategy, Hash):
                reason = HASHED
        return Decision(m, reason, ctx.route)

    def _tier(self, now: float, exclude: frozenset[int] | set[int]) -> list[Member]:
        """Apache get_best_worker's candidates: lbset tiers in ascending order; in each, its enabled and
        hot-standby members that are not excluded and not out (a rest that is over ends here); the tier's
        primaries, else its hot standbys; the first tier with any. Refreshes each candidate's `eweight`."""
        for tier in self._tiers:
            primaries: list[Member] = []
            standbys: list[Member] = []
            for m in tier:
                status = m.status
                if status != ENABLED and status != HOT_STANDBY:  # draining, disabled, stopped
                    continue
                if exclude and m.index in exclude:
                    continue
                h = m.health
                if h.down and not h.retry_due(now):
                    continue
                if h.slow_start > 0:  # no slow start: the factor is always 1, skip the call
                    f = h.weight_factor(now)
                    m.eweight = m.weight if f >= 1.0 else m.weight * f
                else:
                    m.eweight = m.weight
                if status == ENABLED:
                    primaries.append(m)
                else:
                    standbys.append(m)
            if primaries:
                return primaries
            if standbys:
                return standbys
        return []

    def _force_recovery(self, now: float) -> None:
        """Apache force_recovery: members in order until one is not resting or its rest is over (it goes
        on probation); when every enabled and hot-standby member is resting, every rest ends at once
        (probation). Members that are disabled, draining or stopped do not end the look (Apache's do; see
        the module docstring), though a rest of theirs that is over ends as in Apache."""
        for m in self.members:
            h = m.health
            if h.phase is State.RESTING:
                if h.retry_due(now) and m.status in _LIVE:
                    return
            elif m.status in _LIVE:
                return
        for m in self.members:
            m.health.force(now)

    # -- bookkeeping -------------------------------------------------------------------------------------

    def _account(self, member: Member, now: float) -> None:
        """Count a sticky pick in the request-count scores, as Apache does for every lbmethod
        (proxy_balancer_pre_request's default `updatelbstatus`): each member that can take a request now
        (enabled, draining or hot standby, in any lbset, not out) gains its weight in effect and `member`
        pays the sum."""
        total: float = 0
        for m in self.members:
            if m.status not in _STICKY_OK:
                continue
            h = m.health
            if h.down:
                continue
            w: float = m.weight
            if h.slow_start > 0:
                f = h.weight_factor(now)
                if f < 1.0:
                    w = w * f
            m.lbstatus += w
            total += w
        member.lbstatus -= total

    # -- outcomes ----------------------------------------------------------------------------------------

    def report(self, member: Member, ok: bool, now: float, reason: str = "") -> Transition | None:
        """A live request to `member` ended: `ok` False for a failure that counts against the member
        (reset, timeout, malformed answer). Passive health counts consecutive failures and may rest it;
        a success on probation brings it back. Returns the health transition to log."""
        if not ok:
            member.failures += 1
        return member.health.observe_request(ok, now, reason)

    def mark_error(self, member: Member, now: float, reason: str = "error") -> Transition | None:
        """The member failed in a way that says it is down (connect refused, failonstatus, failontimeout):
        it rests exactly `retry` (Apache PROXY_WORKER_IN_ERROR), unless it already rests or is held down.
        `ignore_errors` members are only counted. Returns the health transition to log."""
        member.failures += 1
        return member.health.eject(now, reason)


# == snapshot ============================================================================================


def member_state(m: Member, now: float) -> str:
    """usable / standby / draining / error / held-down / disabled / stopped, for humans and status pages
    ("error": resting, Apache's *in error*; a rest that is over shows as usable)."""
    if m.status in (DISABLED, STOPPED):
        return m.status
    h = m.health
    if h.is_ejected(now):
        return "held-down" if h.phase is State.HELD_DOWN else "error"
    if m.status == DRAIN:
        return "draining"
    if m.status == HOT_STANDBY:
        return "standby"
    return "usable"


def snapshot(pool: Pool, now: float) -> dict[str, Any]:
    """A plain-data view of a pool (for a status page or `ferryman status`): no side effects."""
    return {
        "name": pool.name,
        "lbmethod": getattr(pool.strategy, "name", type(pool.strategy).__name__),
        "retry": pool.retry,
        "members": [{
            "name": m.name,
            "route": m.route,
            "status": m.status,
            "state": member_state(m, now),
            "lbset": m.lbset,
            "weight": m.weight,
            "effective_weight": m.effective_weight(now),
            "lbstatus": m.lbstatus,
            "inflight": m.inflight,
            "requests": m.requests,
            "failures": m.failures,
            "bytes_in": m.bytes_in,
            "bytes_out": m.bytes_out,
            "ignore_errors": m.ignore_errors,
            "health": m.health.snapshot(now),
        } for m in pool.members],
    }
