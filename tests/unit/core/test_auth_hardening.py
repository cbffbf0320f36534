"""core.auth: the failed-login limiter, the answer cache's lifetime and client-certificate users;
core.throttle: logging once per window; core.redirect: HTTPS redirect targets."""

from __future__ import annotations

import bcrypt
from hypothesis import given, settings
from hypothesis import strategies as st

from ferryman.core.auth import FailureLimiter, Htpasswd, user_from_certificate
from ferryman.core.clients import client_unit
from ferryman.core.redirect import redirect_location, redirect_status
from ferryman.core.throttle import LogGate

BCRYPT = bcrypt.hashpw(b"secret", bcrypt.gensalt(4)).decode()


# -- FailureLimiter --------------------------------------------------------------------------------

def test_an_address_is_locked_out_at_the_nth_failure_within_the_window_and_free_after_the_lockout() -> None:
    lim = FailureLimiter(max_failures=3, window=60, lockout=30)
    assert not lim.failed("a", 0) and not lim.failed("a", 1)
    assert lim.failed("a", 2)  # the third locks
    assert lim.locked("a", 2) and lim.locked("a", 31.9) and lim.retry_after("a", 12) == 20
    assert not lim.locked("b", 2)  # others are not affected
    assert not lim.locked("a", 32)
    assert not lim.failed("a", 33)  # the count starts again


def test_failures_spread_wider_than_the_window_never_lock() -> None:
    lim = FailureLimiter(max_failures=3, window=10, lockout=30)
    for t in range(0, 200, 6):  # one failure every 6 s: never 3 within 10 s
        assert not lim.failed("a", t)
    assert not lim.locked("a", 200)


def test_a_withdrawn_failure_is_only_the_latest_one_and_never_ends_a_lockout() -> None:
    lim = FailureLimiter(max_failures=3, window=60, lockout=30)
    lim.failed("a", 0)
    lim.failed("a", 1)
    lim.withdraw("a")  # the provisional failure of a credential that then verified
    assert not lim.failed("a", 2)  # 0 and 2 stand
    assert lim.failed("a", 3)
    lim.withdraw("a")
    assert lim.locked("a", 4)
    lim.withdraw("b")  # nothing to take back: no error, nothing recorded
    assert len(lim) == 1


def test_the_limiter_tracks_a_bounded_number_of_addresses() -> None:
    lim = FailureLimiter(max_failures=5, window=60, lockout=30, max_addresses=100)
    for i in range(1000):
        lim.failed(f"10.0.{i // 256}.{i % 256}", i * 0.001)
    assert len(lim) == 100


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.sampled_from("abc"), st.floats(0, 5)), max_size=60),
       st.integers(1, 5), st.floats(0.5, 10), st.floats(0, 10))
def test_an_address_is_locked_exactly_when_max_failures_fell_within_the_window(events, n, window, lockout) -> None:
    lim = FailureLimiter(max_failures=n, window=window, lockout=lockout)
    now = 0.0
    model: dict[str, tuple[list[float], float]] = {}
    for addr, dt in events:
        now += dt
        times, until = model.get(addr, ([], 0.0))
        if now < until:
            expect = False
        else:
            times = [t for t in times if now - t < window] + [now]
            expect = len(times) >= n
            model[addr] = ([], now + lockout) if expect else (times, 0.0)
        assert lim.failed(addr, now) is expect
        assert lim.locked(addr, now) == (now < model[addr][1])


# -- the answer cache ------------------------------------------------------------------------------

def test_a_verified_credential_is_not_hashed_again_until_its_ttl_passes() -> None:
    table = Htpasswd({"alice": BCRYPT}, ttl=300)
    assert table.check("alice", "secret", now=0)
    assert table.slow_checks == 1
    for t in range(1, 300, 7):
        assert table.cached("alice", "secret", now=t) is True
        assert table.check("alice", "secret", now=t)
    assert table.slow_checks == 1
    assert table.cached("alice", "secret", now=300) is None  # expired: verify again
    assert table.check("alice", "secret", now=300) and table.slow_checks == 2


def test_a_wrong_password_is_remembered_as_wrong_and_a_changed_hash_never_meets_an_old_answer() -> None:
    table = Htpasswd({"alice": BCRYPT}, ttl=300)
    assert not table.check("alice", "guess", now=0)
    assert table.cached("alice", "guess", now=1) is False
    newer = Htpasswd({"alice": bcrypt.hashpw(b"guess", bcrypt.gensalt(4)).decode()}, ttl=300)
    assert newer.cached("alice", "guess", now=1) is None and newer.check("alice", "guess", now=1)


def test_without_a_ttl_nothing_is_cached_when_the_size_is_zero() -> None:
    table = Htpasswd({"alice": BCRYPT}, cache_size=0, ttl=0)
    table.check("alice", "secret")
    table.check("alice", "secret")
    assert table.slow_checks == 2


# -- client certificates ---------------------------------------------------------------------------

CERT = {
    "subject": ((("organizationName", "ACME"),), (("commonName", "alice"),), (("emailAddress", "a@x.org"),)),
    "subjectAltName": (("DNS", "alice.example"), ("email", "alice@san.example")),
}


def test_the_user_is_taken_from_the_configured_certificate_field() -> None:
    assert user_from_certificate(CERT, "CN") == "alice"
    assert user_from_certificate(CERT, "emailAddress") == "a@x.org"
    assert user_from_certificate(CERT, "SAN:email") == "alice@san.example"
    assert user_from_certificate({"subject": ()}, "CN") is None
    assert user_from_certificate(None, "CN") is None
    assert user_from_certificate({}, "CN") is None


def test_a_certificate_field_with_a_control_character_names_nobody() -> None:
    bad = {"subject": ((("commonName", "alice\r\nX-Admin: 1"),),)}
    assert user_from_certificate(bad, "CN") is None


# -- LogGate ---------------------------------------------------------------------------------------

def test_an_event_is_logged_once_per_key_and_window_with_the_count_held_back() -> None:
    gate = LogGate(window=60)
    assert gate.allow("1.2.3.4", 0) == 0
    assert all(gate.allow("1.2.3.4", t) is None for t in range(1, 60))
    assert gate.allow("5.6.7.8", 30) == 0
    assert gate.allow("1.2.3.4", 60) == 59  # the next line says how many were held back
    assert gate.allow("1.2.3.4", 61) is None


@given(st.lists(st.tuples(st.integers(0, 20), st.floats(0, 3)), max_size=200))
def test_every_event_is_either_logged_or_counted_on_a_later_line_and_memory_stays_bounded(events) -> None:
    gate = LogGate(window=5, max_keys=8)
    now = 0.0
    logged = held_reported = 0
    for key, dt in events:
        now += dt
        r = gate.allow(str(key), now)
        if r is not None:
            logged += 1
            held_reported += r
        assert len(gate) <= 8
    pending = sum(entry[1] for entry in gate._last.values())
    assert logged + held_reported + pending <= len(events)
    assert logged >= min(1, len(events))


# -- redirects -------------------------------------------------------------------------------------

def test_a_redirect_keeps_path_and_query_and_uses_the_configured_origin_or_a_checked_host() -> None:
    assert redirect_location("8443", b"/a?b=1", b"www.example.com:80", None) == b"https://www.example.com:8443/a?b=1"
    assert redirect_location("443", b"/a", b"www.example.com", None) == b"https://www.example.com/a"
    assert redirect_location("443", b"/a", b"[::1]:80", None) == b"https://[::1]/a"
    assert redirect_location("443", b"/a", b"evil.example", b"www.example.com") == b"https://www.example.com/a"
    assert redirect_location("https://s.example.com", b"/x", b"evil", None) == b"https://s.example.com/x"
    assert redirect_location("443", b"http://h.example/p?q", b"h.example", None) == b"https://h.example/p?q"
    assert redirect_location("443", b"http://h.example?q", b"h.example", None) == b"https://h.example/?q"
    assert redirect_location("443", b"*", b"h.example", None) == b"https://h.example/"
    for bad in (b"", b"a/b", b"a@b", b"a b", b"a:b:c", b"[::1", b"a:", b"-a.example", b"a..b", b"a:80x"):
        assert redirect_location("443", b"/", bad, None) is None, bad
    assert redirect_location("443", b"/", None, None) is None


@given(st.binary(max_size=60))
def test_no_host_header_can_put_anything_but_a_host_name_into_the_location(host: bytes) -> None:
    loc = redirect_location("8443", b"/p", host, None)
    if loc is not None:
        assert loc.startswith(b"https://") and loc.endswith(b":8443/p")
        name = loc[len(b"https://"):-len(b":8443/p")]
        assert all(c in b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-[]:" for c in name)
        assert b"/" not in name and b"@" not in name


def test_get_and_head_are_redirected_with_301_and_other_methods_with_308() -> None:
    assert redirect_status(b"GET") == redirect_status(b"HEAD") == 301
    assert redirect_status(b"POST") == redirect_status(b"PUT") == 308



def test_an_unknown_user_costs_the_same_slow_hash_as_a_known_one_and_never_verifies() -> None:
    # answering an unknown name at once and a known one after bcrypt tells names apart by the clock
    table = Htpasswd({"alice": BCRYPT}, cache_size=16)
    assert table.cached("alice", "guess") is None and table.cached("mallory", "guess") is None
    assert table.check("alice", "guess") is False
    assert table.check("mallory", "secret") is False  # alice's password, alice's hash: still nobody
    assert table.slow_checks == 2
    assert table.cached("mallory", "secret") is False  # remembered like a known user's failure
    assert table.check("mallory", "secret") is False and table.slow_checks == 2
    assert table.check("alice", "secret") is True


def test_a_file_of_fast_hashes_only_answers_an_unknown_user_at_once() -> None:
    table = Htpasswd({"bob": "{SHA}" + "A" * 27 + "="})
    assert table.cached("mallory", "x") is False and table.check("mallory", "x") is False
    assert table.slow_checks == 0


def test_an_ipv6_client_rotating_addresses_within_its_64_is_locked_out_as_one() -> None:
    # one host owns a whole /64: counted per address, each of its 2**64 addresses had fresh guesses
    lim = FailureLimiter(max_failures=3, window=60, lockout=30)
    assert not lim.failed("2001:db8:0:1::a", 0) and not lim.failed("2001:db8:0:1::b", 1)
    assert lim.failed("2001:db8:0:1:ffff:1:2:3", 2)
    assert lim.locked("2001:db8:0:1::c", 3) and lim.retry_after("2001:db8:0:1::d", 12) == 20
    assert not lim.locked("2001:db8:0:2::a", 3)  # the next /64 is someone else
    assert len(lim) == 1


def test_ipv4_addresses_and_their_ipv4_mapped_spellings_are_each_their_own_unit() -> None:
    assert client_unit("192.0.2.7") == client_unit("::ffff:192.0.2.7") == "192.0.2.7"
    assert client_unit("::ffff:192.0.2.8") != client_unit("::ffff:192.0.2.7")
    lim = FailureLimiter(max_failures=1, window=60, lockout=30)
    assert lim.failed("::ffff:192.0.2.7", 0)
    assert lim.locked("192.0.2.7", 1) and not lim.locked("192.0.2.8", 1)


def test_the_client_unit_of_ipv6_is_its_64_and_of_anything_unparsable_the_text_itself() -> None:
    assert client_unit("2001:db8:1:2:a:b:c:d") == client_unit("2001:db8:1:2::1") == "2001:db8:1:2::/64"
    assert client_unit("fe80::1%eth0") == "fe80::/64"
    assert client_unit("-") == "-" and client_unit("not:an:address") == "not:an:address"
