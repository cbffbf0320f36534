"""Tests for ferryman.core.forwarded: vouched names, trusted proxies, the headers ferryman writes,
and the app-side readers.

Sources cited in the tables:
  ferryman's forwarded-header rules, as the module docstring of ferryman.core.forwarded and
  docs/configuration.md (trusted_proxies, forwarded, auth) state them (CL), invariant 4 of
  docs/request-safety.md (PS4), Apache mod_proxy's X-Forwarded-* as observed on Apache 2.4 (AS),
  docs/configuration.md `listener[].forwarded` and `trusted_proxies` (CC),
  RFC 7239 sections 4-7 (the ``Forwarded`` header), RFC 9110 section 5.5 (field values).
"""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from ferryman.core.forwarded import (
    VOUCHED,
    TrustedProxies,
    build_forwarded,
    canonical_name,
    client_address,
    is_vouched,
    parse_forwarded,
    strip_vouched,
)

TRUSTED = TrustedProxies.parse(["10.0.0.0/8", "127.0.0.1", "::1", "2001:db8:f::/48"])


def build(**overrides: object) -> dict[bytes, bytes]:
    """build_forwarded with the classic deployment's HTTPS listener as defaults, as a dict for easy asserts."""
    args: dict[str, object] = dict(
        peer_ip="203.0.113.7",
        trusted=False,
        incoming={},
        host=b"www.example.com:8443",
        scheme=b"https",
        port=8443,
        server_name=b"front.example.com",
        prefix=b"/public",
        rfc7239=False,
    )
    args.update(overrides)
    lines = build_forwarded(**args)  # type: ignore[arg-type]
    names = [n for n, _ in lines]
    assert len(names) == len(set(names)), f"a header written twice: {names}"
    return dict(lines)


# -- names ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "canonical"),
    [
        (b"Remote_User", b"remote-user"),  # PS4: Remote_User is REMOTE_USER to WSGI
        (b"REMOTE-USER", b"remote-user"),
        (b"X_Forwarded_For", b"x-forwarded-for"),  # PS4
        (b"x-forwarded_host", b"x-forwarded-host"),
        (b"accept", b"accept"),
        (b"", b""),
    ],
)
def test_canonical_name_is_the_wsgi_spelling_in_lower_case_with_dashes(name: bytes, canonical: bytes) -> None:
    assert canonical_name(name) == canonical


@pytest.mark.parametrize(
    "name",
    [
        # CL: X-Forwarded-*, Forwarded, X-Real-IP, Remote-User and every _/case alias
        b"x-forwarded-for", b"x-forwarded-host", b"x-forwarded-proto", b"x-forwarded-port",
        b"x-forwarded-server", b"x-forwarded-prefix", b"forwarded", b"x-real-ip", b"remote-user",
        b"remote_user", b"Remote_User", b"X_Forwarded_For", b"x_forwarded-proto",
        # CL: X-Forwarded-* is a family, not a list
        b"x-forwarded-anything-new", b"x-forwarded-client-cert", b"x_forwarded_ssl",
        # VOUCHED docstring: headers apps read for the same facts
        b"x-forwarded-ssl", b"x-forwarded-scheme", b"front-end-https", b"x-url-scheme",
        b"true-client-ip", b"cf-connecting-ip", b"x-client-ip", b"client-ip", b"x-original-url",
    ],
)
def test_every_spelling_of_a_vouched_header_is_vouched(name: bytes) -> None:
    assert is_vouched(name)


@pytest.mark.parametrize(
    "name",
    [b"accept", b"host", b"cookie", b"authorization", b"via", b"x-forwardedfor", b"user-agent", b"x-request-id"],
)
def test_ordinary_headers_are_not_vouched(name: bytes) -> None:
    assert not is_vouched(name)


def test_extra_names_such_as_an_sso_trusted_header_are_vouched_in_every_spelling() -> None:
    # CL: auth = { trusted_header = "X-Auth-User" }, honoured only from trusted proxies
    extra = frozenset({b"x-auth-user"})
    assert is_vouched(b"x-auth-user", extra)
    assert is_vouched(b"X_Auth_User", extra)
    assert not is_vouched(b"x-auth-user")


def test_every_name_in_vouched_is_canonical() -> None:
    assert all(canonical_name(n) == n for n in VOUCHED)


_ALIAS_SOURCE = sorted(VOUCHED | {b"x-forwarded-whatever"})


@st.composite
def alias_spellings(draw: st.DrawFn) -> bytes:
    """A vouched name in random case with each '-' randomly written as '_' (PS4)."""
    name = draw(st.sampled_from(_ALIAS_SOURCE))
    out = bytearray()
    for byte in name:
        if byte == 0x2D:
            out.append(draw(st.sampled_from(b"-_")))
        else:
            ch = bytes([byte])
            out += draw(st.sampled_from([ch.lower(), ch.upper()]))
    return bytes(out)


@given(alias_spellings())
def test_any_case_and_underscore_mix_of_a_vouched_name_is_vouched(name: bytes) -> None:
    assert is_vouched(name)
    assert is_vouched(name.lower())


def test_strip_vouched_removes_every_alias_and_collects_only_canonical_spellings() -> None:
    # PS4: delete client copies first, including _/- aliases
    headers = [
        (b"host", b"www.example.com"),
        (b"x-forwarded-for", b"1.2.3.4"),
        (b"remote_user", b"admin"),
        (b"x_forwarded_for", b"6.6.6.6"),
        (b"accept", b"*/*"),
        (b"x-forwarded-for", b"5.6.7.8"),
        (b"x-real-ip", b"9.9.9.9"),
    ]
    kept, incoming = strip_vouched(headers)
    assert kept == [(b"host", b"www.example.com"), (b"accept", b"*/*")]
    assert incoming == {b"x-forwarded-for": b"1.2.3.4, 5.6.7.8", b"x-real-ip": b"9.9.9.9"}


# -- trusted proxies -----------------------------------------------------------------------------


def test_an_empty_trusted_set_trusts_nobody() -> None:
    # CL: Empty by default: nobody is trusted.
    nobody = TrustedProxies()
    assert not nobody
    for ip in ["127.0.0.1", "::1", "10.0.0.1", "", "garbage"]:
        assert ip not in nobody


@pytest.mark.parametrize(
    ("ip", "expected"),
    [
        ("10.1.2.3", True),  # CL example: "10.0.0.0/8"
        ("127.0.0.1", True),
        ("127.0.0.2", False),
        ("::1", True),
        ("::ffff:10.9.9.9", True),  # what a dual-stack socket reports for an IPv4 peer
        ("2001:db8:f:1::1", True),
        ("2001:db8:e::1", False),
        ("203.0.113.7", False),
        ("not an ip", False),
        ("10.1.2.3 ", False),
        ("", False),
    ],
)
def test_trusted_proxies_match_addresses_and_networks(ip: str, expected: bool) -> None:
    assert (ip in TRUSTED) is expected
    assert (ip in TRUSTED) is expected  # the cached answer is the same


def test_trusted_proxies_cache_stays_bounded() -> None:
    proxies = TrustedProxies.parse(["10.0.0.0/8"])
    for i in range(TrustedProxies.CACHE_SIZE * 2 + 3):
        assert str(ipaddress.IPv4Address(0x0A000000 + i)) in proxies
    assert len(proxies._cache) <= TrustedProxies.CACHE_SIZE


def test_trusted_proxies_refuse_malformed_config_values() -> None:
    with pytest.raises(ValueError):
        TrustedProxies.parse(["10.0.0.1/8"])  # host bits set
    with pytest.raises(ValueError):
        TrustedProxies.parse(["proxy.example.com"])


# -- build_forwarded: untrusted ------------------------------------------------------------------


def test_an_untrusted_peer_gets_exactly_ferrymans_own_values() -> None:
    # CL: from a peer that is not trusted every client copy is removed, then ferryman writes its own;
    # AS: X-Forwarded-Host is the client Host with port; CC: -Proto/-Port/-Server, -Prefix for the app.
    lines = build_forwarded(
        peer_ip="203.0.113.7",
        trusted=False,
        incoming={b"x-forwarded-for": b"6.6.6.6", b"x-forwarded-proto": b"http", b"forwarded": b"for=6.6.6.6"},
        host=b"www.example.com:8443",
        scheme=b"https",
        port=8443,
        server_name=b"front.example.com",
        prefix=b"/public",
        rfc7239=True,
    )
    assert lines == [
        (b"x-forwarded-for", b"203.0.113.7"),
        (b"x-forwarded-host", b"www.example.com:8443"),
        (b"x-forwarded-proto", b"https"),
        (b"x-forwarded-port", b"8443"),
        (b"x-forwarded-server", b"front.example.com"),
        (b"x-forwarded-prefix", b"/public"),
        (b"forwarded", b'for=203.0.113.7;host="www.example.com:8443";proto=https'),
    ]


@pytest.mark.parametrize(
    ("peer_ip", "xff", "forwarded_for"),
    [
        ("::1", b"::1", b'"[::1]"'),  # RFC 7239 section 6: IPv6 in brackets, quoted; XFF plain
        ("2001:db8:cafe::17", b"2001:db8:cafe::17", b'"[2001:db8:cafe::17]"'),  # RFC 7239 section 4
        ("192.0.2.60", b"192.0.2.60", b"192.0.2.60"),  # RFC 7239 section 4
        ("::ffff:192.0.2.60", b"192.0.2.60", b"192.0.2.60"),  # dual-stack socket: unmapped
        ("fe80::1%eth0", b"fe80::1", b'"[fe80::1]"'),  # zone ids are local to this host
        ("", b"unknown", b"unknown"),  # RFC 7239 section 6.2
        ("1.2.3.4\r\nx: y", b"unknown", b"unknown"),  # never trust a value into a header
    ],
)
def test_peer_addresses_are_written_plain_in_xff_and_as_rfc7239_nodes(
    peer_ip: str, xff: bytes, forwarded_for: bytes
) -> None:
    out = build(peer_ip=peer_ip, rfc7239=True)
    assert out[b"x-forwarded-for"] == xff
    assert out[b"forwarded"].startswith(b"for=" + forwarded_for + b";")


def test_without_a_host_header_x_forwarded_host_is_left_out() -> None:
    # AS: HTTP/1.0 without Host is served, with no X-Forwarded-Host
    out = build(host=None, rfc7239=True)
    assert b"x-forwarded-host" not in out
    assert out[b"forwarded"] == b"for=203.0.113.7;proto=https"


@pytest.mark.parametrize(
    ("prefix", "expected"),
    [
        (b"/public", b"/public"),
        (b"/public/", b"/public"),
        (b"/a/b", b"/a/b"),
        (b"", None),  # root: left out (Werkzeug ProxyFix would make SCRIPT_NAME "/", hence "//x" URLs)
        (b"/", None),
    ],
)
def test_x_forwarded_prefix_is_the_public_prefix_and_absent_for_root(prefix: bytes, expected: bytes | None) -> None:
    assert build(prefix=prefix).get(b"x-forwarded-prefix") == expected


def test_an_empty_server_name_leaves_x_forwarded_server_out() -> None:
    assert b"x-forwarded-server" not in build(server_name=b"")


def test_forwarded_is_written_only_when_enabled() -> None:
    # CL: it writes Forwarded (RFC 7239) only when enabled
    assert b"forwarded" not in build(rfc7239=False)
    assert b"forwarded" not in build(trusted=True, incoming={b"forwarded": b"for=1.2.3.4"}, rfc7239=False)


# -- build_forwarded: trusted --------------------------------------------------------------------


def test_a_trusted_peer_keeps_the_chain_and_appends_itself() -> None:
    # CL: the incoming X-Forwarded-For chain (and Forwarded, when enabled) is kept and the peer's
    # address appended
    out = build(
        peer_ip="10.0.0.2",
        trusted=True,
        incoming={b"x-forwarded-for": b"198.51.100.17, 10.0.0.9", b"forwarded": b"for=198.51.100.17, for=10.0.0.9"},
        rfc7239=True,
    )
    assert out[b"x-forwarded-for"] == b"198.51.100.17, 10.0.0.9, 10.0.0.2"
    assert out[b"forwarded"] == (
        b'for=198.51.100.17, for=10.0.0.9, for=10.0.0.2;host="www.example.com:8443";proto=https'
    )


def test_a_trusted_peer_keeps_host_proto_port_and_prefix() -> None:
    # CL: incoming X-Forwarded-Host/-Proto/-Port/-Prefix are kept and only filled in where missing
    incoming = {
        b"x-forwarded-host": b"shop.example.com",
        b"x-forwarded-proto": b"https",
        b"x-forwarded-port": b"443",
        b"x-forwarded-prefix": b"/outer",
    }
    out = build(peer_ip="10.0.0.2", trusted=True, incoming=incoming, scheme=b"http", port=8080)
    assert out[b"x-forwarded-host"] == b"shop.example.com"
    assert out[b"x-forwarded-proto"] == b"https"
    assert out[b"x-forwarded-port"] == b"443"
    assert out[b"x-forwarded-prefix"] == b"/outer"
    assert out[b"x-forwarded-for"] == b"10.0.0.2"  # no incoming chain: the peer alone


@pytest.mark.parametrize(
    ("incoming", "expected_port"),
    [
        # a TLS-terminating balancer that says https but not the port: its default, not our 8080
        ({b"x-forwarded-proto": b"https"}, b"443"),
        ({b"x-forwarded-proto": b"http"}, b"80"),
        ({b"x-forwarded-host": b"shop.example.com:8443"}, b"8443"),
        ({b"x-forwarded-host": b"[2001:db8::1]:9443", b"x-forwarded-proto": b"https"}, b"9443"),
        ({b"x-forwarded-host": b"shop.example.com"}, b"80"),  # our scheme is http here
        ({b"x-forwarded-for": b"198.51.100.17"}, b"8080"),  # nothing said about host/proto: ours
    ],
)
def test_a_missing_port_from_a_trusted_peer_is_derived_from_its_host_and_proto(
    incoming: dict[bytes, bytes], expected_port: bytes
) -> None:
    out = build(peer_ip="10.0.0.2", trusted=True, incoming=incoming, host=b"www.example.com", scheme=b"http", port=8080)
    assert out[b"x-forwarded-port"] == expected_port


def test_a_trusted_peer_missing_values_are_filled_with_ferrymans_own() -> None:
    out = build(peer_ip="10.0.0.2", trusted=True, incoming={b"x-forwarded-for": b"198.51.100.17"})
    assert out[b"x-forwarded-host"] == b"www.example.com:8443"
    assert out[b"x-forwarded-proto"] == b"https"
    assert out[b"x-forwarded-port"] == b"8443"
    assert out[b"x-forwarded-prefix"] == b"/public"
    assert out[b"x-forwarded-server"] == b"front.example.com"


def test_identity_and_other_vouched_values_never_pass_even_from_a_trusted_peer() -> None:
    # CL: Remote-User is never taken from any client, trusted or not
    incoming = {
        b"remote-user": b"admin",
        b"x-real-ip": b"1.1.1.1",
        b"x-forwarded-ssl": b"on",
        b"x-forwarded-server": b"evil",
    }
    out = build(peer_ip="10.0.0.2", trusted=True, incoming=incoming)
    assert b"remote-user" not in out and b"x-real-ip" not in out and b"x-forwarded-ssl" not in out
    assert out[b"x-forwarded-server"] == b"front.example.com"


def test_incoming_values_from_an_untrusted_peer_are_ignored_entirely() -> None:
    incoming = {b"x-forwarded-for": b"6.6.6.6", b"x-forwarded-host": b"evil", b"x-forwarded-prefix": b"/evil"}
    out = build(incoming=incoming)
    assert out[b"x-forwarded-for"] == b"203.0.113.7"
    assert out[b"x-forwarded-host"] == b"www.example.com:8443"
    assert out[b"x-forwarded-prefix"] == b"/public"


@pytest.mark.parametrize(
    "bad",
    [b"1.2.3.4\r\nx-injected: 1", b"1.2.3.4\x00", b"  ", b"a\nb", b""],
)
def test_unsafe_or_empty_incoming_values_count_as_missing(bad: bytes) -> None:
    incoming = {b"x-forwarded-for": bad, b"x-forwarded-host": bad, b"x-forwarded-proto": bad, b"forwarded": bad}
    out = build(peer_ip="10.0.0.2", trusted=True, incoming=incoming, rfc7239=True)
    assert out[b"x-forwarded-for"] == b"10.0.0.2"
    assert out[b"x-forwarded-host"] == b"www.example.com:8443"
    assert out[b"x-forwarded-proto"] == b"https"
    assert out[b"forwarded"] == b'for=10.0.0.2;host="www.example.com:8443";proto=https'


def test_a_trusted_forwarded_that_does_not_parse_is_replaced_by_ours() -> None:
    out = build(peer_ip="10.0.0.2", trusted=True, incoming={b"forwarded": b"for=1.2.3.4:80"}, rfc7239=True)
    assert out[b"forwarded"] == b'for=10.0.0.2;host="www.example.com:8443";proto=https'


@pytest.mark.parametrize(
    ("host", "param"),
    [
        (b"www.example.com", b"host=www.example.com"),  # a token stays bare (RFC 7239 section 4)
        (b"www.example.com:8443", b'host="www.example.com:8443"'),  # ":" is not a tchar
        (b"[::1]:8080", b'host="[::1]:8080"'),
        (b'we"ird\\host', b'host="we\\"ird\\\\host"'),  # RFC 9110 5.6.4 quoted-pair
    ],
)
def test_forwarded_host_is_a_token_or_a_quoted_string(host: bytes, param: bytes) -> None:
    assert param in build(host=host, rfc7239=True)[b"forwarded"]


def test_a_host_with_control_bytes_is_never_passed() -> None:
    out = build(host=b"www.example.com\r\nx-evil: 1", rfc7239=True)
    assert b"x-forwarded-host" not in out
    assert b"host=" not in out[b"forwarded"]


_BYTES = st.binary(max_size=40)
_UNSAFE = set(range(0x00, 0x09)) | set(range(0x0A, 0x20)) | {0x7F}


@settings(deadline=None, max_examples=300)
@given(
    peer_ip=st.one_of(st.ip_addresses().map(str), st.text(max_size=20)),
    trusted=st.booleans(),
    incoming=st.dictionaries(st.sampled_from(sorted(VOUCHED)), _BYTES, max_size=8),
    host=st.one_of(st.none(), _BYTES),
    scheme=st.sampled_from([b"http", b"https", b"ht\r\ntp"]),
    port=st.integers(min_value=1, max_value=65535),
    server_name=_BYTES,
    prefix=_BYTES,
    rfc7239=st.booleans(),
)
def test_built_values_never_contain_control_bytes(**kwargs: object) -> None:
    # RFC 9110 5.5: a field value never contains CR, LF or NUL (nor, as we write them, other CTLs)
    for name, value in build_forwarded(**kwargs):  # type: ignore[arg-type]
        assert value, name
        assert not (set(value) & _UNSAFE), (name, value)


@settings(deadline=None, max_examples=300)
@given(
    peer=st.ip_addresses(),
    host=st.one_of(st.none(), st.binary(min_size=1, max_size=30).filter(lambda b: not set(b) & _UNSAFE)),
    scheme=st.sampled_from([b"http", b"https"]),
    earlier=st.lists(st.ip_addresses(), max_size=3),
    trusted=st.booleans(),
)
def test_forwarded_round_trips_through_parse_forwarded(
    peer: ipaddress.IPv4Address | ipaddress.IPv6Address,
    host: bytes | None,
    scheme: bytes,
    earlier: list[ipaddress.IPv4Address | ipaddress.IPv6Address],
    trusted: bool,
) -> None:
    # RFC 7239 section 4: what we write, a reader parses back element by element
    assume(host is None or host.strip(b" \t") == host)
    before = b", ".join(
        b'for="[%s]"' % str(a).encode() if a.version == 6 else b"for=%s" % str(a).encode() for a in earlier
    )
    incoming = {b"forwarded": before} if before else {}
    mapped = peer.ipv4_mapped if isinstance(peer, ipaddress.IPv6Address) else None
    peer_ip = f"::ffff:{mapped}" if mapped else str(peer)  # the socket writes mapped addresses dotted
    out = build(peer_ip=peer_ip, host=host, scheme=scheme, trusted=trusted, incoming=incoming, rfc7239=True)
    elements = parse_forwarded(out[b"forwarded"])
    assert elements, out[b"forwarded"]
    last = elements[-1]
    node = str(mapped) if mapped else str(peer)
    assert last["for"] == (f"[{node}]" if ":" in node else node)
    assert last["proto"] == scheme.decode()
    assert last.get("host") == (host.decode("latin-1") if host is not None else None)
    assert len(elements) == (len(earlier) + 1 if trusted else 1)


# -- app side: client_address --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("chain", "peer", "expected"),
    [
        # Walk right to left over trusted hops (as Apache mod_remoteip and nginx real_ip_recursive do), unlike
        # uvicorn's last-hop rule
        (b"198.51.100.17", "10.0.0.1", "198.51.100.17"),
        (b"198.51.100.17, 10.0.0.9", "10.0.0.1", "198.51.100.17"),
        (b"6.6.6.6, 198.51.100.17, 10.0.0.9", "10.0.0.1", "198.51.100.17"),  # spoofed head ignored
        (b"198.51.100.17", "203.0.113.7", "203.0.113.7"),  # untrusted peer: its chain means nothing
        (b"", "10.0.0.1", "10.0.0.1"),
        (b"10.0.0.8, 10.0.0.9", "10.0.0.1", "10.0.0.8"),  # all trusted: the furthest verified hop
        (b"198.51.100.17, unknown, 10.0.0.9", "10.0.0.1", "10.0.0.9"),  # malformed stops the walk
        (b"198.51.100.17, _hidden", "10.0.0.1", "10.0.0.1"),  # RFC 7239 obfuscated id: not an address
        (b"198.51.100.17,, 10.0.0.9", "10.0.0.1", "10.0.0.9"),  # empty item
        (b"198.51.100.17:4711, 10.0.0.9", "10.0.0.1", "198.51.100.17"),  # port appended by some LBs
        (b"[2001:db8::17]:4711", "::1", "2001:db8::17"),
        (b"2001:DB8::17", "::1", "2001:db8::17"),  # canonical text form
        (b"::ffff:198.51.100.17", "127.0.0.1", "198.51.100.17"),
        (b"198.51.100.17, ::ffff:10.0.0.9", "10.0.0.1", "198.51.100.17"),
        (b"198.51.100.17 , 10.0.0.9 ", "10.0.0.1", "198.51.100.17"),
        (b"300.1.1.1, 10.0.0.9", "10.0.0.1", "10.0.0.9"),
    ],
)
def test_client_address_walks_the_chain_right_to_left_over_trusted_hops(
    chain: bytes, peer: str, expected: str
) -> None:
    assert client_address(chain, peer, TRUSTED) == expected


def test_client_address_with_nobody_trusted_is_the_peer() -> None:
    assert client_address(b"198.51.100.17", "127.0.0.1", TrustedProxies()) == "127.0.0.1"


_TRUSTED_HOPS = st.sampled_from(["10.0.0.1", "10.200.3.4", "127.0.0.1", "::1", "2001:db8:f::9"])
_OTHER_HOPS = st.sampled_from(["198.51.100.17", "203.0.113.7", "2001:db8:e::1", "192.0.2.60", "11.0.0.1"])


@given(hops=st.lists(st.one_of(_TRUSTED_HOPS, _OTHER_HOPS), max_size=8), peer=st.one_of(_TRUSTED_HOPS, _OTHER_HOPS))
def test_the_walk_never_returns_a_trusted_address_when_an_untrusted_one_exists(hops: list[str], peer: str) -> None:
    chain = ", ".join(hops).encode()
    result = client_address(chain, peer, TRUSTED)
    everyone = hops + [peer]
    if any(h not in TRUSTED for h in everyone):
        assert result not in TRUSTED
        # and it is the rightmost untrusted one: everything to its right is a trusted proxy
        rightmost = next(h for h in reversed(everyone) if h not in TRUSTED)
        assert result == rightmost
    else:
        assert result == everyone[0]


@given(
    hops=st.lists(st.one_of(_TRUSTED_HOPS, _OTHER_HOPS, st.sampled_from(["unknown", "_x", "", "garbage"])), max_size=8),
)
def test_the_walk_never_believes_anything_left_of_a_malformed_entry(hops: list[str]) -> None:
    chain = ", ".join(hops).encode()
    result = client_address(chain, "10.0.0.1", TRUSTED)
    bad = [i for i, h in enumerate(hops) if h in ("unknown", "_x", "", "garbage")]
    if bad:
        believable = hops[bad[-1] + 1 :] + ["10.0.0.1"]
        assert result in believable


# -- app side: parse_forwarded -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (b'for="_gazonk"', [{"for": "_gazonk"}]),  # RFC 7239 section 4
        (b'For="[2001:db8:cafe::17]:4711"', [{"for": "[2001:db8:cafe::17]:4711"}]),  # section 4
        (
            b"for=192.0.2.60;proto=http;by=203.0.113.43",  # section 4
            [{"for": "192.0.2.60", "proto": "http", "by": "203.0.113.43"}],
        ),
        (b"for=192.0.2.43, for=198.51.100.17", [{"for": "192.0.2.43"}, {"for": "198.51.100.17"}]),  # s. 4
        (
            b'for=192.0.2.43,for="[2001:db8:cafe::17]",for=unknown',  # section 7.1
            [{"for": "192.0.2.43"}, {"for": "[2001:db8:cafe::17]"}, {"for": "unknown"}],
        ),
        (b"for=_hidden, for=_SEVKISEK", [{"for": "_hidden"}, {"for": "_SEVKISEK"}]),  # section 6.3
        (b'for="192.0.2.43:47011"', [{"for": "192.0.2.43:47011"}]),  # section 6.1 node-port
        (b'host="a;b,c";proto=https', [{"host": "a;b,c", "proto": "https"}]),  # quoted ; and ,
        (b'host="we\\"ird"', [{"host": 'we"ird'}]),  # quoted-pair
        (b"for=192.0.2.43 ; proto=https ,  for=198.51.100.17", [{"for": "192.0.2.43", "proto": "https"}, {"for": "198.51.100.17"}]),
        (b"for=192.0.2.43,,", [{"for": "192.0.2.43"}]),  # RFC 9110 5.6.1: empty list items
        (b"ext=1;for=192.0.2.43", [{"ext": "1", "for": "192.0.2.43"}]),  # extensions, section 5.5
        (b"", []),
    ],
)
def test_parse_forwarded_reads_rfc7239_examples(value: bytes, expected: list[dict[str, str]]) -> None:
    assert parse_forwarded(value) == expected


@pytest.mark.parametrize(
    "value",
    [
        b"for=192.0.2.43:47011",  # section 6: a port makes the node a non-token; must be quoted
        b"for=::1",
        b'for="::1"',  # IPv6 without brackets is not a node
        b'for="[not:an:ip]"',
        b"for=192.0.2.43;for=198.51.100.17",  # section 4: a parameter at most once per element
        b'for="unterminated',
        b"for =192.0.2.43",
        b"for= 192.0.2.43",
        b"for=192.0.2.43 proto=http",
        b"garbage",
        b'host="a\x01b"',  # control byte in a quoted-string
        b"for=1.2.3.4\r\n",
        b"by=999.1.1.1",
    ],
)
def test_parse_forwarded_refuses_garbage_entirely(value: bytes) -> None:
    assert parse_forwarded(value) == []
