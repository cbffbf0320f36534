"""App side: decide what a request behind ferryman really is, for the WSGI, ASGI and Django adapters.

One policy, three adapters (``ferryman.wsgi``, ``ferryman.asgi``, ``ferryman.django``):

* **Signing keys configured**: only a valid ``Ferryman-Signature`` is believed (HMAC-SHA256 with one
  of the keys, timestamp within ``max_skew``, method matching, nonce not seen before when the
  replay cache is on). With ``trusted_proxies`` also given, the peer must be one of them as well.
* **Otherwise**: the peer must be a trusted proxy; then ``X-Forwarded-*`` is read, or RFC 7239
  ``Forwarded`` instead when ``forwarded=True``. The two are never mixed.
* Either way, ``Remote-User`` is believed only as part of a believed request.

The rules for reading the headers are ``ferryman.core.forwarded`` and ``ferryman.core.signing``,
shared with the front end. A request that is not believed keeps what the app server saw; the
adapters then remove every header ferryman vouches for (``Remote-User`` in every spelling included),
so nothing downstream (Django's ``USE_X_FORWARDED_HOST``, a ``RemoteUserMiddleware``) can read a
client's copy.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Iterable, Mapping
from typing import Generic, TypeVar

from ferryman.core import forwarded as fwd
from ferryman.core import signing
from ferryman.core.forwarded import ForwardedFacts, TrustedProxies

__all__ = ["ForwardedFacts", "ProxyHeaders", "load_keys"]

log = logging.getLogger("ferryman.app")


def load_keys(keys: Iterable[str | bytes]) -> tuple[bytes, ...]:
    """Keys as bytes. A string ``"env:NAME"`` reads the environment variable NAME, ``"file:PATH"``
    reads the file (surrounding whitespace dropped); any other string is the key itself.

    Raises:
        ValueError: a variable or file is missing, or a key is shorter than 16 bytes.
    """
    out: list[bytes] = []
    for i, key in enumerate(keys):
        if isinstance(key, str) and key.startswith("env:"):
            value = os.environ.get(key[4:])
            if value is None:
                raise ValueError(f"signing key {i}: environment variable {key[4:]} is not set")
            raw = value.strip().encode("utf-8")
        elif isinstance(key, str) and key.startswith("file:"):
            try:
                with open(key[5:], "rb") as f:
                    raw = f.read().strip()
            except OSError as e:
                raise ValueError(f"signing key {i}: cannot read {key[5:]!r}: {e.strerror or e}") from None
        else:
            raw = key.encode("utf-8") if isinstance(key, str) else bytes(key)
        if len(raw) < signing.MIN_KEY_LENGTH:
            raise ValueError(f"signing key {i} is {len(raw)} bytes; use 16 or more (32 random bytes are best)")
        out.append(raw)
    return tuple(out)


class _OncePerReason:
    """Log a refused request once per reason per minute, with how many were not logged."""

    def __init__(self, interval: float = 60.0) -> None:
        self.interval = interval
        self._last: dict[str, tuple[float, int]] = {}
        self._lock = threading.Lock()

    def __call__(self, reason: str, peer: str) -> None:
        kind = reason.split(":", 1)[0].split("(", 1)[0].strip()
        now = time.monotonic()
        with self._lock:
            last, skipped = self._last.get(kind, (-1e18, 0))
            if now - last < self.interval:
                self._last[kind] = (last, skipped + 1)
                return
            if len(self._last) > 256:
                self._last.clear()
            self._last[kind] = (now, 0)
        more = f" ({skipped} more since the last report)" if skipped else ""
        log.warning("ferryman: request from %s not trusted: %s%s; it is served as a direct request "
                    "(no forwarded values, no remote user)", peer, reason, more)


class ProxyHeaders:
    """Trust settings of one app, and the decision for each request.

    Args:
        trusted_proxies: addresses and CIDR networks of ferryman (and any proxy in front of it).
        signing_keys: the keys of ferryman's ``[signing]``; with them only signed requests are believed.
            Strings ``"env:NAME"`` and ``"file:PATH"`` are read (see :func:`load_keys`).
        forwarded: read RFC 7239 ``Forwarded`` instead of ``X-Forwarded-*`` (unsigned mode only).
        max_skew: seconds a signature's timestamp may differ from this clock.
        replay_cache: nonces remembered per process to refuse a replayed signature; 0 turns it off.
        setting_names: how the two main options are called where they are configured (for messages).

    Raises:
        ValueError: neither trusted proxies nor signing keys are given (nothing could ever be
            believed, which is always a configuration mistake), or a value is malformed.
    """

    def __init__(self, trusted_proxies: Iterable[str] = (), signing_keys: Iterable[str | bytes] = (), *,
                 forwarded: bool = False, max_skew: float = 30.0, replay_cache: int = 65536,
                 setting_names: tuple[str, str] = ("trusted_proxies", "signing_keys")) -> None:
        if isinstance(trusted_proxies, str) or isinstance(signing_keys, (str, bytes)):
            raise ValueError(f"{setting_names[0]} and {setting_names[1]} are lists, not single strings")
        self.trusted = TrustedProxies.parse(list(trusted_proxies))
        self.keys = load_keys(signing_keys)
        if not self.trusted and not self.keys:
            raise ValueError(
                f"{setting_names[0]} and {setting_names[1]} are both empty, so no request could ever be "
                f"trusted; set {setting_names[0]} to ferryman's address(es) (e.g. [\"127.0.0.1\"]) or "
                f"{setting_names[1]} to the keys of ferryman's [signing] table")
        if self.keys and forwarded:
            raise ValueError("forwarded=True reads RFC 7239 Forwarded, which is unsigned; with signing keys "
                             "only the Ferryman-Signature header is read: drop one of the two")
        self.forwarded = forwarded
        self.max_skew = float(max_skew)
        self.nonces = signing.NonceCache(replay_cache, self.max_skew) if self.keys and replay_cache else None
        self._nonce_lock = threading.Lock()
        self.report = _OncePerReason()

    @property
    def signed(self) -> bool:
        return bool(self.keys)

    def believe(self, headers: Mapping[str, bytes], own: ForwardedFacts) -> ForwardedFacts | None:
        """The facts to apply, or None when the request is not believed (then nothing changes).

        Args:
            headers: canonical lower-case header names (``-``) to values, repeats joined by ``", "``.
            own: the request as the app server saw it; ``own.method`` must be set.

        Never raises for anything a client sends: a refusal is logged (once per reason per minute).
        """
        try:
            return self._believe(headers, own)
        except Exception:  # a bug here must not turn into a 500 for every request; say it loudly
            log.exception("ferryman: unexpected error reading forwarded headers from %s", own.client)
            return None

    def _believe(self, headers: Mapping[str, bytes], own: ForwardedFacts) -> ForwardedFacts | None:
        if self.keys:
            value = headers.get("ferryman-signature")
            if value is None:
                return None
            if self.trusted and own.client not in self.trusted:
                self.report("signature from a peer that is not in trusted proxies", own.client)
                return None
            now = time.time()
            try:
                signed = signing.verify(value, self.keys, now=now, max_skew=self.max_skew)
                if signed.facts.method != own.method:
                    raise signing.InvalidSignature(
                        f"signed for method {signed.facts.method!r}, request is {own.method!r}")
                if self.nonces is not None:
                    with self._nonce_lock:
                        self.nonces.check(signed, now)
            except signing.InvalidSignature as e:
                self.report(e.reason, own.client)
                return None
            except ValueError as e:  # malformed percent-encoding and the like
                self.report(f"malformed ({e})", own.client)
                return None
            return signed.facts
        if self.forwarded:
            return fwd.read_forwarded(headers.get("forwarded", b""), headers.get("remote-user"), own,
                                      self.trusted)
        return fwd.read_x_forwarded(
            {k.encode("latin-1"): v for k, v in headers.items() if k in _X_NAMES}, own, self.trusted)


_X_NAMES = frozenset({"x-forwarded-for", "x-forwarded-host", "x-forwarded-proto", "x-forwarded-port",
                      "x-forwarded-prefix", "remote-user"})


AppT = TypeVar("AppT")


class ProxyHeadersAdapter(Generic[AppT]):
    """What the WSGI and ASGI middleware share: the wrapped app, its mount path and the trust policy."""

    def __init__(self, app: AppT, trusted_proxies: Iterable[str] = (),
                 signing_keys: Iterable[str | bytes] = (), *, forwarded: bool = False, max_skew: float = 30.0,
                 replay_cache: int = 65536, proxy: ProxyHeaders | None = None, mount: str = "") -> None:
        self.app = app
        self.mount = mount.rstrip("/")
        self.proxy = proxy if proxy is not None else ProxyHeaders(
            trusted_proxies, signing_keys, forwarded=forwarded, max_skew=max_skew, replay_cache=replay_cache)


def is_vouched(canonical: str) -> bool:
    """A header (canonical name) that only ferryman may write: removed from unbelieved requests."""
    return fwd.is_vouched(canonical.encode("latin-1"))


def vouched_headers(facts: ForwardedFacts) -> list[tuple[str, str]]:
    """The header set a believed request carries after the adapters rewrote it: one consistent copy
    of the facts, for code that reads headers (Django's ``USE_X_FORWARDED_HOST``,
    ``SECURE_PROXY_SSL_HEADER``, ``USE_X_FORWARDED_PORT``, a ``RemoteUserMiddleware`` reading
    ``HTTP_REMOTE_USER``)."""
    out = [("x-forwarded-for", facts.client), ("x-forwarded-proto", facts.scheme),
           ("x-forwarded-port", str(facts.port))]
    if facts.host:
        out.append(("x-forwarded-host", facts.host))
    if facts.prefix:
        out.append(("x-forwarded-prefix", facts.prefix))
    if facts.user is not None:
        out.append(("remote-user", facts.user))
    return out
