"""Sticky sessions: which route a request asks for, read from its URL and cookies; the route cookie.

Pure: bytes in, ``str`` route out, no I/O. Whether the route names a usable member of the pool is
the balancer's question (`ferryman.core.balancer`); a route that names no member of the pool counts
as no route there, so a route cookie of another pool (a user who moved from the HTTP to the HTTPS
site) is simply balanced.

Theory of operation, after Apache 2.4 ``mod_proxy_balancer.c`` (``find_session_route``,
``get_path_param``, ``get_cookie_param``) and its behaviour observed on Apache 2.4:

1. The request target (``path;params?query``) is searched first for ``PARAM=value``. The value ends
   at ``?`` or ``&``, and also at ``;`` when ``scolonpathdelim`` is on. A value found there decides,
   even when it carries no route: the cookie is then not looked at (Apache does the same).
2. Otherwise the ``Cookie`` header(s) are searched for ``COOKIE=value``. The name must start the
   header or follow ``;``, ``,`` or whitespace, and match exactly and case-sensitively
   (``xsessionid``, ``sessionidx``, ``SESSIONID`` and ``other=sessionid=...`` are not it); spaces may
   surround ``=`` (``sessionid = a.http-2`` is sticky). The value ends at ``;`` or ``,``. The **first
   occurrence wins**, even when it carries no route; several ``Cookie`` headers are read in order, as
   Apache reads them after merging them with ``", "``.
3. The route is what follows the **first** separator (``stickysessionsep``, ``.`` by default):
   ``a.b.http-2`` asks for ``b.http-2``. A value without the separator, or with nothing after it,
   carries no route. Quotes are not removed: ``"a.http-2"`` asks for ``http-2"``, which names no
   member (Apache: not sticky).
4. Only when steps 1-2 give no route is ferryman's own route cookie (``route_cookie``, value
   ``.<route>``, always with a ``.``) read, with the same cookie rules. Django's ``sessionid`` carries
   no route, so without this step a route cookie could never apply.

Where ferryman differs from Apache, on purpose:

- **URL parameter names match exactly** (Apache quirk: a substring search, so ``?xsessionid=x.r`` and
  ``;jsessionid=x.r`` count as ``sessionid``). ferryman takes ``PARAM=`` only where a parameter
  starts: right after ``?``, ``&`` or ``;``. ``?a=1&sessionid=x.r`` and ``/x;sessionid=x.r`` are
  sticky; ``?xsessionid=x.r``, ``?a=sessionid=x.r`` and ``/sessionid=x.r`` are not. A Tomcat-style
  pool writes ``sticky = "JSESSIONID|jsessionid"``, which matches ``;jsessionid=`` exactly. Reason: a
  parameter that merely ends with the sticky name (``?oldsessionid=...``, ``?nosessionid=...``) is
  some other application parameter, and routing on it is an accident.
- **An empty URL value is not a value** (Apache quirk: its tokenizer skips leading delimiters, so
  ``?sessionid=&x=a.r`` asked for route ``r``). ferryman goes on searching, then reads the cookie.
- **Spaces and tabs around a cookie value are removed** (RFC 6265 5.2): ``sessionid=a.http-2 ; x=1``
  asks for ``http-2``, where Apache would ask for ``"http-2 "`` and balance.
- **Malformed values carry no route** and never raise: a value longer than `MAX_VALUE` bytes, or
  holding a control byte or a byte outside ASCII. The search stops at that value (it was the first
  occurrence), exactly as if it had no separator.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

#: Longest sticky value read, in bytes; longer counts as no route. Session ids are short (Django's are
#: 32 characters, Tomcat's 32 plus the route); a long one is junk or an attack.
MAX_VALUE = 256

#: The value of ferryman's own route cookie is ``.<route>`` (Apache's ``ROUTEID=.route`` recipe).
ROUTE_COOKIE_SEP = "."
_ROUTE_SEP = b"."

#: Prefix of the default route cookie name; the pool name follows.
ROUTE_COOKIE_PREFIX = "ferryman_route_"

#: Where `find_route` found the route.
SOURCE_URL, SOURCE_COOKIE, SOURCE_ROUTE_COOKIE, SOURCE_NONE = "url", "cookie", "route-cookie", ""

_TOKEN = re.compile(r"[A-Za-z0-9!#$%&'*+.^_`|~-]+")
_TOKEN_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789!#$&'*+.^_`|~-")
# RFC 6265 4.1.1 cookie-octet: no CTLs, whitespace, DQUOTE, comma, semicolon or backslash.
_COOKIE_VALUE = re.compile(r"[\x21\x23-\x2b\x2d-\x3a\x3c-\x5b\x5d-\x7e]*")
# RFC 6265 av-octet for Path: any CHAR except CTLs and ";".
_BAD_PATH = re.compile(rb"[\x00-\x1f\x7f-\xff;]")
# Bytes that make a value malformed: controls (tab included) and everything outside ASCII.
_BAD_VALUE = re.compile(rb"[\x00-\x1f\x7f-\xff]")
_SAMESITE = ("Strict", "Lax", "None")
_OWS = b" \t"
_URL_END = re.compile(rb"[?&]")
_URL_END_SCOLON = re.compile(rb"[;?&]")
_COOKIE_END = re.compile(rb"[;,]")


def _b(text: str) -> bytes:
    return text.encode("utf-8", "surrogatepass")


@dataclass(frozen=True, slots=True)
class StickySpec:
    """Where a pool's sticky route is read: the cookie name, the URL parameter name and the rules.

    Attributes:
        cookie: name of the cookie (Apache ``stickysession=COOKIE|...``).
        param: name of the URL parameter (``stickysession=...|PARAM``; the cookie name when one name).
        scolonpathdelim: ``;`` also ends a URL value (Apache ``scolonpathdelim=On``).
        sep: the one character after which the route starts (Apache ``stickysessionsep``).
    """

    cookie: str
    param: str
    scolonpathdelim: bool = False
    sep: str = "."

    @classmethod
    def parse(cls, sticky: str, *, scolonpathdelim: bool = False, sep: str = ".") -> StickySpec:
        """The spec for Apache's ``stickysession=`` value: ``"NAME"`` (cookie and URL parameter) or
        ``"COOKIE|PARAM"``.

        Raises:
            ValueError: a name that is not a token, more than two names, or a separator that is not
                one character.
        """
        names = sticky.split("|")
        if len(names) > 2 or not all(_TOKEN.fullmatch(n) for n in names):
            raise ValueError(f"{sticky!r} is not a stickysession name; expected NAME or COOKIE|PARAM")
        if len(sep) != 1:
            raise ValueError(f"{sep!r} is not a sticky separator; expected one character")
        return cls(names[0], names[-1], scolonpathdelim, sep)


def _route_of(value: bytes, sep: bytes) -> str | None:
    """The route in a sticky value: what follows the first `sep`, or None (no separator, nothing after
    it, or a malformed value)."""
    if len(value) > MAX_VALUE or _BAD_VALUE.search(value):
        return None
    i = value.find(sep)
    if i < 0 or i + 1 == len(value):
        return None
    return value[i + 1:].decode("ascii")


def _param_value(target: bytes, name: bytes, scolon: bool) -> bytes | None:
    """The value of the first non-empty URL parameter `name` in `target`, or None."""
    if not name:
        return None
    key = name + b"="
    ends = _URL_END_SCOLON if scolon else _URL_END
    start = target.find(key)
    while start >= 0:
        if start > 0 and target[start - 1] in b"?&;":
            begin = start + len(key)
            m = ends.search(target, begin)
            end = m.start() if m else len(target)
            if end > begin:
                return target[begin:end]
        start = target.find(key, start + 1)
    return None


def _cookie_value(header: bytes, name: bytes) -> bytes | None:
    """The value of the first cookie `name` in a (merged) Cookie header, or None (Apache
    ``get_cookie_param``, with the value's surrounding whitespace removed)."""
    if not name:
        return None
    n = len(header)
    start = header.find(name)
    while start >= 0:
        if start == 0 or header[start - 1] in b";, \t":
            i = start + len(name)
            while i < n and header[i] in _OWS:
                i += 1
            # Apache skips "name=" when it ends the header (nothing after "="), and takes it otherwise.
            if i < n and header[i] == 0x3D and i + 1 < n:  # '='
                m = _COOKIE_END.search(header, i + 1)
                return header[i + 1:m.start() if m else n].strip(_OWS)
        start = header.find(name, start + 1)
    return None


def _merged(cookie_header: bytes | Iterable[bytes] | None) -> bytes | None:
    if cookie_header is None or isinstance(cookie_header, (bytes, bytearray, memoryview)):
        return None if cookie_header is None else bytes(cookie_header)
    return b", ".join(bytes(h) for h in cookie_header)


def cookie_value(cookie_header: bytes | Iterable[bytes] | None, name: bytes) -> bytes | None:
    """The raw value of the first cookie `name` (same matching rules as the sticky cookie, spaces
    around the value removed), or None. For ``hash_on = "cookie:NAME"`` and the like."""
    header = _merged(cookie_header)
    return _cookie_value(header, name) if header else None


def route_from_url(spec: StickySpec, target: bytes) -> str | None:
    """The route in the request target's sticky parameter, or None (Apache ``get_path_param``, with
    the exact-name and empty-value differences in the module docstring).

    Args:
        target: the raw request target, ``path;params?query`` (or absolute form), not decoded.
    """
    value = _param_value(target, _b(spec.param), spec.scolonpathdelim)
    return None if value is None else _route_of(value, _b(spec.sep))


def route_from_cookie(spec: StickySpec, cookie_header: bytes | Iterable[bytes] | None) -> str | None:
    """The route in the first sticky cookie, or None.

    Args:
        cookie_header: the ``Cookie`` header value; several headers as a list (in order) or already
            joined with ``", "`` or ``"; "``.
    """
    header = _merged(cookie_header)
    if not header:
        return None
    value = _cookie_value(header, _b(spec.cookie))
    return None if value is None else _route_of(value, _b(spec.sep))


def find_route(spec: StickySpec, target: bytes, cookie_header: bytes | Iterable[bytes] | None,
               route_cookie: str | None = None) -> tuple[str | None, str]:
    """The route a request asks for and where it was found.

    Order: the URL parameter, else the sticky cookie (a value found in the URL decides between these
    two even without a route, as in Apache); then, only if neither gave a route, ferryman's route
    cookie named `route_cookie`. Never raises on any bytes.

    Returns:
        ``(route, source)``: source is ``"url"``, ``"cookie"``, ``"route-cookie"``, or ``""`` with
        route None.
    """
    header = _merged(cookie_header)
    sep = _b(spec.sep)
    value = _param_value(target, _b(spec.param), spec.scolonpathdelim)
    if value is not None:
        route = _route_of(value, sep)
        if route is not None:
            return route, SOURCE_URL
    elif header:
        cookie = _cookie_value(header, _b(spec.cookie))
        route = None if cookie is None else _route_of(cookie, sep)
        if route is not None:
            return route, SOURCE_COOKIE
    if route_cookie and header:
        cookie = _cookie_value(header, _b(route_cookie))
        route = None if cookie is None else _route_of(cookie, _ROUTE_SEP)
        if route is not None:
            return route, SOURCE_ROUTE_COOKIE
    return None, SOURCE_NONE


def default_route_cookie_name(pool_name: str) -> str:
    """The route cookie name of a pool that names none: ``ferryman_route_<pool>``.

    One name per pool, so the HTTP and HTTPS pools of one host never overwrite each other's cookie;
    different pool names always give different cookie names (characters that are not cookie-name
    characters, never in a valid pool name, are written ``%XX`` per UTF-8 byte, and ``%`` itself too).
    """
    out = []
    for ch in pool_name:
        if ch in _TOKEN_CHARS:
            out.append(ch)
        else:
            out.extend(f"%{b:02X}" for b in ch.encode("utf-8", "surrogatepass"))
    return ROUTE_COOKIE_PREFIX + "".join(out)


def is_route_cookie_safe(route: str) -> bool:
    """Whether `route` can be the value of a route cookie (RFC 6265 cookie-octets, with the ``.``
    prefix at most `MAX_VALUE` bytes). Check member routes once at start-up; `route_cookie_header`
    refuses the others."""
    return bool(route) and len(route) < MAX_VALUE and _COOKIE_VALUE.fullmatch(route) is not None


def route_cookie_header(name: str, route: str, *, path: bytes, secure: bool, httponly: bool = True,
                        samesite: str = "Lax", max_age: float | None = None) -> bytes:
    """The ``Set-Cookie`` value that makes later requests stick to `route`:
    ``NAME=.route; Path=/prefix[; Max-Age=N][; Secure][; HttpOnly]; SameSite=Lax``.

    Args:
        path: the route's public prefix (``Path`` attribute); empty means ``/``.
        secure: add ``Secure`` (on TLS listeners, or as configured).
        samesite: ``"Strict"``, ``"Lax"`` or ``"None"``. Browsers drop ``SameSite=None`` without
            ``Secure``; that combination is the configuration's to refuse.
        max_age: seconds, rounded down; None, or a value under one second, makes a session cookie
            (a route cookie that expires at once would be useless).

    Raises:
        ValueError: a name that is not a token, a route that is not cookie-safe
            (`is_route_cookie_safe`), a path with a control byte, ``;`` or non-ASCII, or an unknown
            SameSite value. Nothing from the arguments can add an attribute or a header line.
    """
    if not _TOKEN.fullmatch(name):
        raise ValueError(f"{name!r} is not a cookie name")
    if not is_route_cookie_safe(route):
        raise ValueError(f"{route!r} cannot be a cookie value (RFC 6265 cookie-octets, under {MAX_VALUE} bytes)")
    path = bytes(path) or b"/"
    if _BAD_PATH.search(path) or not path.startswith(b"/"):
        raise ValueError(f"{path!r} cannot be a cookie Path")
    if samesite not in _SAMESITE:
        raise ValueError(f"{samesite!r} is not a SameSite value; expected one of {', '.join(_SAMESITE)}")
    parts = [f"{name}={ROUTE_COOKIE_SEP}{route}".encode("ascii"), b"Path=" + path]
    if max_age is not None and max_age >= 1:
        parts.append(b"Max-Age=%d" % int(max_age))
    if secure:
        parts.append(b"Secure")
    if httponly:
        parts.append(b"HttpOnly")
    parts.append(b"SameSite=" + samesite.encode("ascii"))
    return b"; ".join(parts)
