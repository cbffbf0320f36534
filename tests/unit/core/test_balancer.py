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
  APSEM      /work/shared/reference/apache-semantics.md, "Balancing, failure and recovery"
  CLAR       /work/shared/reference/clarifications.md, "Balancing"

Time is always passed in as `now` (seconds); nothing here sleeps.
"""

from __future__ import annotations

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from ferryman.core.balancer import (
    DISABLED,
    DRAIN,
    ENABLED,
    HOT_STANDBY,
    STOPPED,
    ByRequests,
    Member,
    Pool,
)

RETRY = 60.0
NAMES = "ABCDEFGH"


def pool(*specs, retry: float = RETRY) -> Pool:
    """`pool(1, 2)` or `pool((1, HOT_STANDBY), (3, ENABLED, 1))`: weight[, status[, lbset]]; named A, B..."""
    members = []
    for i, spec in enumerate(specs):
        spec = spec if isinstance(spec, tuple) else (spec,)
        weight, status, lbset = spec + (1, ENABLED, 0)[len(spec):]
        members.append(Member(i, NAMES[i], weight=weight, status=status, lbset=lbset))
    return Pool("p", members, retry)


def picks(p: Pool, n: int, now: float = 0.0, exclude: frozenset[int] = frozenset()) -> str:
    out = []
    for _ in range(n):
        m = p.pick(now, exclude)
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
        assert p.pick(0.0).name == name
        assert [m.lbstatus for m in p.members] == lbstatus


def test_byrequests_keeps_the_sum_of_scores_at_zero():
    # APDOC: "the sum of all lbstatus does not change"
    p = pool(3, 1, 1)
    for _ in range(50):
        p.pick(0.0)
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
        counts[p.pick(0.0).index] += 1
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
    # APSEM: "skipped, without being probed, for exactly `retry`"
    p = pool(1, 1)
    p.mark_error(p.members[0], now=100.0)
    assert p.members[0].failures == 1
    assert not p.members[0].is_usable(100.0 + RETRY - 0.001)
    assert picks(p, 5, now=100.0 + RETRY - 0.001) == "BBBBB"
    assert p.members[0].is_usable(100.0 + RETRY + 0.001)
    assert "A" in picks(p, 2, now=100.0 + RETRY + 0.001)


def test_retry_is_per_pool_and_counted_from_the_last_error():
    p = pool(1, 1, retry=5.0)
    a = p.members[0]
    p.mark_error(a, now=10.0)
    p.mark_error(a, now=12.0)
    assert a.failures == 2
    assert a.in_error(16.9) and not a.is_usable(16.9)
    assert not a.in_error(17.1) and a.is_usable(17.1)


def test_a_disabled_member_stays_unusable_whatever_the_time():
    m = Member(0, "A", status=DISABLED)
    assert not m.is_usable(0.0) and not m.is_usable(1e9)


def test_excluded_members_are_not_picked_and_an_empty_choice_is_none():
    # PS-8: a retry goes to another member; none left -> None (the engine answers 503)
    p = pool(1, 1)
    assert picks(p, 3, exclude=frozenset({0})) == "BBB"
    assert p.pick(0.0, frozenset({0, 1})) is None


def test_a_single_member_pool_always_answers_with_its_member_unless_excluded():
    p = pool(1)
    p.mark_error(p.members[0], now=0.0)
    assert p.pick(1.0).name == "A"          # APFORCE: the only member is all there is
    assert p.members[0].is_usable(1.0), "its error state was forgotten"
    assert p.pick(1.0, frozenset({0})) is None


@pytest.mark.parametrize("status", [DISABLED, STOPPED, DRAIN])
def test_a_single_member_pool_whose_member_is_out_of_service_has_no_answer(status):
    assert pool((1, status)).pick(0.0) is None


# == hot standby ========================================================================================


def test_a_hot_standby_receives_nothing_while_a_primary_is_usable():
    # APSEM: "A hot-standby member receives nothing while a primary is usable"
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
    assert p.pick(0.0).name == "A"
    p.mark_error(p.members[0], 0.0)
    assert p.pick(0.0, frozenset({0})).name == "B"


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
    # APFORCE; APSEM: "when they return, the next request is served at once"
    p = pool(1, 1)
    p.mark_error(p.members[0], 0.0)
    p.mark_error(p.members[1], 1.0)
    chosen = p.pick(2.0)
    assert chosen is not None
    assert all(m.is_usable(2.0) for m in p.members), "every error state is forgotten, not just one"
    assert picks(p, 2, now=2.0) in ("AB", "BA")


def test_force_recovery_then_a_failed_retry_moves_on_to_the_other_member():
    p = pool(1, 1)
    p.mark_error(p.members[0], 0.0)
    p.mark_error(p.members[1], 0.0)
    first = p.pick(1.0)
    p.mark_error(first, 1.0)
    second = p.pick(1.0, frozenset({first.index}))
    assert second is not None and second is not first


def test_force_recovery_is_not_done_on_behalf_of_a_retry():
    # a retry that excludes members gets None rather than a member just reported dead
    p = pool(1, 1)
    p.mark_error(p.members[0], 0.0)
    p.mark_error(p.members[1], 0.0)
    assert p.pick(1.0, frozenset({0})) is None


def test_no_force_recovery_while_a_hot_standby_is_usable():
    p = pool(1, 1, (1, HOT_STANDBY))
    p.mark_error(p.members[0], 0.0)
    p.mark_error(p.members[1], 0.0)
    assert picks(p, 2, now=1.0) == "CC"
    assert p.members[0].in_error(1.0) and p.members[1].in_error(1.0)


def test_no_force_recovery_when_every_member_is_out_of_service_rather_than_in_error():
    p = pool((1, DISABLED), (1, STOPPED))
    assert p.pick(0.0) is None


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


@settings(max_examples=500, deadline=None)
@given(specs=st.lists(member_st, min_size=1, max_size=6), now=st.sampled_from([0.0, 10.0, 100.0]),
       exclude=st.sets(st.integers(min_value=0, max_value=5), max_size=3))
@example(specs=[(1, ENABLED, 0, 50.0), (1, ENABLED, 0, 50.0)], now=10.0, exclude=set())
def test_a_pick_is_never_an_unusable_member_and_follows_the_tiers(specs, now, exclude):
    members = []
    for i, (weight, status, lbset, error_until) in enumerate(specs):
        m = Member(i, NAMES[i], weight=weight, status=status, lbset=lbset)
        m.error_until = error_until
        members.append(m)
    p = Pool("p", members, RETRY)
    exclude = frozenset(exclude)
    live = [m for m in members if m.status in (ENABLED, HOT_STANDBY)]
    usable = [m for m in live if m.index not in exclude and m.error_until <= now]
    all_in_error = bool(live) and all(m.error_until > now for m in live)

    chosen = p.pick(now, exclude)

    if chosen is None:
        assert not usable
        assert exclude or not all_in_error, "all in error and nothing excluded: force recovery must pick"
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
        assert all_in_error and not exclude, "force recovery is the only way to an in-error member"
