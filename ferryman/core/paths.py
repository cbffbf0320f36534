"""Request-target splitting and path normalisation: what ferryman routes on is what it forwards.

Theory of operation. `split_target` cuts an origin-form target into path and query. `normalize_path`
turns the path into the one canonical form that both the router and the backend see
(invariant 6 in docs/request-safety.md):

- unreserved escapes are decoded (RFC 3986 2.3: ALPHA DIGIT `-` `.` `_` `~`; `%41` -> `A`,
  `%7e` -> `~`, `%2e` -> `.`); every other escape is kept byte for byte, hex case included (Apache
  forwards `%c3%a9` as `%c3%a9`; uppercasing would be RFC 3986 6.2.2.1 but would change bytes the
  backend may sign or compare);
- repeated slashes are merged and dot segments removed (RFC 3986 5.2.4), in one left-to-right pass in
  which merging comes first, as Apache 2.4's `ap_normalize_path` does: `/a//../b` is `/b`;
- `;params` are kept, the trailing slash is kept (`/a/b/` stays, `/a/.` is `/a/`, `/a/..` is `/`).

Refused, never forwarded (`PathRejected` carries the status):

- 404 (Apache's answer, and what "no route matches" gives): a path that climbs above `/`; `%2F` (unless
  `keep_encoded_slashes`, Apache `AllowEncodedSlashes NoDecode`, then it stays encoded and is never a
  segment boundary); `%5C` and a raw backslash (Windows and some servlet containers read them as `/`);
  `%00`.
- 400: a malformed escape (`%zz`, `%4`); a byte outside visible ASCII (controls, space, DEL, >= 0x80);
  `#`; a path not starting with `/`; a segment that is `.` or `..` followed by `;params` (`/..;/`: Tomcat
  and Apache's own `ProxyPass mapping=servlet` read it as `..`, so it would climb out of a route
  prefix behind ferryman's back); with `keep_encoded_slashes`, a `%2F`-separated piece that is `.` or
  `..` (`..%2F`: a backend that decodes `%2F` would climb).

Double-encoded forms are data: `%252e` is `%25` then `2e`, stays `%252e`, and is never a dot.

Speed. Nearly every real path is already canonical; one precompiled `fullmatch` recognises those (no
`%`, `\\`, `#`, `//`, no segment starting with `.`, visible ASCII only, leading `/`) and returns the
very object it was given. Everything else takes `_normalize_slow`, which is exact, not fast.
"""

from __future__ import annotations

import re

from ferryman.errors import PathRejected

__all__ = ["split_target", "normalize_path"]

# -- byte classes ------------------------------------------------------------------------------------

# A canonical path, recognised in one C-level pass: segments of visible ASCII without `%` (0x25),
# `\` (0x5C) or `#` (0x23), no segment empty (no `//`) or starting with `.` (0x2E: `.`, `..`, `.;`),
# an optional trailing slash; or `/` alone. Segments like `.well-known` fall to the slow path, which
# returns them unchanged; that is a miss, never a wrong answer. The pattern cannot backtrack: a
# segment's characters exclude `/`, which alone starts the next repetition.
_SEG_FIRST = rb"[\x21\x22\x24\x26-\x2d\x30-\x5b\x5d-\x7e]"
_SEG_REST = rb"[\x21\x22\x24\x26-\x2e\x30-\x5b\x5d-\x7e]*"
_is_canonical = re.compile(rb"(?:/" + _SEG_FIRST + _SEG_REST + rb")+/?|/").fullmatch

# RFC 9112 3.2 / RFC 3986 3.3: a target is visible ASCII; anything else is 400.
_find_invisible = re.compile(rb"[^\x21-\x7e]").search

_HEX = b"0123456789abcdefABCDEF"
_UNRESERVED = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")

# Markers in `_ESCAPES` for escapes that need a decision rather than a replacement.
_ENCODED_SLASH = 1
_FORBIDDEN = 2


def _build_escapes() -> dict[bytes, bytes | int]:
    """Every two-hex-digit pair (either case) -> what `%<pair>` becomes; a pair absent is malformed."""
    table: dict[bytes, bytes | int] = {}
    for hi in _HEX:
        for lo in _HEX:
            pair = bytes((hi, lo))
            octet = int(pair, 16)
            if octet == 0x2F:
                table[pair] = _ENCODED_SLASH
            elif octet in (0x5C, 0x00):
                table[pair] = _FORBIDDEN
            elif octet in _UNRESERVED:
                table[pair] = bytes((octet,))
            else:
                table[pair] = b"%" + pair
    return table


_ESCAPES = _build_escapes()

_DOT = b"."
_DOTDOT = b".."


# -- public API --------------------------------------------------------------------------------------


def split_target(target: bytes) -> tuple[bytes, bytes]:
    """Split an origin-form request target (RFC 9112 3.2.1) into `(path, query)`.

    The query keeps its leading `?` and is otherwise returned byte for byte (`b""` when there is
    none); it is forwarded as is, so it is checked for bytes outside visible ASCII here (400).
    The path is returned as is: pass it to `normalize_path`.

    Raises `PathRejected(400)` for a target that does not start with `/` (absolute-form and `*` are
    the caller's to handle before this) and for a `#`: a fragment is never sent (RFC 9110 7.1), and
    forwarding one would let the backend and ferryman disagree on where the path ends.
    """
    if target[:1] != b"/":
        raise PathRejected("request target is not origin-form (must start with '/')", 400)
    if 35 in target:  # '#'
        raise PathRejected("request target contains a fragment ('#')", 400)
    i = target.find(63)  # '?'
    if i < 0:
        return target, b""
    query = target[i:]
    if _find_invisible(query) is not None:
        raise PathRejected("query contains a byte outside visible ASCII", 400)
    return target[:i], query


def normalize_path(path: bytes, *, keep_encoded_slashes: bool = False) -> bytes:
    """Return the canonical form of a request path, the one to route on and to forward.

    See the module docstring for the rules. A path already canonical is returned as the same
    object (one precompiled `fullmatch`). `keep_encoded_slashes` is a route's
    `encoded_slashes = "keep"`: `%2F` is then kept encoded (its case untouched) and never splits a
    segment. Raises `PathRejected` with status 404 or 400.
    """
    if _is_canonical(path) is not None:
        return path
    return _normalize_slow(path, keep_encoded_slashes)


# -- slow path ---------------------------------------------------------------------------------------


def _normalize_slow(path: bytes, keep_encoded_slashes: bool) -> bytes:
    """Exact normalisation for paths the fast path did not recognise; same result on any input."""
    if path[:1] != b"/":
        raise PathRejected("path does not start with '/'", 400)
    if _find_invisible(path) is not None:
        raise PathRejected("path contains a byte outside visible ASCII", 400)
    if 35 in path:  # '#'
        raise PathRejected("path contains '#'", 400)
    if 92 in path:  # '\'
        raise PathRejected("path contains a backslash", 404)

    saw_encoded_slash = False
    if 37 in path:  # '%'
        parts = path.split(b"%")
        out = [parts[0]]
        for part in parts[1:]:
            pair = part[:2]
            rep = _ESCAPES.get(pair)
            if rep is None:
                raise PathRejected("malformed percent-escape in path", 400)
            if rep.__class__ is int:
                if rep == _FORBIDDEN:
                    raise PathRejected("path contains %5C or %00", 404)
                if not keep_encoded_slashes:
                    raise PathRejected("path contains an encoded slash (%2F)", 404)
                saw_encoded_slash = True
                rep = b"%" + pair
            out.append(rep)  # type: ignore[arg-type]
            out.append(part[2:])
        path = b"".join(out)

    segments: list[bytes] = []
    raw = path.split(b"/")
    for seg in raw:
        if not seg or seg == _DOT:
            continue
        if seg == _DOTDOT:
            if not segments:
                raise PathRejected("path climbs above '/'", 404)
            segments.pop()
            continue
        if seg[0] == 46 and (seg.startswith(b".;") or seg.startswith(b"..;")):
            raise PathRejected("dot segment with ;parameters in path", 400)
        segments.append(seg)

    if saw_encoded_slash:
        for seg in segments:
            _check_encoded_slash_pieces(seg)

    if not segments:
        return b"/"
    last = raw[-1]
    if not last or last == _DOT or last == _DOTDOT:
        segments.append(b"")  # the trailing slash
    return b"/" + b"/".join(segments)


def _check_encoded_slash_pieces(seg: bytes) -> None:
    """Refuse a kept-`%2F` segment whose pieces hold a dot segment a decoding backend would follow."""
    if 37 not in seg:
        return
    for piece in seg.replace(b"%2f", b"%2F").split(b"%2F"):
        if piece[:1] == _DOT:
            name = piece.partition(b";")[0]
            if name == _DOT or name == _DOTDOT:
                raise PathRejected("dot segment between encoded slashes", 400)
