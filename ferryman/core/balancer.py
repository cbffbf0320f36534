"""Member state and member choice for a pool: the decision, with no sockets and no clock.

Theory of operation. A `Pool` holds one `Member` per configured BalancerMember. For every attempt the
I/O layer asks `pool.choose(now, ctx)` for a `Decision` (the member, or None for a 503, and why); a sticky
pick's bookkeeping is done inside `choose`. The I/O layer keeps the member's counters while the request
runs (`inflight` +1 when sent and -1 when done, `requests`, `bytes_in`, `bytes_out`): bybusyness, p2c and
bytraffic read them, nothing here writes them. It reports what happened: `pool.report(member, ok, now,
reason)` for an attempt's outcome (passive health), `pool.mark_error(member, now, reason)` when a member
is provably down (connect refused, failonstatus); each returns the health `Transition` to log. Time is
passed in as `now` (seconds, monotonic) and randomness as `ctx.rng`, so every rule is a plain function
of its inputs and is tested directly. `pool.pick(now, exclude)` is the older, unsticky entry point.

Rules, after Apache 2.4 mod_proxy_balancer (apache/httpd modules/proxy/mod_proxy_balancer.c
proxy_balancer_pre_request, find_session_route, find_route_worker, force_recovery, and
modules/proxy/proxy_util.c proxy_balancer_get_best_worker):

- A member is *in error* for `retry` seconds after `mark_error` (Apache PROXY_WORKER_IN_ERROR until
  `retry` passed), or while its `MemberHealth` says it is ejected. `ignore_errors` members (Apache
  status `+I`) are never in error.
- A sticky route picks the member with that route if it can take the request: enabled, draining or hot
  standby (Apache's PROXY_WORKER_IS_USABLE does not test DRAIN), not disabled or stopped, not in error.
  Apache looks at primaries first, then hot standbys with that route. A route no member has is no route
  (balanced). A route whose member is unusable fails over to balancing, or, with `nofailover` (Apache
  `nofailover=On`, `sticky_force`), gets no member at all.
- A sticky pick counts in the request-count bookkeeping (Apache's default `updatelbstatus`, used by all of
  byrequests, bybusyness and bytraffic): every member that could take a sticky request gains its weight
  and the chosen one pays the sum. So after four sticky requests to B, the next four unsticky ones go to A.
- Balanced picks: lower `lbset` tiers first; in the lowest tier with any usable member, its usable
  primaries, else its usable hot standbys (Apache 2.4 get_best_worker). Draining members take only
  sticky requests.
- When every live member is in error, all are tried anyway (Apache's force recovery), so a pool whose
  members all came back serves the next request at once. A retry (non-empty `exclude`) never forces.
- Weights are scaled by `health.weight_factor(now)` (slow start: a member that comes back ramps up).

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
from typing import TYPE_CHECKING, Any, Protocol, Sequence

if TYPE_CHECKING:  # pragma: no cover - interface only; ferryman/core/health.py is written alongside
    from ferryman.core.health import MemberHealth, Transition

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
    """Runtime state of one pool member; identity and address come from configuration only.

    `inflight`, `requests`, `bytes_in` and `bytes_out` are kept by the I/O layer (they are what
    bybusyness, p2c and bytraffic read); `lbstatus` is the request-count score of Apache's byrequests;
    `eweight` is the weight in effect (weight scaled by slow start), refreshed by the pool at each pick.
    """

    __slots__ = ("index", "name", "route", "weight", "status", "lbset", "error_until",
                 "lbstatus", "inflight", "requests", "failures", "bytes_in", "bytes_out",
                 "health", "ignore_errors", "eweight")

    def __init__(self, index: int, name: str, route: str | None = None, weight: int = 1,
                 status: str = ENABLED, lbset: int = 0) -> None:
        self.index = index
        self.name = name
        self.route = route
        self.weight = weight
        self.status = status
        self.lbset = lbset
        self.error_until = 0.0
        self.lbstatus: float = 0
        self.inflight = 0
        self.requests = 0
        self.failures = 0
        self.bytes_in = 0
        self.bytes_out = 0
        self.health: MemberHealth | None = None
        self.ignore_errors = False
        self.eweight: float = weight

    def in_error(self, now: float) -> bool:
        """Resting after an error (`retry`) or ejected by its health; never for `ignore_errors`."""
        if self.ignore_errors:
            return False
        if self.error_until > now:
            return True
        h = self.health
        return h is not None and h.is_ejected(now)

    def is_usable(self, now: float) -> bool:
        """May take new, unsticky requests (hot standby is decided by the pool)."""
        return self.status in _LIVE and not self.in_error(now)

    def takes_sticky(self, now: float) -> bool:
        """May take a request sticky to it: draining members too (Apache PROXY_WORKER_IS_USABLE)."""
        return self.status in _STICKY_OK and not self.in_error(now)

    def effective_weight(self, now: float) -> float:
        """`weight` scaled by the slow-start ramp of its health; the plain weight when there is none."""
        h = self.health
        if h is None or self.ignore_errors or h.slow_start <= 0:
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
    """The members of one pool and the rules that pick among them."""

    def __init__(self, name: str, members: Sequence[Member], retry: float,
                 strategy: Strategy | None = None) -> None:
        self.name = name
        self.members = list(members)
        self.retry = retry
        self.strategy: Strategy = strategy or ByRequests()
        self._single = self.members[0] if len(self.members) == 1 else None
        self._now = 0.0  # the last `now` seen, for `account()` called without one
        # route -> members with it, primaries before hot standbys (Apache find_route_worker's order)
        routes: dict[str, list[Member]] = {}
        for m in sorted(self.members, key=lambda m: m.status == HOT_STANDBY):
            if m.route:
                routes.setdefault(m.route, []).append(m)
        self._routes = {r: tuple(ms) for r, ms in routes.items()}

    # -- choice ------------------------------------------------------------------------------------------

    def choose(self, now: float, ctx: PickContext = _NO_CONTEXT) -> Decision:
        """The member for a request, and why (see the module docstring for the rules)."""
        self._now = now
        route = ctx.route
        if route is None:
            single = self._single
            if single is not None and not ctx.exclude and single.status == ENABLED:
                return Decision(self._only(single, now), HASHED if ctx.hash_key is not None
                                and isinstance(self.strategy, Hash) else BALANCED, None)
            return self._balanced(now, ctx, BALANCED)
        owners = self._routes.get(route)
        if owners is None:  # Apache: a route no member has is no route
            return self._balanced(now, ctx, BALANCED)
        m = self._sticky_member(owners, now, ctx.exclude)
        forced = False
        if m is None and not ctx.exclude and self._all_in_error(now):
            # Apache force-recovers before it looks the route up: the route's member may be back
            self._force_recovery()
            m = self._sticky_member(owners, now, ctx.exclude, force=True)
            forced = True
        if m is not None:
            self._account(m, now, forced)
            return Decision(m, STICKY, route)
        if ctx.nofailover:
            return Decision(None, STICKY_NOFAILOVER, route)
        return self._balanced(now, ctx, FAILOVER)

    def pick(self, now: float, exclude: frozenset[int] | set[int] = frozenset()) -> Member | None:
        """The member for a new unsticky request, or None when no member is usable (answer 503)."""
        self._now = now
        single = self._single
        if single is not None and not exclude and single.status == ENABLED:
            return self._only(single, now)
        cands = self._tier(now, exclude, False)
        if not cands:
            if exclude or not self._all_in_error(now):
                return None
            self._force_recovery()
            cands = self._tier(now, exclude, True)
            if not cands:
                return None
        return self.strategy.choose(cands, None)

    def candidates(self, now: float, exclude: frozenset[int] | set[int] = frozenset()) -> list[Member]:
        """Usable members of the lowest lbset that has any (Apache 2.4 `proxy_balancer_get_best_worker`):
        its primaries, else its hot standbys."""
        return self._tier(now, exclude, False)

    def _only(self, single: Member, now: float) -> Member:
        """A one-member pool: its member is all there is (force recovery, at once)."""
        if single.error_until > now:
            single.error_until = 0.0
        return single

    def _sticky_member(self, owners: tuple[Member, ...], now: float, exclude: frozenset[int] | set[int],
                       force: bool = False) -> Member | None:
        for m in owners:
            if m.status in _STICKY_OK and m.index not in exclude and (force or not m.in_error(now)):
                return m
        return None

    def _balanced(self, now: float, ctx: PickContext, reason: str) -> Decision:
        exclude = ctx.exclude
        cands = self._tier(now, exclude, False)
        if not cands:
            if exclude or not self._all_in_error(now):
                return Decision(None, NO_MEMBER, ctx.route)
            self._force_recovery()
            cands = self._tier(now, exclude, True)
            if not cands:
                return Decision(None, NO_MEMBER, ctx.route)
        m = self.strategy.choose(cands, ctx)
        if reason == BALANCED:
            if m.status == HOT_STANDBY:
                reason = STANDBY
            elif ctx.hash_key is not None and isinstance(self.strategy, Hash):
                reason = HASHED
        return Decision(m, reason, ctx.route)

    def _tier(self, now: float, exclude: frozenset[int] | set[int], force: bool) -> list[Member]:
        """Usable members of the lowest lbset with any: its primaries, else its hot standbys. Refreshes
        each candidate's `eweight`. `force`: members in error count as usable (force recovery)."""
        low = -1
        primaries: list[Member] = []
        standbys: list[Member] = []
        for m in self.members:
            status = m.status
            if status not in _LIVE or (exclude and m.index in exclude):
                continue
            h = m.health
            if m.ignore_errors:
                m.eweight = m.weight
            elif h is None:
                if m.error_until > now and not force:
                    continue
                m.eweight = m.weight
            else:
                if not force and (m.error_until > now or h.is_ejected(now)):
                    continue
                if h.slow_start > 0:  # no slow start: the factor is always 1, skip the call
                    f = h.weight_factor(now)
                    m.eweight = m.weight if f >= 1.0 else m.weight * f
                else:
                    m.eweight = m.weight
            lbset = m.lbset
            if lbset != low:
                if low >= 0 and lbset > low:
                    continue
                low = lbset
                primaries = []
                standbys = []
            if status == ENABLED:
                primaries.append(m)
            else:
                standbys.append(m)
        return primaries or standbys

    def _all_in_error(self, now: float) -> bool:
        """Apache force_recovery's test: every live member is in error (none merely disabled)."""
        live = False
        for m in self.members:
            if m.status in _LIVE:
                if not m.in_error(now):
                    return False
                live = True
        return live

    def _force_recovery(self) -> None:
        """Apache force_recovery: forget every member's error state. A health ejection is the health's to
        end: those members are tried through `force` without touching their counters."""
        for m in self.members:
            m.error_until = 0.0

    # -- bookkeeping -------------------------------------------------------------------------------------

    def account(self, member: Member, now: float | None = None) -> None:
        """Count a sticky pick in the request-count scores, as Apache does for every lbmethod
        (proxy_balancer_pre_request's default `updatelbstatus`): each member that could take a sticky
        request now (enabled, draining or hot standby, in any lbset, not in error) gains its weight in
        effect and `member` pays the sum. `choose` calls this itself for sticky picks. `now` None: the
        `now` of the last `choose`/`pick` (no clock is read here)."""
        if now is None:
            now = self._now
        # a member still in error here was force-recovered (Apache cleared every error state first)
        self._account(member, now, member.in_error(now))

    def _account(self, member: Member, now: float, forced: bool) -> None:
        total: float = 0
        for m in self.members:
            if m.status not in _STICKY_OK:
                continue
            h = m.health
            if m.ignore_errors or h is None:
                if not forced and m.error_until > now and not m.ignore_errors:
                    continue
                w: float = m.weight
            else:
                if not forced and (m.error_until > now or h.is_ejected(now)):
                    continue
                w = m.weight
                if h.slow_start > 0:
                    f = h.weight_factor(now)
                    if f < 1.0:
                        w = w * f
            m.lbstatus += w
            total += w
        member.lbstatus -= total

    def report(self, member: Member, ok: bool, now: float, reason: str = "") -> Transition | None:
        """A live request to `member` ended: `ok` False for a failure that counts against the member
        (reset, timeout, malformed answer, failonstatus). Passive health counts consecutive failures and
        may eject; `ignore_errors` members are never ejected. Returns the health transition to log."""
        if not ok:
            member.failures += 1
        h = member.health
        if h is None or member.ignore_errors:
            return None
        return h.observe_request(ok, now, reason)

    def mark_error(self, member: Member, now: float, reason: str = "error") -> Transition | None:
        """The member failed in a way that says it is down (connect refused): rest it. With a health it
        is ejected there (`health.eject`, which may end early on passing active checks); without one it
        rests `retry` seconds (Apache PROXY_WORKER_IN_ERROR). `ignore_errors` members are only counted."""
        member.failures += 1
        if member.ignore_errors:
            return None
        h = member.health
        if h is not None:
            return h.eject(now, reason)
        member.error_until = now + self.retry
        return None


# == snapshot ============================================================================================


def member_state(m: Member, now: float) -> str:
    """usable / standby / draining / error / ejected / disabled / stopped, for humans and status pages."""
    if m.status in (DISABLED, STOPPED):
        return m.status
    if not m.ignore_errors:
        if m.error_until > now:
            return "error"
        if m.health is not None and m.health.is_ejected(now):
            return "ejected"
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
            "error_until": m.error_until,
            "ignore_errors": m.ignore_errors,
            "health": m.health.snapshot(now) if m.health is not None else None,
        } for m in pool.members],
    }
