"""Forwarded headers: who the client is, as ferryman vouches for it.

Theory of operation
-------------------
The proxy side (``ferryman.server``) and the app side (``ferryman.wsgi``) share this module.

On the proxy side, for every request:

1. :func:`strip_vouched` (or the caller's own loop over :func:`is_vouched`) removes **every** client copy of
   a header ferryman vouches for -- whatever the peer, and whatever the spelling: ``X_Forwarded_For`` and
   ``Remote_User`` are the same variables to WSGI (PEP 3333 turns ``-`` into ``_``), so an alias is the
   real header to the app (invariant 4 in docs/request-safety.md). The exact, canonical spellings are collected
   into ``incoming`` (canonical name -> value, repeated headers joined with ``", "``).
2. :func:`build_forwarded` returns the header lines ferryman writes instead. ``incoming`` is consulted
   only when the peer is a trusted proxy (``trusted_proxies``): its
   ``X-Forwarded-For`` chain (and ``Forwarded``, when enabled) is kept and the peer appended; its
   ``X-Forwarded-Host/-Proto/-Port/-Prefix`` are kept and only filled in where missing. Everything else
   a trusted proxy sent under a vouched name (``X-Real-IP``, ``X-Forwarded-Ssl``, ``Remote-User``...) is
   dropped like anyone else's: the app reads one set of headers, written by ferryman.

On the app side, :func:`client_address` walks an ``X-Forwarded-For`` chain right to left over trusted
hops, and :func:`parse_forwarded` reads RFC 7239 ``Forwarded``. :func:`read_x_forwarded` and
:func:`read_forwarded` turn either into :class:`ForwardedFacts` (what ``ferryman.wsgi``/``.asgi`` apply),
walking at most :data:`MAX_HOPS` entries; :func:`vouched_facts` gives the front end the same facts for
the lines it wrote, to be signed (``ferryman.core.signing``).

House rules
-----------
* Bytes in, bytes out; header names arrive lower-cased. No regex is compiled per call.
* Nothing written here contains CR, LF, NUL or another control byte, whatever the inputs: a value that
  would is left out (the caller validated them already; this is the second fence).
* ``str`` appears only for IP addresses (they come from the socket as ``str``) and in the app-side
  parsers, which decode header bytes as latin-1, like WSGI.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace

__all__ = [
    "MAX_HOPS",
    "VOUCHED",
    "ForwardedFacts",
    "TrustedProxies",
    "build_forwarded",
    "canonical_name",
    "client_address",
    "is_vouched",
    "parse_forwarded",
    "read_forwarded",
    "read_x_forwarded",
    "strip_vouched",
    "valid_host",
    "valid_prefix",
    "vouched_facts",
]

# -- names ---------------------------------------------------------------------------------------

_CANONICAL = bytes.maketrans(b"ABCDEFGHIJKLMNOPQRSTUVWXYZ_", b"abcdefghijklmnopqrstuvwxyz-")


def canonical_name(name: bytes) -> bytes:
    """Return the spelling a header name has for WSGI/CGI: lower case, ``_`` read as ``-``.

    ``Remote_User``, ``REMOTE-USER`` and ``remote_user`` all become ``b"remote-user"``: PEP 3333 maps
    each of them to ``HTTP_REMOTE_USER``, so they are one header to the app.
    """
    return name.translate(_CANONICAL)


#: Canonical names of the headers ferryman vouches for: client copies never reach an app.
#:
#: * ``X-Forwarded-*``: the ones ferryman writes (for, host, proto, port, server, prefix) and their
#:   siblings that frameworks read for the same facts -- ``-ssl``, ``-scheme``, ``-protocol`` (Rack's and
#:   nginx's spellings of the scheme), ``-uri`` (Traefik forward-auth, read by SSO apps to build
#:   redirects), ``-user``/``-email``/``-groups`` (oauth2-proxy identities), ``-client-cert`` (Envoy
#:   mTLS identity). Every other ``x-forwarded-`` name is vouched too (:func:`is_vouched` matches the
#:   prefix): the whole ``X-Forwarded-*`` family is ferryman's to write.
#: * ``Forwarded`` (RFC 7239) and the de-facto ``Forwarded-For``/``X-Forwarded``.
#: * ``Remote-User`` (Django's ``RemoteUserMiddleware`` reads ``HTTP_REMOTE_USER``) and ``X-Remote-User``.
#: * Scheme flags: ``Front-End-Https`` (Microsoft), ``X-Url-Scheme`` (Rack).
#: * Client-address headers that django-ipware/python-ipware read by default, in their precedence
#:   list: ``Client-IP``, ``X-Client-IP``, ``X-Real-IP``, ``X-Cluster-Client-IP``, ``CF-Connecting-IP``,
#:   ``True-Client-IP``, ``Fastly-Client-IP``, ``Fly-Client-IP``, ``X-AppEngine-User-IP``,
#:   ``X-Azure-ClientIP``. An app trusting any of them would be spoofable through ferryman otherwise.
#: * Request-target overrides that frameworks honour (``X-Original-URL``, ``X-Rewrite-URL``:
#:   Symfony/Zend, CVE-2018-14773) -- they let a client route around path-based rules.
#: * ``Ferryman-Signature``: ferryman's signed statement of these facts (``ferryman.core.signing``);
#:   only ferryman writes it, so a client cannot replay one through ferryman.
VOUCHED: frozenset[bytes] = frozenset(
    {
        b"x-forwarded-for",
        b"x-forwarded-host",
        b"x-forwarded-proto",
        b"x-forwarded-port",
        b"x-forwarded-server",
        b"x-forwarded-prefix",
        b"x-forwarded-ssl",
        b"x-forwarded-scheme",
        b"x-forwarded-protocol",
        b"x-forwarded-uri",
        b"x-forwarded-user",
        b"x-forwarded-email",
        b"x-forwarded-groups",
        b"x-forwarded-client-cert",
        b"x-forwarded",
        b"forwarded",
        b"forwarded-for",
        b"remote-user",
        b"x-remote-user",
        b"front-end-https",
        b"x-url-scheme",
        b"x-real-ip",
        b"client-ip",
        b"x-client-ip",
        b"x-cluster-client-ip",
        b"cf-connecting-ip",
        b"true-client-ip",
        b"fastly-client-ip",
        b"fly-client-ip",
        b"x-appengine-user-ip",
        b"x-azure-clientip",
        b"x-original-url",
        b"x-rewrite-url",
        b"ferryman-signature",
    }
)

_XFP = b"x-forwarded-"

XFF = b"x-forwarded-for"
XFH = b"x-forwarded-host"
XFPROTO = b"x-forwarded-proto"
XFPORT = b"x-forwarded-port"
XFSERVER = b"x-forwarded-server"
XFPREFIX = b"x-forwarded-prefix"
FORWARDED = b"forwarded"


def is_vouched(lower_name: bytes, extra: frozenset[bytes] = frozenset()) -> bool:
    """Tell whether a client header of this name must be removed (it is ferryman's to write).

    Args:
        lower_name: the header name; any case and any ``_``/``-`` mix is accepted.
        extra: further canonical names (lower case, ``-``), e.g. an SSO ``trusted_header``.

    Returns:
        True for every spelling of a name in :data:`VOUCHED`, of any ``x-forwarded-*`` name, or of
        a name in ``extra``.
    """
    name = lower_name.translate(_CANONICAL)
    return name in VOUCHED or name.startswith(_XFP) or name in extra


def strip_vouched(
    headers: list[tuple[bytes, bytes]], extra: frozenset[bytes] = frozenset()
) -> tuple[list[tuple[bytes, bytes]], dict[bytes, bytes]]:
    """Split request headers into those that may cross and the client's vouched values.

    Args:
        headers: ``(lower-case name, value)`` pairs as parsed.
        extra: further canonical names to treat as vouched (see :func:`is_vouched`).

    Returns:
        ``(kept, incoming)``: ``kept`` is ``headers`` without any vouched name in any spelling;
        ``incoming`` maps each vouched canonical name to its value, repeated headers joined with
        ``", "``, for :func:`build_forwarded`. **Only names already spelled canonically** (with ``-``)
        are collected: ``X_Forwarded_For`` is a smuggling attempt even from a trusted proxy, so it is
        dropped, never believed.
    """
    kept: list[tuple[bytes, bytes]] = []
    incoming: dict[bytes, bytes] = {}
    for name, value in headers:
        canon = name.translate(_CANONICAL)
        if canon in VOUCHED or canon.startswith(_XFP) or canon in extra:
            if b"_" not in name:
                seen = incoming.get(canon)
                incoming[canon] = value if seen is None else seen + b", " + value
        else:
            kept.append((name, value))
    return kept, incoming


# -- trusted proxies -----------------------------------------------------------------------------

_Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class TrustedProxies:
    """The set of peers whose forwarded headers are believed (``trusted_proxies`` in the config).

    Membership is asked once per request with the peer's address as a ``str``; peers repeat, so answers
    are cached, and the cache is bounded (:attr:`CACHE_SIZE` entries, then it starts afresh). An empty
    set trusts nobody and answers without parsing anything. IPv4-mapped IPv6 peers
    (``::ffff:10.0.0.1``, what a dual-stack socket reports) match IPv4 networks. Strings that are not
    an IP address are never trusted.
    """

    __slots__ = ("networks", "_v4", "_v6", "_cache")

    #: Most distinct addresses remembered; peers are few (they are proxies), so this is generous.
    CACHE_SIZE = 4096

    def __init__(self, networks: Iterable[_Network] = ()) -> None:
        self.networks: tuple[_Network, ...] = tuple(networks)
        self._v4 = tuple(n for n in self.networks if n.version == 4)
        self._v6 = tuple(n for n in self.networks if n.version == 6)
        self._cache: dict[str, bool] = {}

    @classmethod
    def parse(cls, specs: Iterable[str]) -> TrustedProxies:
        """Build from config strings: addresses (``"127.0.0.1"``, ``"::1"``) or CIDR networks.

        Raises:
            ValueError: a string is neither (host bits set in a network are an error too).
        """
        return cls(ipaddress.ip_network(s.strip()) for s in specs)

    def __bool__(self) -> bool:
        return bool(self.networks)

    def __len__(self) -> int:
        return len(self.networks)

    def __repr__(self) -> str:
        return f"TrustedProxies({[str(n) for n in self.networks]!r})"

    def __contains__(self, ip: object) -> bool:
        if not self.networks or not isinstance(ip, str):
            return False
        known = self._cache.get(ip)
        if known is not None:
            return known
        answer = self._lookup(ip)
        if len(self._cache) >= self.CACHE_SIZE:
            self._cache.clear()
        self._cache[ip] = answer
        return answer

    def _lookup(self, ip: str) -> bool:
        try:
            addr = ipaddress.ip_address(ip)
        except ValueError:
            return False
        if addr.version == 6:
            assert isinstance(addr, ipaddress.IPv6Address)
            mapped = addr.ipv4_mapped
            if mapped is not None:
                return any(mapped in n for n in self._v4) or any(addr in n for n in self._v6)
            return any(addr in n for n in self._v6)
        return any(addr in n for n in self._v4)


# -- values: safety and RFC 7239 quoting ---------------------------------------------------------

# Control bytes other than HTAB: never allowed in a field value we write (RFC 9110 5.5), nor in an
# RFC 7239 quoted-string (qdtext excludes them).
_CTL = bytes(range(0x00, 0x09)) + bytes(range(0x0A, 0x20)) + b"\x7f"
# RFC 9110 5.6.2 tchar.
_TCHAR = b"!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
# What a peer address from the socket may contain (IPv4, IPv6, zone id): deleting these must leave b"".
_PEER_CHARS = b"0123456789ABCDEFabcdef.:%_-ghijklmnopqrstuvwxyzGHIJKLMNOPQRSTUVWXYZ"


def _is_safe(value: bytes) -> bool:
    return len(value.translate(None, _CTL)) == len(value)


def _quote(value: bytes) -> bytes:
    """RFC 7239 section 4 value: a token as is, anything else as a quoted-string (RFC 9110 5.6.4)."""
    if value and not value.translate(None, _TCHAR):
        return value
    if 0x5C in value or 0x22 in value:  # int membership: much cheaper than a bytes needle
        value = value.replace(b"\\", b"\\\\").replace(b'"', b'\\"')
    return b'"' + value + b'"'


def _peer_bytes(peer_ip: str) -> bytes:
    """The peer as written in ``X-Forwarded-For``: plain address, IPv4-mapped IPv6 unmapped."""
    peer = peer_ip.encode("utf-8", "replace")
    if not peer or peer.translate(None, _PEER_CHARS):
        return b"unknown"
    if peer[:2] == b"::" and peer[:7].lower() == b"::ffff:" and 0x2E in peer:
        peer = peer[7:]
    if 0x25 in peer:  # a zone id ("%eth0") names an interface of this host: meaningless to the app
        peer = peer[: peer.find(b"%")]
    return peer or b"unknown"


def _explicit_port(host: bytes) -> bytes | None:
    """The port written in a (possibly comma-listed) Host value, first element, if any."""
    first = host.split(b",", 1)[0].strip()
    if first.startswith(b"["):
        end = first.find(b"]")
        tail = first[end + 1 :] if end >= 0 else b""
        port = tail[1:] if tail.startswith(b":") else b""
    else:
        port = first.rpartition(b":")[2] if b":" in first else b""
    return port if port.isdigit() else None


def _first(value: bytes) -> bytes:
    return value.split(b",", 1)[0].strip().lower()


def build_forwarded(
    *,
    peer_ip: str,
    trusted: bool,
    incoming: dict[bytes, bytes],
    host: bytes | None,
    scheme: bytes,
    port: int,
    server_name: bytes,
    prefix: bytes,
    rfc7239: bool,
) -> list[tuple[bytes, bytes]]:
    """Return the forwarded header lines ferryman adds to a backend request.

    The caller has already removed every client copy of a vouched header (:func:`strip_vouched`).

    Args:
        peer_ip: address of the connected peer, from the socket. IPv4-mapped IPv6 is unmapped and a
            zone id dropped; an empty or malformed value is written ``unknown`` (RFC 7239 section 6.2).
        trusted: whether ``peer_ip`` is a trusted proxy; only then is ``incoming`` consulted.
        incoming: the client's vouched values, canonical name -> value (repeats joined with ``", "``).
        host: the client's ``Host``, verbatim (with its port); None when there was none (HTTP/1.0).
        scheme: the listener's scheme, ``b"http"`` or ``b"https"``.
        port: the listener's port.
        server_name: ferryman's server name (Apache ``ServerName``); ``b""`` leaves the header out.
        prefix: the route's public prefix. **Root (``b""`` or ``b"/"``) leaves ``X-Forwarded-Prefix``
            out**: Werkzeug's ``ProxyFix`` copies the value into ``SCRIPT_NAME`` verbatim, so ``/`` would
            make every URL start ``//``; an absent header keeps the app's own ``SCRIPT_NAME``, which
            reverse rewriting maps anyway. A trailing ``/`` is dropped; a value not starting with ``/``
            is left out.
        rfc7239: also write ``Forwarded``.

    Returns:
        ``(lower-case name, value)`` pairs, in this order when present: ``x-forwarded-for``,
        ``-host``, ``-proto``, ``-port``, ``-server``, ``-prefix``, ``forwarded``.

    From an untrusted peer: ``X-Forwarded-For`` is the peer alone, ``-Host`` the client's ``Host``
    (left out when there is none), ``-Proto``/``-Port`` the listener's, ``-Prefix`` the route's.
    From a trusted peer: the incoming chain gets ``", " + peer``; incoming ``-Host/-Proto/-Port/-Prefix``
    are kept and only missing ones filled. A missing ``-Port`` next to an incoming ``-Host`` or
    ``-Proto`` is **derived from them** (the port in that Host, else the default port of that scheme),
    not taken from ferryman's listener: behind a TLS-terminating balancer, ``-Proto: https`` with
    ferryman's ``8080`` would send users to ``https://host:8080``. An incoming value containing
    control bytes, or a ``Forwarded`` that :func:`parse_forwarded` refuses, counts as missing.
    ``Forwarded`` gets one element ``for=<peer>;host=<Host>;proto=<scheme>``, appended to the incoming
    elements when trusted.
    """
    peer = _peer_bytes(peer_ip)
    if host is not None and (not host or len(host.translate(None, _CTL)) != len(host)):
        host = None
    if prefix[-1:] == b"/":
        prefix = prefix.rstrip(b"/")
    if prefix[:1] != b"/":
        prefix = b""
    static = scheme + server_name + prefix  # config values: one check for the three, split on failure
    if len(static.translate(None, _CTL)) != len(static):
        scheme = scheme if _is_safe(scheme) else b"http"
        server_name = server_name if _is_safe(server_name) else b""
        prefix = prefix if _is_safe(prefix) else b""
    out: list[tuple[bytes, bytes]]

    if not (trusted and incoming):
        if host is not None:
            out = [(XFF, peer), (XFH, host), (XFPROTO, scheme), (XFPORT, b"%d" % port)]
        else:
            out = [(XFF, peer), (XFPROTO, scheme), (XFPORT, b"%d" % port)]
        if server_name:
            out.append((XFSERVER, server_name))
        if prefix:
            out.append((XFPREFIX, prefix))
        if rfc7239:
            out.append((FORWARDED, _element(peer, host, scheme)))
        return out

    chain = _kept(incoming, XFF)
    in_host = _kept(incoming, XFH)
    in_proto = _kept(incoming, XFPROTO)
    in_port = _kept(incoming, XFPORT)
    in_prefix = _kept(incoming, XFPREFIX)

    out = [(XFF, chain + b", " + peer if chain is not None else peer)]
    fwd_host = in_host if in_host is not None else host
    if fwd_host is not None:
        out.append((XFH, fwd_host))
    out.append((XFPROTO, in_proto if in_proto is not None else scheme))
    if in_port is None:
        if in_host is None and in_proto is None:
            in_port = b"%d" % port
        else:
            in_port = _explicit_port(fwd_host) if fwd_host is not None else None
            if in_port is None:
                in_port = b"443" if _first(in_proto or scheme) == b"https" else b"80"
    out.append((XFPORT, in_port))
    if server_name:
        out.append((XFSERVER, server_name))
    if in_prefix is not None:
        out.append((XFPREFIX, in_prefix))
    elif prefix:
        out.append((XFPREFIX, prefix))
    if rfc7239:
        ours = _element(peer, host, scheme)
        before = _kept(incoming, FORWARDED)
        if before is not None and parse_forwarded(before):
            ours = before + b", " + ours
        out.append((FORWARDED, ours))
    return out


def _kept(incoming: dict[bytes, bytes], name: bytes) -> bytes | None:
    value = incoming.get(name)
    if value is None:
        return None
    value = value.strip(b" \t")
    if not value or not _is_safe(value):
        return None
    return value


def _element(peer: bytes, host: bytes | None, scheme: bytes) -> bytes:
    """Our RFC 7239 element: ``for=<peer>;host=<Host>;proto=<scheme>`` (no ``by``: it would only
    disclose the listener's address)."""
    node = b'"[' + peer + b']"' if 0x3A in peer else peer
    proto = scheme if scheme == b"https" or scheme == b"http" else _quote(scheme)
    if host is None:
        return b"for=" + node + b";proto=" + proto
    return b"for=" + node + b";host=" + _quote(host) + b";proto=" + proto


# -- app side ------------------------------------------------------------------------------------


def _xff_entry(raw: bytes) -> str | None:
    """One ``X-Forwarded-For`` entry as a canonical address, or None when it is not one.

    Accepted: ``192.0.2.1``, ``2001:db8::1``, ``[2001:db8::1]``, and either with a port
    (``192.0.2.1:4711``, ``[2001:db8::1]:4711``), which some balancers append.
    """
    try:
        text = raw.strip(b" \t").decode("ascii")
    except UnicodeDecodeError:
        return None
    if text.startswith("["):
        end = text.find("]")
        if end < 0 or (end + 1 < len(text) and not (text[end + 1] == ":" and text[end + 2 :].isdigit())):
            return None
        text = text[1:end]
    elif text.count(":") == 1:
        text, _, port = text.partition(":")
        if not port.isdigit():
            return None
    try:
        addr = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        return str(addr.ipv4_mapped)
    return str(addr)


def client_address(xff_chain: bytes, peer_ip: str, trusted: TrustedProxies) -> str:
    """Return the client's address as the app should see it (``REMOTE_ADDR``).

    Walks the ``X-Forwarded-For`` list right to left, starting from the connected peer: while the
    current hop is a trusted proxy, the entry before it is believed; the first address that is not a
    trusted proxy is the client. A malformed entry (``unknown``, an obfuscated id, garbage, an empty
    item) stops the walk and the last trusted hop verified so far is returned: nothing to its left
    was vouched for by anyone we trust. Trusting only the last hop (uvicorn) would let a client
    choose its address whenever two proxies are chained.

    Args:
        xff_chain: the ``X-Forwarded-For`` value (repeated headers joined with ``", "``), or ``b""``.
        peer_ip: the address of the connected peer.
        trusted: the trusted proxies.

    Returns:
        An address in canonical text form (IPv4-mapped addresses unmapped), or ``peer_ip`` itself when
        the peer is not trusted.
    """
    if peer_ip not in trusted:
        return peer_ip
    last = peer_ip
    if not xff_chain:
        return last
    for raw in reversed(xff_chain.split(b",")):
        addr = _xff_entry(raw)
        if addr is None:
            return last
        if addr not in trusted:
            return addr
        last = addr
    return last


_T = r"!#$%&'*+.^_`|~0-9A-Za-z\-"
# RFC 7239 section 4: forwarded-pair = token "=" value; value = token / quoted-string. OWS is
# tolerated around pairs (RFC 9110 5.6.1 list rules allow it around ","; many proxies put it after
# ";" too), never around "=".
_PAIR_RE = re.compile(
    r'[ \t]*([' + _T + r']+)=(?:([' + _T + r']+)|"((?:[\t !#-\[\]-~\x80-\xff]|\\[\t -~\x80-\xff])*)")[ \t]*'
)
_UNESCAPE_RE = re.compile(r"\\(.)", re.S)
_OBF = r"_[A-Za-z0-9._\-]+"
_OCTET = r"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
# RFC 7239 section 6: node = nodename [ ":" node-port ].
_NODE_RE = re.compile(
    r"(?:" + _OCTET + r"(?:\." + _OCTET + r"){3}|\[([0-9A-Fa-f:.]+)\]|[Uu][Nn][Kk][Nn][Oo][Ww][Nn]|"
    + _OBF + r")(?::(?:[0-9]{1,5}|" + _OBF + r"))?"
)


def _is_node(value: str) -> bool:
    m = _NODE_RE.fullmatch(value)
    if m is None:
        return False
    if m.group(1) is not None:
        try:
            ipaddress.IPv6Address(m.group(1))
        except ValueError:
            return False
    return True


def parse_forwarded(value: bytes) -> list[dict[str, str]]:
    """Parse an RFC 7239 ``Forwarded`` value into its elements, first (client side) to last.

    Each element is a dict of lower-case parameter names to values, quoted-strings unquoted and
    unescaped (bytes decoded as latin-1, like WSGI). ``for``/``by`` values must be RFC 7239 section 6
    nodes (``192.0.2.1``, ``"[2001:db8::1]:80"``, ``unknown``, ``_hidden``); the IPv6 form keeps its
    brackets. Empty list items and empty pairs are skipped (RFC 9110 5.6.1).

    Returns:
        The elements; **``[]`` for anything malformed** (a bad token, an unterminated quote, a
        parameter twice in one element, a control byte, a ``for`` that is not a node): a value
        that cannot be read entirely is believed not at all.
    """
    text = value.decode("latin-1")
    elements: list[dict[str, str]] = []
    current: dict[str, str] = {}
    pos = 0
    end = len(text)
    while True:
        m = _PAIR_RE.match(text, pos)
        if m is not None:
            name = m.group(1).lower()
            if name in current:
                return []
            token = m.group(2)
            val = token if token is not None else _UNESCAPE_RE.sub(r"\1", m.group(3))
            if name in ("for", "by") and not _is_node(val):
                return []
            current[name] = val
            pos = m.end()
        else:
            while pos < end and text[pos] in " \t":
                pos += 1
        if pos >= end:
            break
        sep = text[pos]
        pos += 1
        if sep == ",":
            if current:
                elements.append(current)
                current = {}
        elif sep != ";":
            return []
    if current:
        elements.append(current)
    return elements


# -- app side: what the app should see -----------------------------------------------------------

#: Most list entries (``X-Forwarded-For`` items, ``Forwarded`` elements) ever examined for one
#: request, from the right. A longer chain costs no more: the walk stops there, at the last
#: verified hop, as it does at a malformed entry.
MAX_HOPS = 64


@dataclass(frozen=True, slots=True)
class ForwardedFacts:
    """What an app behind ferryman should believe about a request.

    ``host`` is the public ``Host`` (with its port when not the scheme's default, as the client
    wrote it), ``""`` when unknown; ``prefix`` the public path prefix without trailing ``/``
    (``""`` for the root); ``user`` the authenticated user or None; ``method`` the request method
    (signed so a header cannot be moved to another method; ``""`` when not known).
    """

    client: str
    host: str
    scheme: str
    port: int
    prefix: str
    user: str | None = None
    method: str = ""


_HOST_RE = re.compile(r"(?:\[[0-9A-Fa-f:.]{2,45}\]|[A-Za-z0-9][A-Za-z0-9._-]{0,252})(?::([0-9]{1,5}))?")
_PREFIX_BAD_RE = re.compile(r"[^\x21-\x7e]|[?#\\\\]|//|/\.\.?(?:/|$)")


def valid_host(value: str) -> str | None:
    """``value`` when it is a plausible ``host[:port]`` (a name, IPv4 or bracketed IPv6), else None."""
    m = _HOST_RE.fullmatch(value)
    if m is None or (m.group(1) is not None and int(m.group(1)) > 65535):
        return None
    return value


def valid_prefix(value: str) -> str | None:
    """A public path prefix without trailing ``/`` (``""`` for the root), or None when unusable.

    Refused: not starting with ``/``, spaces or control or non-ASCII characters, ``?``, ``#``,
    ``\\``, ``//`` (a scheme-relative URL once a path is appended) and ``.``/``..`` segments.
    """
    if not value.startswith("/") or len(value) > 1024:
        return None
    if _PREFIX_BAD_RE.search(value):
        return None
    return value.rstrip("/")


def _host_port(host: str) -> int | None:
    m = _HOST_RE.fullmatch(host)
    return int(m.group(1)) if m is not None and m.group(1) is not None else None


def _first_text(value: bytes) -> str:
    return value.split(b",", 1)[0].strip(b" \t").decode("latin-1")


def _user(value: bytes | None) -> str | None:
    """``Remote-User`` as ferryman writes it (UTF-8), or None when absent or unusable."""
    if not value or not _is_safe(value) or len(value) > 1024:
        return None
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError:
        return None


def _walk(entries: list[bytes], peer_ip: str, trusted: TrustedProxies) -> tuple[str, int]:
    """Right-to-left walk over address entries; returns (client, index of the believed entry or -1)."""
    last, index = peer_ip, -1
    for i in range(len(entries) - 1, max(-1, len(entries) - 1 - MAX_HOPS), -1):
        addr = _xff_entry(entries[i])
        if addr is None:
            return last, index
        last, index = addr, i
        if addr not in trusted:
            return addr, i
    return last, index


def _chain(value: bytes) -> list[bytes]:
    """The last :data:`MAX_HOPS` items of a comma list (the rest stays one unexamined item)."""
    return value.rsplit(b",", MAX_HOPS)


def _scheme_port(scheme: str) -> int:
    return 443 if scheme == "https" else 80


def read_x_forwarded(headers: Mapping[bytes, bytes], own: ForwardedFacts,
                     trusted: TrustedProxies) -> ForwardedFacts | None:
    """Read ``X-Forwarded-For/-Host/-Proto/-Port/-Prefix`` and ``Remote-User``, app side.

    Args:
        headers: canonical header names (lower case, ``-``) to values (repeats joined with ``", "``).
        own: the request as the app server saw it (``client`` is the connected peer).
        trusted: the proxies whose headers are believed.

    Returns:
        None when the peer is not a trusted proxy (nothing is believed). Otherwise ``own`` with
        each fact replaced by the forwarded one that is present and well formed: the client is the
        right-most ``X-Forwarded-For`` address that is not a trusted proxy (at most
        :data:`MAX_HOPS` examined); host, scheme and prefix are the first list element; a missing
        port is the one in the forwarded host, else the forwarded scheme's default.
    """
    if own.client not in trusted:
        return None
    client, _ = _walk(_chain(headers.get(XFF, b"")), own.client, trusted) if headers.get(XFF) else (own.client, -1)
    facts = ForwardedFacts(client, own.host, own.scheme, own.port, own.prefix,
                           _user(headers.get(b"remote-user")), own.method)
    return _apply(facts, headers.get(XFH), headers.get(XFPROTO), headers.get(XFPORT), headers.get(XFPREFIX))


def _apply(facts: ForwardedFacts, host_v: bytes | None, proto_v: bytes | None, port_v: bytes | None,
           prefix_v: bytes | None) -> ForwardedFacts:
    host = facts.host
    scheme = facts.scheme
    port = facts.port
    prefix = facts.prefix
    given_host = valid_host(_first_text(host_v)) if host_v else None
    if given_host is not None:
        host = given_host
    proto = _first_text(proto_v).lower() if proto_v else None
    if proto == "http" or proto == "https":
        scheme = proto
    else:
        proto = None
    explicit: int | None = None
    if port_v:
        text = _first_text(port_v)
        if text.isascii() and text.isdigit() and len(text) <= 5 and int(text) <= 65535:  # not '¹'
            explicit = int(text)
    if explicit is not None:
        port = explicit
    elif given_host is not None or proto is not None:
        derived = _host_port(given_host) if given_host is not None else None
        port = derived if derived is not None else _scheme_port(scheme)
    if prefix_v:
        given_prefix = valid_prefix(_first_text(prefix_v))
        if given_prefix is not None:
            prefix = given_prefix
    return ForwardedFacts(facts.client, host, scheme, port, prefix, facts.user, facts.method)


def _node_address(node: str) -> bytes:
    """An RFC 7239 node as an X-Forwarded-For entry (``"[v6]:port"`` keeps its brackets)."""
    return node.encode("latin-1")


def read_forwarded(value: bytes, user: bytes | None, own: ForwardedFacts,
                   trusted: TrustedProxies) -> ForwardedFacts | None:
    """Read RFC 7239 ``Forwarded`` (and ``Remote-User``), app side.

    The elements are walked right to left like ``X-Forwarded-For`` (``for`` nodes; ``unknown``
    and obfuscated nodes stop the walk). Host and scheme come from the element naming the client:
    it was written by the first proxy the client reached, so it holds what the client asked for.
    ``Forwarded`` carries no port or prefix: the port follows from host and scheme, the prefix
    stays the app server's own.

    Returns:
        None when the peer is not a trusted proxy; ``own`` when ``value`` is malformed.
    """
    if own.client not in trusted:
        return None
    facts = replace(own, user=_user(user))
    if not value:
        return facts
    elements = parse_forwarded(value)
    if not elements:
        return facts
    elements = elements[-MAX_HOPS:]
    entries = [_node_address(e.get("for", "unknown")) for e in elements]
    client, index = _walk(entries, own.client, trusted)
    facts = replace(facts, client=client)
    if index < 0:
        return facts
    element = elements[index]
    host = element.get("host")
    proto = element.get("proto")
    return _apply(facts, host.encode("latin-1") if host is not None else None,
                  proto.encode("latin-1") if proto is not None else None, None, None)


def vouched_facts(lines: list[tuple[bytes, bytes]], *, peer_ip: str, trusted: TrustedProxies,
                  scheme: bytes, port: int, user: str | None, method: bytes) -> ForwardedFacts:
    """Front end: the facts behind the forwarded lines :func:`build_forwarded` wrote, to be signed.

    They are what :func:`read_x_forwarded` would conclude from those lines at an app that trusts
    exactly the proxies ferryman trusts, plus ferryman itself.
    """
    headers = dict(lines)
    chain = headers.get(XFF, b"")
    before, _, _ = chain.rpartition(b",")  # the last entry is the peer, written by ferryman
    peer = _peer_bytes(peer_ip).decode("latin-1")
    client = peer
    if peer in trusted and before:
        client, _ = _walk(_chain(before), peer, trusted)
    own = ForwardedFacts(client=client, host="", scheme=scheme.decode("latin-1"), port=port, prefix="",
                         user=user, method=method.decode("latin-1"))
    return _apply(own, headers.get(XFH), headers.get(XFPROTO), headers.get(XFPORT), headers.get(XFPREFIX))
