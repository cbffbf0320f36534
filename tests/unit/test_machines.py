"""The request machine with the real head tokenizer, over the whole hostile corpus (tests/integration/
vectors.py): every vector gives the same events fed whole, one byte at a time and in random splits.

No sockets: this is the cheap, exhaustive half of tests/integration/test_hostile.py's split feeding.
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ferryman.core.connection import DATA, END, ERROR, REQUEST, Phase, RequestReader
from ferryman.core.http import check_request_head
from ferryman.server.tokenizer import RequestTokenizer
from tests.integration.vectors import VECTORS


def _raw(v) -> bytes:  # noqa: ANN001
    return (v.raw.replace(b"{TRAP}", b"127.0.0.1:9").replace(b"{MEMBER}", b"127.0.0.1:8")
            .replace(b"{PORT}", b"8080"))


def _reader() -> RequestReader:
    return RequestReader(RequestTokenizer(8192, 100, 32768),
                         lambda m, t, v, h: check_request_head(m, t, v, h, is_vouched=lambda n: False), 8192 + 32768)


def outcome(data: bytes, cuts: list[int]) -> list:
    """Every request the machine reads from `data`, answered in turn: heads, payload, end, or the error."""
    r = _reader()
    bounds = [0, *sorted(set(x for x in cuts if 0 < x < len(data))), len(data)]
    events: list = []
    for a, b in zip(bounds, bounds[1:]):
        events += r.feed(data[a:b])
    while r.phase is Phase.DONE and r.head is not None and r.head.keep_alive and r.held:
        events += r.next_request()
    out: list = []
    for kind, value in events:
        if kind == DATA and out and out[-1][0] == DATA:
            out[-1] = (DATA, out[-1][1] + value)
        elif kind == REQUEST:
            out.append((REQUEST, value.method, value.target, value.body, value.headers))
        elif kind == ERROR:
            out.append((ERROR, value.status))
        else:
            out.append((kind, value))
    return out


IDS = [v.id for v in VECTORS]


@pytest.mark.parametrize("vector", VECTORS, ids=IDS)
def test_a_hostile_vector_reads_the_same_one_byte_at_a_time(vector):
    data = _raw(vector)
    assert outcome(data, list(range(len(data)))) == outcome(data, [])


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(vector=st.sampled_from(VECTORS), cuts=st.lists(st.integers(0, 400), max_size=12))
def test_a_hostile_vector_reads_the_same_in_any_split(vector, cuts):
    data = _raw(vector)
    assert outcome(data, cuts) == outcome(data, [])


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(vector=st.sampled_from(VECTORS), cuts=st.lists(st.integers(0, 500), max_size=12))
def test_a_hostile_vector_behind_a_valid_request_reads_the_same_after_it(vector, cuts):
    first = b"GET /webapps/ok HTTP/1.1\r\nHost: t\r\n\r\n"
    data = first + _raw(vector)
    got = outcome(data, cuts)
    assert got[:2] == [(REQUEST, b"GET", b"/webapps/ok", 0, []), (END, None)]
    assert got[2:] == outcome(_raw(vector), [])
