"""Request ids: one per request, kept from a trusted proxy in front or made here, sent as X-Request-Id.

A client's X-Request-Id is believed only from a peer in ``trusted_proxies`` (as the X-Forwarded-*
headers are), and only when it is a plain token of at most `MAX_LENGTH` characters: it reaches log
lines and the app, so it may not carry spaces, quotes, commas or control bytes. Any other client
copy is removed and replaced: the app sees one X-Request-Id, and ferryman vouches for it.

Made ids are a per-process random prefix and a counter in hexadecimal (like nginx's $request_id,
unique but cheaper): ``<16 hex digits>-<counter>``. The prefix comes from the caller (randomness is
passed in), so ids of two processes or two runs never collide in practice.
"""

from __future__ import annotations

import re

HEADER = b"x-request-id"
MAX_LENGTH = 128

_TOKEN = re.compile(rb"[A-Za-z0-9._~:@+/=-]{1,%d}" % MAX_LENGTH)


def is_valid_request_id(value: bytes) -> bool:
    """A request id from a trusted peer that may be kept: 1 to `MAX_LENGTH` characters of letters,
    digits and ``. _ ~ : @ + / = -`` (UUIDs, hex, base64 and nginx/Heroku/AWS ids)."""
    return _TOKEN.fullmatch(value) is not None


class RequestIds:
    """Makes ids ``<prefix>-<counter>``; keeps a valid one from a trusted peer."""

    __slots__ = ("_prefix", "_counter")

    def __init__(self, random_bytes: bytes) -> None:
        self._prefix = random_bytes[:8].hex().encode() + b"-"
        self._counter = 0

    def make(self) -> bytes:
        """A new id, unique in this process."""
        self._counter += 1
        return b"%s%x" % (self._prefix, self._counter)

    def for_request(self, incoming: bytes | None) -> bytes:
        """The id of a request whose trusted X-Request-Id is `incoming` (None: untrusted or absent)."""
        if incoming is not None and _TOKEN.fullmatch(incoming) is not None:
            return incoming
        self._counter += 1
        return b"%s%x" % (self._prefix, self._counter)
