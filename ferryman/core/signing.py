"""Signed forwarding: ferryman vouches for a request's facts in one header the app can verify.

Why
---
``X-Forwarded-*`` and ``Remote-User`` are believed by an app because of *where the request came from*
(a trusted proxy address). That breaks as soon as anything else can reach the app server: another
host on the same network, a misconfigured firewall, a sidecar. With a shared secret, ferryman instead
states the facts (client address, host, scheme, port, public prefix, user, method) in the
``Ferryman-Signature`` header with an HMAC-SHA256 over them, a timestamp and a random nonce; the app
believes them only when the MAC checks out with one of its keys and the timestamp is recent.

Format (ASCII, one line; every value percent-encoded, so ``;`` and ``=`` only ever separate)::

    v1;kid=1a2b3c4d;ts=1700000000;nonce=Zk9v...;for=192.0.2.7;host=www.example.com;proto=https;
    port=443;prefix=%2Fpublic;method=GET;user=alice;sig=<base64url HMAC-SHA256>

The MAC covers every byte before ``;sig=``, so nothing needs canonicalising. ``kid`` is a short
fingerprint of the signing key (an HMAC of a constant, so it reveals nothing about the key): with two
keys configured during a rotation, the verifier picks the right one at once and can say "signed with
a key I do not have" instead of "bad signature". ``user`` is absent when nobody was authenticated.

Rotation: sign with the first key, verify with any (:func:`verify` takes them all).
Replay: a valid header can be replayed to the app server for as long as the clock-skew window allows
(``max_skew``, both directions); :class:`NonceCache` closes that window for one process.

Pure: the time and the nonce's random bytes are passed in.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from urllib.parse import quote, unquote

from ferryman.core.forwarded import ForwardedFacts

__all__ = [
    "HEADER",
    "HEADER_NAME",
    "InvalidSignature",
    "MAX_VALUE_LENGTH",
    "NonceCache",
    "Signed",
    "key_id",
    "sign",
    "verify",
]

#: The header's lower-case name (as ferryman writes it) and its WSGI/CGI environ key.
HEADER = b"ferryman-signature"
HEADER_NAME = "Ferryman-Signature"
ENVIRON_KEY = "HTTP_FERRYMAN_SIGNATURE"

VERSION = "v1"
#: Longest header value read at all: a longer one is refused before any parsing or hashing.
MAX_VALUE_LENGTH = 4096
#: Shortest key accepted (bytes): HMAC-SHA256 keys shorter than this are guessable offline.
MIN_KEY_LENGTH = 16

_FIELDS = ("kid", "ts", "nonce", "for", "host", "proto", "port", "prefix", "method", "user")
_REQUIRED = frozenset(_FIELDS) - {"user"}
_PLAIN = re.compile(r"[A-Za-z0-9._~-]*")  # RFC 3986 unreserved: written as is


def _enc(value: str) -> str:
    """Percent-encode all but unreserved characters (UTF-8 first); most values need nothing."""
    return value if _PLAIN.fullmatch(value) else quote(value, safe="")


class InvalidSignature(ValueError):
    """The header is not believed; ``reason`` says why in a few words (for one log line)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Signed:
    """A verified header: the facts, when they were signed, and the nonce (for a replay cache)."""

    facts: ForwardedFacts
    timestamp: int
    nonce: str
    key_index: int


@lru_cache(maxsize=64)
def key_id(key: bytes) -> str:
    """The key's public fingerprint: 8 hex digits of HMAC-SHA256(key, "ferryman key id")."""
    return hmac.new(key, b"ferryman key id", hashlib.sha256).hexdigest()[:8]


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _mac(key: bytes, text: str) -> str:
    return _b64(hmac.new(key, text.encode("ascii"), hashlib.sha256).digest())


def sign(key: bytes, facts: ForwardedFacts, *, now: float, nonce: bytes) -> bytes:
    """Return the ``Ferryman-Signature`` value vouching for `facts` at time `now`.

    Args:
        key: the first configured key (at least :data:`MIN_KEY_LENGTH` bytes).
        facts: what the app should see.
        now: seconds since the epoch.
        nonce: fresh random bytes (12 or more), never reused.
    """
    parts = [
        VERSION,
        "kid=" + key_id(key),
        "ts=%d" % int(now),
        "nonce=" + _b64(nonce),
        "for=" + _enc(facts.client),
        "host=" + _enc(facts.host),
        "proto=" + _enc(facts.scheme),
        "port=%d" % facts.port,
        "prefix=" + _enc(facts.prefix),
        "method=" + _enc(facts.method),
    ]
    if facts.user is not None:
        parts.append("user=" + _enc(facts.user))
    text = ";".join(parts)
    return (text + ";sig=" + _mac(key, text)).encode("ascii")


def verify(value: bytes, keys: Sequence[bytes], *, now: float, max_skew: float) -> Signed:
    """Check a ``Ferryman-Signature`` value and return what it vouches for.

    Args:
        value: the header value as received.
        keys: every key accepted (the signing key first, then the one being rotated out).
        now: seconds since the epoch.
        max_skew: largest accepted difference between `now` and the signed time, either way.

    Raises:
        InvalidSignature: malformed, signed with an unknown key, a MAC that does not match, or a
            timestamp outside the window. The MAC is compared with :func:`hmac.compare_digest`
            and checked before any field is believed.
    """
    if len(value) > MAX_VALUE_LENGTH:
        raise InvalidSignature("header too long")
    try:
        text = value.decode("ascii")
    except UnicodeDecodeError:
        raise InvalidSignature("not ASCII") from None
    body, sep, sig = text.rpartition(";sig=")
    if not sep or not body.startswith(VERSION + ";"):
        raise InvalidSignature("malformed (no v1 prefix or no sig)")
    fields: dict[str, str] = {}
    for item in body[len(VERSION) + 1 :].split(";"):
        name, eq, raw = item.partition("=")
        if not eq or name not in _FIELDS or name in fields:
            raise InvalidSignature("malformed field %r" % name[:20])
        fields[name] = raw
    if not _REQUIRED <= fields.keys():
        raise InvalidSignature("missing " + ", ".join(sorted(_REQUIRED - fields.keys())))
    kid = fields["kid"]
    index = next((i for i, k in enumerate(keys) if hmac.compare_digest(key_id(k), kid)), -1)
    if index < 0:
        raise InvalidSignature("signed with an unknown key (kid %s)" % kid[:8])
    if not hmac.compare_digest(_mac(keys[index], body), sig):
        raise InvalidSignature("signature does not match (values changed or wrong key)")
    ts_text = fields["ts"]
    if not (ts_text.isdigit() and len(ts_text) <= 12):
        raise InvalidSignature("malformed timestamp")
    ts = int(ts_text)
    if ts < now - max_skew:
        raise InvalidSignature("stale: signed %ds ago, more than %gs" % (int(now) - ts, max_skew))
    if ts > now + max_skew:
        raise InvalidSignature("signed %ds in the future, more than %gs" % (ts - int(now), max_skew))
    port_text = fields["port"]
    if not (port_text.isdigit() and len(port_text) <= 5 and int(port_text) <= 65535):
        raise InvalidSignature("malformed port")
    user = fields.get("user")
    try:
        facts = ForwardedFacts(
            client=unquote(fields["for"], errors="strict"),
            host=unquote(fields["host"], errors="strict"),
            scheme=unquote(fields["proto"], errors="strict"),
            port=int(port_text),
            prefix=unquote(fields["prefix"], errors="strict"),
            method=unquote(fields["method"], errors="strict"),
            user=unquote(user, errors="strict") if user is not None else None,
        )
    except UnicodeDecodeError:  # only a key holder can get here: still not a crash
        raise InvalidSignature("malformed percent-encoding") from None
    return Signed(facts, ts, fields["nonce"], index)


class NonceCache:
    """Remembers recently seen nonces so a captured header cannot be replayed (one process).

    Bounded: at most `size` nonces. When full, the oldest is forgotten and its timestamp becomes a
    floor: anything signed at or before the floor is refused from then on (it might be a replay
    of a forgotten nonce). Size it above the requests one process serves in ``2 * max_skew``.
    """

    __slots__ = ("size", "max_skew", "_seen", "floor")

    def __init__(self, size: int = 65536, max_skew: float = 30.0) -> None:
        self.size = size
        self.max_skew = max_skew
        self._seen: OrderedDict[str, int] = OrderedDict()
        self.floor = -1

    def __len__(self) -> int:
        return len(self._seen)

    def check(self, signed: Signed, now: float) -> None:
        """Record the nonce of a verified header.

        Raises:
            InvalidSignature: this nonce was seen already, or is older than what the cache covers.
        """
        seen = self._seen
        limit = now - self.max_skew
        while seen:  # forget nonces whose timestamps the skew check refuses anyway
            oldest, ts = next(iter(seen.items()))
            if ts >= limit:
                break
            del seen[oldest]
        if signed.nonce in seen:
            raise InvalidSignature("replayed (nonce seen before)")
        if signed.timestamp <= self.floor:
            raise InvalidSignature("older than the replay cache covers; enlarge it")
        if len(seen) >= self.size:
            _, ts = seen.popitem(last=False)
            self.floor = max(self.floor, ts)
        seen[signed.nonce] = signed.timestamp
