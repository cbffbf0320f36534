"""Body decoders: fixed length, chunked (strict), until close; fed in every split."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ferryman.core.bodies import BodyError, ChunkedBody, LengthBody, UntilCloseBody


def feed_split(decoder, data: bytes, cuts: list[int]) -> tuple[bytes, int, bool]:
    """Feed `data` cut at `cuts`; return (payload, bytes taken in total, ended)."""
    out: list[bytes] = []
    taken = 0
    ended = False
    bounds = [0, *sorted(set(c for c in cuts if 0 < c < len(data))), len(data)]
    for a, b in zip(bounds, bounds[1:]):
        piece = data[a:b]
        pos, ended = decoder.feed(piece, 0, out)
        taken += pos
        if ended:
            break
    return b"".join(out), taken, ended


CHUNKED_OK = [
    (b"5\r\nhello\r\n0\r\n\r\n", b"hello"),
    (b"5;name=value\r\nhello\r\n6;a;b\r\n world\r\n0\r\n\r\n", b"hello world"),
    (b'5;a="b;c\\"d"\r\nhello\r\n0\r\n\r\n', b"hello"),
    (b"000005\r\nhello\r\n000\r\n\r\n", b"hello"),
    (b"5\r\nhello\r\n0\r\nX-Trailer: 1\r\nContent-Length: 99\r\n\r\n", b"hello"),
    (b"A\r\n0123456789\r\n0\r\n\r\n", b"0123456789"),
]

CHUNKED_BAD = [
    b"-5\r\nhello\r\n0\r\n\r\n", b"fffffffffffffffff0\r\nhello\r\n0\r\n\r\n", b"0x5\r\nhello\r\n0\r\n\r\n",
    b"+5\r\nhello\r\n0\r\n\r\n", b"5 \r\nhello\r\n0\r\n\r\n", b" 5\r\nhello\r\n0\r\n\r\n",
    b"2 erfrferferf\r\naa\r\n0 rrrr\r\n\r\n", b"\r\nhello\r\n0\r\n\r\n", b"2;\r\naa\r\n0\r\n\r\n",
    b"5;a=b\rc\r\nhello\r\n0\r\n\r\n", b"5;a=b\nGET /x HTTP/1.1\r\nhello\r\n0\r\n\r\n", b"5\r\nABCDE0\r\n\r\n",
    b"3\r\nhello\r\n0\r\n\r\n", b"5\nhello\n0\n\n", b"5\r\nhello\r\n0\r\nbad trailer\r\n\r\n",
    b"5\r\nhello\r\n0\r\n folded: x\r\n\r\n",
]


@pytest.mark.parametrize("data,payload", CHUNKED_OK)
def test_a_valid_chunked_body_is_decoded_to_its_payload_and_its_exact_end(data, payload):
    got, taken, ended = feed_split(ChunkedBody(), data + b"NEXT", [])
    assert (got, taken, ended) == (payload, len(data), True)


@pytest.mark.parametrize("data", CHUNKED_BAD)
def test_a_malformed_chunked_body_is_refused(data):
    with pytest.raises(BodyError):
        feed_split(ChunkedBody(), data, [])


@settings(max_examples=60, deadline=None)
@given(case=st.sampled_from(CHUNKED_OK), cuts=st.lists(st.integers(0, 80), max_size=8))
def test_a_chunked_body_decodes_the_same_in_any_split(case, cuts):
    data, payload = case
    assert feed_split(ChunkedBody(), data + b"GET", cuts) == (payload, len(data), True)


@settings(max_examples=60, deadline=None)
@given(data=st.sampled_from(CHUNKED_BAD), cuts=st.lists(st.integers(0, 60), max_size=8))
def test_a_malformed_chunked_body_is_refused_in_any_split(data, cuts):
    with pytest.raises(BodyError):
        feed_split(ChunkedBody(), data, cuts)


@pytest.mark.parametrize("data", CHUNKED_BAD)
def test_a_malformed_chunked_body_is_refused_one_byte_at_a_time(data):
    with pytest.raises(BodyError):
        feed_split(ChunkedBody(), data, list(range(len(data))))


@pytest.mark.parametrize("data,payload", CHUNKED_OK)
def test_a_chunked_body_decodes_one_byte_at_a_time(data, payload):
    assert feed_split(ChunkedBody(), data, list(range(len(data)))) == (payload, len(data), True)


def test_a_chunked_trailer_section_has_a_size_limit():
    with pytest.raises(BodyError):
        feed_split(ChunkedBody(max_trailer=100), b"0\r\n" + b"X-A: " + b"a" * 200 + b"\r\n\r\n", [])


@given(n=st.integers(0, 50), extra=st.binary(max_size=20), cuts=st.lists(st.integers(0, 70), max_size=5))
def test_a_length_body_takes_exactly_its_length(n, extra, cuts):
    body = bytes(range(n))
    assert feed_split(LengthBody(n), body + extra, cuts)[:2] == (body, n) or n == 0


def test_a_length_body_ends_properly_only_when_complete():
    d = LengthBody(5)
    d.feed(b"abc", 0, [])
    assert not d.eof()
    d.feed(b"de", 0, [])
    assert d.eof()


def test_a_close_delimited_body_takes_everything_and_ends_at_eof():
    d = UntilCloseBody()
    out: list[bytes] = []
    assert d.feed(b"abc", 1, out) == (3, False)
    assert out == [b"bc"] and d.eof()
