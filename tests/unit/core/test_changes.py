"""ferryman.core.changes: a change of watched files counts once it has settled, and only once."""

from __future__ import annotations

from hypothesis import given, strategies as st

from ferryman.core.changes import SettledChange


def test_a_change_is_reported_after_it_stayed_still_for_the_settle_time() -> None:
    watch = SettledChange({"cert": 1, "key": 1}, settle=1.0)
    assert watch.changed({"cert": 1, "key": 1}, 0.0) == []
    assert watch.changed({"cert": 2, "key": 1}, 0.5) == []      # seen, not settled
    assert watch.pending
    assert watch.changed({"cert": 2, "key": 1}, 1.0) == []      # 0.5 s still
    assert watch.changed({"cert": 2, "key": 1}, 1.5) == ["cert"]
    assert watch.changed({"cert": 2, "key": 1}, 3.0) == []      # reported once
    assert not watch.pending


def test_a_file_written_in_steps_is_reported_once_when_the_last_step_settled() -> None:
    watch = SettledChange({"cert": 1, "key": 1}, settle=1.0)
    assert watch.changed({"cert": 1, "key": 2}, 0.5) == []
    assert watch.changed({"cert": 2, "key": 2}, 1.2) == []      # the second step restarts the clock
    assert watch.changed({"cert": 2, "key": 2}, 2.0) == []
    assert sorted(watch.changed({"cert": 2, "key": 2}, 2.3)) == ["cert", "key"]


def test_a_file_changed_and_changed_back_is_no_change() -> None:
    watch = SettledChange({"cert": 1}, settle=1.0)
    watch.changed({"cert": 2}, 0.1)
    watch.changed({"cert": 1}, 0.2)
    assert watch.changed({"cert": 1}, 5.0) == []


def test_a_removed_file_counts_as_a_change() -> None:
    watch = SettledChange({"cert": 1}, settle=0.5)
    watch.changed({"cert": None}, 0.0)
    assert watch.changed({"cert": None}, 1.0) == ["cert"]


polls = st.lists(st.tuples(st.integers(0, 3), st.floats(0.0, 2.0, allow_nan=False)), max_size=30)


@given(polls)
def test_a_report_names_exactly_what_differs_from_the_last_report_and_only_after_settling(
        steps: list[tuple[int, float]]) -> None:
    settle = 1.0
    watch = SettledChange({"f": 0}, settle)
    reference, now, since, last = 0, 0.0, None, 0
    for value, gap in steps:
        now += gap
        if value != last:
            since, last = now, value
        got = watch.changed({"f": value}, now)
        if got:
            assert got == ["f"] and value != reference
            assert since is not None and now - since >= settle
            reference = value
        else:
            assert value == reference or since is None or now - since < settle or value == last
    # once still for long enough, whatever differs is reported and then nothing more
    later = watch.changed({"f": last}, now + settle + 1) + watch.changed({"f": last}, now + 2 * settle + 2)
    assert later == ([] if last == reference else ["f"])
