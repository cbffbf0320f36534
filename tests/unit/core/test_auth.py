"""Tests for ferryman.core.auth: htpasswd parsing, hash verification, Basic credentials."""

from __future__ import annotations

import base64
import shutil
import subprocess
import threading

import bcrypt
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ferryman.core.auth import (
    Htpasswd,
    HtpasswdSyntaxError,
    apr1_md5_crypt,
    challenge,
    is_supported_hash,
    parse_basic_authorization,
    parse_htpasswd,
    verify_password,
)

# -- fixtures: real hashes ------------------------------------------------------------------------
#
# Generated once with Debian's htpasswd (apache2-utils 2.4.71-1~deb12u1), e.g.
#   htpasswd -nbB alice secret          htpasswd -nbB -C 4 carol 'bcrypt pw'
#   htpasswd -nbs alice secret          htpasswd -nbm u 'correct horse battery staple, [...]'
#   htpasswd -nbm alice secret          htpasswd -nbm latin $'\xe9t\xe9'   (raw latin-1 bytes)
# and pasted here as (password, hash) pairs.

HTPASSWD_BCRYPT = [
    ("secret", "$2y$05$vO2GOrhts7fiKQyOfbKlR.MmhreSD/codZzKgxH4peL5aYwyJoGr6"),
    ("pä ss:x", "$2y$05$5fUXiWoN5/ZuiTN9tcFE3.vdzL0uLppIEXHwE.POpWmw0/k/511XG"),
    ("", "$2y$05$H7IKeMgbuyERTTXZ/o4LyeHlv5VnG1ZAeUI2/HdV0sMdjnzQ3XUMG"),
    ("bcrypt pw", "$2y$04$im0vhLVqJrRb3pvz5GQkueuXaP6KWkODtSycscmJaMtrzFo1nCCqK"),
    ("pässwörd", "$2y$04$5WbTzkJ8/tf5L2YujIN1uOTKoSru5b5qR1tOwbh2yAViTUvRodgQq"),
    # htpasswd -nbB -C 4 long "$(python -c "print('x'*80)")": bcrypt only sees 72 bytes.
    ("x" * 80, "$2y$04$sk26lDNEtbk0mYTH0RrS/us8ApgvScYo9EvaltEQOrSjf2227KuAe"),
]

HTPASSWD_SHA = [
    ("secret", "{SHA}5en6G6MezRroT3XKqkdPOmY/BfQ="),
    ("pä ss:x", "{SHA}Z/uYXy+VoBVU5wTOCvdPN3kZxXs="),
    ("", "{SHA}2jmj7l5rSw0yVb/vlWAYkK/YBwk="),
    ("hunter2", "{SHA}87u9ZqY9S/F0eUBXjsPQEDUw4h0="),
]

# Two runs per password give two random salts each.
HTPASSWD_APR1 = [
    ("secret", "$apr1$5tGc0Ka1$jkWGCtA8WidCl.UJFBmUs/"),
    ("secret", "$apr1$wlqNKxiZ$pvH7YIUgcW60P4UwdXlAv1"),
    ("secret", "$apr1$MuHBxRHy$4U7a6YuSfUXY/ZhX82ej40"),
    ("pä ss:x", "$apr1$61wfCkqo$C9jRl.Kp4AL3h81XYzRp80"),
    ("", "$apr1$0mXBSW1s$R4v7EgObs5IWq.1EmjfqO0"),
    ("correct horse battery staple, which is long", "$apr1$7xZU0dip$27pPRww33X9mwZuhAhWlF."),
    ("correct horse battery staple, which is long", "$apr1$Q8HMOEDL$OkzFzY6kAvu6J2fjEpGkR."),
    ("pässwörd", "$apr1$OARN6j1/$gCnVkVK.Os.u4BHixSDwm0"),
    ("pässwörd", "$apr1$YKN9fZnT$GBeaGD825ioHadovJ5FSW."),
    ("a", "$apr1$7Q33nLqz$Mj03Zov1GBI.1eCw0lVqO0"),
    ("a", "$apr1$CLUfBk.P$vrqNT.dBBiofXQ7e7OzoK0"),
    ("colon:inside", "$apr1$CD3pC67T$tkYQeIJeoWf4JNzOQVZ9T0"),
    ("colon:inside", "$apr1$htxbptHY$XtbqP9VCWaxk5hJ9xa/Ex1"),
]

# Salts htpasswd never picks, from OpenSSL 3: `openssl passwd -apr1 -salt ab secret`, `-salt ''`.
OPENSSL_APR1 = [
    ("secret", "$apr1$ab$jiiV6N7hIIuIoJbc1hxOE/"),
    ("secret", "$apr1$$g/UEjvgvl9nWOQl6rNKvZ."),
]

# Password sent as the raw latin-1 bytes e9 74 e9 (not valid UTF-8): htpasswd hashed those bytes.
LATIN1_APR1 = "$apr1$V0LmtN2g$ZoZHlDdlVs2XQWzKp2JhZ0"
LATIN1_BCRYPT = "$2y$04$BeVadCD8xILz4jQquJXGu.xQCjLaOk9XxJ2E3ieqs2XSxlF/Z4j2O"

# $2b$ and $2a$ (htpasswd only writes $2y$): python -c "bcrypt.hashpw(b'two-b', gensalt(4))",
# and gensalt(4, prefix=b'2a') for b'two-a'.
PY_BCRYPT_2B = ("two-b", "$2b$04$iaFX9T8n7e01XTkF7RnSAuUHtyFeGtwYdK7UlUtL8fHGdpG9eHwJu")
PY_BCRYPT_2A = ("two-a", "$2a$04$CT.g6R/KHTmspcBG0tzUR.1w3ihdOFjAmPzVFqjC/eo3ivPe/SBHy")

ALL_SUPPORTED = HTPASSWD_BCRYPT + HTPASSWD_SHA + HTPASSWD_APR1 + OPENSSL_APR1 + [
    PY_BCRYPT_2B,
    PY_BCRYPT_2A,
]


def basic(user: str, password: str, encoding: str = "utf-8") -> bytes:
    return b"Basic " + base64.b64encode(f"{user}:{password}".encode(encoding))


# -- verify_password -----------------------------------------------------------------------------


@pytest.mark.parametrize(("password", "stored"), ALL_SUPPORTED)
def test_the_right_password_verifies_against_a_real_hash(password: str, stored: str) -> None:
    assert is_supported_hash(stored)
    assert verify_password(stored, password) is True


@pytest.mark.parametrize(("password", "stored"), ALL_SUPPORTED)
def test_a_wrong_password_is_rejected_for_every_hash_kind(password: str, stored: str) -> None:
    assert verify_password(stored, "wrong") is False
    if password and len(password.encode()) <= 72:  # bcrypt ignores bytes past 72, see below
        assert verify_password(stored, password[:-1]) is False
        assert verify_password(stored, password + "x") is False
    if password != password.upper():
        assert verify_password(stored, password.upper()) is False


def test_bcrypt_like_apache_only_looks_at_the_first_72_bytes() -> None:
    stored = HTPASSWD_BCRYPT[-1][1]
    assert verify_password(stored, "x" * 72) is True
    assert verify_password(stored, "x" * 500) is True
    assert verify_password(stored, "x" * 71) is False


def test_a_password_sent_as_latin1_bytes_verifies_after_the_latin1_fallback() -> None:
    parsed = parse_basic_authorization(b"Basic " + base64.b64encode(b"latin:\xe9t\xe9"))
    assert parsed == ("latin", "été")
    _, password = parsed
    assert verify_password(LATIN1_APR1, password) is True
    assert verify_password(LATIN1_BCRYPT, password) is True
    assert verify_password(LATIN1_APR1, b"\xe9t\xe9") is True


def test_a_utf8_password_does_not_also_match_its_latin1_spelling() -> None:
    # "pässwörd" hashed from its UTF-8 bytes; the latin-1 bytes are a different password.
    stored = dict(HTPASSWD_APR1)["pässwörd"]
    assert verify_password(stored, "pässwörd".encode()) is True
    assert verify_password(stored, "pässwörd".encode("latin-1")) is False


def test_bytes_passwords_are_used_as_given() -> None:
    for password, stored in HTPASSWD_SHA + HTPASSWD_APR1[:3]:
        assert verify_password(stored, password.encode()) is True


@pytest.mark.parametrize(
    "stored",
    [
        "hlgOJQcY0NijA",  # htpasswd -nbd dave crypt  (DES crypt)
        "plain",  # htpasswd -nbp erin plain  (plaintext)
        "$1$abcdefgh$0123456789012345678901",  # glibc MD5 crypt
        "$5$rounds=5000$salt$hash",
        "$6$salt$" + "a" * 86,
        "{SHA}not base64!",
        "{SHA}" + base64.b64encode(b"short").decode(),
        "{SHA}5en6G6MezRroT3XKqkdPOmY/BfQ",  # padding missing
        "$apr1$5tGc0Ka1$jkWGCtA8WidCl.UJFBmUs",  # one character short
        "$apr1$123456789$jkWGCtA8WidCl.UJFBmUs/",  # salt longer than 8
        "$2y$05$tooShort",
        "$2x$05$vO2GOrhts7fiKQyOfbKlR.MmhreSD/codZzKgxH4peL5aYwyJoGr6",
        "$2y$99$vO2GOrhts7fiKQyOfbKlR.MmhreSD/codZzKgxH4peL5aYwyJoGr6",
        "",
    ],
)
def test_unsupported_or_malformed_hashes_never_verify(stored: str) -> None:
    assert is_supported_hash(stored) is False
    assert verify_password(stored, "crypt") is False
    assert verify_password(stored, "plain") is False
    assert verify_password(stored, stored) is False


def test_a_plaintext_entry_does_not_verify_even_with_its_own_text() -> None:
    assert verify_password("plain", "plain") is False


# -- APR1 against the reference ------------------------------------------------------------------


@pytest.mark.parametrize(("password", "stored"), HTPASSWD_APR1 + OPENSSL_APR1)
def test_apr1_reproduces_the_exact_string_htpasswd_wrote(password: str, stored: str) -> None:
    salt = stored.split("$")[2]
    assert apr1_md5_crypt(password.encode(), salt.encode()) == stored


def test_apr1_uses_at_most_eight_bytes_of_salt() -> None:
    assert apr1_md5_crypt(b"secret", b"5tGc0Ka1EXTRA") == "$apr1$5tGc0Ka1$jkWGCtA8WidCl.UJFBmUs/"


HTPASSWD = shutil.which("htpasswd")


@pytest.mark.skipif(HTPASSWD is None, reason="htpasswd (apache2-utils) is not installed")
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    password=st.text(
        alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"),
        max_size=40,
    )
)
def test_apr1_matches_live_htpasswd_output_for_fresh_random_salts(password: str) -> None:
    assert HTPASSWD is not None
    out = subprocess.run(
        [HTPASSWD, "-nbm", "u", password], check=True, capture_output=True
    ).stdout.decode("ascii")
    stored = out.strip().split(":", 1)[1]
    assert verify_password(stored, password) is True
    assert apr1_md5_crypt(password.encode(), stored.split("$")[2].encode()) == stored


# -- parse_htpasswd ------------------------------------------------------------------------------


def test_an_htpasswd_file_maps_users_to_hashes_skipping_comments_and_blank_lines() -> None:
    text = (
        "\ufeff# made by htpasswd\n"
        "alice:$apr1$5tGc0Ka1$jkWGCtA8WidCl.UJFBmUs/\n"
        "\n"
        "   \n"
        "  # indented comment\n"
        "bob:{SHA}87u9ZqY9S/F0eUBXjsPQEDUw4h0=\r\n"
        "carol:$2y$04$im0vhLVqJrRb3pvz5GQkueuXaP6KWkODtSycscmJaMtrzFo1nCCqK   \n"
        "dave:hlgOJQcY0NijA:extra field ignored like Apache\n"
    )
    assert parse_htpasswd(text) == {
        "alice": "$apr1$5tGc0Ka1$jkWGCtA8WidCl.UJFBmUs/",
        "bob": "{SHA}87u9ZqY9S/F0eUBXjsPQEDUw4h0=",
        "carol": "$2y$04$im0vhLVqJrRb3pvz5GQkueuXaP6KWkODtSycscmJaMtrzFo1nCCqK",
        "dave": "hlgOJQcY0NijA",
    }


def test_an_empty_file_has_no_users() -> None:
    assert parse_htpasswd("") == {}
    assert parse_htpasswd("# nobody\n\n") == {}


@pytest.mark.parametrize(
    ("text", "line", "fragment"),
    [
        ("alice:$apr1$x$y\nno colon here\n", 2, "no ':'"),
        ("# c\n\n:{SHA}87u9ZqY9S/F0eUBXjsPQEDUw4h0=\n", 3, "empty user name"),
        ("alice:\n", 1, "empty hash"),
        ("alice:   \n", 1, "empty hash"),
        ("alice:a\nbob:b\nalice:c\n", 3, "already defined on line 1"),
    ],
)
def test_a_malformed_line_raises_value_error_naming_the_line_and_problem(
    text: str, line: int, fragment: str
) -> None:
    with pytest.raises(ValueError) as info:
        parse_htpasswd(text)
    assert isinstance(info.value, HtpasswdSyntaxError)
    assert info.value.line == line
    assert fragment in str(info.value)
    assert str(info.value).startswith(f"line {line}: ")


def test_a_line_without_colon_is_not_echoed_because_it_may_be_a_password() -> None:
    with pytest.raises(ValueError) as info:
        parse_htpasswd("hunter2\n")
    assert "hunter2" not in str(info.value)


# -- parse_basic_authorization -------------------------------------------------------------------


def test_basic_credentials_are_decoded_into_user_and_password() -> None:
    assert parse_basic_authorization(b"Basic YWxpY2U6c2VjcmV0") == ("alice", "secret")


@pytest.mark.parametrize("scheme", [b"Basic", b"basic", b"BASIC", b"bAsIc"])
def test_the_scheme_is_case_insensitive(scheme: bytes) -> None:
    assert parse_basic_authorization(scheme + b" YWxpY2U6c2VjcmV0") == ("alice", "secret")


def test_surrounding_whitespace_and_extra_spaces_after_the_scheme_are_tolerated() -> None:
    assert parse_basic_authorization(b"  Basic   YWxpY2U6c2VjcmV0 \t") == ("alice", "secret")


def test_the_password_may_contain_colons_because_the_split_is_at_the_first() -> None:
    assert parse_basic_authorization(basic("alice", "a:b::c")) == ("alice", "a:b::c")


def test_empty_user_and_password_are_syntactically_valid() -> None:
    assert parse_basic_authorization(basic("", "")) == ("", "")


def test_canonical_padded_base64_is_accepted() -> None:
    assert parse_basic_authorization(b"Basic YTo=") == ("a", "")


def test_utf8_credentials_are_decoded_as_utf8() -> None:
    assert parse_basic_authorization(basic("jürgen", "pässwörd")) == ("jürgen", "pässwörd")


def test_non_utf8_credentials_fall_back_to_latin1() -> None:
    assert parse_basic_authorization(basic("jürgen", "pässwörd", "latin-1")) == (
        "jürgen",
        "pässwörd",
    )


@pytest.mark.parametrize(
    "value",
    [
        b"",
        b"Basic",
        b"Basic ",
        b"Basic    ",
        b"Bearer YWxpY2U6c2VjcmV0",
        b"Digest username=alice",
        b"BasicYWxpY2U6c2VjcmV0",
        b"Basic\tYWxpY2U6c2VjcmV0",
        b"Basic YWxpY2U6c2VjcmV0 extra",
        b"Basic YWxpY2U6c2VjcmV",  # bad padding
        b"Basic YWxpY2U6c2VjcmV0=",  # excess padding
        b"Basic YTp=",  # "a:" with non-zero spare bits (canonical: YTo=)
        b"Basic YWxp Y2U6c2VjcmV0",
        b"Basic YWxpY2U6c2VjcmV0\n",
        b"Basic YWxpY2U-c2VjcmV0",  # urlsafe alphabet
        b"Basic " + base64.b64encode(b"no colon at all"),
        b"Basic " + base64.b64encode(b"ali\rce:secret"),
        b"Basic " + base64.b64encode(b"ali\nce:secret"),
        b"Basic " + base64.b64encode(b"alice\x00:secret"),
        b"Basic " + base64.b64encode(b"alice\x7f:secret"),
        b"Basic \xff\xfe",
    ],
)
def test_malformed_authorization_values_give_none(value: bytes) -> None:
    assert parse_basic_authorization(value) is None


_NO_SURROGATES = st.characters(blacklist_categories=("Cs",))
# Control characters are refused in user ids (RFC 7617; they could reach Remote-User).
_USERS = st.text(
    alphabet=st.characters(blacklist_categories=("Cs", "Cc"), blacklist_characters=":")
)


@given(user=_USERS, password=st.text(alphabet=_NO_SURROGATES))
def test_any_user_without_colon_and_any_password_round_trip_through_basic(
    user: str, password: str
) -> None:
    assert parse_basic_authorization(basic(user, password)) == (user, password)


_LATIN1_USER_CHARS = st.characters(min_codepoint=0x20, max_codepoint=0xFF).filter(
    lambda c: c not in ":\x7f"
)


@given(
    user=st.text(alphabet=_LATIN1_USER_CHARS),
    password=st.text(alphabet=st.characters(max_codepoint=0xFF)),
)
def test_latin1_credentials_round_trip_unless_they_happen_to_be_valid_utf8(
    user: str, password: str
) -> None:
    raw = f"{user}:{password}".encode("latin-1")
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError:
        assert parse_basic_authorization(b"Basic " + base64.b64encode(raw)) == (user, password)


@given(st.binary())
def test_arbitrary_bytes_never_raise(value: bytes) -> None:
    result = parse_basic_authorization(value)
    assert result is None or (isinstance(result, tuple) and len(result) == 2)


@given(st.binary())
def test_arbitrary_decoded_payloads_never_raise(payload: bytes) -> None:
    result = parse_basic_authorization(b"Basic " + base64.b64encode(payload))
    if result is not None:
        user, _ = result
        assert ":" not in user
        assert "\r" not in user and "\n" not in user


# -- challenge -----------------------------------------------------------------------------------


def test_the_challenge_names_the_realm_and_utf8_charset() -> None:
    assert challenge("Staff only") == b'Basic realm="Staff only", charset="UTF-8"'


def test_quotes_and_backslashes_in_the_realm_are_escaped() -> None:
    assert challenge('say "hi" \\o/') == b'Basic realm="say \\"hi\\" \\\\o/", charset="UTF-8"'


def test_a_non_ascii_realm_is_sent_as_utf8() -> None:
    assert challenge("Zürich") == 'Basic realm="Zürich", charset="UTF-8"'.encode()


@pytest.mark.parametrize("realm", ["a\r\nSet-Cookie: x=1", "a\nb", "a\rb", "nul\x00", "del\x7f"])
def test_a_realm_with_cr_lf_or_other_control_characters_is_refused(realm: str) -> None:
    with pytest.raises(ValueError):
        challenge(realm)


@given(st.text(alphabet=st.characters(blacklist_categories=("Cs", "Cc"))))
def test_any_printable_realm_quotes_into_a_single_well_formed_quoted_string(realm: str) -> None:
    value = challenge(realm).decode("utf-8")
    assert value.startswith('Basic realm="') and value.endswith('", charset="UTF-8"')
    inner = value[len('Basic realm="') : -len('", charset="UTF-8"')]
    # Unescape per RFC 9110 quoted-pair and check no unescaped quote ends the string early.
    out, i = [], 0
    while i < len(inner):
        assert inner[i] != '"'
        if inner[i] == "\\":
            i += 1
        out.append(inner[i])
        i += 1
    assert "".join(out) == realm


# -- Htpasswd ------------------------------------------------------------------------------------

FILE = "\n".join(
    [
        "# test users",
        "alice:$2y$05$vO2GOrhts7fiKQyOfbKlR.MmhreSD/codZzKgxH4peL5aYwyJoGr6",
        "bob:{SHA}87u9ZqY9S/F0eUBXjsPQEDUw4h0=",
        "carol:$apr1$5tGc0Ka1$jkWGCtA8WidCl.UJFBmUs/",
        "dave:hlgOJQcY0NijA",
        "erin:plain",
    ]
)


class CountingVerify:
    """Counts calls to ferryman.core.auth.verify_password to prove the cache works."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        import ferryman.core.auth as auth

        self.calls = 0
        real = auth.verify_password

        def counting(stored: str, password: str | bytes) -> bool:
            self.calls += 1
            return real(stored, password)

        monkeypatch.setattr(auth, "verify_password", counting)


def test_htpasswd_checks_each_kind_of_user_and_rejects_wrong_passwords() -> None:
    table = Htpasswd.from_text(FILE)
    assert table.check("alice", "secret") is True
    assert table.check("alice", "Secret") is False
    assert table.check("bob", "hunter2") is True
    assert table.check("bob", "hunter3") is False
    assert table.check("carol", "secret") is True
    assert table.check("carol", "") is False
    assert table.check("mallory", "secret") is False
    assert table.check("dave", "crypt") is False
    assert table.check("erin", "plain") is False


def test_htpasswd_reports_users_whose_hash_can_never_verify() -> None:
    table = Htpasswd.from_text(FILE)
    assert table.unsupported_users() == ["dave", "erin"]
    assert table.users == {"alice", "bob", "carol", "dave", "erin"}
    assert "alice" in table and "mallory" not in table
    assert len(table) == 5


def test_a_credential_is_verified_once_and_then_answered_from_the_cache(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    counter = CountingVerify(monkeypatch)
    table = Htpasswd.from_text(FILE)
    assert table.cached("alice", "secret") is None
    assert table.check("alice", "secret") is True
    assert table.check("alice", "secret") is True
    assert table.cached("alice", "secret") is True
    assert counter.calls == 1


def test_failed_verifications_are_cached_too(monkeypatch: pytest.MonkeyPatch) -> None:
    counter = CountingVerify(monkeypatch)
    table = Htpasswd.from_text(FILE)
    assert table.check("carol", "nope") is False
    assert table.check("carol", "nope") is False
    assert table.cached("carol", "nope") is False
    assert counter.calls == 1
    assert table.cache_info() == {"good": 0, "bad": 1, "maxsize": 1024}


def test_the_fast_path_answers_unsupported_hashes_and_sha_without_the_cache() -> None:
    table = Htpasswd.from_text(FILE)
    assert table.cached("mallory", "x") is None  # an unknown user costs a slow hash, like a known one
    assert table.cached("dave", "crypt") is False
    assert table.cached("bob", "hunter2") is True
    assert table.cached("bob", "nope") is False
    assert table.cached("carol", "secret") is None


def test_the_cache_key_depends_on_the_stored_hash_so_a_changed_file_is_rechecked() -> None:
    old = Htpasswd({"alice": HTPASSWD_APR1[0][1]})
    assert old.check("alice", "secret") is True
    new = Htpasswd({"alice": HTPASSWD_APR1[3][1]})  # "pä ss:x"
    assert new.check("alice", "secret") is False
    assert new.check("alice", "pä ss:x") is True


def test_the_cache_keys_do_not_confuse_users_with_passwords() -> None:
    table = Htpasswd({"a": HTPASSWD_APR1[0][1], "a:s": HTPASSWD_APR1[0][1]})
    assert table.check("a", "secret") is True
    assert table.cached("a:s", "ecret") is None
    assert table.check("a:s", "ecret") is False


def test_the_cache_is_a_bounded_lru(monkeypatch: pytest.MonkeyPatch) -> None:
    counter = CountingVerify(monkeypatch)
    table = Htpasswd({"carol": HTPASSWD_APR1[0][1]}, cache_size=3)
    for guess in ["g1", "g2", "g3"]:
        table.check("carol", guess)
    table.check("carol", "g1")  # refresh g1: g2 is now the oldest
    table.check("carol", "g4")  # evicts g2
    assert table.cache_info()["bad"] == 3
    assert table.cached("carol", "g1") is False
    assert table.cached("carol", "g2") is None
    assert table.cached("carol", "g3") is False
    assert table.cached("carol", "g4") is False
    assert counter.calls == 4


def test_wrong_guesses_cannot_evict_good_credentials() -> None:
    table = Htpasswd({"carol": HTPASSWD_APR1[0][1]}, cache_size=2)
    assert table.check("carol", "secret") is True
    for i in range(10):
        table.check("carol", f"guess {i}")
    assert table.cached("carol", "secret") is True
    assert table.cache_info() == {"good": 1, "bad": 2, "maxsize": 2}


def test_a_zero_sized_cache_always_verifies(monkeypatch: pytest.MonkeyPatch) -> None:
    counter = CountingVerify(monkeypatch)
    table = Htpasswd({"carol": HTPASSWD_APR1[0][1]}, cache_size=0)
    assert table.check("carol", "secret") is True
    assert table.check("carol", "secret") is True
    assert table.cached("carol", "secret") is None
    assert counter.calls == 2
    with pytest.raises(ValueError):
        Htpasswd({}, cache_size=-1)


def test_check_is_safe_to_call_from_many_threads() -> None:
    table = Htpasswd.from_text(FILE, cache_size=8)
    errors: list[BaseException] = []

    def worker(n: int) -> None:
        try:
            for i in range(30):
                assert table.check("carol", "secret") is True
                assert table.check("carol", f"w{n}-{i % 12}") is False
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert table.cache_info()["bad"] <= 8


def test_htpasswd_from_text_raises_on_a_malformed_file() -> None:
    with pytest.raises(HtpasswdSyntaxError):
        Htpasswd.from_text("alice\n")


def test_bcrypt_fixtures_really_are_bcrypt_hashes_the_library_accepts() -> None:
    # Guards the $2y$ -> $2b$ mapping: the library verifies the mapped form directly.
    password, stored = HTPASSWD_BCRYPT[0]
    assert bcrypt.checkpw(password.encode(), ("$2b$" + stored[4:]).encode())
