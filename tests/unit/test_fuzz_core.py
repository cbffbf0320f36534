"""Bounded fuzzing of the core, in the normal suite (the long run is bench/fuzz.py; both use tests/fuzzing.py).

The connection machines (with the real httptools tokenizers) are fed arbitrary bytes, built from a token
alphabet and from mutated corpus cases, in arbitrary splits: they never raise (a refusal is an event), their
events do not depend on the split, and what they accept serialises to one canonical, singly framed message.
The validation layer is given arbitrary parsed values; the rewriters and the path normaliser arbitrary bytes.
"""

from __future__ import annotations

import random

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.fuzzing import (
    TOKENS, check_path, check_request_bytes, check_request_fields, check_response_bytes, check_rewriters, mutate,
)
from tests.integration.response_vectors import RESPONSE_VECTORS
from tests.integration.vectors import VECTORS

FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _raw(raw: bytes) -> bytes:
    return raw.replace(b"{TRAP}", b"127.0.0.1:9").replace(b"{MEMBER}", b"127.0.0.1:8").replace(b"{PORT}", b"80")


token_soup = st.lists(st.one_of(st.sampled_from(TOKENS), st.binary(max_size=6)), max_size=30).map(b"".join)
request_soup = st.builds(lambda a, b: b"POST /webapps/x HTTP/1.1\r\nHost: t\r\n" + a + b, token_soup, token_soup)
response_soup = st.builds(lambda a: b"HTTP/1.1 200 OK\r\n" + a, token_soup)
cuts = st.lists(st.integers(0, 600), max_size=10)


@st.composite
def mutated(draw: st.DrawFn, corpus: list[bytes]) -> bytes:
    seed = draw(st.sampled_from(corpus))
    return mutate(random.Random(draw(st.integers(0, 2**32))), seed)


REQUESTS = [_raw(v.raw) for v in VECTORS]
RESPONSES = [v.raw for v in RESPONSE_VECTORS]


@FUZZ
@given(data=st.one_of(st.binary(max_size=200), token_soup, request_soup, mutated(REQUESTS)), cuts=cuts)
def test_the_request_machine_never_raises_and_reads_any_bytes_the_same_in_any_split(data: bytes,
                                                                                   cuts: list[int]) -> None:
    check_request_bytes(data, cuts)


@FUZZ
@given(data=st.one_of(st.binary(max_size=200), response_soup, mutated(RESPONSES)), cuts=cuts,
       method=st.sampled_from([b"GET", b"HEAD", b"POST"]))
def test_the_response_machine_never_raises_and_reads_any_bytes_the_same_in_any_split(data: bytes, cuts: list[int],
                                                                                     method: bytes) -> None:
    check_response_bytes(data, cuts, method)


# What the tokenizer hands over: token names (lower-cased), values without CR, LF, NUL or other controls
# bar HTAB, a target of visible bytes. Within that, anything.
TCHAR = b"!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyz"
VCHAR = bytes([9, *range(0x20, 0x7f), *range(0x80, 0x100)])
names = st.one_of(st.sampled_from([b"host", b"content-length", b"transfer-encoding", b"connection", b"expect",
                                   b"upgrade", b"x_forwarded_for", b"remote_user", b"cookie", b"te", b"trailer"]),
                  st.lists(st.sampled_from(TCHAR), min_size=1, max_size=10).map(bytes))
values = st.one_of(st.sampled_from([b"chunked", b"5", b"close, x", b"upgrade", b"a", b"100-continue", b" 5 ",
                                    b"gzip, chunked", b"chunked, chunked", b"0", b"a:80", b"", b"host"]),
                   st.lists(st.sampled_from(VCHAR), max_size=16).map(bytes))


@settings(max_examples=300, deadline=None)
@given(method=st.one_of(st.sampled_from([b"GET", b"POST", b"CONNECT", b"TRACE", b"HEAD"]),
                        st.lists(st.sampled_from(TCHAR.upper()), min_size=1, max_size=8).map(bytes)),
       target=st.one_of(st.sampled_from([b"/", b"*", b"http://a/x", b"/a?b", b"a:80", b"/%2e%2e/x"]),
                        st.lists(st.sampled_from(bytes(range(0x21, 0x7f))), max_size=30).map(bytes)),
       version=st.sampled_from(["1.1", "1.0", "0.9", "2.0", "1.2"]),
       headers=st.lists(st.tuples(names, values), max_size=6))
def test_the_validation_layer_refuses_or_accepts_a_head_that_serialises_canonically(
        method: bytes, target: bytes, version: str, headers: list[tuple[bytes, bytes]]) -> None:
    check_request_fields(method, target, version, headers)


@settings(max_examples=300, deadline=None)
@given(value=st.one_of(st.binary(max_size=80), token_soup,
                       st.sampled_from([b"http://127.0.0.1:9001/webapps/x", b"/webapps/a; Path=/webapps",
                                        b"a=b; Domain=app1; Path=/webapps/", b"for=1.2.3.4;host=x, for=\"[::1]\"",
                                        b"1.2.3.4, 10.0.0.2"]).flatmap(
                           lambda s: st.integers(0, 2**32).map(lambda n: mutate(random.Random(n), s)))))
def test_the_rewriters_take_any_bytes_without_raising_or_splitting_a_header_line(value: bytes) -> None:
    check_rewriters(value)


@settings(max_examples=300, deadline=None)
@given(path=st.one_of(st.binary(max_size=40),
                      st.lists(st.sampled_from([b"/", b".", b"..", b"%2e", b"%2E", b"%2f", b"%5c", b"a", b";x", b"%41",
                                                b"%25", b"\\", b"//"]), max_size=12).map(lambda p: b"/" + b"".join(p))))
def test_the_path_normaliser_refuses_or_returns_a_normalised_fixed_point(path: bytes) -> None:
    check_path(path)
