"""`max_interim_responses`: a positive bound on the interim answers a member may send per request."""

from __future__ import annotations

from pathlib import Path

import pytest

from ferryman.config.loader import load_config_text
from ferryman.errors import ConfigError
from tests.unit.test_config import MINIMAL

ROOT = Path(__file__).resolve().parents[2]


def test_max_interim_responses_defaults_to_32_and_takes_a_positive_count() -> None:
    assert load_config_text(MINIMAL, "f.toml", ROOT).pool["app"].max_interim_responses == 32
    text = MINIMAL.replace("[pool.app]", "[pool.app]\nmax_interim_responses = 3", 1)
    assert load_config_text(text, "f.toml", ROOT).pool["app"].max_interim_responses == 3


@pytest.mark.parametrize(("value", "message"), [
    ("0", "0 is too small; use 1 or more"),
    ("-1", "-1 is too small; use 1 or more"),
    ('"8"', "'8' is not a whole number; write one without quotes, such as 1"),
])
def test_max_interim_responses_refuses_zero_negatives_and_strings_with_the_line_and_what_is_valid(
        value: str, message: str) -> None:
    text = MINIMAL.replace("[pool.app]", f"[pool.app]\nmax_interim_responses = {value}", 1)
    with pytest.raises(ConfigError) as err:
        load_config_text(text, "f.toml", ROOT)
    assert [str(i) for i in err.value.issues] == [f"f.toml:6: pool.app.max_interim_responses: {message}"]
