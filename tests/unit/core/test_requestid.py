"""Request ids: a trusted peer's id is kept only when it is a bounded token; otherwise one is made."""

from __future__ import annotations

import re

from hypothesis import given
from hypothesis import strategies as st

from ferryman.core.requestid import MAX_LENGTH, RequestIds, is_valid_request_id

MADE = re.compile(rb"[0-9a-f]{16}-[0-9a-f]+")


def test_made_ids_carry_the_random_prefix_and_a_counter_and_never_repeat():
    ids = RequestIds(bytes(range(8)))
    made = [ids.make() for _ in range(1000)]
    assert made[0] == b"0001020304050607-1" and made[15] == b"0001020304050607-10"
    assert len(set(made)) == 1000 and all(MADE.fullmatch(i) for i in made)


def test_two_processes_with_different_random_bytes_make_different_ids():
    assert RequestIds(b"a" * 8).make() != RequestIds(b"b" * 8).make()


def test_a_valid_trusted_id_is_kept_as_it_is():
    ids = RequestIds(b"\0" * 8)
    for good in (b"f47ac10b-58cc-4372-a567-0e02b2c3d479", b"Root=1-67891233-abcdef012345678912345678",
                 b"abc+/=", b"edge.1:2@x~y_z", b"a" * MAX_LENGTH):
        assert ids.for_request(good) == good


def test_an_untrusted_or_absent_id_is_replaced_by_a_made_one():
    ids = RequestIds(b"\0" * 8)
    assert MADE.fullmatch(ids.for_request(None))


def test_ids_with_spaces_quotes_commas_controls_or_too_long_are_replaced():
    ids = RequestIds(b"\0" * 8)
    for bad in (b"", b"a b", b'a"b', b"a,b", b"a\tb", b"a\r\nb", b"a" * (MAX_LENGTH + 1), b"caf\xc3\xa9", b"a;b"):
        assert not is_valid_request_id(bad)
        assert MADE.fullmatch(ids.for_request(bad))


@given(st.binary(max_size=200))
def test_whatever_arrives_the_id_used_is_a_safe_bounded_token(value):
    used = RequestIds(b"\1" * 8).for_request(value)
    assert 1 <= len(used) <= MAX_LENGTH and re.fullmatch(rb"[A-Za-z0-9._~:@+/=-]+", used)
    assert (used == value) == is_valid_request_id(value)
