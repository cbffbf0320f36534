"""The connection machines: transition tables, message boundaries, pipelining, upgrade, bytes after a
response; every case fed whole, one byte at a time and in random splits with the same outcome.

A small pure tokenizer stands in for the I/O layer's httptools one (the machines take any
`HeadTokenizer`); tests/unit/test_machines.py runs them with the real one over the hostile corpus.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ferryman.core import connection as c
from ferryman.core.connection import (
    DATA, EARLY_CLOSE, END, ERROR, REQUEST, RESPONSE, SWITCHED, TRANSITIONS, TRUNCATED, TUNNEL_DATA,
    IllegalTransition, Phase, RequestReader, ResponseReader, Role,
)
from ferryman.core.http import check_request_head
from ferryman.errors import BadRequest, UpstreamProtocolError


class Tokenizer:
    """Collects a head and splits it into lines (enough for well-formed test heads)."""

    def __init__(self, response: bool = False) -> None:
        self.response = response
        self.buf = b""

    def reset(self) -> None:
        self.buf = b""

    def feed(self, data: bytes, final: bool) -> c.RawHead | None:
        self.buf += data
        if not final:
            return None
        lines = self.buf[:-4].split(b"\r\n")
        self.buf = b""
        first = lines[0].split(b" ")
        headers = []
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            if not name or name != name.strip():
                raise (UpstreamProtocolError if self.response else BadRequest)("bad header")
            headers.append((name.lower(), value.strip()))
        if self.response:
            return (first[1], b"", first[0][5:].decode(), headers)
        return (first[0], first[1] if len(first) > 1 else b"", first[-1][5:].decode(), headers)


def request_reader(max_head: int = 8192) -> RequestReader:
    return RequestReader(Tokenizer(), lambda m, t, v, h: check_request_head(m, t, v, h, is_vouched=lambda n: False),
                         max_head)


def response_reader(method: bytes = b"GET", upgrade: bool = False, max_head: int = 8192) -> ResponseReader:
    r = ResponseReader(Tokenizer(response=True), max_head)
    r.expect(method, upgrade)
    return r


def summary(events: list) -> list:
    """Events with payload pieces merged and heads reduced to what identifies them."""
    out: list = []
    for kind, value in events:
        if kind in (DATA, TUNNEL_DATA) and out and out[-1][0] == kind:
            out[-1] = (kind, out[-1][1] + value)
        elif kind == REQUEST:
            out.append((kind, value.method, value.target))
        elif kind in (RESPONSE, SWITCHED):
            out.append((kind, value.status))
        elif kind == ERROR:
            out.append((kind, type(value).__name__, value.status))
        else:
            out.append((kind, value))
    return out


def feed(machine, data: bytes, cuts: list[int] | None = None) -> list:
    bounds = [0, *sorted(set(x for x in (cuts or []) if 0 < x < len(data))), len(data)]
    events: list = []
    for a, b in zip(bounds, bounds[1:]):
        events += machine.feed(data[a:b])
    return summary(events)


# -- the tables ---------------------------------------------------------------------------------------


def test_every_phase_can_be_closed_and_nothing_leaves_closed():
    for role in Role:
        for phase in Phase:
            if phase is not Phase.CLOSED:
                assert (phase, Phase.CLOSED) in TRANSITIONS[role]
        assert not any(old is Phase.CLOSED for old, _ in TRANSITIONS[role])


def test_an_illegal_transition_raises():
    r = request_reader()
    with pytest.raises(IllegalTransition):
        r.next_request()  # IDLE -> IDLE: no request was answered
    b = response_reader()
    with pytest.raises(IllegalTransition):
        b.release()  # HEAD -> IDLE: the answer was never read


def test_only_a_backend_machine_may_switch_from_head_to_tunnel():
    assert (Phase.HEAD, Phase.TUNNEL) in TRANSITIONS[Role.BACKEND]
    assert (Phase.HEAD, Phase.TUNNEL) not in TRANSITIONS[Role.CLIENT]
    assert (Phase.DONE, Phase.TUNNEL) in TRANSITIONS[Role.CLIENT]


# -- requests -------------------------------------------------------------------------------------------

GET = b"GET /a HTTP/1.1\r\nHost: t\r\n\r\n"
POST = b"POST /b HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nhello"
CHUNKED = b"POST /c HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nab\r\n1\r\nc\r\n0\r\n\r\n"

REQUEST_CASES = {
    "get": (GET, [(REQUEST, b"GET", b"/a"), (END, None)]),
    "post": (POST, [(REQUEST, b"POST", b"/b"), (DATA, b"hello"), (END, None)]),
    "chunked": (CHUNKED, [(REQUEST, b"POST", b"/c"), (DATA, b"abc"), (END, None)]),
    "leading-crlf": (b"\r\n" + GET, [(REQUEST, b"GET", b"/a"), (END, None)]),
    "doubled-space": (b"GET  /a HTTP/1.1\r\nHost: t\r\n\r\n", [(ERROR, "BadRequest", 400)]),
    "doubled-space-before-version": (b"GET /a  HTTP/1.1\r\nHost: t\r\n\r\n", [(ERROR, "BadRequest", 400)]),
    "upgrade-with-length": (b"POST /u HTTP/1.1\r\nHost: t\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"
                            b"Content-Length: 5\r\n\r\nhello", [(ERROR, "BadRequest", 400)]),
    "upgrade-with-chunked": (b"POST /u HTTP/1.1\r\nHost: t\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"
                             b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n", [(ERROR, "BadRequest", 400)]),
    "body-with-two-spaces": (b"POST /b HTTP/1.1\r\nHost: t\r\nContent-Length: 8\r\n\r\nGET  /x ",
                             [(REQUEST, b"POST", b"/b"), (DATA, b"GET  /x "), (END, None)]),
    "bad-chunk": (b"POST /c HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n5 \r\nhello\r\n0\r\n\r\n",
                  [(REQUEST, b"POST", b"/c"), (ERROR, "BodyError", 400)]),
}


@pytest.mark.parametrize("name", REQUEST_CASES)
def test_a_request_gives_the_same_events_whole_and_one_byte_at_a_time(name):
    data, want = REQUEST_CASES[name]
    assert feed(request_reader(), data) == want
    assert feed(request_reader(), data, list(range(len(data)))) == want


@settings(max_examples=80, deadline=None)
@given(name=st.sampled_from(sorted(REQUEST_CASES)), cuts=st.lists(st.integers(0, 140), max_size=10))
def test_a_request_gives_the_same_events_in_any_split(name, cuts):
    data, want = REQUEST_CASES[name]
    assert feed(request_reader(), data, cuts) == want


@settings(max_examples=60, deadline=None)
@given(first=st.sampled_from(["get", "post", "chunked"]), second=st.sampled_from(sorted(REQUEST_CASES)),
       cuts=st.lists(st.integers(0, 280), max_size=10))
def test_a_pipelined_request_is_held_until_the_answer_and_then_parsed_the_same(first, second, cuts):
    data1, want1 = REQUEST_CASES[first]
    data2, want2 = REQUEST_CASES[second]
    r = request_reader()
    assert feed(r, data1 + data2, cuts) == want1
    assert r.phase is Phase.DONE and r.held == len(data2)
    assert summary(r.next_request()) == want2


def test_bytes_after_a_closing_request_are_not_read():
    r = request_reader()
    events = feed(r, b"GET /a HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\nGET /b HTTP/1.1\r\n\r\n")
    assert events == [(REQUEST, b"GET", b"/a"), (END, None)] and r.held == 0


def test_a_head_over_the_limit_is_431():
    r = request_reader(max_head=64)
    assert feed(r, b"GET /a HTTP/1.1\r\nHost: t\r\nX-Long: " + b"a" * 100) == [(ERROR, "HttpError", 431)]
    assert r.phase is Phase.CLOSED


def test_a_switch_turns_held_and_later_bytes_into_tunnel_data():
    r = request_reader()
    feed(r, b"GET /ws HTTP/1.1\r\nHost: t\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\nearly")
    assert r.head is not None and r.head.upgrade == b"websocket"
    assert r.switch() == b"early"
    assert feed(r, b"more") == [(TUNNEL_DATA, b"more")]


# -- responses ------------------------------------------------------------------------------------------

OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
RESPONSE_CASES = {
    "length": (b"GET", OK, [(RESPONSE, 200), (DATA, b"ok"), (END, None)], True),
    "chunked": (b"GET", b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n",
                [(RESPONSE, 200), (DATA, b"ok"), (END, None)], True),
    "interim": (b"GET", b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n" + OK,
                [(RESPONSE, 200), (DATA, b"ok"), (END, None)], True),
    "head": (b"HEAD", b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n", [(RESPONSE, 200), (END, None)], True),
    "no-content": (b"GET", b"HTTP/1.1 204 No Content\r\n\r\n", [(RESPONSE, 204), (END, None)], True),
    "not-modified": (b"GET", b"HTTP/1.1 304 Not Modified\r\nContent-Length: 5\r\n\r\n",
                     [(RESPONSE, 304), (END, None)], True),
    "bytes-after": (b"GET", OK + b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nforged",
                    [(RESPONSE, 200), (DATA, b"ok"), (END, None), (ERROR, "UpstreamProtocolError", 502)], False),
    "unsolicited-101": (b"GET", b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n",
                        [(ERROR, "UpstreamProtocolError", 502)], False),
    "http10-te": (b"GET", b"HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n",
                  [(ERROR, "UpstreamProtocolError", 502)], False),
    "close-connection": (b"GET", b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok",
                         [(RESPONSE, 200), (DATA, b"ok"), (END, None)], False),
}


@pytest.mark.parametrize("name", RESPONSE_CASES)
def test_a_response_gives_the_same_events_whole_and_one_byte_at_a_time(name):
    method, data, want, reusable = RESPONSE_CASES[name]
    for cuts in ([], list(range(len(data)))):
        r = response_reader(method)
        assert feed(r, data, cuts) == want
        assert r.reusable is reusable


@settings(max_examples=80, deadline=None)
@given(name=st.sampled_from(sorted(RESPONSE_CASES)), cuts=st.lists(st.integers(0, 120), max_size=10))
def test_a_response_gives_the_same_events_in_any_split(name, cuts):
    method, data, want, reusable = RESPONSE_CASES[name]
    r = response_reader(method)
    assert feed(r, data, cuts) == want
    assert r.reusable is reusable


def test_bytes_on_an_idle_backend_connection_are_a_protocol_error():
    r = response_reader()
    feed(r, OK)
    r.release()
    assert feed(r, b"HTTP/1.1 200 OK\r\n") == [(ERROR, "UpstreamProtocolError", 502)]
    assert r.phase is Phase.CLOSED


def test_a_response_head_over_the_limit_is_a_protocol_error():
    r = response_reader(max_head=100)
    assert feed(r, b"HTTP/1.1 200 OK\r\nX-Big: " + b"a" * 200) == [(ERROR, "UpstreamProtocolError", 502)]


def test_a_101_to_an_upgrade_request_switches_to_a_tunnel_with_the_bytes_after_it():
    r = response_reader(upgrade=True)
    events = feed(r, b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\nhi")
    assert events == [(SWITCHED, 101), (TUNNEL_DATA, b"hi")]
    assert feed(r, b"more") == [(TUNNEL_DATA, b"more")]
    assert summary(r.eof()) == [(END, None)]


def test_eof_before_any_answer_byte_is_an_early_close_and_inside_a_body_a_truncation():
    r = response_reader()
    assert summary(r.eof()) == [(EARLY_CLOSE, None)]
    r = response_reader()
    feed(r, b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nab")
    assert summary(r.eof()) == [(TRUNCATED, None)]
    r = response_reader()
    feed(r, b"HTTP/1.1 200 OK\r\n\r\nuntil close")
    assert summary(r.eof()) == [(END, None)] and not r.reusable


# -- interim answers and a close before the final head ----------------------------------------------

EARLY_HINTS = b"HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\n"
CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
PROCESSING = b"HTTP/1.1 102 Processing\r\n\r\n"
INTERIMS = [EARLY_HINTS, CONTINUE, PROCESSING]


def interim_run(n: int, kinds: list[int]) -> bytes:
    return b"".join(INTERIMS[kinds[i % len(kinds)]] for i in range(n))


@settings(max_examples=120, deadline=None)
@given(limit=st.integers(1, 6), extra=st.integers(-6, 3), kinds=st.lists(st.integers(0, 2), min_size=1, max_size=4),
       cuts=st.lists(st.integers(0, 700), max_size=12))
def test_up_to_max_interim_answers_are_dropped_and_one_more_is_a_protocol_error_in_any_split(limit, extra, kinds,
                                                                                              cuts):
    n = max(0, limit + extra)
    data = interim_run(n, kinds) + OK
    r = ResponseReader(Tokenizer(response=True), 8192, limit)
    r.expect(b"GET", False)
    if n <= limit:
        assert feed(r, data, cuts) == [(RESPONSE, 200), (DATA, b"ok"), (END, None)]
        assert r.reusable
    else:
        assert feed(r, data, cuts) == [(ERROR, "UpstreamProtocolError", 502)]
        assert r.phase is Phase.CLOSED and not r.reusable
        assert r.eof() == []


def test_the_interim_bound_is_counted_per_request_not_per_connection():
    r = ResponseReader(Tokenizer(response=True), 8192, 2)
    for _ in range(3):  # three requests on one connection, each with the most interim answers allowed
        r.expect(b"GET", False)
        assert feed(r, EARLY_HINTS + CONTINUE + OK, list(range(200))) == [(RESPONSE, 200), (DATA, b"ok"), (END, None)]
        r.release()
    r.expect(b"GET", False)
    assert feed(r, EARLY_HINTS * 3) == [(ERROR, "UpstreamProtocolError", 502)]


def test_the_interim_bound_defaults_to_32():
    r = response_reader()
    assert feed(r, EARLY_HINTS * 32 + OK) == [(RESPONSE, 200), (DATA, b"ok"), (END, None)]
    r = response_reader()
    assert feed(r, EARLY_HINTS * 33 + OK) == [(ERROR, "UpstreamProtocolError", 502)]


def test_an_endless_run_of_interim_answers_stops_at_the_bound_not_at_the_end_of_the_bytes():
    r = ResponseReader(Tokenizer(response=True), 8192, 4)
    r.expect(b"GET", False)
    events = []
    for _ in range(1000):
        events += r.feed(EARLY_HINTS)
        if r.phase is Phase.CLOSED:
            break
    assert summary(events) == [(ERROR, "UpstreamProtocolError", 502)]
    assert "4 interim" in str(events[0][1])
    assert r.feed(EARLY_HINTS) == []  # nothing more is read


@settings(max_examples=120, deadline=None)
@given(data=st.sampled_from([OK, EARLY_HINTS + CONTINUE + OK, PROCESSING + b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
                             CONTINUE + b"HTTP/1.1 204 No Content\r\n\r\n"]),
       cut=st.integers(0, 200), splits=st.lists(st.integers(0, 200), max_size=6))
def test_a_close_anywhere_before_the_final_head_is_complete_is_an_early_close(data, cut, splits):
    """No byte, part of a head, interim answers only, or those and part of the final head: nothing of the
    answer was relayed, so every such close is the one event the retry rule decides on."""
    final_end = data.rindex(b"\r\n\r\n") + 4  # the last head is the final one; no body holds CRLF CRLF
    prefix = data[:min(cut, final_end - 1)]
    r = response_reader()
    assert all(kind not in (RESPONSE, ERROR) for kind, *_ in feed(r, prefix, splits))
    assert r.phase is Phase.HEAD
    assert summary(r.eof()) == [(EARLY_CLOSE, None)]
    assert r.phase is Phase.CLOSED
