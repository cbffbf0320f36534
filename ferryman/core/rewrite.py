"""Reverse rewriting of response headers: Apache ``ProxyPassReverse``, ``ProxyPassReverseCookiePath``
and ``ProxyPassReverseCookieDomain``.

Theory of operation
-------------------
A route maps ``<public prefix><rest>`` to ``<member prefix><rest>`` on one of its pool's members
(``[[route]]`` ``path`` and the member URL's path, Apache ``ProxyPass``). A backend that does not know it sits
behind ferryman answers with the member's URLs: ``Location: http://127.0.0.1:9001/webapps/target``. These
functions turn such values back into public ones:

* :func:`rewrite_location` for ``Location``, ``Content-Location`` and ``URI``: an absolute URL that points
  at a member becomes ``<public origin><public prefix><rest>`` -- also when both prefixes are equal,
  since the member's origin must never leak (Apache ``ProxyPassReverse`` does the same). A path-absolute
  reference under the member prefix gets the public prefix (Apache leaves those alone unless a path-only
  ``ProxyPassReverse`` is configured; an app behind a prefix needs it).
* :func:`rewrite_set_cookie` changes a ``Set-Cookie``'s ``Path`` and ``Domain`` values and nothing else.

Where ferryman differs from Apache 2.4 (``ap_proxy_location_reverse_map``/``ap_proxy_cookie_reverse_map``
in ``modules/proxy/proxy_util.c``), on purpose:

* Prefixes match on **segment boundaries** (``/webapps`` covers ``/webapps``, ``/webapps/x``,
  ``/webapps?q``, ``/webapps;p``, never ``/webappsX``); Apache compares plain string prefixes.
* Paths compare **case-sensitively** (RFC 3986 section 6.2.2.1); Apache's balancer branch uses
  ``strncasecmp`` over the whole member URL. Scheme and host compare case-insensitively and the port
  by value (``http://app1`` is ``http://app1:80``); Apache compares the member URL's text.
* A cookie ``Path`` keeps its remainder (``/webapps/x`` -> ``/public/x``); Apache replaces the whole
  value (``/public``). A cookie ``Domain`` must equal a configured key (case-insensitive, optional
  leading dot, kept); Apache accepts any value that merely starts with the key. Every ``Path``/``Domain``
  attribute is rewritten; Apache rewrites only the last of each.

**The ambiguous overlap.** ferryman sends the public prefix as ``X-Forwarded-Prefix``, so an app may
already answer with public paths. When the two prefixes differ and neither contains the other
(``/webapps`` vs ``/public``), a path can only be one or the other. When the public prefix lies *under*
the member prefix (member root ``""`` published at ``/public``), ``/public/x`` could be either; it is
then read as already public and left as it is (an absolute member URL still gets the public origin).
This keeps the rewriting idempotent and keeps prefix-aware apps working; the price is that a member
path that itself starts with the public prefix cannot be reached through a redirect.

House rules: bytes in, bytes out; values are never parsed more than the decision needs; an input
that is not rewritten is returned as the same object.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field

__all__ = ["ReverseMap", "rewrite_location", "rewrite_set_cookie"]

_DEFAULT_PORT: dict[bytes, bytes] = {b"http": b"80", b"https": b"443"}
_BOUNDARY = frozenset(b"/?#;")
# WHATWG URL: in http(s) URLs the authority ends at "/", "?", "#" or "\\".
_AUTHORITY_RE = re.compile(rb"[^/?#\\]*")


def _as_bytes(value: str | bytes) -> bytes:
    return value.encode("ascii") if isinstance(value, str) else value


def _normal_prefix(prefix: bytes) -> bytes:
    prefix = prefix.rstrip(b"/")
    if prefix and not prefix.startswith(b"/"):
        prefix = b"/" + prefix
    return prefix


def _normal_authority(scheme: bytes, authority: bytes) -> bytes | None:
    """``host:port`` with the host lower-cased and the port explicit, or None if not a plain authority.

    ``userinfo@`` is refused: such a URL is not one a member would send about itself, and matching it
    would rewrite ``http://member@evil/`` tricks.
    """
    if 0x40 in authority:
        return None
    authority = authority.lower()
    if authority.startswith(b"["):
        end = authority.find(b"]")
        if end < 0:
            return None
        host, tail = authority[: end + 1], authority[end + 1 :]
        if not tail:
            port = b""
        elif tail.startswith(b":"):
            port = tail[1:]
        else:
            return None
    else:
        host, sep, port = authority.rpartition(b":")
        if not sep:
            host, port = authority, b""
    if not host:
        return None
    if not port:
        port = _DEFAULT_PORT.get(scheme, b"")
        if not port:
            return None
    elif not port.isdigit():
        return None
    elif port.startswith(b"0"):
        port = b"%d" % int(port)
    return host + b":" + port


@dataclass(frozen=True, slots=True)
class ReverseMap:
    """What :func:`rewrite_location` needs to know about one route and its pool.

    Attributes:
        member_origins: ``(scheme, authority)`` of every member: scheme lower case, authority
            ``host:port`` lower case with the port always explicit (``http://app1`` and
            ``http://app1:80`` are one origin), IPv6 hosts in brackets.
        member_prefix: the members' path, ``b""`` for root, no trailing slash.
        public_prefix: the route's public prefix, ``b""`` for root, no trailing slash.
        origin_prefixes: empty when every member has the same path (the common case). Otherwise it holds
            ``(scheme, authority, prefix)`` for **every** member, and ``member_prefix`` is only the
            prefix most members share: an absolute URL is mapped with its own origin's prefix(es), a
            path-absolute reference with the longest member prefix it falls under.

    Build it with :meth:`build` from the config's member URLs.
    """

    member_origins: frozenset[tuple[bytes, bytes]]
    member_prefix: bytes
    public_prefix: bytes
    origin_prefixes: frozenset[tuple[bytes, bytes, bytes]] = frozenset()
    # Derived in __post_init__, for the hot path: the member prefixes longest first, and whether the
    # public prefix lies strictly under the (shared) member prefix (the ambiguous overlap).
    _path_prefixes: tuple[bytes, ...] = field(init=False, repr=False, compare=False)
    _overlap: bool = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        prefixes = [self.member_prefix, self.public_prefix] + [p for _, _, p in self.origin_prefixes]
        for prefix in prefixes:
            if prefix and (not prefix.startswith(b"/") or prefix.endswith(b"/")):
                raise ValueError(f"expected b'' or a path without trailing slash, not {prefix!r}")
        if self.origin_prefixes:
            ordered = tuple(sorted({p for _, _, p in self.origin_prefixes}, key=len, reverse=True))
        else:
            ordered = (self.member_prefix,)
        object.__setattr__(self, "_path_prefixes", ordered)
        object.__setattr__(self, "_overlap", _overlaps(self.member_prefix, self.public_prefix))

    @classmethod
    def build(
        cls,
        members: list[tuple[str | bytes, str | bytes, int | None, str | bytes]],
        public_prefix: str | bytes,
    ) -> ReverseMap:
        """Build from ``(scheme, host, port, path)`` per member and the route's public prefix.

        ``host`` may be a name, an IPv4 address or an IPv6 address with or without brackets;
        ``port`` None means the scheme's default; ``path`` and ``public_prefix`` may be ``"/"`` or end
        with ``/`` (both mean the same without it).

        Raises:
            ValueError: no members, or a scheme other than http/https.
        """
        if not members:
            raise ValueError("expected at least one member")
        triples: list[tuple[bytes, bytes, bytes]] = []
        for scheme_s, host_s, port, path_s in members:
            scheme = _as_bytes(scheme_s).lower()
            if scheme not in _DEFAULT_PORT:
                raise ValueError(f"expected an http or https member, not {scheme!r}")
            host = _as_bytes(host_s).lower()
            if b":" in host and not host.startswith(b"["):
                host = b"[" + host + b"]"
            port_b = _DEFAULT_PORT[scheme] if port is None else b"%d" % port
            triples.append((scheme, host + b":" + port_b, _normal_prefix(_as_bytes(path_s))))
        counts = Counter(p for _, _, p in triples)
        shared = max(counts, key=counts.__getitem__)  # ties: the first member's (Counter keeps order)
        return cls(
            member_origins=frozenset((s, a) for s, a, _ in triples),
            member_prefix=shared,
            public_prefix=_normal_prefix(_as_bytes(public_prefix)),
            origin_prefixes=frozenset(triples) if len(counts) > 1 else frozenset(),
        )


def _is_under(path: bytes, prefix: bytes) -> bool:
    """Whether ``path`` (possibly followed by ``;params``, ``?query``, ``#fragment``) lies under ``prefix``."""
    if not prefix:
        return True
    if not path.startswith(prefix):
        return False
    return len(path) == len(prefix) or path[len(prefix)] in _BOUNDARY


def _overlaps(member: bytes, public: bytes) -> bool:
    return len(public) > len(member) and _is_under(public, member)


def _map(rest: bytes, prefix: bytes, public: bytes, overlap: bool) -> bytes | None:
    """Map a member path (+query/fragment) to the public one, or None when it is not a member path."""
    size = len(prefix)
    if size:
        if not rest.startswith(prefix):
            return None
        if len(rest) > size and rest[size] not in _BOUNDARY:
            return None
    if overlap and _is_under(rest, public):
        return rest  # the ambiguous overlap (module docstring): already public
    mapped = public + rest[size:]
    if not mapped or mapped[0] != 0x2F:
        mapped = b"/" + mapped
    return mapped


def _map_any(rest: bytes, prefixes: tuple[bytes, ...], public: bytes) -> bytes | None:
    for prefix in prefixes:
        mapped = _map(rest, prefix, public, _overlaps(prefix, public))
        if mapped is not None:
            return mapped
    return None


def rewrite_location(value: bytes, rmap: ReverseMap, public_origin: bytes) -> bytes:
    """Rewrite a ``Location``/``Content-Location``/``URI`` value that points at a member (``ProxyPassReverse``).

    Args:
        value: the header value from the backend.
        rmap: the route's :class:`ReverseMap`.
        public_origin: ``scheme://host[:port]`` of the public URL, no trailing slash: the listener's
            scheme and the client's ``Host``, e.g. ``b"https://www.example.com:8443"``.

    Returns:
        * ``http(s)://<member authority><member prefix><rest>`` ->
          ``<public_origin><public prefix><rest>`` (host case-insensitive, default port equivalent),
        * ``<member prefix><rest>`` (path-absolute) -> ``<public prefix><rest>``; should that begin with
          ``//`` or ``/\\`` (a network-path reference to another host, e.g. ``/webapps//evil.example``
          with a root public prefix) the public origin is put in front, so rewriting never creates
          an open redirect,
        * anything else unchanged, as the same object: other hosts, other paths, relative references
          (``x/y``), network-path references (``//host/x``), URLs with userinfo.

        ``rest`` (path remainder, query, fragment) is kept byte for byte.
    """
    if value[:1] == b"/":
        second = value[1:2]
        if second == b"/" or second == b"\\":
            return value
        if rmap.origin_prefixes:
            mapped = _map_any(value, rmap._path_prefixes, rmap.public_prefix)
        else:
            mapped = _map(value, rmap.member_prefix, rmap.public_prefix, rmap._overlap)
        if mapped is None or mapped == value:
            return value
        second = mapped[1:2]
        if second == b"/" or second == b"\\":
            return public_origin + mapped
        return mapped
    sep = value.find(b"://", 0, 8)
    if sep < 0:
        return value
    start = sep + 3
    end = value.find(b"/", start)
    if end < 0:
        end = len(value)
    origin = (value[:sep].lower(), value[start:end])
    if origin not in rmap.member_origins:
        # Not the exact text of a member origin (which never holds "?", "#" or "\\", so the fast
        # check above is sound): cut the authority where a browser would and compare normalised.
        cut = _AUTHORITY_RE.match(value, start)
        end = cut.end() if cut is not None else start
        normal = _normal_authority(origin[0], value[start:end])
        if normal is None:
            return value
        origin = (origin[0], normal)
        if origin not in rmap.member_origins:
            return value
    if rmap.origin_prefixes:
        own = tuple(
            sorted((p for s, a, p in rmap.origin_prefixes if (s, a) == origin), key=len, reverse=True)
        )
        mapped = _map_any(value[end:], own, rmap.public_prefix)
    else:
        mapped = _map(value[end:], rmap.member_prefix, rmap.public_prefix, rmap._overlap)
    if mapped is None:
        return value
    return public_origin + mapped


def _cookie_path(path: bytes, member_prefix: bytes, public_prefix: bytes) -> bytes:
    """``ProxyPassReverseCookiePath member public`` on one ``Path`` value, remainder kept.

    ``/`` is the member root only when the member prefix is root; then it maps to the public prefix
    itself (``/public``, not ``/public/``: RFC 6265 5.1.4 path-match makes ``/public`` cover both
    ``/public`` and ``/public/x``). Otherwise ``/`` is above the member and stays ``/``.
    """
    if not path.startswith(b"/"):
        return path  # RFC 6265 5.2.4: not a path; the user agent uses the default path
    if member_prefix:
        if not path.startswith(member_prefix):
            return path
        if len(path) != len(member_prefix) and path[len(member_prefix)] != 0x2F:
            return path
    elif path == b"/":
        return public_prefix or b"/"
    if (
        len(public_prefix) > len(member_prefix)
        and public_prefix.startswith(member_prefix)
        and public_prefix[len(member_prefix)] == 0x2F
        and path.startswith(public_prefix)
        and (len(path) == len(public_prefix) or path[len(public_prefix)] == 0x2F)
    ):
        return path  # the ambiguous overlap (module docstring): already public
    return public_prefix + path[len(member_prefix) :] or b"/"


def rewrite_set_cookie(
    value: bytes,
    *,
    member_prefix: bytes,
    public_prefix: bytes,
    rewrite_path: bool,
    domains: dict[bytes, bytes],
) -> bytes:
    """Rewrite a ``Set-Cookie`` value's ``Path`` and ``Domain`` attribute values, nothing else.

    Args:
        value: one ``Set-Cookie`` value.
        member_prefix: the path of the member that answered (``b""`` or ``b"/"`` for root; a
            trailing slash is ignored).
        public_prefix: the route's public prefix (``b""`` or ``b"/"`` for root).
        rewrite_path: whether ``Path`` follows the prefix mapping (``ProxyPassReverseCookiePath``).
        domains: ``ProxyPassReverseCookieDomain`` pairs, internal -> public, keys lower case without
            a leading dot.

    Returns:
        The value with only ``Path``/``Domain`` values replaced: attribute names keep their case,
        attributes their order, whitespace around ``=`` and ``;`` stays, and everything else
        (``Expires`` with its comma, ``SameSite``, unknown attributes, the cookie's own name and value,
        even a cookie *named* ``Path``) is kept byte for byte. ``Path`` under the member prefix, on a
        segment boundary, gets the public prefix with its remainder (``/webapps`` -> ``/public``,
        ``/webapps/x`` -> ``/public/x``, ``/webappsX`` and ``/`` untouched unless the member prefix is
        root). ``Domain`` equal to a ``domains`` key, case-insensitively and with or without a
        leading dot, is replaced (the dot kept). **Fast path**: nothing configured, or no ``path``/
        ``domain`` in the value -> the same object is returned.
    """
    if member_prefix[-1:] == b"/":  # tolerate "/" and "/webapps/" from callers
        member_prefix = member_prefix.rstrip(b"/")
    if public_prefix[-1:] == b"/":
        public_prefix = public_prefix.rstrip(b"/")
    do_path = rewrite_path and member_prefix != public_prefix
    if not do_path and not domains:
        return value
    lower = value.lower()
    if not ((do_path and lower.find(b"path") >= 0) or (domains and lower.find(b"domain") >= 0)):
        return value
    semi = value.find(b";")
    if semi < 0:
        return value
    edits: list[tuple[int, int, bytes]] = []
    if do_path:
        for begin, stop, path in _attribute_values(value, lower, b"path", semi):
            new = _cookie_path(path, member_prefix, public_prefix)
            if new != path:
                edits.append((begin, stop, new))
    if domains:
        for begin, stop, domain in _attribute_values(value, lower, b"domain", semi):
            dot = domain[0] == 0x2E
            target = domains.get(lower[begin + 1 : stop] if dot else lower[begin:stop])
            if target is not None:
                edits.append((begin, stop, b"." + target.lstrip(b".") if dot else target))
    if not edits:
        return value
    edits.sort()
    pieces = []
    at = 0
    for begin, stop, new in edits:
        pieces.append(value[at:begin])
        pieces.append(new)
        at = stop
    pieces.append(value[at:])
    return b"".join(pieces)


_WSP = b" \t"


def _attribute_values(value: bytes, lower: bytes, name: bytes, semi: int) -> list[tuple[int, int, bytes]]:
    """``(start, end, text)`` of the WSP-trimmed, non-empty value of every cookie-av called ``name``.

    RFC 6265 5.2: an attribute is ``;`` WSP* name WSP* ``=`` WSP* value WSP* up to the next ``;``;
    everything before the first ``;`` (at ``semi``) is the cookie's own name-value pair, never an
    attribute. Written with C-level searches: a per-byte Python loop costs more than the rest.
    """
    spans: list[tuple[int, int, bytes]] = []
    size = len(value)
    pos = semi
    while True:
        found = lower.find(name, pos)
        if found < 0:
            return spans
        pos = found + len(name)
        before = lower.rfind(b";", semi, found)
        if before + 1 != found and lower[before + 1 : found].strip(_WSP):
            continue  # e.g. "XPath=" or "Comment=path=": not this attribute's name
        stop = lower.find(b";", pos)
        if stop < 0:
            stop = size
        eq = lower.find(b"=", pos, stop)
        if eq < 0 or (eq != pos and lower[pos:eq].strip(_WSP)):
            pos = stop
            continue
        raw = value[eq + 1 : stop]
        text = raw.strip(_WSP)
        if text:
            start = eq + 1 + len(raw) - len(raw.lstrip(_WSP))
            spans.append((start, start + len(text), text))
        pos = stop
