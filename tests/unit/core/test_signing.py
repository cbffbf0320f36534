"""Tests for ferryman.core.signing (the Ferryman-Signature header) and the app-side readers of
ferryman.core.forwarded (read_x_forwarded, read_forwarded, vouched_facts).

Sources: RFC 2104 / FIPS 198-1 (HMAC), RFC 7239 sections 4-6 (Forwarded), and ferryman's rule for
the app side (the app reads the signed header when a secret is configured,
otherwise X-Forwarded-*, and Forwarded only when told to; never the two mixed).
"""

from __future__ import annotations

import hashlib
import hmac

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ferryman.core.forwarded import (
    MAX_HOPS,
    ForwardedFacts,
    TrustedProxies,
    build_forwarded,
    read_forwarded,
    read_x_forwarded,
    valid_host,
    valid_prefix,
    vouched_facts,
)
from ferryman.core.signing import (
    MAX_VALUE_LENGTH,
    InvalidSignature,
    NonceCache,
    key_id,
    sign,
    verify,
)

KEY = b"k" * 32
OLD = b"o" * 32
NOW = 1_700_000_000.0
FACTS = ForwardedFacts(client="203.0.113.7", host="www.example.com", scheme="https", port=443,
                       prefix="/public", user="alice", method="POST")
TRUSTED = TrustedProxies.parse(["10.0.0.0/8", "127.0.0.1"])


def signed(facts: ForwardedFacts = FACTS, key: bytes = KEY, now: float = NOW, nonce: bytes = b"n" * 12) -> bytes:
    return sign(key, facts, now=now, nonce=nonce)


# -- sign / verify -----------------------------------------------------------------------------------

def test_a_signed_header_verifies_and_gives_back_every_fact() -> None:
    result = verify(signed(), [KEY], now=NOW, max_skew=30)
    assert result.facts == FACTS
    assert result.timestamp == int(NOW)
    assert result.key_index == 0


def test_the_mac_is_hmac_sha256_over_everything_before_sig() -> None:
    value = signed().decode()
    body, _, sig = value.rpartition(";sig=")
    import base64
    expected = base64.urlsafe_b64encode(hmac.new(KEY, body.encode(), hashlib.sha256).digest()).rstrip(b"=")
    assert sig.encode() == expected


def test_values_with_separators_and_unicode_survive_the_round_trip() -> None:
    odd = ForwardedFacts(client="2001:db8::1", host="[2001:db8::2]:8443", scheme="https", port=8443,
                         prefix="/a;b=c,d", user="jörg;admin=1", method="GET")
    assert verify(signed(odd), [KEY], now=NOW, max_skew=30).facts == odd


def test_no_user_is_signed_as_no_user() -> None:
    anonymous = ForwardedFacts("192.0.2.1", "h", "http", 80, "", None, "GET")
    value = signed(anonymous)
    assert b"user=" not in value
    assert verify(value, [KEY], now=NOW, max_skew=30).facts.user is None


def test_rotation_signs_with_the_first_key_and_verifies_with_either() -> None:
    by_old = signed(key=OLD)
    assert verify(by_old, [KEY, OLD], now=NOW, max_skew=30).key_index == 1
    assert verify(signed(), [KEY, OLD], now=NOW, max_skew=30).key_index == 0


def test_an_unknown_key_is_named_as_such() -> None:
    with pytest.raises(InvalidSignature, match="unknown key"):
        verify(signed(key=b"x" * 32), [KEY, OLD], now=NOW, max_skew=30)


def test_a_key_id_reveals_nothing_but_is_stable() -> None:
    assert key_id(KEY) == key_id(KEY) != key_id(OLD)
    assert len(key_id(KEY)) == 8


@pytest.mark.parametrize("field,forged", [
    (b"for=203.0.113.7", b"for=10.0.0.1"),
    (b"user=alice", b"user=admin"),
    (b"host=www.example.com", b"host=evil.example"),
    (b"proto=https", b"proto=http"),
    (b"port=443", b"port=444"),
    (b"prefix=%2Fpublic", b"prefix=%2Fadmin"),
    (b"method=POST", b"method=GET"),
    (b"ts=1700000000", b"ts=1700000001"),
])
def test_any_changed_value_breaks_the_signature(field: bytes, forged: bytes) -> None:
    value = signed()
    assert field in value
    with pytest.raises(InvalidSignature, match="does not match"):
        verify(value.replace(field, forged), [KEY], now=NOW, max_skew=30)


def test_an_added_user_breaks_the_signature() -> None:
    value = signed(ForwardedFacts("192.0.2.1", "h", "http", 80, "", None, "GET"))
    body, _, sig = value.partition(b";sig=")
    with pytest.raises(InvalidSignature):
        verify(body + b";user=admin;sig=" + sig, [KEY], now=NOW, max_skew=30)


@pytest.mark.parametrize("now,word", [(NOW + 31, "stale"), (NOW - 31, "future")])
def test_a_timestamp_outside_the_skew_window_is_refused(now: float, word: str) -> None:
    with pytest.raises(InvalidSignature, match=word):
        verify(signed(), [KEY], now=now, max_skew=30)


def test_a_timestamp_at_the_edge_of_the_window_is_accepted() -> None:
    assert verify(signed(), [KEY], now=NOW + 30, max_skew=30)


@pytest.mark.parametrize("value", [
    b"", b"garbage", b"v1;sig=abc", b"v2;kid=00;sig=x", b"v1;kid=1;kid=2;sig=x",
    b"v1;bogus=1;sig=x", b"v1;kid;sig=x", b"\xff\xfe;sig=x", b"v1;" + b"a" * MAX_VALUE_LENGTH + b";sig=x",
])
def test_malformed_values_are_refused_with_a_reason(value: bytes) -> None:
    with pytest.raises(InvalidSignature) as info:
        verify(value, [KEY], now=NOW, max_skew=30)
    assert info.value.reason


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_verify_never_raises_anything_but_invalid_signature_on_random_bytes(value: bytes) -> None:
    try:
        verify(value, [KEY], now=NOW, max_skew=30)
    except InvalidSignature:
        pass


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=40), st.text(max_size=40), st.one_of(st.none(), st.text(min_size=1, max_size=40)),
       st.integers(0, 65535))
def test_any_facts_round_trip(host: str, prefix: str, user: str | None, port: int) -> None:
    facts = ForwardedFacts("192.0.2.1", host, "https", port, prefix, user, "GET")
    assert verify(sign(KEY, facts, now=NOW, nonce=b"x" * 12), [KEY], now=NOW, max_skew=5).facts == facts


@settings(max_examples=200, deadline=None)
@given(st.binary(min_size=1, max_size=3))
def test_flipping_bytes_anywhere_never_verifies(junk: bytes) -> None:
    value = bytearray(signed())
    for i, b in enumerate(junk):
        pos = (b * 7 + i * 31) % len(value)
        value[pos] = (value[pos] + 1 + b % 200) % 256 or 1
    if bytes(value) == signed():
        return
    with pytest.raises(InvalidSignature):
        verify(bytes(value), [KEY], now=NOW, max_skew=30)


# -- the replay cache ----------------------------------------------------------------------------

def test_a_replayed_nonce_is_refused() -> None:
    cache = NonceCache(size=10, max_skew=30)
    first = verify(signed(), [KEY], now=NOW, max_skew=30)
    cache.check(first, NOW)
    with pytest.raises(InvalidSignature, match="replayed"):
        cache.check(verify(signed(), [KEY], now=NOW + 1, max_skew=30), NOW + 1)


def test_the_replay_cache_stays_bounded_and_refuses_what_it_forgot() -> None:
    cache = NonceCache(size=3, max_skew=30)
    for i in range(5):
        cache.check(verify(signed(now=NOW + i, nonce=bytes([i]) * 12), [KEY], now=NOW + i, max_skew=30), NOW + i)
    assert len(cache) == 3
    forgotten = verify(signed(now=NOW, nonce=b"\x00" * 12), [KEY], now=NOW + 5, max_skew=30)
    with pytest.raises(InvalidSignature, match="replay cache"):
        cache.check(forgotten, NOW + 5)


def test_expired_nonces_are_dropped_from_the_cache() -> None:
    cache = NonceCache(size=100, max_skew=30)
    cache.check(verify(signed(), [KEY], now=NOW, max_skew=30), NOW)
    fresh = verify(signed(now=NOW + 40, nonce=b"m" * 12), [KEY], now=NOW + 40, max_skew=30)
    cache.check(fresh, NOW + 40)
    assert len(cache) == 1


# -- app-side readers ------------------------------------------------------------------------------

OWN = ForwardedFacts(client="127.0.0.1", host="127.0.0.1:9001", scheme="http", port=9001, prefix="/webapps",
                     method="GET")


def test_x_forwarded_from_a_trusted_peer_gives_the_public_facts() -> None:
    headers = {b"x-forwarded-for": b"203.0.113.7", b"x-forwarded-host": b"www.example.com",
               b"x-forwarded-proto": b"https", b"x-forwarded-port": b"443", b"x-forwarded-prefix": b"/public",
               b"remote-user": "jörg".encode()}
    facts = read_x_forwarded(headers, OWN, TRUSTED)
    assert facts == ForwardedFacts("203.0.113.7", "www.example.com", "https", 443, "/public", "jörg", "GET")


def test_nothing_is_believed_from_an_untrusted_peer() -> None:
    headers = {b"x-forwarded-for": b"1.2.3.4", b"remote-user": b"admin"}
    assert read_x_forwarded(headers, OWN.__class__("192.0.2.9", "", "http", 80, ""), TRUSTED) is None
    assert read_forwarded(b"for=1.2.3.4", b"admin", ForwardedFacts("192.0.2.9", "", "http", 80, ""), TRUSTED) is None


def test_the_client_is_the_right_most_untrusted_address_of_a_forged_chain() -> None:
    facts = read_x_forwarded({b"x-forwarded-for": b"6.6.6.6, 203.0.113.7, 10.1.2.3"}, OWN, TRUSTED)
    assert facts is not None and facts.client == "203.0.113.7"


@pytest.mark.parametrize("chain", [b"unknown", b"not-an-ip", b"", b" , ", b"999.1.1.1", b"1.2.3.4:x",
                                   b"[::1", b"\xff\xfe"])
def test_a_garbage_entry_stops_the_walk_at_the_last_verified_hop(chain: bytes) -> None:
    facts = read_x_forwarded({b"x-forwarded-for": chain + b", 10.0.0.5"}, OWN, TRUSTED)
    assert facts is not None and facts.client == "10.0.0.5"


def test_hundreds_of_hops_cost_only_max_hops() -> None:
    chain = b", ".join([b"10.0.0.1"] * 100_000)
    facts = read_x_forwarded({b"x-forwarded-for": b"6.6.6.6, " + chain}, OWN, TRUSTED)
    assert facts is not None and facts.client == "10.0.0.1"  # the walk stopped after MAX_HOPS trusted hops
    assert MAX_HOPS == 64


@pytest.mark.parametrize("header,value", [
    (b"x-forwarded-host", b"evil.example/path"), (b"x-forwarded-host", b"a b"), (b"x-forwarded-host", b"x:99999"),
    (b"x-forwarded-proto", b"gopher"), (b"x-forwarded-port", b"70000"), (b"x-forwarded-port", b"12a"),
    (b"x-forwarded-prefix", b"//evil.example"), (b"x-forwarded-prefix", b"/a/../admin"),
    (b"x-forwarded-prefix", b"relative"), (b"x-forwarded-prefix", b"/a b"), (b"remote-user", b"\xff\xfe"),
    (b"remote-user", b"a\x01b"),
])
def test_malformed_forwarded_values_are_ignored_not_believed(header: bytes, value: bytes) -> None:
    facts = read_x_forwarded({header: value}, OWN, TRUSTED)
    assert facts is not None
    assert facts.host == OWN.host and facts.scheme == OWN.scheme and facts.prefix == OWN.prefix
    assert facts.port == OWN.port and facts.user is None


def test_a_missing_port_follows_the_forwarded_host_then_the_scheme() -> None:
    with_port = read_x_forwarded({b"x-forwarded-host": b"www.example.com:8443"}, OWN, TRUSTED)
    by_scheme = read_x_forwarded({b"x-forwarded-proto": b"https"}, OWN, TRUSTED)
    assert with_port is not None and with_port.port == 8443
    assert by_scheme is not None and by_scheme.port == 443


def test_rfc7239_forwarded_takes_host_and_proto_from_the_element_naming_the_client() -> None:
    value = b'for=6.6.6.6;host=evil;proto=http, for=203.0.113.7;host=www.example.com;proto=https, for=10.0.0.2'
    facts = read_forwarded(value, b"alice", OWN, TRUSTED)
    assert facts is not None
    assert (facts.client, facts.host, facts.scheme, facts.port, facts.user) == (
        "203.0.113.7", "www.example.com", "https", 443, "alice")


def test_rfc7239_forwarded_host_comes_from_the_first_proxy_the_client_reached() -> None:
    # ferryman (10.0.0.2) received from the client 203.0.113.7 and wrote the second element
    value = b'for=6.6.6.6;host=evil;proto=http, for=203.0.113.7;host=www.example.com;proto=https'
    facts = read_forwarded(value, None, OWN, TRUSTED)
    assert facts is not None
    assert (facts.client, facts.host, facts.scheme, facts.port) == ("203.0.113.7", "www.example.com", "https", 443)
    assert facts.prefix == OWN.prefix  # Forwarded has no prefix: the app server's own stays


def test_a_malformed_forwarded_header_is_believed_not_at_all() -> None:
    facts = read_forwarded(b'for=203.0.113.7;host="unterminated', None, OWN, TRUSTED)
    assert facts is not None and (facts.client, facts.host) == (OWN.client, OWN.host)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.sampled_from([b"x-forwarded-for", b"x-forwarded-host", b"x-forwarded-proto",
                                        b"x-forwarded-port", b"x-forwarded-prefix", b"remote-user"]),
                       st.binary(max_size=80)))
def test_read_x_forwarded_never_raises_and_only_yields_well_formed_facts(headers: dict[bytes, bytes]) -> None:
    facts = read_x_forwarded(headers, OWN, TRUSTED)
    assert facts is not None
    assert facts.scheme in ("http", "https")
    assert 0 <= facts.port <= 65535
    assert facts.host == OWN.host or valid_host(facts.host) == facts.host
    # the root prefix is "" (an empty SCRIPT_NAME), which valid_prefix returns for "/"
    assert facts.prefix == OWN.prefix or valid_prefix(facts.prefix or "/") == facts.prefix


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_read_forwarded_never_raises(value: bytes) -> None:
    facts = read_forwarded(value, None, OWN, TRUSTED)
    assert facts is not None and facts.scheme in ("http", "https")


# -- front end: what ferryman signs is what an app would conclude ---------------------------------------

@pytest.mark.parametrize("peer,trusted,incoming,expected_client,expected_host", [
    ("203.0.113.7", False, {b"x-forwarded-for": b"1.1.1.1", b"x-forwarded-host": b"evil"}, "203.0.113.7",
     "www.example.com:8443"),
    ("10.0.0.9", True, {b"x-forwarded-for": b"198.51.100.4, 10.0.0.3", b"x-forwarded-host": b"pub.example"},
     "198.51.100.4", "pub.example"),
    ("::ffff:203.0.113.7", False, {}, "203.0.113.7", "www.example.com:8443"),
])
def test_vouched_facts_match_the_lines_ferryman_writes(peer: str, trusted: bool, incoming: dict[bytes, bytes],
                                                       expected_client: str, expected_host: str) -> None:
    proxies = TrustedProxies.parse(["10.0.0.0/8"])
    lines = build_forwarded(peer_ip=peer, trusted=trusted, incoming=incoming, host=b"www.example.com:8443",
                            scheme=b"https", port=8443, server_name=b"", prefix=b"/public", rfc7239=False)
    facts = vouched_facts(lines, peer_ip=peer, trusted=proxies, scheme=b"https", port=8443, user="bob",
                          method=b"GET")
    assert (facts.client, facts.host) == (expected_client, expected_host)
    assert (facts.scheme, facts.prefix, facts.user, facts.method) == ("https", "/public", "bob", "GET")
    app_side = read_x_forwarded(dict(lines), ForwardedFacts(client="127.0.0.1", host="m", scheme="http",
                                                            port=1, prefix=""),
                                TrustedProxies.parse(["10.0.0.0/8", "127.0.0.1"]))
    assert app_side is not None and (app_side.client, app_side.host, app_side.port) == (
        facts.client, facts.host, facts.port)


@pytest.mark.parametrize("port", [b"\xb9", b"\xb2\xb3", "٣".encode()])
def test_a_port_of_non_ascii_digits_is_ignored(port: bytes) -> None:
    facts = read_x_forwarded({b"x-forwarded-port": port}, OWN, TRUSTED)
    assert facts is not None and facts.port == OWN.port


def test_a_validly_signed_but_badly_encoded_value_is_refused_not_raised() -> None:
    import base64
    body = "v1;kid=%s;ts=%d;nonce=x;for=%%FF;host=h;proto=http;port=80;prefix=;method=GET" % (key_id(KEY), NOW)
    sig = base64.urlsafe_b64encode(hmac.new(KEY, body.encode(), hashlib.sha256).digest()).rstrip(b"=").decode()
    with pytest.raises(InvalidSignature, match="percent-encoding"):
        verify((body + ";sig=" + sig).encode(), [KEY], now=NOW, max_skew=30)
