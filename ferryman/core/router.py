"""Longest-prefix routing and public <-> member path mapping (Apache `ProxyPass` / `ProxyPassReverse`).

Theory of operation. A `Router` is built once per configuration from `(listeners, prefix, payload)`
entries and then only read. For every listener named by some entry it precomputes a table holding the
routes that listener sees (its own plus the catch-all ones, `listeners=None`); a listener named by no
entry sees the catch-all table. Prefixes match on segment boundaries (`/webapps` matches `/webapps`,
`/webapps/`, `/webapps/x`, never `/webappsX`; `/` matches everything), the longest wins, and a route
for a specific listener beats a catch-all one with the same prefix.

A table is keyed by a path's first segment: a path's candidates are only the routes whose prefix
starts with that same segment, longest first, then the route whose prefix is that segment alone, then
the `/` route. The common case (one single-segment prefix per first segment) is one `find`, one slice
and one dict lookup, and the result is a tuple built at construction time.

`match` expects a path from `normalize_path`: routing on anything else would let `..` or `//` pick a
route the backend does not see (invariant 6 in docs/request-safety.md). A `%2F` kept by `encoded_slashes = "keep"`
is not a `/`, so it never ends a segment here either.

`map_path` / `unmap_path` are the request and response halves of one prefix substitution. Prefixes
are accepted with or without a trailing slash; `/` and `""` both mean the root.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Generic, TypeVar

from ferryman.core.paths import normalize_path
from ferryman.errors import PathRejected

__all__ = ["Router", "map_path", "unmap_path"]

T = TypeVar("T")

_SLASH = 47  # ord("/")

# (prefix, len(prefix), (public prefix, payload)) for a multi-segment route
_Deep = tuple[bytes, int, tuple[bytes, T]]
# first segment -> (deeper routes longest first, the result when none of them matches)
_Table = tuple[dict[bytes, tuple[tuple[_Deep[T], ...], tuple[bytes, T] | None]], tuple[bytes, T] | None]


def _canonical_prefix(prefix: bytes) -> bytes:
    """`/webapps/` -> `/webapps`, `/` -> `/`; ValueError for a prefix no normalised path could match."""
    if not isinstance(prefix, bytes) or prefix[:1] != b"/":
        raise ValueError(f"route prefix must be bytes starting with '/': {prefix!r}")
    stripped = prefix.rstrip(b"/") or b"/"
    try:
        canonical = normalize_path(stripped)
    except PathRejected as exc:
        raise ValueError(f"route prefix {prefix!r} is not a valid path: {exc.reason}") from None
    if canonical != stripped:
        raise ValueError(
            f"route prefix {prefix!r} is not in normalised form; write it as {canonical!r}"
        )
    return stripped


class Router(Generic[T]):
    """Longest segment-boundary prefix match per listener; built once, read on every request.

    `entries` are `(listeners, prefix, payload)`: `listeners` is a tuple of listener names or None
    for every listener; `prefix` is bytes starting with `/` and already normalised (a trailing slash
    is dropped: `/webapps/` routes like `/webapps`). Two routes with the same prefix for the same
    listener (both specific, or both catch-all) are a ValueError; a specific and a catch-all one with
    the same prefix is allowed and the specific one wins on its listeners.
    """

    __slots__ = ("_tables", "_default")

    def __init__(self, entries: Iterable[tuple[tuple[str, ...] | None, bytes, T]]) -> None:
        catch_all: dict[bytes, T] = {}
        specific: dict[str, dict[bytes, T]] = {}
        for listeners, prefix, payload in entries:
            canonical = _canonical_prefix(prefix)
            if listeners is None:
                if canonical in catch_all:
                    raise ValueError(f"two routes for every listener with prefix {canonical!r}")
                catch_all[canonical] = payload
                continue
            if isinstance(listeners, str) or not listeners:
                raise ValueError(
                    f"route {canonical!r}: listeners must be a non-empty tuple of names, or None"
                )
            for name in listeners:
                routes = specific.setdefault(name, {})
                if canonical in routes:
                    raise ValueError(
                        f"two routes for listener {name!r} with prefix {canonical!r}"
                    )
                routes[canonical] = payload
        self._default: _Table[T] = self._build(catch_all)
        self._tables: dict[str, _Table[T]] = {
            name: self._build({**catch_all, **routes}) for name, routes in specific.items()
        }

    @staticmethod
    def _build(routes: dict[bytes, T]) -> _Table[T]:
        root = (b"/", routes[b"/"]) if b"/" in routes else None
        groups: dict[bytes, list[bytes]] = {}
        for prefix in routes:
            if prefix == b"/":
                continue
            i = prefix.find(b"/", 1)
            groups.setdefault(prefix if i < 0 else prefix[:i], []).append(prefix)
        by_first: dict[bytes, tuple[tuple[_Deep[T], ...], tuple[bytes, T] | None]] = {}
        for first, prefixes in groups.items():
            fallback = (first, routes[first]) if first in routes else root
            deeper = sorted((p for p in prefixes if p != first), key=len, reverse=True)
            by_first[first] = (tuple((p, len(p), (p, routes[p])) for p in deeper), fallback)
        return by_first, root

    def match(self, listener: str, path: bytes) -> tuple[bytes, T] | None:
        """Return `(prefix, payload)` of the longest route for `path` on `listener`, or None.

        `prefix` is the route's prefix without trailing slash (`/` for the root route); pass it to
        `map_path`. `path` must come from `normalize_path`.
        """
        by_first, root = self._tables.get(listener, self._default)
        i = path.find(b"/", 1)
        group = by_first.get(path if i < 0 else path[:i])
        if group is None:
            return root
        deeper, fallback = group
        for prefix, n, result in deeper:
            if path.startswith(prefix) and (len(path) == n or path[n] == _SLASH):
                return result
        return fallback


def map_path(path: bytes, public_prefix: bytes, member_prefix: bytes) -> bytes:
    """`<public_prefix><rest>` -> `<member_prefix><rest>` (Apache `ProxyPass`).

    An empty rest becomes `/`: `/public` reaches the member as `/webapps/`, as with
    Apache `ProxyPass`. `/` and `""` as either prefix mean the root: a root member gets `<rest>` or `/`.
    ValueError when `path` is not under `public_prefix` on a segment boundary (a caller bug: the
    router chose that prefix for this path).
    """
    pub = public_prefix.rstrip(b"/")
    mem = member_prefix.rstrip(b"/")
    n = len(pub)
    if not path.startswith(pub) or (len(path) > n and path[n] != _SLASH) or not path:
        raise ValueError(f"path {path!r} is not under prefix {public_prefix!r}")
    if len(path) == n:
        return mem + b"/"
    if pub == mem:
        return path
    return mem + path[n:]


def unmap_path(path: bytes, member_prefix: bytes, public_prefix: bytes) -> bytes | None:
    """The reverse of `map_path` for `ProxyPassReverse`: a member path -> the public path, or None.

    None when `path` is not under `member_prefix` on a segment boundary (or does not start with `/`).
    `unmap_path(map_path(p, pub, mem), mem, pub) == p`, except that the bare public prefix comes
    back with a slash (`/public` -> `/webapps/` -> `/public/`).
    """
    mem = member_prefix.rstrip(b"/")
    n = len(mem)
    if path[:1] != b"/" or not path.startswith(mem) or (len(path) > n and path[n] != _SLASH):
        return None
    pub = public_prefix.rstrip(b"/")
    if len(path) == n:
        return pub or b"/"
    if pub == mem:
        return path
    return pub + path[n:]
