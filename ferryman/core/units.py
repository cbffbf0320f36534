"""Durations and sizes as operators write them: ``"250ms"``, ``"1m30s"``, ``"64KiB"``, ``"1GB"``.

Configuration keeps units in the text so that a value reads the same in the file, the docs and an
error message; a bare ``60`` is ambiguous (seconds? milliseconds, as in some nginx directives?).
These functions are pure: strings in, numbers out, and a `ValueError` whose message shows the valid
form. Arithmetic goes through `Decimal` so ``"0.1s"`` is exactly the float ``0.1`` and every value
made by `format_duration` / `format_size` parses back to the same number.
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation

__all__ = ["DURATION_UNITS", "SIZE_UNITS", "format_duration", "format_size", "parse_duration",
           "parse_size"]

#: Seconds per duration unit. Compound values (``"1h30m"``) add their parts.
DURATION_UNITS: dict[str, Decimal] = {
    "ms": Decimal("0.001"), "s": Decimal(1), "m": Decimal(60), "h": Decimal(3600), "d": Decimal(86400),
}

#: Bytes per size unit, matched case-insensitively: KB is 1000 (SI), KiB is 1024 (IEC).
SIZE_UNITS: dict[str, int] = {
    "b": 1,
    "kb": 1000, "mb": 1000**2, "gb": 1000**3, "tb": 1000**4,
    "kib": 1024, "mib": 1024**2, "gib": 1024**3, "tib": 1024**4,
}

_NUMBER = r"(?:\d+(?:\.\d*)?|\.\d+)"
_DURATION_PART = re.compile(rf"({_NUMBER})\s*(ms|s|m|h|d)")
_DURATION = re.compile(rf"(?:{_NUMBER}\s*(?:ms|s|m|h|d)\s*)+")
_SIZE = re.compile(rf"({_NUMBER})\s*([a-z]*)", re.IGNORECASE)
_BARE = re.compile(_NUMBER)

_DURATION_FORM = 'write a number and a unit (ms, s, m, h, d), such as "250ms", "5s" or "1m30s"'
_SIZE_FORM = 'write a whole number of bytes, optionally with a unit (KB, MB, GB, KiB, MiB, GiB), such as "64KiB"'

# Decimal is exact for every float repr below this; above, a modulo test would exceed its precision.
_EXACT_LIMIT = Decimal(10) ** 18


def parse_duration(text: str) -> float:
    """Seconds in a duration string: ``"250ms"`` -> 0.25, ``"1.5s"``, ``"1m"``, ``"1h30m"``, ``"2d"``.

    Raises:
        ValueError: not a string, no unit (``"60"``), an unknown unit, or a negative value; the
            message says how to write it.
    """
    if not isinstance(text, str):
        raise ValueError(f"{text!r} is not a duration; {_DURATION_FORM}")
    s = text.strip()
    if _BARE.fullmatch(s):
        raise ValueError(f'{text!r} has no unit; write a duration such as "{s}s" or "{s}ms"')
    if s.startswith("-"):
        raise ValueError(f'{text!r} is negative; write a duration of 0 or more, such as "5s"')
    if not _DURATION.fullmatch(s):
        raise ValueError(f"{text!r} is not a duration; {_DURATION_FORM}")
    total = sum((Decimal(n) * DURATION_UNITS[u] for n, u in _DURATION_PART.findall(s)), Decimal(0))
    return float(total)


def parse_size(text: str) -> int:
    """Bytes in a size string: ``"512"``, ``"64KiB"`` (65536), ``"10MB"`` (10**7), ``"1.5KiB"`` (1536).

    A bare number of digits is bytes (it is still a string in the file). Fractions are accepted only
    when they come to a whole number of bytes.

    Raises:
        ValueError: not a string, an unknown unit, a negative value or a fraction of a byte.
    """
    if not isinstance(text, str):
        raise ValueError(f"{text!r} is not a size; {_SIZE_FORM}")
    s = text.strip()
    if s.startswith("-"):
        raise ValueError(f'{text!r} is negative; write a size of 0 or more, such as "64KiB"')
    m = _SIZE.fullmatch(s)
    if m is None:
        raise ValueError(f"{text!r} is not a size; {_SIZE_FORM}")
    number, unit = m.groups()
    factor = SIZE_UNITS.get(unit.lower() or "b")
    if factor is None:
        if unit.lower() in ("k", "m", "g", "t"):  # nginx style: say which of the two it could mean
            u = unit.upper()
            raise ValueError(f'{text!r} has an ambiguous unit {unit!r}; write "{number}{u}iB" '
                             f'(1024s) or "{number}{u}B" (1000s)')
        raise ValueError(f"{text!r} has an unknown unit {unit!r}; {_SIZE_FORM}")
    value = Decimal(number) * factor
    if value != value.to_integral_value():
        raise ValueError(f'{text!r} is not a whole number of bytes; write a size such as "512" or "64KiB"')
    return int(value)


def format_duration(seconds: float) -> str:
    """An exact, readable string for `seconds`: whole hours as ``"1h"``, whole minutes from five on as
    ``"5m"``, other whole seconds as ``"60s"``, fractions below a second as ``"250ms"``, the rest as
    decimal seconds (``"1.5s"``). `parse_duration` reads it back exactly.

    Raises:
        ValueError: negative, infinite or NaN.
    """
    try:
        d = Decimal(repr(float(seconds)))
    except InvalidOperation:  # pragma: no cover - repr of a float is always a valid Decimal
        raise ValueError(f"{seconds!r} is not a number of seconds") from None
    if not d.is_finite() or d < 0:
        raise ValueError(f"{seconds!r} is not a duration; durations are finite and 0 or more")
    if d == 0:
        return "0s"
    if d < _EXACT_LIMIT:
        if d % 3600 == 0:
            return f"{int(d / 3600)}h"
        if d % 60 == 0 and d >= 300:  # "60s" and "120s" read better than "1m", "2m" for timeouts
            return f"{int(d / 60)}m"
        if d % 1 == 0:
            return f"{int(d)}s"
        ms = d * 1000
        if d < 1 and ms == ms.to_integral_value():
            return f"{int(ms)}ms"
    return f"{d.normalize():f}s"


def format_size(n: int) -> str:
    """The shortest exact string for `n` bytes: binary units first (``"64KiB"``), then SI
    (``"10MB"``), else plain digits (``"1500"``). `parse_size` reads it back exactly.

    Raises:
        ValueError: negative or not a whole number.
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise ValueError(f"{n!r} is not a size; sizes are whole numbers of bytes, 0 or more")
    if n:
        for unit in ("TiB", "GiB", "MiB", "KiB", "TB", "GB", "MB", "KB"):
            factor = SIZE_UNITS[unit.lower()]
            if n % factor == 0:
                return f"{n // factor}{unit}"
    return str(n)
