"""ferryman.core.balancer: member state, Apache byrequests, hot standby, lbset tiers, force recovery.

Every table row names its source. Abbreviations:
  ALGO       the byrequests rule in the module docstring (every usable member gains its weight, the
             highest score wins and pays the sum of the weights, ties go to the first member), which is
             Apache's: apache/httpd modules/proxy/balancers/mod_lbmethod_byrequests.c is_best_byrequests
             and find_best_byrequests. Expected sequences below are worked out by hand from it.
  APDOC      Apache 2.4 manual, mod_lbmethod_byrequests, "Request Counting Algorithm" (its worked example)
  APLBSET    Apache 2.4 manual, mod_proxy, BalancerMember `lbset`: "The load balancer will try all members
             of a lower numbered lbset before trying higher numbered ones."
  APUTIL     apache/httpd modules/proxy/proxy_util.c proxy_balancer_get_best_worker (2.4): lbsets in
             order; within one lbset the usable primaries, else that lbset's usable hot standbys; only
             then the next lbset
  APFORCE    apache/httpd modules/proxy/mod_proxy_balancer.c force_recovery: every worker in error ->
             clear the error state of all of them
  APSEM      Apache 2.4 as observed against a real server (balancing, failure and recovery)
  CLAR       ferryman's balancing decisions: byrequests follows Apache 2.4 exactly, sticky picks included
  APRETRY    apache/httpd modules/proxy/proxy_util.c ap_proxy_retry_worker: a worker in error is usable
             again once now > error_time + retry, and only when something looks at it (the force_recovery
             loop, find_route_worker, get_best_worker's walk over the lbset it is in)
  APCONNECT  apache/httpd modules/proxy/proxy_util.c ap_proxy_connect_backend: a failed connection puts the
             worker in error only if it is usable (an error while it rests changes nothing)
  APSTICKY   apache/httpd modules/proxy/mod_proxy_balancer.c: proxy_balancer_pre_request (force recovery
             first; a sticky pick runs the default `updatelbstatus`: every PROXY_WORKER_IS_USABLE worker
             gains its lbfactor and the routed one pays the sum; `sticky_force` (nofailover) answers 503 only
             for a route some member has), find_session_route, find_route_worker (primaries, then hot
             standbys; DRAIN is not in PROXY_WORKER_NOT_USABLE_BITMAP, so drain members take sticky requests)
  APBUSY     apache/httpd modules/proxy/balancers/mod_lbmethod_bybusyness.c is_best_bybusyness: fewest busy,
             ties by the higher lbstatus (first on equal), every candidate gains its lbfactor, winner pays
  APTRAFFIC  apache/httpd modules/proxy/balancers/mod_lbmethod_bytraffic.c is_best_bytraffic:
             transferred/lbfactor + read/lbfactor (integer divisions), lowest wins, first on ties
  HRW        weighted rendezvous hashing (Schindelhauer and Schomaker, "Weighted distributed hash tables",
             2005): score -w/ln(u); a leaving member takes only its own keys

Time is always passed in as `now` (seconds); nothing here sleeps.
"""

from __future__ import annotations

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

import random
from collections import Counter

from ferryman.core.balancer import (
    DISABLED,
    DRAIN,
    ENABLED,
    HOT_STANDBY,
    STOPPED,
    P2C,
    ByBusyness,
    ByRequests,
    ByTraffic,
    Decision,
    Hash,
    Member,
    PickContext,
    Pool,
    make_strategy,
    snapshot,
)
from ferryman.core.health import MIN_FACTOR, MemberHealth, State

RETRY = 60.0
NAMES = "ABCDEFGH"


def pool(*specs, retry: float = RETRY, strategy=None) -> Pool:
    """`pool(1, 2)` or `pool((1, HOT_STANDBY), (3, ENABLED, 1))`: weight[, status[, lbset]]; named A, B...,
    with routes a, b..."""
    members = []
    for i, spec in enumerate(specs):
        spec = spec if isinstance(spec, tuple) else (spec,)
        weight, status, lbset = spec + (1, ENABLED, 0)[len(spec):]
        members.append(Member(i, NAMES[i], route=NAMES[i].lower(), weight=weight, status=status, lbset=lbset))
    return Pool("p", members, retry, strategy)


def picks(p: Pool, n: int, now: float = 0.0, exclude: frozenset[int] = frozenset()) -> str:
    """`n` unsticky choices at `now`; "-" for no member."""
    out = []
    for _ in range(n):
        m = p.choose(now, PickContext(exclude=exclude)).member
        out.append("-" if m is None else m.name)
    return "".join(out)


# == byrequests sequences ===============================================================================

SEQUENCES = [
    # (source, weights, first picks)
    ("APSEM equal weights: strict alternation, per request", (1, 1), "ABABABAB"),
    ("ALGO (1,2): scores A1 B2 -> B pays 3; A2 B1 -> A; A0 B3 -> B; back to 0,0", (1, 2), "BABBABBAB"),
    ("ALGO (2,1): A first (A2 B1), then B (A1 B2), then A (A3 B0)", (2, 1), "ABAABA"),
    ("ALGO (3,1,1): A; B (tie B=C goes to B); A; C; A; then the state is 0,0,0 again", (3, 1, 1),
     "ABACAABACA"),
    ("ALGO (1,1,1): round robin in configuration order", (1, 1, 1), "ABCABC"),
    ("ALGO equal weights of any size behave like weight 1", (25, 25), "ABAB"),
]


@pytest.mark.parametrize("source, weights, expected", SEQUENCES, ids=[c[0] for c in SEQUENCES])
def test_byrequests_picks_the_same_sequence_as_apache(source, weights, expected):
    assert picks(pool(*weights), len(expected)) == expected


def test_byrequests_reproduces_the_apache_manual_example_with_b_disabled():
    # APDOC: a, b, c, d with lbfactor 25 each, b disabled: lbstatus after each pick is
    # (-50, 0, 25, 25), (-25, 0, -25, 50), (0, 0, 0, 0); the chosen workers are a, c, d
    p = pool(25, (25, DISABLED), 25, 25)
    expected = [("A", [-50, 0, 25, 25]), ("C", [-25, 0, -25, 50]), ("D", [0, 0, 0, 0])]
    for name, lbstatus in expected * 2:
        assert p.choose(0.0).member.name == name
        assert [m.lbstatus for m in p.members] == lbstatus


def test_byrequests_keeps_the_sum_of_scores_at_zero():
    # APDOC: "the sum of all lbstatus does not change"
    p = pool(3, 1, 1)
    for _ in range(50):
        p.choose(0.0)
        assert sum(m.lbstatus for m in p.members) == 0


def test_a_member_that_leaves_keeps_its_score_and_resumes_where_it_was():
    # ALGO / APDOC "If some workers are disabled, the others will still be scheduled correctly":
    # an unusable member neither gains nor pays while it is out
    p = pool(1, 1)
    assert picks(p, 1) == "A"                     # A -1, B 1
    p.mark_error(p.members[1], 0.0)
    assert picks(p, 3, now=1.0) == "AAA"          # B is out: A alone, A stays at -1, B stays at 1
    assert [m.lbstatus for m in p.members] == [-1, 1]
    assert picks(p, 4, now=RETRY + 1) == "BABA"   # B back: A 0 B 2 -> B; then alternation


def test_byrequests_strategy_chooses_among_the_candidates_it_is_given():
    members = [Member(0, "A", weight=1), Member(1, "B", weight=3)]
    chosen = [ByRequests().choose(members).name for _ in range(4)]
    assert chosen == ["B", "A", "B", "B"]  # ALGO: A1 B3 -> B(-1); A2 B2 -> A(-2); A-1 B5 -> B(1); A0 B4 -> B


# -- shares (property) -----------------------------------------------------------------------------------

weights_st = st.lists(st.integers(min_value=1, max_value=20), min_size=2, max_size=6)


@settings(max_examples=300, deadline=None)
@given(weights=weights_st, n=st.integers(min_value=1, max_value=400))
def test_each_member_gets_its_weight_share_of_requests_at_every_step(weights, n):
    # APDOC: "each gets their configured share of the number of requests". The deviation from the exact
    # share is a few requests at most at any point (it never drifts), and zero after each whole cycle.
    p = pool(*weights)
    counts = [0] * len(weights)
    total = sum(weights)
    tolerance = len(weights) - 1
    for i in range(1, n + 1):
        counts[p.choose(0.0).member.index] += 1
        for c, w in zip(counts, weights):
            assert abs(c - i * w / total) <= tolerance
    if n % total == 0:
        assert counts == [w * n // total for w in weights], "a whole cycle is exact"


# == member states ======================================================================================

UNUSABLE = [
    ("APSEM disabled members take no new requests", DISABLED),
    ("APSEM stopped members take no requests", STOPPED),
    ("Apache drain (N): no new unsticky requests", DRAIN),
]


@pytest.mark.parametrize("source, status", UNUSABLE, ids=[c[0] for c in UNUSABLE])
def test_a_disabled_stopped_or_draining_member_is_never_picked(source, status):
    p = pool(1, (5, status), 1)
    assert "B" not in picks(p, 30)
    assert picks(p, 4) == "ACAC"


def test_a_member_in_error_is_skipped_until_retry_has_passed():
    # APSEM: skipped, without being probed, for exactly `retry`
    p = pool(1, 1)
    p.mark_error(p.members[0], now=100.0)
    assert p.members[0].failures == 1
    assert not p.members[0].is_usable(100.0 + RETRY)
    assert picks(p, 5, now=100.0 + RETRY) == "BBBBB", "APSEM: usable again only once retry has passed"
    assert p.members[0].is_usable(100.0 + RETRY + 0.001)
    assert "A" in picks(p, 2, now=100.0 + RETRY + 0.001)


def test_retry_is_per_pool_and_an_error_while_resting_does_not_extend_the_rest():
    # APCONNECT: only a usable worker is put in error, so a late error changes nothing
    p = pool(1, 1, retry=5.0)
    a = p.members[0]
    p.mark_error(a, now=10.0)
    assert p.mark_error(a, now=12.0) is None
    assert a.failures == 2
    assert a.in_error(15.0) and not a.is_usable(15.0)
    assert not a.in_error(15.1) and a.is_usable(15.1)


def test_a_disabled_member_stays_unusable_whatever_the_time():
    m = Member(0, "A", status=DISABLED)
    assert not m.is_usable(0.0) and not m.is_usable(1e9)


def test_excluded_members_are_not_picked_and_an_empty_choice_is_none():
    # PS-8: a retry goes to another member; none left -> None (the engine answers 503)
    p = pool(1, 1)
    assert picks(p, 3, exclude=frozenset({0})) == "BBB"
    assert picks(p, 1, exclude=frozenset({0, 1})) == "-"


def test_a_single_member_pool_always_answers_with_its_member_unless_excluded():
    p = pool(1)
    p.mark_error(p.members[0], now=0.0)
    assert picks(p, 1, now=1.0) == "A"          # APFORCE: the only member is all there is
    assert p.members[0].is_usable(1.0), "its error state was forgotten"
    assert picks(p, 1, now=1.0, exclude=frozenset({0})) == "-"


@pytest.mark.parametrize("status", [DISABLED, STOPPED, DRAIN])
def test_a_single_member_pool_whose_member_is_out_of_service_has_no_answer(status):
    assert picks(pool((1, status)), 1) == "-"


# == hot standby ========================================================================================


def test_a_hot_standby_receives_nothing_while_a_primary_is_usable():
    # APSEM: A hot-standby member receives nothing while a primary is usable
    p = pool(1, (1, HOT_STANDBY), 1)
    assert picks(p, 20) == "AC" * 10
    assert p.members[1].lbstatus == 0


STANDBY_TAKES_OVER = [
    ("APSEM all primaries in error: the standby serves everything", "error"),
    ("APUTIL all primaries disabled", DISABLED),
    ("APUTIL all primaries stopped", STOPPED),
    ("APUTIL all primaries draining", DRAIN),
]


@pytest.mark.parametrize("source, how", STANDBY_TAKES_OVER, ids=[c[0] for c in STANDBY_TAKES_OVER])
def test_a_hot_standby_serves_when_no_primary_is_usable(source, how):
    p = pool(1, 1, (1, HOT_STANDBY))
    for m in p.members[:2]:
        if how == "error":
            p.mark_error(m, 0.0)
        else:
            m.status = how
    assert picks(p, 5, now=1.0) == "CCCCC"


def test_primaries_take_over_again_from_the_standby_once_their_retry_has_passed():
    p = pool(1, (1, HOT_STANDBY))
    p.mark_error(p.members[0], 0.0)
    assert picks(p, 3, now=1.0) == "BBB"
    assert picks(p, 3, now=RETRY + 1) == "AAA"


def test_a_standby_takes_the_retry_of_a_request_whose_primary_failed():
    # PS-8: the request that discovers a dead member is retried on another member
    p = pool(1, (1, HOT_STANDBY))
    assert picks(p, 1) == "A"
    p.mark_error(p.members[0], 0.0)
    assert picks(p, 1, exclude=frozenset({0})) == "B"


def test_several_standbys_share_the_load_by_weight():
    p = pool((1, DISABLED), (1, HOT_STANDBY), (2, HOT_STANDBY))
    assert picks(p, 6) == "CBCCBC"  # ALGO over the standbys alone, weights (1, 2)


# == lbset tiers ========================================================================================


def test_the_lowest_lbset_takes_everything_while_it_has_a_usable_member():
    # APLBSET
    p = pool((1, ENABLED, 0), (1, ENABLED, 1), (1, ENABLED, 0))
    assert picks(p, 6) == "ACACAC"
    assert p.members[1].lbstatus == 0


def test_the_next_lbset_serves_when_the_lower_one_is_down_and_hands_back_when_it_returns():
    p = pool((1, ENABLED, 0), (1, ENABLED, 1), (1, ENABLED, 1))
    p.mark_error(p.members[0], 0.0)
    assert picks(p, 4, now=1.0) == "BCBC"
    assert picks(p, 3, now=RETRY + 1) == "AAA"


def test_lbset_numbers_need_not_start_at_zero_nor_be_contiguous():
    p = pool((1, ENABLED, 7), (1, ENABLED, 3), (1, DISABLED, 0))
    assert picks(p, 3) == "BBB"


def test_a_hot_standby_of_a_lower_lbset_serves_before_the_members_of_a_higher_lbset():
    # APUTIL: within lbset 0, no usable primary -> lbset 0's standbys; lbset 1 is tried only after that.
    # APLBSET: "try all members of a lower numbered lbset before trying higher numbered ones".
    p = pool((1, ENABLED, 0), (1, HOT_STANDBY, 0), (1, ENABLED, 1))
    p.mark_error(p.members[0], 0.0)
    assert picks(p, 3, now=1.0) == "BBB"


def test_a_hot_standby_of_a_higher_lbset_waits_for_every_lower_member():
    p = pool((1, ENABLED, 0), (1, HOT_STANDBY, 1), (1, ENABLED, 1))
    p.mark_error(p.members[0], 0.0)
    assert picks(p, 3, now=1.0) == "CCC"


# == force recovery =====================================================================================


def test_when_every_member_is_in_error_all_are_tried_again_at_once():
    # APFORCE; APSEM: when they return, the next request is served at once
    p = pool(1, 1)
    p.mark_error(p.members[0], 0.0)
    p.mark_error(p.members[1], 1.0)
    chosen = p.choose(2.0).member
    assert chosen is not None
    assert all(m.is_usable(2.0) for m in p.members), "every error state is forgotten, not just one"
    assert picks(p, 2, now=2.0) in ("AB", "BA")


def test_force_recovery_then_a_failed_retry_moves_on_to_the_other_member():
    p = pool(1, 1)
    p.mark_error(p.members[0], 0.0)
    p.mark_error(p.members[1], 0.0)
    first = p.choose(1.0).member
    p.mark_error(first, 1.0)
    second = p.choose(1.0, PickContext(exclude=frozenset({first.index}))).member
    assert second is not None and second is not first


def test_a_retry_forces_recovery_too_but_never_returns_to_a_member_it_tried():
    # APFORCE runs before every attempt, a retry's included; PS-8: never back to the member that failed
    p = pool(1, 1)
    p.mark_error(p.members[0], 0.0)
    p.mark_error(p.members[1], 0.0)
    assert picks(p, 1, now=1.0, exclude=frozenset({0})) == "B"
    assert picks(p, 1, now=1.0, exclude=frozenset({0, 1})) == "-"


def test_no_force_recovery_while_a_hot_standby_is_usable():
    p = pool(1, 1, (1, HOT_STANDBY))
    p.mark_error(p.members[0], 0.0)
    p.mark_error(p.members[1], 0.0)
    assert picks(p, 2, now=1.0) == "CC"
    assert p.members[0].in_error(1.0) and p.members[1].in_error(1.0)


def test_no_force_recovery_when_every_member_is_out_of_service_rather_than_in_error():
    p = pool((1, DISABLED), (1, STOPPED))
    assert picks(p, 1) == "-"


def test_force_recovery_never_brings_back_a_disabled_member():
    p = pool(1, (1, DISABLED), 1)
    p.mark_error(p.members[0], 0.0)
    p.mark_error(p.members[2], 0.0)
    assert "B" not in picks(p, 6, now=1.0)


# == property: the pick is always allowed ================================================================

member_st = st.tuples(
    st.integers(min_value=1, max_value=5),                                   # weight
    st.sampled_from([ENABLED, ENABLED, ENABLED, HOT_STANDBY, DISABLED, DRAIN, STOPPED]),
    st.integers(min_value=0, max_value=2),                                   # lbset
    st.sampled_from([0.0, 0.0, 5.0, 50.0, 500.0]),                           # error_until
)


def spec_until(specs: list, m: Member) -> float:
    """When the member's rest ends (-1: it never rested)."""
    return specs[m.index][3] or -1.0


@settings(max_examples=500, deadline=None)
@given(specs=st.lists(member_st, min_size=1, max_size=6), now=st.sampled_from([0.0, 10.0, 100.0]),
       exclude=st.sets(st.integers(min_value=0, max_value=5), max_size=3))
@example(specs=[(1, ENABLED, 0, 50.0), (1, ENABLED, 0, 50.0)], now=10.0, exclude=set())
def test_a_pick_is_never_an_unusable_member_and_follows_the_tiers(specs, now, exclude):
    members = []
    for i, (weight, status, lbset, error_until) in enumerate(specs):
        members.append(Member(i, NAMES[i], weight=weight, status=status, lbset=lbset))
    p = Pool("p", members, RETRY)
    for m, (_, _, _, error_until) in zip(members, specs):
        if error_until:
            p.mark_error(m, error_until - RETRY)  # in error until `error_until`
    exclude = frozenset(exclude)
    live = [m for m in members if m.status in (ENABLED, HOT_STANDBY)]
    usable = [m for m in live if m.index not in exclude and spec_until(specs, m) < now]
    all_in_error = bool(live) and all(spec_until(specs, m) >= now for m in live)  # every live one rests

    chosen = p.choose(now, PickContext(exclude=exclude)).member

    if chosen is None:
        assert not usable
        assert not all_in_error or all(m.index in exclude for m in live), "all in error: force recovery picks"
        return
    assert chosen.status in (ENABLED, HOT_STANDBY), "never disabled, draining or stopped"
    assert chosen.index not in exclude
    if usable:
        assert chosen in usable, "a member in error is picked only by force recovery"
        primaries = [m for m in usable if m.status == ENABLED]
        tier = min(m.lbset for m in usable)
        if not primaries:
            assert chosen.lbset == tier, "standbys alone: lowest lbset first"
        elif any(m.lbset == tier for m in primaries):
            # APUTIL and APLBSET agree: the lowest usable lbset has a primary, so a primary of it is chosen
            # (the case of a lower lbset holding only standbys is test_a_hot_standby_of_a_lower_lbset_...)
            assert chosen.status == ENABLED, "a hot standby only when no primary is usable"
            assert chosen.lbset == tier, "lowest usable lbset first"
    else:
        assert all_in_error, "force recovery is the only way to an in-error member"


# =======================================================================================================
# Pools with sticky routes, health, and the other balancing methods (docs/configuration.md, [pool.NAME])
# =======================================================================================================


def ejected(name: str, until: float, *, now: float = 0.0) -> MemberHealth:
    """A real MemberHealth that rests from `now` to `until` after an immediate error (healthy when
    `until` <= `now`)."""
    h = MemberHealth(name, retry=max(until - now, 0.0), max_backoff=1e9)
    if until > now:
        h.eject(now, "test")
    return h


SLOW_START = 90.0


def ramping(name: str, factor: float, now: float = 1000.0) -> MemberHealth:
    """A real MemberHealth in slow start whose `weight_factor(now)` is `factor` (MIN_FACTOR..1): ejected,
    brought back by a passing active check, and `now` is the right way into its ramp."""
    h = MemberHealth(name, slow_start=SLOW_START, passes=1)
    if factor >= 1.0:
        return h
    back = now - (factor - MIN_FACTOR) / (1.0 - MIN_FACTOR) * SLOW_START
    h.eject(back - 1.0, "test")
    assert h.observe_check(True, back, "ok").new == "recovering"
    return h


def run(p: Pool, requests: str, now: float = 0.0, **ctx) -> str:
    """Requests in order: "." unsticky, a lower-case letter sticky to that member's route, "?" a route
    no member has. Returns the picks, "-" for no member."""
    out = []
    for r in requests:
        route = None if r == "." else ("nowhere" if r == "?" else r)
        d = p.choose(now, PickContext(route=route, **ctx))
        out.append("-" if d.member is None else d.member.name)
    return "".join(out)


def scores(p: Pool) -> list:
    return [m.lbstatus for m in p.members]


# == sticky routes and their bookkeeping =================================================================


def test_a_sticky_route_goes_to_its_member_every_time():
    p = pool(1, 1, 1)
    assert run(p, "bbbbbb") == "BBBBBB"
    d = p.choose(0.0, PickContext(route="c"))
    assert (d.member.name, d.reason, d.route) == ("C", "sticky", "c")


# (source, members, requests, picks, lbstatus after them or None)
STICKY_SEQUENCES = [
    ("APSEM/CLAR four sticky requests to B, then the next unsticky ones go to A until scores even out "
     "(A4 B-4 -> A3 B-3 -> ... -> 0 0), then alternation resumes with A (ties go to the first)",
     (1, 1), "bbbb........", "BBBB" + "AAAA" + "ABAB", [0, 0]),
    ("APSTICKY interleaved sticky and unsticky requests keep the alternation: A1 B1 -> A; A0 B2 -> B pays 2",
     (1, 1), ".b.b.b", "ABABAB", [0, 0]),
    ("APSTICKY sticky to the weight-1 member of (1, 2): A-6 B6 after three, B takes six in a row, "
     "then the 1:2 cycle", (1, 2), "aaa.........", "AAA" + "BBBBBB" + "BAB", [0, 0]),
    ("APSTICKY a draining member gains its weight on sticky picks only (it is PROXY_WORKER_IS_USABLE), "
     "never on balanced ones", (1, (1, DRAIN)), ".b.b", "ABAB", [2, -2]),
    ("APSTICKY a hot standby taking sticky requests pays for them and keeps its debt while it is out of "
     "the balanced tier", (1, (1, HOT_STANDBY)), "bb..", "BBAA", [2, -2]),
    ("APSTICKY a disabled member neither gains nor pays", (1, (1, DISABLED), 1), "c..", "CAA", [-1, 0, 1]),
    ("APSTICKY sticky picks in another lbset count for every usable member, tiers or not",
     ((1, ENABLED, 0), (1, ENABLED, 1)), "bb...", "BBAAA", [2, -2]),
    ("APSTICKY + ALGO (3,1,1): A-2 B1 C1; sticky C: A1 B2 C-3; A4 B3 C-2 -> A; A2 B4 C-1 -> B; "
     "A5 B0 C0 -> A, back to 0 0 0; then A", (3, 1, 1), ".c....", "ACABAA", [-2, 1, 1]),
]


@pytest.mark.parametrize("source, specs, requests, expected, lbstatus", STICKY_SEQUENCES,
                         ids=[c[0][:60] for c in STICKY_SEQUENCES])
def test_sticky_requests_count_in_the_request_bookkeeping_as_in_apache(source, specs, requests, expected,
                                                                       lbstatus):
    p = pool(*specs)
    assert run(p, requests) == expected
    if lbstatus is not None:
        assert scores(p) == lbstatus
    assert sum(scores(p)) == 0, "APDOC: the sum of all lbstatus does not change"


def test_a_member_in_error_is_left_out_of_the_sticky_bookkeeping():
    p = pool(1, 1, 1)
    p.mark_error(p.members[2], 0.0)
    assert run(p, "b", now=1.0) == "B"
    assert scores(p) == [1, -1, 0]


def test_a_route_that_no_member_has_is_balanced_like_no_route():
    # APSEM: sessionid=xyz.http-9: unknown route: 200, balanced normally
    p = pool(1, 1)
    d = p.choose(0.0, PickContext(route="nowhere"))
    assert (d.member.name, d.reason, d.route) == ("A", "balanced", "nowhere")
    assert run(p, "???") == "BAB"
    assert scores(p) == [0, 0]


def test_routes_compare_exactly_and_case_sensitively():
    # APSEM: sessionid=xyz.HTTP-2: routes compare exactly and case-sensitively: unknown, balanced
    p = pool(1, 1)
    assert p.choose(0.0, PickContext(route="B")).reason == "balanced"
    assert p.choose(0.0, PickContext(route="b ")).reason == "balanced"


def test_a_draining_member_takes_its_sticky_requests_and_nothing_else():
    p = pool(1, (1, DRAIN))
    assert run(p, "bbb") == "BBB"
    assert run(p, "...") == "AAA"


def test_a_hot_standby_takes_requests_sticky_to_it_while_primaries_are_usable():
    p = pool(1, (1, HOT_STANDBY))
    assert p.choose(0.0, PickContext(route="b")).member.name == "B"


UNUSABLE_ROUTE = [
    ("APSEM a sticky request to a member in error fails over", "error"),
    ("APSTICKY a disabled member is not PROXY_WORKER_IS_USABLE", DISABLED),
    ("APSTICKY a stopped member is not PROXY_WORKER_IS_USABLE", STOPPED),
    ("health: an ejected member takes nothing", "ejected"),
    ("PS-8: a retry never goes back to the member it excludes", "excluded"),
]


def _make_unusable(p: Pool, m: Member, how: str) -> frozenset[int]:
    if how == "error":
        p.mark_error(m, 0.0)
    elif how == "ejected":
        m.health = ejected(m.name, 100.0)
    elif how == "excluded":
        return frozenset({m.index})
    else:
        m.status = how
    return frozenset()


@pytest.mark.parametrize("source, how", UNUSABLE_ROUTE, ids=[c[0] for c in UNUSABLE_ROUTE])
def test_a_sticky_route_whose_member_is_unusable_fails_over_to_a_balanced_member(source, how):
    p = pool(1, 1, 1)
    exclude = _make_unusable(p, p.members[1], how)
    d = p.choose(1.0, PickContext(route="b", exclude=exclude))
    assert (d.member.name, d.reason, d.route) == ("A", "failover", "b")
    assert p.choose(1.0, PickContext(route="b", exclude=exclude)).member.name == "C"
    assert p.members[1].lbstatus == 0, "a failover is an ordinary balanced pick: B neither gains nor pays"


@pytest.mark.parametrize("source, how", UNUSABLE_ROUTE, ids=[c[0] for c in UNUSABLE_ROUTE])
def test_nofailover_gives_no_member_when_the_route_member_is_unusable(source, how):
    # APSTICKY sticky_force: "All workers are in error state for route" -> 503
    p = pool(1, 1, 1)
    exclude = _make_unusable(p, p.members[1], how)
    d = p.choose(1.0, PickContext(route="b", exclude=exclude, nofailover=True))
    assert (d.member, d.reason, d.route) == (None, "sticky-nofailover", "b")
    assert scores(p) == [0, 0, 0]


def test_nofailover_balances_a_route_that_no_member_has():
    # APSTICKY: the 503 is only for a route that is "member_of" the balancer
    p = pool(1, 1)
    d = p.choose(0.0, PickContext(route="nowhere", nofailover=True))
    assert (d.member.name, d.reason) == ("A", "balanced")


def test_nofailover_changes_nothing_while_the_route_member_is_usable():
    p = pool(1, 1)
    assert run(p, "bb..", nofailover=True) == "BBAA"


def test_a_sticky_request_to_a_member_in_error_is_honoured_when_force_recovery_brings_it_back():
    # APSTICKY: proxy_balancer_pre_request force-recovers before it looks the route up
    p = pool(1, 1)
    p.mark_error(p.members[0], 0.0)
    p.mark_error(p.members[1], 0.0)
    d = p.choose(1.0, PickContext(route="b"))
    assert (d.member.name, d.reason) == ("B", "sticky")
    assert all(m.is_usable(1.0) for m in p.members)


def test_a_sticky_request_whose_member_just_refused_goes_to_a_member_that_is_back():
    # Apache, observed: B rests; a request sticky to B fails over to A, which refuses; its retry
    # force-recovers (every member is in error now) and B, back, serves it
    p = pool(1, 1)
    p.mark_error(p.members[1], 0.0)
    d = p.choose(0.5, PickContext(route="b"))
    assert (d.member.name, d.reason) == ("A", "failover")
    p.mark_error(p.members[0], 0.5)
    d = p.choose(0.5, PickContext(route="b", exclude=frozenset({0})))
    assert (d.member.name, d.reason) == ("B", "sticky")


def test_a_route_shared_by_a_hot_standby_and_a_primary_goes_to_the_primary_first():
    # APSTICKY find_route_worker: the non-standby workers with the route first, then the standbys
    members = [Member(0, "S", route="r", status=HOT_STANDBY), Member(1, "P", route="r")]
    p = Pool("p", members, RETRY)
    assert p.choose(0.0, PickContext(route="r")).member.name == "P"
    members[1].status = DISABLED
    assert p.choose(0.0, PickContext(route="r")).member.name == "S"


# == decisions ===========================================================================================

EXPLAIN = [
    ("sticky", dict(route="b"), None, "sticky route b -> member B (sticky)"),
    ("balanced", dict(), None, "no route -> member A (balanced)"),
    ("unknown route", dict(route="zz"), None, "sticky route zz unknown -> member A (balanced)"),
    ("failover", dict(route="b"), "error", "sticky route b unusable -> member A (failover)"),
    ("nofailover", dict(route="b", nofailover=True), "error",
     "sticky route b unusable -> no member (sticky-nofailover)"),
    ("no member", dict(exclude=frozenset({0, 1, 2})), None, "no route -> no member (no-member)"),
]


@pytest.mark.parametrize("case, ctx, how, line", EXPLAIN, ids=[c[0] for c in EXPLAIN])
def test_a_decision_explains_itself_in_one_line(case, ctx, how, line):
    p = pool(1, 1, (1, HOT_STANDBY))
    if how:
        _make_unusable(p, p.members[1], how)
    assert p.choose(1.0, PickContext(**ctx)).explain() == line


def test_a_balanced_pick_onto_a_hot_standby_says_so():
    p = pool((1, DISABLED), (1, HOT_STANDBY))
    d = p.choose(0.0)
    assert (d.member.name, d.reason) == ("B", "hot-standby")
    assert d.explain() == "no route -> member B (hot-standby)"
    d = p.choose(0.0, PickContext(route="a"))
    assert (d.member.name, d.reason) == ("B", "failover")
    assert d.explain() == "sticky route a unusable -> member B (a hot standby) (failover)"


def test_a_hashed_pick_says_so_and_a_keyless_one_is_balanced():
    p = pool(1, 1, strategy=Hash())
    assert p.choose(0.0, PickContext(hash_key=b"k")).reason == "hashed"
    assert p.choose(0.0).reason == "balanced"
    assert pool(1, strategy=Hash()).choose(0.0, PickContext(hash_key=b"k")).reason == "hashed"


def test_a_decision_is_plain_data():
    d = Decision(None, "no-member", None)
    assert d == Decision(None, "no-member", None)
    assert not hasattr(d, "__dict__")


def test_a_pick_context_defaults_to_no_route_no_key_nothing_excluded():
    ctx = PickContext()
    assert (ctx.route, ctx.hash_key, set(ctx.exclude), ctx.rng, ctx.nofailover) == (None, None, set(), None, False)
    assert not hasattr(ctx, "__dict__")


def test_a_single_member_pool_chooses_its_member_through_every_path():
    p = pool(1)
    assert p.choose(0.0).member.name == "A"
    assert p.choose(0.0, PickContext(route="a")).reason == "sticky"
    assert p.choose(0.0, PickContext(route="zz")).reason == "balanced"
    p.mark_error(p.members[0], 0.0)
    assert p.choose(1.0).member.name == "A", "APFORCE: the only member is all there is"
    assert p.choose(1.0, PickContext(exclude=frozenset({0}))).member is None


# == bybusyness ==========================================================================================

# (source, weights, busy counts held during the picks, picks)
BUSY = [
    ("APBUSY equal load: exactly byrequests, weights included", (1, 2), (0, 0), "BABBAB"),
    ("APBUSY fewest in flight wins whatever the weights", (1, 5), (0, 1), "AAAA"),
    ("APBUSY equal busy counts: ties by lbstatus, first on equal", (1, 1), (2, 2), "ABAB"),
    ("APBUSY busy counts are not weighted", (1, 10), (1, 2), "AAA"),
    ("APBUSY three members, the idle one takes everything", (1, 1, 1), (3, 0, 1), "BBB"),
]


@pytest.mark.parametrize("source, weights, busy, expected", BUSY, ids=[c[0] for c in BUSY])
def test_bybusyness_picks_as_apache(source, weights, busy, expected):
    p = pool(*weights, strategy=ByBusyness())
    for m, b in zip(p.members, busy):
        m.inflight = b
    assert run(p, "." * len(expected)) == expected
    assert sum(scores(p)) == 0


def test_bybusyness_gives_a_member_that_was_busy_its_turns_back_afterwards():
    # APBUSY: lbstatus keeps counting while A is busy (A3 B-3), so once loads are equal A takes the next four
    p = pool(1, 1, strategy=ByBusyness())
    p.members[0].inflight = 1
    assert run(p, "...") == "BBB"
    assert scores(p) == [3, -3]
    p.members[0].inflight = 0
    assert run(p, "......") == "AAAABA"


@settings(max_examples=200, deadline=None)
@given(weights=weights_st, requests=st.text(alphabet=".ab", max_size=40))
def test_bybusyness_with_equal_load_is_byrequests_step_for_step(weights, requests):
    a, b = pool(*weights), pool(*weights, strategy=ByBusyness())
    assert run(a, requests) == run(b, requests)
    assert scores(a) == scores(b)


# == bytraffic ===========================================================================================

# (source, members as (weight, bytes_in, bytes_out), pick)
TRAFFIC = [
    ("APTRAFFIC the lowest byte count wins", [(1, 100, 0), (1, 0, 50)], "B"),
    ("APTRAFFIC bytes are divided by the weight: 100/1 against 240/3", [(1, 100, 0), (3, 0, 240)], "B"),
    ("APTRAFFIC ties go to the first member", [(1, 10, 0), (1, 0, 10)], "A"),
    ("APTRAFFIC in and out are divided separately, in integers: 1/1 against 1/2 + 1/2 = 0",
     [(1, 1, 0), (2, 1, 1)], "B"),
    ("APTRAFFIC a member with no traffic yet goes first", [(5, 10, 10), (1, 0, 0)], "B"),
]


@pytest.mark.parametrize("source, members, expected", TRAFFIC, ids=[c[0] for c in TRAFFIC])
def test_bytraffic_picks_as_apache(source, members, expected):
    p = pool(*[w for w, _, _ in members], strategy=ByTraffic())
    for m, (_, bin_, bout) in zip(p.members, members):
        m.bytes_in, m.bytes_out = bin_, bout
    assert p.choose(0.0).member.name == expected
    assert scores(p) == [0] * len(members), "bytraffic does not use lbstatus"


@settings(max_examples=100, deadline=None)
@given(weights=weights_st)
def test_bytraffic_shares_bytes_by_weight_when_every_request_moves_the_same_bytes(weights):
    p = pool(*weights, strategy=ByTraffic())
    total = sum(weights)
    for _ in range(total * 20):
        m = p.choose(0.0).member
        m.bytes_in += 1000
        m.bytes_out += 100
    for m, w in zip(p.members, weights):
        assert abs(m.bytes_in / 1000 - 20 * w) <= 1


# == p2c =================================================================================================


def test_p2c_sends_a_request_to_the_less_busy_of_two_members():
    p = pool(1, 1, strategy=P2C())
    p.members[0].inflight = 5
    assert run(p, "......", rng=random.Random(1)) == "BBBBBB"


def test_p2c_compares_requests_in_flight_per_unit_of_weight():
    p = pool(1, 4, strategy=P2C())
    p.members[0].inflight, p.members[1].inflight = 2, 4   # 2 per weight against 1
    assert set(run(p, "." * 20, rng=random.Random(2))) == {"B"}


@settings(max_examples=100, deadline=None)
@given(weights=st.lists(st.integers(1, 5), min_size=3, max_size=6), seed=st.integers(0, 2**32),
       busy=st.lists(st.integers(0, 9), min_size=6, max_size=6))
def test_p2c_never_picks_the_single_busiest_member(weights, seed, busy):
    p = pool(*weights, strategy=P2C())
    for m, b in zip(p.members, busy):
        m.inflight = b
    load = [m.inflight / m.weight for m in p.members]
    worst = max(load)
    rng = random.Random(seed)
    picked = {p.choose(0.0, PickContext(rng=rng)).member.index for _ in range(30)}
    if load.count(worst) == 1:
        assert load.index(worst) not in picked


def test_p2c_is_repeatable_with_the_same_rng_and_works_without_one():
    p = pool(1, 2, 3, strategy=P2C())
    assert run(p, "." * 30, rng=random.Random(7)) == run(p, "." * 30, rng=random.Random(7))
    assert run(pool(1, 2, strategy=P2C()), "....") != ""


# == hash ================================================================================================

KEYS = [f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}".encode() for i in range(6000)]


def hashed(p: Pool, keys=KEYS, now: float = 0.0, exclude=frozenset()) -> dict[bytes, str]:
    return {k: p.choose(now, PickContext(hash_key=k, exclude=exclude)).member.name for k in keys}


def test_hash_sends_the_same_key_to_the_same_member_every_time_and_in_every_pool_object():
    a, b = pool(1, 1, 1, strategy=Hash()), pool(1, 1, 1, strategy=Hash())
    assert hashed(a, KEYS[:200]) == hashed(a, KEYS[:200]) == hashed(b, KEYS[:200])


def test_hash_without_a_key_balances_by_request_count():
    p = pool(1, 2, strategy=Hash())
    assert run(p, "......") == "BABBAB"


def test_hash_does_not_depend_on_the_order_of_the_members():
    a = Pool("p", [Member(i, n) for i, n in enumerate("ABCD")], RETRY, Hash())
    b = Pool("p", [Member(i, n) for i, n in enumerate("DBCA")], RETRY, Hash())
    assert hashed(a, KEYS[:500]) == hashed(b, KEYS[:500])


@settings(max_examples=25, deadline=None)
@given(n=st.integers(2, 8), gone=st.integers(0, 7), weights=st.lists(st.integers(1, 5), min_size=8, max_size=8))
def test_hash_remaps_exactly_the_keys_of_a_member_that_leaves(n, gone, weights):
    # HRW: every other key's highest score is unchanged when one member is taken away
    gone %= n
    p = pool(*weights[:n], strategy=Hash())
    before = hashed(p, KEYS[:1500])
    p.mark_error(p.members[gone], 0.0)
    after = hashed(p, KEYS[:1500], now=1.0)
    gone_name = NAMES[gone]
    for k in before:
        if before[k] == gone_name:
            assert after[k] != gone_name
        else:
            assert after[k] == before[k], "a key that was not on the leaving member moved"
    # the same holds for a retry that excludes the member (PS-8): the key goes where it would go without it
    assert hashed(p, KEYS[:1500], now=RETRY + 1, exclude=frozenset({gone})) == after


@pytest.mark.parametrize("n", [1, 2, 4, 7])
def test_hash_moves_about_one_key_in_n_plus_one_to_a_member_that_joins(n):
    names = [f"http://10.0.0.{i}:8080" for i in range(n + 1)]
    small = Pool("p", [Member(i, names[i]) for i in range(n)], RETRY, Hash())
    big = Pool("p", [Member(i, names[i]) for i in range(n + 1)], RETRY, Hash())
    a, b = hashed(small), hashed(big)
    moved = [k for k in a if a[k] != b[k]]
    assert all(b[k] == names[n] for k in moved), "keys move only to the new member"
    assert abs(len(moved) / len(KEYS) - 1 / (n + 1)) < 0.03


@settings(max_examples=40, deadline=None)
@given(weights=st.lists(st.integers(1, 10), min_size=2, max_size=6))
def test_hash_spreads_many_keys_in_proportion_to_the_weights(weights):
    p = pool(*weights, strategy=Hash())
    counts = Counter(hashed(p).values())
    total = sum(weights)
    for name, w in zip(NAMES, weights):
        assert abs(counts[name] / len(KEYS) - w / total) < 0.035


# == distribution of the random method ==================================================================


@settings(max_examples=40, deadline=None)
@given(weights=st.lists(st.integers(1, 10), min_size=1, max_size=6), seed=st.integers(0, 2**32))
def test_p2c_shares_an_idle_pool_in_proportion_to_the_weights(weights, seed):
    p = pool(*weights, strategy=P2C())
    rng = random.Random(seed)
    n = 8000
    counts = Counter(p.choose(0.0, PickContext(rng=rng)).member.name for _ in range(n))
    total = sum(weights)
    for name, w in zip(NAMES, weights):
        assert abs(counts[name] / n - w / total) < 0.03


# == slow start (effective weights) ======================================================================


RAMP_NOW = 1000.0


def _ramping(p: Pool, factors) -> Pool:
    for m, f in zip(p.members, factors):
        if f is not None:
            m.health = ramping(m.name, f, RAMP_NOW)
    return p


@settings(max_examples=60, deadline=None)
@given(weights=st.lists(st.integers(1, 5), min_size=2, max_size=4),
       factors=st.lists(st.sampled_from([None, 1.0, 0.5, 0.25, 0.1]), min_size=4, max_size=4),
       method=st.sampled_from(["byrequests", "bybusyness", "p2c", "hash"]))
def test_slow_start_scales_a_members_share_by_its_factor(weights, factors, method):
    p = _ramping(pool(*weights, strategy=make_strategy(method)), factors)
    eff = [w * (f if f is not None else 1.0) for w, f in zip(weights, factors)]
    assert [m.effective_weight(RAMP_NOW) for m in p.members] == pytest.approx(eff)
    rng = random.Random(0)
    n = 6000
    counts = Counter(p.choose(RAMP_NOW, PickContext(rng=rng, hash_key=KEYS[i])).member.name for i in range(n))
    for name, e in zip(NAMES, eff):
        assert abs(counts[name] / n - e / sum(eff)) < 0.035


def test_a_ramping_member_gets_a_fraction_of_the_byrequests_cycle():
    p = _ramping(pool(1, 1), [0.5, None])
    assert snapshot(p, RAMP_NOW)["members"][0]["effective_weight"] == 0.5
    assert run(p, "......", now=RAMP_NOW) == "BABBAB"     # as weights (0.5, 1): the same cycle as (1, 2)


def test_a_ramping_members_share_grows_with_time_until_it_is_whole():
    p = _ramping(pool(1, 1), [MIN_FACTOR, None])
    shares = []
    for t in (0.0, SLOW_START / 2, SLOW_START):
        picks = run(p, "." * 220, now=RAMP_NOW + t)
        shares.append(picks.count("A") / len(picks))
    assert shares[0] == pytest.approx(MIN_FACTOR / (1 + MIN_FACTOR), abs=0.01)
    assert shares[1] == pytest.approx(0.55 / 1.55, abs=0.01)
    assert shares[2] == pytest.approx(0.5, abs=0.01)


def test_sticky_bookkeeping_uses_effective_weights():
    p = _ramping(pool(1, 1), [0.5, None])
    run(p, "b", now=RAMP_NOW)
    assert scores(p) == [0.5, -0.5]


# == health, errors, ignore_errors ======================================================================


def test_mark_error_ejects_through_the_members_health_when_it_has_one():
    p = pool(1, 1)
    a = p.members[0]
    a.health = MemberHealth("A", retry=5.0)
    t = p.mark_error(a, 10.0, "connect refused")
    assert t is not None and (t.member, t.old, t.new) == ("A", "healthy", "ejected")
    assert t.reason.startswith("connect refused")
    assert a.failures == 1 and a.health.phase is State.RESTING
    assert not a.is_usable(15.0) and a.is_usable(15.01)
    assert run(p, "...", now=14.0) == "BBB"
    assert "A" in run(p, "..", now=15.01)


def test_report_counts_failures_and_passive_health_ejects_after_consecutive_ones():
    p = pool(1, 1)
    a = p.members[0]
    a.health = MemberHealth("A", passive_fails=2)
    assert p.report(a, False, 1.0, "reset") is None
    assert p.report(a, True, 1.5) is None
    assert p.report(a, False, 2.0, "timeout") is None
    t = p.report(a, False, 3.0, "timeout")
    assert t is not None and t.new == "ejected"
    assert a.failures == 3
    assert a.in_error(3.5) and run(p, "..", now=3.5) == "BB"


def test_report_to_a_member_without_passive_ejection_only_counts():
    p = pool(1, 1)
    assert p.report(p.members[0], False, 0.0, "reset") is None
    assert p.members[0].failures == 1 and p.members[0].is_usable(0.0)


def test_an_ignore_errors_member_is_never_put_in_error_nor_ejected():
    # Apache status +I: "always considered available"
    p = pool(1, 1)
    a = p.members[0]
    a.health = h = MemberHealth("A", passive_fails=1, fails=1, active=True)
    a.ignore_errors = True   # kept by its health
    assert p.mark_error(a, 0.0) is None
    assert p.report(a, False, 0.0, "reset") is None
    assert h.snapshot(0.0)["ejections"] == 0, "it never leaves service"
    assert a.failures == 2
    h.observe_check(False, 0.5, "refused")   # even failing active checks do not take it out
    assert not h.is_ejected(1.0)
    assert a.is_usable(1.0) and run(p, "..", now=1.0) == "AB"
    assert snapshot(p, 1.0)["members"][0]["state"] == "usable"


def test_an_ejected_member_is_skipped_until_its_health_lets_it_back():
    p = pool(1, 1)
    p.members[0].health = ejected("A", 50.0)
    assert run(p, "...", now=10.0) == "BBB"
    assert run(p, "..", now=50.0) == "BB", "APRETRY: strictly after its rest"
    assert run(p, "..", now=50.5) == "AB"


def test_a_member_held_down_by_active_checks_stays_out_until_they_pass():
    p = pool(1, 1)
    p.members[0].health = h = MemberHealth("A", fails=2, passes=2, active=True)
    h.observe_check(False, 0.0, "503")
    assert run(p, "..", now=0.5) == "AB"
    h.observe_check(False, 1.0, "503")
    assert run(p, "...", now=1e6) == "BBB"
    h.observe_check(True, 1e6, "200")
    h.observe_check(True, 1e6, "200")
    assert run(p, "..", now=1e6) == "AB"


def test_force_recovery_ends_every_rest_and_the_first_result_of_each_member_decides():
    # APFORCE: every in-error state is cleared; a member that is back serves, one still dead rests again
    p = pool(1, 1)
    for m in p.members:
        m.health = ejected(m.name, 100.0)
    assert run(p, "..", now=1.0) == "AB"
    assert [m.health.phase for m in p.members] == [State.PROBATION, State.PROBATION]
    p.mark_error(p.members[0], 1.0, "refused")   # A is still dead
    p.report(p.members[1], True, 1.0)             # B is back
    assert run(p, "....", now=2.0) == "BBBB", "never the dead member, never a 503"
    assert p.members[1].health.phase is State.HEALTHY


def test_force_recovery_leaves_members_held_down_by_active_checks_down():
    # Apache: a failed health check is not "in error"; force recovery clears only the in-error state
    p = pool(1, 1)
    held = p.members[0].health = MemberHealth("A", fails=1, active=True)
    held.observe_check(False, 0.0, "refused")
    p.members[1].health = ejected("B", 100.0)
    assert run(p, "..", now=1.0) == "--"
    assert held.is_ejected(1.0) and p.members[1].health.is_ejected(1.0), "nothing was forced"


def test_a_retry_never_returns_to_an_excluded_member_even_when_forcing():
    p = pool(1, 1)
    for m in p.members:
        m.health = ejected(m.name, 100.0)
    assert p.choose(1.0, PickContext(exclude=frozenset({0, 1}))).member is None
    assert p.choose(1.0, PickContext(exclude=frozenset({0}))).member.name == "B"


# == snapshot and strategies by name =====================================================================


def test_snapshot_shows_every_member_with_its_state():
    p = pool(1, (2, HOT_STANDBY), (1, DRAIN), (1, DISABLED), (1, STOPPED), 1, 1,
             strategy=make_strategy("bybusyness"))
    p.mark_error(p.members[5], 0.0)
    p.members[6].health = held = MemberHealth("G", fails=1, active=True)
    held.observe_check(False, 0.0, "refused")
    snap = snapshot(p, 1.0)
    assert (snap["name"], snap["lbmethod"], snap["retry"]) == ("p", "bybusyness", RETRY)
    states = [m["state"] for m in snap["members"]]
    assert states == ["usable", "standby", "draining", "disabled", "stopped", "error", "held-down"]
    g = snap["members"][6]
    assert (g["weight"], g["effective_weight"], g["health"]["state"], g["health"]["phase"]) == \
        (1, 1, "ejected", "held-down")
    f = snap["members"][5]
    assert (f["health"]["phase"], f["health"]["ejected_until"], f["failures"]) == ("resting", RETRY, 1)
    assert set(snap["members"][0]) >= {"name", "route", "status", "state", "weight", "effective_weight",
                                       "inflight", "requests", "failures", "bytes_in", "bytes_out",
                                       "ignore_errors", "health"}
    p.choose(1.0)
    assert snapshot(p, 1.0)["members"][0]["requests"] == 0, "requests are counted by the server"


@pytest.mark.parametrize("name, cls", [("byrequests", ByRequests), ("bybusyness", ByBusyness),
                                       ("bytraffic", ByTraffic), ("p2c", P2C), ("hash", Hash)])
def test_make_strategy_builds_a_fresh_strategy_for_each_lbmethod(name, cls):
    s = make_strategy(name)
    assert isinstance(s, cls) and s.name == name
    assert make_strategy(name) is not s


def test_make_strategy_refuses_an_unknown_lbmethod():
    with pytest.raises(ValueError, match="unknown lbmethod 'roundrobin'"):
        make_strategy("roundrobin")


# == property: a choice is always allowed ================================================================

pool_member_st = st.tuples(
    st.integers(min_value=1, max_value=5),                                            # weight
    st.sampled_from([ENABLED, ENABLED, ENABLED, HOT_STANDBY, DISABLED, DRAIN, STOPPED]),
    st.integers(min_value=0, max_value=2),                                            # lbset
    st.sampled_from(["healthy", "healthy", "resting-5", "resting-50", "held-down", "probation", "ramping"]),
    st.booleans(),                                                                    # ignore_errors
)


def health_in(kind: str, name: str, now: float, ignore: bool) -> MemberHealth:
    """A real MemberHealth in the state `kind` at `now`."""
    if kind == "ramping":
        h = ramping(name, 0.5, now)
    else:
        h = MemberHealth(name, fails=1, passes=1, slow_start=30.0)
        if kind.startswith("resting"):
            until = float(kind.split("-")[1])
            h.retry = max(until - (now - 1.0), 0.0)
            h.eject(now - 1.0, "test")           # rests until `until`
        elif kind == "held-down":
            h.observe_check(False, now - 1.0, "test")
        elif kind == "probation":
            h.eject(now - 10.0, "test")
            h.force(now)
    h.ignore_errors = ignore and kind == "healthy"
    return h


@settings(max_examples=600, deadline=None)
@given(specs=st.lists(pool_member_st, min_size=1, max_size=6), now=st.sampled_from([0.0, 10.0, 100.0]),
       exclude=st.sets(st.integers(min_value=0, max_value=5), max_size=3),
       route=st.sampled_from([None, None, "a", "b", "c", "f", "nowhere"]), nofailover=st.booleans(),
       method=st.sampled_from(sorted(["byrequests", "bybusyness", "bytraffic", "p2c", "hash"])),
       key=st.sampled_from([None, b"k1", b"k2"]))
def test_a_choice_is_never_an_unusable_member_and_honours_usable_sticky_routes(
        specs, now, exclude, route, nofailover, method, key):
    members = [Member(i, NAMES[i], route=NAMES[i].lower(), weight=weight, status=status, lbset=lbset,
                      health=health_in(kind, NAMES[i], now, ignore))
               for i, (weight, status, lbset, kind, ignore) in enumerate(specs)]
    p = Pool("p", members, RETRY, make_strategy(method))
    exclude = frozenset(exclude)
    live = [m for m in members if m.status in (ENABLED, HOT_STANDBY)]
    resting = {m.index for m in members if m.health.phase is State.RESTING and m.health.is_ejected(now)}
    forced = all(m.index in resting for m in live)  # Apache: no worker left to stop it
    down = {m.index for m in members if m.health.is_ejected(now) and not (forced and m.index in resting)}
    owner = next((m for m in members if m.route == route), None)
    owner_ok = owner is not None and owner.status in (ENABLED, HOT_STANDBY, DRAIN) and owner.index not in exclude

    d = p.choose(now, PickContext(route=route, exclude=exclude, nofailover=nofailover,
                                  hash_key=key, rng=random.Random(0)))
    m = d.member
    assert d.route == route

    if owner_ok and owner.index not in down:
        assert (m, d.reason) == (owner, "sticky"), "a sticky route to a usable member is always honoured"
        return
    if owner is not None and nofailover:
        assert (m, d.reason) == (None, "sticky-nofailover")
        return
    if route is not None and owner is None:
        assert d.reason != "failover", "a route no member has is balanced, not failed over"
    usable = [x for x in live if x.index not in exclude and x.index not in down]
    if m is None:
        assert d.reason == "no-member" and not usable
        return
    assert d.reason in ("balanced", "hashed", "hot-standby", "failover")
    assert m in usable, "never excluded, disabled, stopped, draining (unless sticky), held down or resting"
    assert m.index not in resting or forced, "a resting member only by force recovery"
    tier = min(x.lbset for x in usable)
    assert m.lbset == tier, "lowest usable lbset first"
    if m.status == HOT_STANDBY:
        assert not [x for x in usable if x.lbset == tier and x.status == ENABLED], \
            "a hot standby only when its tier has no usable primary"


# == property: byrequests, bybusyness and bytraffic are Apache's, step for step ==========================


class ApacheWorker:
    """The proxy_worker_shared fields the balancer reads and writes."""

    def __init__(self, lbfactor: int, status: str, lbset: int, route: str) -> None:
        self.lbfactor, self.status, self.lbset, self.route = lbfactor, status, lbset, route
        self.in_error = False  # PROXY_WORKER_IN_ERROR
        self.error_time = 0.0
        self.lbstatus = 0
        self.busy = 0
        self.transferred = 0
        self.read = 0

    def usable(self) -> bool:
        # PROXY_WORKER_IS_USABLE: the status flags as they stand (DRAIN and HOT_STANDBY are not in the
        # not-usable bitmap); an elapsed retry counts only once ap_proxy_retry_worker has cleared the flag
        return self.status in (ENABLED, HOT_STANDBY, DRAIN) and not self.in_error

    def retry(self, now: float) -> None:
        # proxy_util.c ap_proxy_retry_worker
        if self.in_error and now > self.error_time + RETRY:
            self.in_error = False

    def connect_failed(self, now: float) -> None:
        # proxy_util.c ap_proxy_connect_backend: only a usable worker is put in error
        if self.usable():
            self.in_error = True
            self.error_time = now


class ApacheBalancer:
    """A transliteration of mod_proxy_balancer.c proxy_balancer_pre_request (force_recovery,
    find_session_route/find_route_worker, the default updatelbstatus, find_best_worker) and proxy_util.c
    proxy_balancer_get_best_worker, with the is_best callbacks of byrequests, bybusyness and bytraffic.

    `live_only`: ferryman's one deliberate difference in force_recovery (a disabled, draining or stopped
    worker does not stop the look for a worker that is not in error); False is Apache as it is."""

    def __init__(self, workers: list[ApacheWorker], method: str, live_only: bool = True) -> None:
        self.workers = workers
        self.method = method
        self.live_only = live_only

    def force_recovery(self, now: float) -> None:
        for w in self.workers:
            counts = not self.live_only or w.status in (ENABLED, HOT_STANDBY)
            if not w.in_error:
                if counts:
                    return
                continue
            w.retry(now)
            if not w.in_error and counts:
                return
        for w in self.workers:
            w.in_error = False

    def find_route_worker(self, route: str, now: float) -> ApacheWorker | None:
        for checking_standby in (False, True):
            for w in self.workers:
                if (w.status == HOT_STANDBY) != checking_standby:
                    continue
                if w.route == route:
                    if not w.usable():
                        w.retry(now)
                    if w.usable():
                        return w
        return None

    def is_best(self, cur: ApacheWorker, prev: ApacheWorker | None, baton: list) -> bool:
        if self.method == "bytraffic":
            traffic = cur.transferred // cur.lbfactor + cur.read // cur.lbfactor
            if prev is None or traffic < baton[0]:
                baton[0] = traffic
                return True
            return False
        cur.lbstatus += cur.lbfactor
        baton[0] += cur.lbfactor
        if self.method == "bybusyness":
            return (prev is None or cur.busy < prev.busy
                    or (cur.busy == prev.busy and cur.lbstatus > prev.lbstatus))
        return prev is None or cur.lbstatus > prev.lbstatus

    def get_best_worker(self, now: float) -> ApacheWorker | None:
        best = None
        baton = [0]
        cur_lbset = max_lbset = 0
        while best is None and cur_lbset <= max_lbset:
            standbys = []
            for w in self.workers:
                max_lbset = max(max_lbset, w.lbset)
                if w.lbset != cur_lbset or w.status == DRAIN:
                    continue
                if not w.usable():
                    w.retry(now)
                if w.status == HOT_STANDBY:
                    if w.usable():
                        standbys.append(w)
                elif w.usable() and self.is_best(w, best, baton):
                    best = w
            if best is None:
                for w in standbys:
                    if self.is_best(w, best, baton):
                        best = w
            cur_lbset += 1
        if best is not None and self.method != "bytraffic":
            best.lbstatus -= baton[0]
        return best

    def pre_request(self, now: float, route: str | None, nofailover: bool) -> ApacheWorker | None:
        self.force_recovery(now)
        if route is not None:
            runtime = self.find_route_worker(route, now)
            if runtime is not None:
                total = 0
                for w in self.workers:
                    if w.usable():
                        w.lbstatus += w.lbfactor
                        total += w.lbfactor
                runtime.lbstatus -= total
                return runtime
            if nofailover and any(w.route == route for w in self.workers):
                return None
        return self.get_best_worker(now)


def production_pool(specs: list, method: str) -> Pool:
    """The pool ferryman runs for these members: a configuration with the defaults for everything else
    (passive ejection, max_backoff, health objects...), loaded, compiled and built exactly as the server
    (and `ferryman explain`) does."""
    from pathlib import Path

    from ferryman.config.loader import load_config_text
    from ferryman.plan import compile_plan
    from ferryman.server.runtime import build_runtime

    rows = ",\n".join(f'  {{ url = "http://127.0.0.1:{9001 + i}/", route = "{NAMES[i].lower()}", weight = {w}, '
                       f'status = "{s}", lbset = {l} }}' for i, (w, s, l) in enumerate(specs))
    text = (f'[[listener]]\nname = "http"\nbind = "127.0.0.1:0"\n\n[pool.p]\nlbmethod = "{method}"\n'
            f'retry = "{RETRY:g}s"\nsticky = "sessionid"\nmembers = [\n{rows},\n]\n\n'
            f'[[route]]\npath = "/"\npool = "p"\n')
    pools, _ = build_runtime(compile_plan(load_config_text(text, "model.toml", Path("."))))
    return pools["p"]


apache_request_st = st.tuples(st.just("req"), st.sampled_from([None, None, None, "a", "b", "c", "d", "nowhere"]),
                              st.booleans())
apache_step_st = st.one_of(
    apache_request_st, apache_request_st, apache_request_st,
    st.tuples(st.just("error"), st.integers(0, 3), st.just(None)),
    st.tuples(st.just("ok"), st.integers(0, 3), st.just(None)),
    st.tuples(st.just("time"), st.sampled_from([1.0, 30.0, 61.0]), st.just(None)),
    st.tuples(st.just("busy"), st.integers(0, 3), st.integers(0, 3)),
)
apache_member_st = st.tuples(st.integers(1, 4), st.sampled_from([ENABLED, ENABLED, ENABLED, HOT_STANDBY, DISABLED,
                                                                 DRAIN, STOPPED]), st.integers(0, 1))


@settings(max_examples=400, deadline=None)
@given(specs=st.lists(apache_member_st, min_size=1, max_size=4), method=st.sampled_from(["byrequests",
       "bybusyness", "bytraffic"]), steps=st.lists(apache_step_st, min_size=20, max_size=80))
@example(specs=[(1, ENABLED, 0), (1, ENABLED, 0)], method="byrequests",  # a full outage, then one comes back
         steps=[("req", None, False), ("error", 0, None), ("error", 1, None), ("req", None, False),
                ("error", 0, None), ("ok", 1, None), ("req", None, False), ("req", None, False),
                ("req", "a", False), ("time", 61.0, None), ("req", None, False), ("req", None, False)])
@example(specs=[(1, ENABLED, 0), (2, ENABLED, 0), (1, HOT_STANDBY, 1)], method="byrequests",  # sticky runs
         steps=[("req", "b", False)] * 4 + [("req", "nowhere", False)] * 3 + [("req", None, False)] * 6
         + [("error", 0, None), ("req", "a", False), ("req", "a", True), ("time", 30.0, None),
            ("req", None, False), ("time", 30.0, None), ("req", "b", False), ("time", 1.0, None),
            ("req", None, False), ("req", None, False)])
def test_every_choice_and_score_of_the_production_pool_matches_apache(specs, method, steps):
    # APSTICKY, APUTIL, APFORCE, ALGO, APBUSY, APTRAFFIC together, over the pool the server builds from a
    # configuration (PoolRuntime, MemberRuntime and their MemberHealth with the configuration's defaults).
    # Errors are connection failures (mark_error, Apache ap_proxy_connect_backend); "ok" is a request that
    # succeeded (passive health only: Apache ignores it, and so must the choice). The one deliberate
    # difference, force recovery ignoring members that are not enabled or hot standby, is in the model
    # (`live_only`; test_apache_itself_does_not_force_recovery_past_a_disabled_member shows Apache's rule).
    ours = production_pool(specs, method)
    apache = ApacheBalancer([ApacheWorker(w, s, l, NAMES[i].lower()) for i, (w, s, l) in enumerate(specs)], method)
    now = 0.0
    traffic = 0
    for kind, a, b in steps:
        if kind == "time":
            now += a
        elif kind == "error" and a < len(specs) and specs[a][1] in (ENABLED, HOT_STANDBY, DRAIN):
            apache.workers[a].connect_failed(now)
            ours.mark_error(ours.members[a], now, "refused")
        elif kind == "ok" and a < len(specs):
            ours.report(ours.members[a], True, now)
        elif kind == "busy" and a < len(specs):
            ours.members[a].inflight = apache.workers[a].busy = b
        elif kind == "req":
            theirs = apache.pre_request(now, a, b)
            d = ours.choose(now, PickContext(route=a, nofailover=b))
            assert (None if d.member is None else d.member.index) == \
                (None if theirs is None else apache.workers.index(theirs))
            assert scores(ours) == [w.lbstatus for w in apache.workers]
            assert [m.health.down for m in ours.members] == [w.in_error for w in apache.workers]
            if theirs is not None:  # both move the same bytes for the request
                traffic = (traffic * 7 + 13) % 101
                theirs.transferred += traffic
                theirs.read += 3 * traffic
                d.member.bytes_out += traffic
                d.member.bytes_in += 3 * traffic


def test_apache_itself_does_not_force_recovery_past_a_disabled_member():
    # APFORCE as written: force_recovery stops at the first worker that is not in error, a disabled one
    # included, so with a disabled member Apache answers 503 until a rest is over; ferryman force-recovers
    # when every enabled and hot-standby member is in error (the module docstring's deliberate difference)
    specs = [(1, DISABLED, 0), (1, ENABLED, 0), (1, ENABLED, 0)]
    apache = ApacheBalancer([ApacheWorker(w, s, l, NAMES[i].lower()) for i, (w, s, l) in enumerate(specs)],
                            "byrequests", live_only=False)
    ours = production_pool(specs, "byrequests")
    for i in (1, 2):
        apache.workers[i].connect_failed(0.0)
        ours.mark_error(ours.members[i], 0.0, "refused")
    assert apache.pre_request(1.0, None, False) is None
    assert ours.choose(1.0).member is ours.members[1]


def test_a_force_recovered_sticky_pick_counts_every_member_as_apache_does_after_clearing_errors():
    # APFORCE then APSTICKY: every error state is cleared before the bookkeeping, health ejections included
    p = pool(1, 1, 1)
    for m in p.members:
        m.health = ejected(m.name, 100.0)
    assert run(p, "b", now=1.0) == "B"
    assert scores(p) == [1, -2, 1]


def test_a_weight_change_takes_effect_at_the_next_pick():
    # A weight change takes effect immediately (the balancer manager sets Member.weight), as in Apache's
    # balancer-manager
    p = pool(1, 1)
    before = picks(p, 4)
    assert sorted(before) == ["A", "A", "B", "B"]
    p.members[0].weight = 3
    after = picks(p, 8)
    assert after.count("A") == 6 and after.count("B") == 2
