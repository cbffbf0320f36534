"""HTTP Basic authentication against an Apache htpasswd file.

Pure: no sockets, no asyncio, no logging, no file access -- the caller reads the file and hands
the text to `parse_htpasswd` (or `Htpasswd.from_text`).

Supported hashes, as written by Apache's ``htpasswd``:

* bcrypt -- ``$2y$`` (``htpasswd -B``), ``$2a$``, ``$2b$``; checked with the ``bcrypt`` package.
  Like Apache, only the first 72 bytes of a password count.
* ``{SHA}`` -- base64 of the SHA-1 digest (``htpasswd -s``).
* ``$apr1$`` -- Apache's MD5-crypt variant (``htpasswd -m``, the historical default),
  implemented here from the published algorithm (Poul-Henning Kamp's md5crypt with the magic
  string ``$apr1$``).

DES crypt(3), glibc ``$1$``/``$5$``/``$6$`` crypt and plaintext entries are not supported: they
never verify, and `is_supported_hash` lets the configuration check reject them up front.

Passwords: a `str` password is tried as its UTF-8 bytes, and -- when it could have come from the
latin-1 fallback of `parse_basic_authorization` -- also as its latin-1 bytes, so a hash made
from the client's raw bytes verifies whichever way they were decoded. `bytes` are used as given.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import re
import threading
from collections import OrderedDict
from collections.abc import Iterator, Mapping
from typing import Any

import bcrypt

from ferryman.core.clients import client_unit

__all__ = [
    "FailureLimiter",
    "Htpasswd",
    "HtpasswdSyntaxError",
    "apr1_md5_crypt",
    "challenge",
    "is_supported_hash",
    "parse_basic_authorization",
    "parse_htpasswd",
    "user_from_certificate",
    "verify_password",
]


# -- the htpasswd file ---------------------------------------------------------------------------


class HtpasswdSyntaxError(ValueError):
    """A line of an htpasswd file is malformed; `line` is 1-based, `reason` says what is wrong."""

    def __init__(self, line: int, reason: str) -> None:
        self.line = line
        self.reason = reason
        super().__init__(f"line {line}: {reason}")


def parse_htpasswd(text: str) -> dict[str, str]:
    """Parse htpasswd text into ``{user: stored hash}``.

    Follows Apache's mod_authn_file: each line is stripped of surrounding whitespace, blank lines
    and lines starting with ``#`` are skipped, the user name runs up to the first ``:`` and the
    hash up to the next ``:`` (any further ``:``-separated fields are ignored, as Apache does).
    Raises `HtpasswdSyntaxError` (a `ValueError`) naming the line for a line without ``:``, an
    empty user name or hash, or a user listed twice (Apache would silently use the first entry).
    The hash itself is not judged here; see `is_supported_hash`.
    """
    if text.startswith("\ufeff"):
        text = text[1:]
    entries: dict[str, str] = {}
    first_seen: dict[str, int] = {}
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        user, colon, rest = line.partition(":")
        if not colon:
            # Do not echo the line: it might be a password typed into the wrong file.
            raise HtpasswdSyntaxError(number, "expected 'user:hash', found no ':'")
        stored = rest.split(":", 1)[0].strip()
        user = user.rstrip()
        if not user:
            raise HtpasswdSyntaxError(number, "empty user name before ':'")
        if not stored:
            raise HtpasswdSyntaxError(number, f"user {user!r} has an empty hash")
        if user in entries:
            raise HtpasswdSyntaxError(
                number, f"user {user!r} is already defined on line {first_seen[user]}"
            )
        entries[user] = stored
        first_seen[user] = number
    return entries


# -- hashes --------------------------------------------------------------------------------------

_BCRYPT_RE = re.compile(r"\$2[aby]\$(0[4-9]|[12][0-9]|3[01])\$[./A-Za-z0-9]{53}\Z")
_SHA_RE = re.compile(r"\{SHA\}[A-Za-z0-9+/]{27}=\Z")
_APR1_RE = re.compile(r"\$apr1\$([!-#%-~]{0,8})\$([./A-Za-z0-9]{22})\Z")  # salt: ASCII, no "$"

_ITOA64 = b"./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_APR1_MAGIC = b"$apr1$"
_BCRYPT_MAX_PASSWORD = 72  # bcrypt only ever looks at this many bytes; Apache truncates too


def is_supported_hash(stored: str) -> bool:
    """True if `stored` is a well-formed bcrypt, ``{SHA}`` or ``$apr1$`` hash."""
    return bool(
        _BCRYPT_RE.match(stored) or _SHA_RE.match(stored) or _APR1_RE.match(stored)
    )


def _to64(value: int, length: int) -> bytes:
    out = bytearray()
    for _ in range(length):
        out.append(_ITOA64[value & 0x3F])
        value >>= 6
    return bytes(out)


def apr1_md5_crypt(password: bytes, salt: bytes) -> str:
    """Apache's APR1 MD5-crypt of `password` with `salt` (at most 8 bytes are used).

    Returns the full ``$apr1$<salt>$<22 characters>`` string, as ``htpasswd -m`` writes it.
    """
    salt = salt[:8]
    # Initial digest: password + salt + password.
    alternate = hashlib.md5(password + salt + password).digest()

    ctx = bytearray(password + _APR1_MAGIC + salt)
    remaining = len(password)
    while remaining > 0:
        ctx += alternate[: min(remaining, 16)]
        remaining -= 16
    # The famous oddity: for each bit of the length, a NUL byte or the password's first byte.
    bits = len(password)
    while bits:
        ctx += b"\x00" if bits & 1 else password[:1]
        bits >>= 1
    final = hashlib.md5(ctx).digest()

    # 1000 rounds to slow things down (in 1990s terms).
    for i in range(1000):
        round_input = bytearray(password if i & 1 else final)
        if i % 3:
            round_input += salt
        if i % 7:
            round_input += password
        round_input += final if i & 1 else password
        final = hashlib.md5(round_input).digest()

    encoded = b"".join(
        _to64((final[a] << 16) | (final[b] << 8) | final[c], 4)
        for a, b, c in ((0, 6, 12), (1, 7, 13), (2, 8, 14), (3, 9, 15), (4, 10, 5))
    ) + _to64(final[11], 2)
    return (_APR1_MAGIC + salt + b"$" + encoded).decode("latin-1")


def _password_candidates(password: str | bytes) -> Iterator[bytes]:
    """The byte strings a decoded password may have been sent as (see the module docstring)."""
    if isinstance(password, bytes):
        yield password
        return
    try:
        utf8 = password.encode("utf-8")
    except UnicodeEncodeError:  # lone surrogates: no client sent this as UTF-8
        utf8 = None
    if utf8 is not None:
        yield utf8
    try:
        latin1 = password.encode("latin-1")
    except UnicodeEncodeError:
        return
    if latin1 == utf8:
        return
    try:
        latin1.decode("utf-8")
    except UnicodeDecodeError:
        # Only bytes that are not valid UTF-8 are ever decoded through the latin-1 fallback.
        yield latin1


def _verify_bytes(stored: str, password: bytes) -> bool:
    if _BCRYPT_RE.match(stored):
        normalized = ("$2b$" + stored[4:]) if stored.startswith("$2y$") else stored
        try:
            return bcrypt.checkpw(password[:_BCRYPT_MAX_PASSWORD], normalized.encode("ascii"))
        except ValueError:
            return False
    if _SHA_RE.match(stored):
        expected = base64.b64decode(stored[5:], validate=True)
        return hmac.compare_digest(hashlib.sha1(password).digest(), expected)
    match = _APR1_RE.match(stored)
    if match:
        salt = match.group(1).encode("ascii")
        computed = apr1_md5_crypt(password, salt).encode("latin-1")
        return hmac.compare_digest(computed, stored.encode("ascii"))
    return False


def verify_password(stored: str, password: str | bytes) -> bool:
    """True if `password` matches the htpasswd hash `stored`; unsupported hashes never match.

    Comparisons are constant-time (`hmac.compare_digest`, or bcrypt's own). A bcrypt check takes
    tens of milliseconds: do not call this on an event loop thread (see `Htpasswd`).
    """
    if not is_supported_hash(stored):
        return False
    return any(_verify_bytes(stored, candidate) for candidate in _password_candidates(password))


def _is_cheap(stored: str) -> bool:
    """Hashes fast enough to verify inline (microseconds): only ``{SHA}``."""
    return stored.startswith("{SHA}")


# -- the Authorization header --------------------------------------------------------------------


def parse_basic_authorization(value: bytes) -> tuple[str, str] | None:
    """Parse an ``Authorization: Basic <base64>`` value into ``(user, password)``.

    The scheme is case-insensitive; the token must be strict, canonical, padded base64; the
    decoded text is split at the first ``:`` (RFC 7617: user ids cannot contain one, passwords
    can), decoded as UTF-8 or else latin-1. A user id containing a control character is refused
    (RFC 7617 forbids them, and the user id may end up in a ``Remote-User`` header). Anything
    malformed -> None.
    """
    if not isinstance(value, (bytes, bytearray, memoryview)):
        return None
    value = bytes(value).strip(b" \t")
    scheme, space, token = value.partition(b" ")
    if not space or scheme.lower() != b"basic":
        return None
    token = token.lstrip(b" ")
    if not token:
        return None
    try:
        decoded = base64.b64decode(token, validate=True)
    except (binascii.Error, ValueError):
        return None
    if base64.b64encode(decoded) != token:
        return None  # excess padding or non-zero spare bits: not canonical base64
    try:
        text = decoded.decode("utf-8")
    except UnicodeDecodeError:
        text = decoded.decode("latin-1")
    user, colon, password = text.partition(":")
    if not colon:
        return None
    if any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in user):
        return None
    return user, password


def challenge(realm: str) -> bytes:
    """The ``WWW-Authenticate`` value ``Basic realm="...", charset="UTF-8"`` for `realm`.

    ``"`` and ``\\`` are backslash-escaped; CR, LF and other control characters (tab excepted)
    cannot be put in a header and raise ValueError. Non-ASCII realms are sent as UTF-8.
    """
    bad = [ch for ch in realm if (ord(ch) < 0x20 and ch != "\t") or ord(ch) == 0x7F]
    if bad:
        raise ValueError(f"realm {realm!r} contains a control character ({bad[0]!r})")
    quoted = realm.replace("\\", "\\\\").replace('"', '\\"')
    return f'Basic realm="{quoted}", charset="UTF-8"'.encode("utf-8")


# -- the checker ---------------------------------------------------------------------------------


class Htpasswd:
    """A parsed htpasswd file plus a bounded cache of verification results.

    bcrypt takes tens of milliseconds per check, so each (user, password, stored hash) is
    verified once and the answer -- success or failure -- remembered in an LRU cache, the way
    Apache's mod_authn_socache spares its providers. Successes and failures are kept in separate
    LRUs of `cache_size` entries each, so a stream of wrong guesses cannot evict the good
    credentials of real users. With `ttl`, an answer is kept that many seconds at most, so a
    password changed in the file (and reloaded) or a user removed never outlives it for long; the
    stored hash is part of each key, so a changed hash never matches an old answer anyway. Keys
    are HMAC-SHA-256 digests under a random per-instance key, so
    neither passwords nor fast, table-friendly hashes of them are kept.

    Intended use on an event loop::

        ok = table.cached(user, password)
        if ok is None:
            ok = await loop.run_in_executor(None, table.check, user, password)

    `check` is thread-safe. Build a new `Htpasswd` when the file changes.
    """

    def __init__(self, entries: Mapping[str, str], *, cache_size: int = 1024,
                 ttl: float | None = None) -> None:
        if cache_size < 0:
            raise ValueError("cache_size must be >= 0")
        self._entries = dict(entries)
        self._cache_size = cache_size
        self._ttl = ttl
        self._key = os.urandom(32)
        self._lock = threading.Lock()
        self._good: OrderedDict[bytes, float] = OrderedDict()  # key -> expiry time
        self._bad: OrderedDict[bytes, float] = OrderedDict()
        self.slow_checks = 0  # slow hashes actually computed (bcrypt, APR1): what the cache spares
        # An unknown user's password is hashed against a real entry's slow hash and refused, so the
        # time of the answer does not tell a name in the file from one that is not (bcrypt first: slowest).
        slow = sorted((s for s in self._entries.values() if is_supported_hash(s) and not _is_cheap(s)),
                      key=lambda s: not _BCRYPT_RE.match(s))
        self._stand_in: str | None = slow[0] if slow else None

    @classmethod
    def from_text(cls, text: str, *, cache_size: int = 1024, ttl: float | None = None) -> Htpasswd:
        """Parse htpasswd text (see `parse_htpasswd`, which raises on a malformed line)."""
        return cls(parse_htpasswd(text), cache_size=cache_size, ttl=ttl)

    @property
    def users(self) -> frozenset[str]:
        return frozenset(self._entries)

    def unsupported_users(self) -> list[str]:
        """Users whose hash can never verify (crypt, plaintext, ...), for configuration checks."""
        return [user for user, stored in self._entries.items() if not is_supported_hash(stored)]

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, user: object) -> bool:
        return user in self._entries

    def _cache_key(self, user: str, password: str | bytes, stored: str) -> bytes:
        mac = hmac.new(self._key, digestmod=hashlib.sha256)
        pw = password if isinstance(password, bytes) else password.encode("utf-8", "surrogatepass")
        # Length-prefixed fields (and a type tag for the password) keep the encoding unambiguous.
        for field in (
            user.encode("utf-8", "surrogatepass"),
            (b"b" if isinstance(password, bytes) else b"s") + pw,
            stored.encode("utf-8", "surrogatepass"),
        ):
            mac.update(len(field).to_bytes(8, "big"))
            mac.update(field)
        return mac.digest()

    def _lookup(self, key: bytes, now: float) -> bool | None:
        with self._lock:
            for lru, answer in ((self._good, True), (self._bad, False)):
                expiry = lru.get(key)
                if expiry is not None:
                    if expiry <= now:
                        del lru[key]
                        return None
                    lru.move_to_end(key)
                    return answer
        return None

    def _remember(self, key: bytes, ok: bool, now: float) -> None:
        if self._cache_size == 0:
            return
        with self._lock:
            lru = self._good if ok else self._bad
            lru[key] = now + self._ttl if self._ttl is not None else float("inf")
            lru.move_to_end(key)
            while len(lru) > self._cache_size:
                lru.popitem(last=False)

    def cached(self, user: str, password: str | bytes, now: float = 0.0) -> bool | None:
        """The answer if it needs no slow hashing, else None (then call `check` in an executor).

        Unsupported hashes are False at once; ``{SHA}`` is checked inline; an unknown user costs
        the slow hash of a real entry, like a known one (the answer's time does not reveal names);
        bcrypt and APR1 are answered from the cache when this credential was verified less than
        `ttl` seconds before `now` (any clock, the same one for every call).
        """
        stored = self._entries.get(user)
        if stored is None:
            stored = self._stand_in
            if stored is None:
                return False
            return False if self._lookup(self._cache_key(user, password, stored), now) is not None else None
        if not is_supported_hash(stored):
            return False
        if _is_cheap(stored):
            return verify_password(stored, password)
        return self._lookup(self._cache_key(user, password, stored), now)

    def check(self, user: str, password: str | bytes, now: float = 0.0) -> bool:
        """True if `user` exists and `password` matches; may run bcrypt (use an executor)."""
        stored = self._entries.get(user)
        known = stored is not None
        if stored is None:
            stored = self._stand_in
            if stored is None:
                return False
        if not is_supported_hash(stored):
            return False
        if _is_cheap(stored):
            return verify_password(stored, password)
        key = self._cache_key(user, password, stored)
        hit = self._lookup(key, now)
        if hit is not None:
            return hit and known
        with self._lock:
            self.slow_checks += 1
        ok = verify_password(stored, password) and known
        self._remember(key, ok, now)
        return ok

    def cache_info(self) -> dict[str, int]:
        """Sizes of the success and failure caches (for tests and metrics)."""
        with self._lock:
            return {"good": len(self._good), "bad": len(self._bad), "maxsize": self._cache_size}


# -- failed attempts -----------------------------------------------------------------------------


class FailureLimiter:
    """Locks out a client address after too many failed logins, the way fail2ban does.

    `failed(addr, now)` records a failed attempt; after `max_failures` of them within `window`
    seconds the address is locked out for `lockout` seconds, during which `locked(addr, now)` is
    True and no credential of its is checked at all (a correct one neither: otherwise a locked-out
    guesser would still make every guess cost a hash). The count starts again after the lockout; a
    correct login does not reset it.
    At most `max_addresses` addresses are tracked; the one seen longest ago is forgotten first, so
    memory stays bounded whatever the number of attackers. An IPv6 client is counted by its /64
    (`client_unit`). Times are seconds on any clock.
    """

    def __init__(self, max_failures: int = 10, window: float = 60.0, lockout: float = 60.0,
                 max_addresses: int = 10000) -> None:
        if max_failures < 1 or window <= 0 or lockout < 0 or max_addresses < 1:
            raise ValueError("max_failures and max_addresses must be >= 1, window > 0, lockout >= 0")
        self.max_failures = max_failures
        self.window = window
        self.lockout = lockout
        self.max_addresses = max_addresses
        # addr -> (times of recent failures, locked until); least recently touched first
        self._seen: OrderedDict[str, tuple[list[float], float]] = OrderedDict()

    def locked(self, addr: str, now: float) -> bool:
        """True while `addr` is locked out."""
        entry = self._seen.get(client_unit(addr))
        return entry is not None and now < entry[1]

    def retry_after(self, addr: str, now: float) -> float:
        """Seconds until `addr` may try again (0 when it may now)."""
        entry = self._seen.get(client_unit(addr))
        return max(0.0, entry[1] - now) if entry is not None else 0.0

    def failed(self, addr: str, now: float) -> bool:
        """Record a failed attempt by `addr`; True when this one locks it out."""
        addr = client_unit(addr)
        times, until = self._seen.pop(addr, ([], 0.0))
        if now < until:
            self._seen[addr] = (times, until)
            return False
        times = [t for t in times if now - t < self.window]
        times.append(now)
        locks = len(times) >= self.max_failures
        self._seen[addr] = ([], now + self.lockout) if locks else (times, 0.0)
        while len(self._seen) > self.max_addresses:
            self._seen.popitem(last=False)
        return locks

    def withdraw(self, addr: str) -> None:
        """Take back the latest failure of `addr`: one counted while its credential was being verified,
        which then verified. Earlier failures stand: a correct login (say with the guesser's own
        account) never wipes them, and they age out of the window. A running lockout is kept."""
        addr = client_unit(addr)
        entry = self._seen.get(addr)
        if entry is not None and entry[1] == 0.0 and entry[0]:
            entry[0].pop()
            if not entry[0]:
                del self._seen[addr]

    def __len__(self) -> int:
        return len(self._seen)


# -- client certificates -------------------------------------------------------------------------

_CERT_FIELDS = {"CN": "commonName", "emailAddress": "emailAddress"}


def user_from_certificate(cert: Mapping[str, Any] | None, field: str) -> str | None:
    """The user a verified client certificate names, as Apache's ``SSLUserName`` picks it.

    `cert` is the decoded certificate as `ssl.SSLSocket.getpeercert()` returns it; `field` is
    "CN" or "emailAddress" (the subject's first such attribute) or "SAN:email" (the first email
    subjectAltName). None when the field is absent, empty, or holds a control character (the
    value becomes a header).
    """
    if not cert:
        return None
    value: Any = None
    if field == "SAN:email":
        for kind, name in cert.get("subjectAltName", ()):
            if kind == "email":
                value = name
                break
    else:
        attr = _CERT_FIELDS.get(field)
        for rdn in cert.get("subject", ()):
            for key, name in rdn:
                if key == attr:
                    value = name
                    break
            if value is not None:
                break
    if not isinstance(value, str) or not value:
        return None
    if any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in value):
        return None
    return value
