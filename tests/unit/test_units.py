"""ferryman.core.units: duration and size strings, exact both ways, with errors that show the valid form."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ferryman.core import units
from ferryman.core.units import format_duration, format_size, parse_duration, parse_size


@pytest.mark.parametrize(("text", "seconds"), [
    ("250ms", 0.25), ("5s", 5.0), ("1m", 60.0), ("1h", 3600.0), ("1.5s", 1.5), ("0s", 0.0),
    ("2d", 172800.0), ("1m30s", 90.0), ("1h 30m", 5400.0), (" 10s ", 10.0), (".5s", 0.5), ("0.1s", 0.1),
    ("1ms", 0.001), ("100ms", 0.1),
])
def test_parse_duration_reads_each_unit(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize(("text", "message"), [
    ("60", "'60' has no unit; write a duration such as \"60s\" or \"60ms\""),
    ("5 sec", "'5 sec' is not a duration; write a number and a unit (ms, s, m, h, d), such as \"250ms\", "
              "\"5s\" or \"1m30s\""),
    ("-1s", "'-1s' is negative; write a duration of 0 or more, such as \"5s\""),
    ("", "'' is not a duration; write a number and a unit (ms, s, m, h, d), such as \"250ms\", \"5s\" or "
         "\"1m30s\""),
])
def test_parse_duration_errors_show_the_valid_form(text: str, message: str) -> None:
    with pytest.raises(ValueError) as err:
        parse_duration(text)
    assert str(err.value) == message


@pytest.mark.parametrize(("text", "size"), [
    ("512", 512), ("0", 0), ("64KiB", 65536), ("10MiB", 10 * 1024**2), ("1GiB", 1024**3), ("1KB", 1000),
    ("10MB", 10**7), ("1TiB", 1024**4), ("64kib", 65536), ("1.5KiB", 1536), ("100B", 100),
])
def test_parse_size_reads_each_unit(text: str, size: int) -> None:
    assert parse_size(text) == size


@pytest.mark.parametrize(("text", "message"), [
    ("64k", "'64k' has an ambiguous unit 'k'; write \"64KiB\" (1024s) or \"64KB\" (1000s)"),
    ("0.5B", "'0.5B' is not a whole number of bytes; write a size such as \"512\" or \"64KiB\""),
    ("-1", "'-1' is negative; write a size of 0 or more, such as \"64KiB\""),
    ("10 pages", "'10 pages' has an unknown unit 'pages'; write a whole number of bytes, optionally with a "
                 "unit (KB, MB, GB, KiB, MiB, GiB), such as \"64KiB\""),
])
def test_parse_size_errors_show_the_valid_form(text: str, message: str) -> None:
    with pytest.raises(ValueError) as err:
        parse_size(text)
    assert str(err.value) == message


def test_parsers_refuse_numbers_that_are_not_strings() -> None:
    with pytest.raises(ValueError, match="60 is not a duration"):
        parse_duration(60)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="8192 is not a size"):
        parse_size(8192)  # type: ignore[arg-type]


@pytest.mark.parametrize(("seconds", "text"), [
    (0, "0s"), (0.25, "250ms"), (1.5, "1.5s"), (60, "60s"), (90, "90s"), (300, "5m"), (3600, "1h"),
    (5400, "90m"), (86400, "24h"), (0.0015, "0.0015s"), (30, "30s"),
])
def test_format_duration_picks_a_readable_unit(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text


@pytest.mark.parametrize(("size", "text"), [
    (0, "0"), (512, "512"), (8192, "8KiB"), (1024**3, "1GiB"), (1000, "1KB"), (1500, "1500"),
    (10**7, "10MB"),
])
def test_format_size_prefers_binary_then_si_units(size: int, text: str) -> None:
    assert format_size(size) == text


def test_formatters_refuse_negative_values() -> None:
    with pytest.raises(ValueError):
        format_duration(-1)
    with pytest.raises(ValueError):
        format_size(-1)


@given(st.floats(min_value=0, max_value=1e15, allow_nan=False, allow_infinity=False))
def test_a_formatted_duration_parses_back_to_the_same_float(seconds: float) -> None:
    assert parse_duration(format_duration(seconds)) == seconds


@given(st.integers(min_value=0, max_value=2**63))
def test_a_formatted_size_parses_back_to_the_same_integer(size: int) -> None:
    assert parse_size(format_size(size)) == size


@given(st.integers(min_value=0, max_value=10**9), st.sampled_from(["ms", "s", "m", "h"]))
def test_whole_numbers_of_a_unit_parse_exactly(n: int, unit: str) -> None:
    expected = {"ms": n / 1000, "s": float(n), "m": float(n * 60), "h": float(n * 3600)}[unit]
    assert parse_duration(f"{n}{unit}") == expected


@given(st.integers(min_value=0, max_value=2**40),
       st.sampled_from(sorted(units.SIZE_UNITS)))
def test_whole_numbers_of_a_size_unit_parse_exactly(n: int, unit: str) -> None:
    assert parse_size(f"{n}{unit}") == n * units.SIZE_UNITS[unit]


def test_units_is_pure() -> None:
    """core/ never imports config, asyncio, socket or logging (imports go from I/O to the core, never back)."""
    tree = ast.parse(Path(units.__file__).read_text())
    imported = {alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import)
                for alias in node.names}
    imported |= {(node.module or "").split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    assert not imported & {"asyncio", "socket", "logging", "ssl", "time"}
    assert not any("config" in (node.module or "") for node in ast.walk(tree) if isinstance(node, ast.ImportFrom))
