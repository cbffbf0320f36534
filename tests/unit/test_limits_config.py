"""The limit keys: their defaults, how a rate is written, and the errors that say what would be valid."""

from __future__ import annotations

from pathlib import Path

import pytest

from ferryman.config.loader import load_config_text
from ferryman.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]

MINIMAL = """\
[[listener]]
name = "http"
bind = "127.0.0.1:8080"
{listener}

[pool.app]
members = [{{ url = "http://127.0.0.1:9001" }}]

[[route]]
path = "/"
pool = "app"
{route}
"""


def _load(listener: str = "", route: str = ""):  # noqa: ANN202
    return load_config_text(MINIMAL.format(listener=listener, route=route), "f.toml", ROOT)


def test_the_defaults_suit_a_public_site():
    config = _load()
    lst, route = config.listener[0], config.route[0]
    assert (lst.body_min_rate, lst.body_rate_window, lst.max_connections_per_client,
            lst.max_requests_per_connection) == (500, 10.0, 256, 1000)
    assert (route.max_body_size, route.request_buffer) == (None, 65536)


@pytest.mark.parametrize("text, rate", [('"1KiB/s"', 1024), ('"500/s"', 500), ('"0/s"', 0), ('"2 MB / s"', 2000000)])
def test_a_rate_is_a_size_per_second(text, rate):
    assert _load(listener=f"body_min_rate = {text}").listener[0].body_min_rate == rate


@pytest.mark.parametrize("listener, route, message", [
    ('body_min_rate = "1KiB"', "",
     'listener[0].body_min_rate: \'1KiB\' is not a rate; write a size per second such as "1KiB/s"'),
    ("body_min_rate = 500", "",
     'listener[0].body_min_rate: 500 is not a rate; write a size per second such as "1KiB/s"'),
    ('body_min_rate = "1K/s"', "", "listener[0].body_min_rate: '1K/s' is not a rate ("),
    ('body_rate_window = "0s"', "", "listener[0].body_rate_window: '0s' is zero"),
    ("max_connections_per_client = -1", "", "listener[0].max_connections_per_client: -1 is too small; use 0 or more"),
    ("", 'request_buffer = "32MiB"', 'route[0].request_buffer: 32MiB is too large; use "16MiB" or less'),
    ("", "max_body_size = 10", 'route[0].max_body_size: 10 is a bare number; write a size string such as "10"'),
])
def test_a_wrong_limit_says_what_would_be_valid(listener, route, message):
    with pytest.raises(ConfigError) as err:
        _load(listener, route)
    found = [f"{i.key}: {i.message}" for i in err.value.issues]
    assert any(line.startswith(message) for line in found), found
