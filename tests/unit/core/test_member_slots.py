"""The shared member table's byte layout and merge rule (ferryman.core.member_slots)."""

from __future__ import annotations

import pytest
from hypothesis import given, strategies as st

from ferryman.core import member_slots as ms
from ferryman.core.balancer import ENABLED, Member, Pool
from ferryman.core.health import MemberHealth, State


def _table(capacity: int = 4) -> bytearray:
    buf = bytearray(ms.table_size(capacity))
    ms.init_header(buf, capacity)
    return buf


def test_a_fresh_table_has_generation_zero_and_its_capacity() -> None:
    assert ms.read_header(_table(7)) == (0, 7)


def test_memory_that_is_not_a_table_is_refused() -> None:
    with pytest.raises(ValueError, match="not a ferryman member table"):
        ms.read_header(bytearray(64))


def test_a_zeroed_slot_reads_as_healthy_and_enabled() -> None:
    health, status = ms.read_slot(_table(), 2)
    assert health == ms.SlotHealth(State.HEALTHY, 0.0, 0.0, 0, 0)
    assert status == ENABLED


@given(state=st.sampled_from(list(State)), until=st.floats(allow_nan=False), ramp=st.floats(allow_nan=False),
       streak=st.integers(0, 2**32 - 1), ejections=st.integers(0, 2**32 - 1),
       status=st.sampled_from(ms.STATUSES), slot=st.integers(0, 3))
def test_health_and_status_round_trip_through_a_slot_without_touching_its_neighbours(
        state: State, until: float, ramp: float, streak: int, ejections: int, status: str, slot: int) -> None:
    buf = _table()
    before = bytes(buf)
    h = ms.SlotHealth(state, until, ramp, streak, ejections)
    ms.write_status(buf, slot, status)
    ms.write_health(buf, slot, h)
    assert ms.read_slot(buf, slot) == (h, status)
    start, end = ms.slot_offset(slot), ms.slot_offset(slot + 1)
    assert buf[:start] == before[:start] and buf[end:] == before[end:]


def test_writing_health_leaves_the_status_the_master_wrote() -> None:
    buf = _table()
    ms.write_status(buf, 1, "drain")
    ms.write_health(buf, 1, ms.SlotHealth(State.RESTING, 5.0, 0.0, 1, 1))
    assert ms.read_slot(buf, 1)[1] == "drain"


def test_an_unknown_state_code_is_refused() -> None:
    buf = _table()
    buf[ms.slot_offset(0) + ms.STATE_OFFSET] = 200
    with pytest.raises(ValueError, match="unknown member state code 200"):
        ms.read_slot(buf, 0)


def test_the_generation_counts_writes() -> None:
    buf = _table()
    assert ms.bump_generation(buf) == 1
    assert ms.bump_generation(buf) == 2
    assert ms.read_generation(buf) == 2


def test_a_member_ejected_in_one_process_is_out_in_another_that_adopts_its_slot() -> None:
    writer = MemberHealth("a", passive_fails=1, retry=30)
    writer.eject(100.0, "connection refused")
    buf = _table()
    ms.write_health(buf, 0, ms.SlotHealth.of(writer))
    reader = Member(0, "a", health=MemberHealth("a", retry=30))
    pool = Pool("p", [reader, Member(1, "b")], retry=30)
    ms.read_slot(buf, 0)[0].apply(reader.health)
    assert reader.health.phase is State.RESTING and reader.in_error(110.0)
    assert all(pool.choose(110.0).member.name == "b" for _ in range(5))
    assert pool.choose(131.0).member.name in ("a", "b") and not reader.in_error(131.0)  # its rest is over


def test_adopting_a_new_state_restarts_the_counters_that_lead_to_the_next_move() -> None:
    h = MemberHealth("a", passive_fails=3)
    h.observe_request(False, 1.0, "reset")
    h.observe_request(False, 2.0, "reset")
    h.adopt(State.RESTING, 50.0, 0.0, 1, 1)
    h.adopt(State.HEALTHY, 0.0, 0.0, 0, 1)
    assert h.observe_request(False, 60.0, "reset") is None  # two more failures are needed, not one
    assert h.observe_request(False, 61.0, "reset") is None
    assert h.observe_request(False, 62.0, "reset") is not None


def test_the_slow_start_ramp_agrees_when_its_start_is_shared() -> None:
    a = MemberHealth("a", slow_start=10)
    b = MemberHealth("a", slow_start=10)
    a.eject(0.0, "refused")
    a.retry_due(100.0)
    a.observe_request(True, 100.0, "")
    assert a.phase is State.RECOVERING
    ms.SlotHealth.of(a).apply(b)
    assert b.weight_factor(105.0) == pytest.approx(a.weight_factor(105.0))
    assert 0.1 < b.weight_factor(105.0) < 1.0


def test_names_that_stay_keep_their_slots_and_new_ones_take_free_ones() -> None:
    first = ms.assign_slots({}, [("p", "a"), ("p", "b"), ("q", "a")], 8)
    assert first == {("p", "a"): 0, ("p", "b"): 1, ("q", "a"): 2}
    second = ms.assign_slots(first, [("q", "a"), ("p", "c"), ("p", "a")], 8, reserved={1})
    assert second == {("q", "a"): 2, ("p", "c"): 3, ("p", "a"): 0}


def test_more_members_than_slots_is_refused_with_the_counts() -> None:
    with pytest.raises(ValueError, match="2 slots, too few for 3 members"):
        ms.assign_slots({}, [("p", "a"), ("p", "b"), ("p", "c")], 2)
