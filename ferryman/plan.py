"""The plan: a validated configuration compiled into immutable values, ready to serve.

Theory of operation. `load_config` checks each table on its own; `compile_plan` then does everything
that `run` would otherwise find out only when it starts: it reads and parses the htpasswd files, loads
every TLS certificate, key and CA into its context, resolves listener addresses and finds listeners
that could not both listen, builds the routers, and checks settings that only make sense together
(``hash_on`` needs ``lbmethod = "hash"``). Every problem is collected and raised at once as a
`ConfigError` (``file:line: key.path: what is wrong; what would be valid``); traps that are not
errors become `Plan.warnings` (printed ``file:line: key: warning: ...``). `ferryman check`, `run`
and `explain` all build the same plan, so whatever `run` would refuse, `check` refuses first.

House rules:

1. A plan holds configuration only, never live state. Its values are frozen dataclasses; the
   mutable parts of a running ferryman (member health, error state, lbstatus, request and byte
   counters, idle connections, caches) live in the runtime objects `ferryman.server.runtime`
   builds from a plan, keyed by pool name and member name (the member URL, unique in its pool).
   A reload compiles a new plan, builds new runtime objects, and carries each member's live state
   over from the old runtime by (pool name, member name); requests in flight hold references to
   the old runtime objects (route, member, connection) and finish on the old plan.
2. Settings that the plan does not transform are read through from the validated table each plan
   value was compiled from (`config`, a frozen pydantic model): ``member_plan.weight`` and
   ``pool_plan.response_timeout`` read the same value either way. Derived values (bytes, loaded
   contexts, parsed tables) are fields of their own.
3. Loaded things are loaded here once: `ssl.SSLContext` objects, htpasswd tables (user -> hash; the
   verification cache is runtime state). Nothing under `Plan` re-reads a file.
"""

from __future__ import annotations

import ipaddress
import os
import socket
import ssl
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

from ferryman.config.schema import Config, Loc, format_key, show
from ferryman.core.auth import HtpasswdSyntaxError, challenge, is_supported_hash, parse_htpasswd
from ferryman.core.router import Router
from ferryman.core.sticky import StickySpec, default_route_cookie_name, is_route_cookie_safe
from ferryman.errors import ConfigError, ConfigIssue
from ferryman.server.tls import client_context, server_context

__all__ = ["AuthPlan", "ListenerPlan", "MemberPlan", "Plan", "PoolPlan", "RoutePlan", "compile_plan",
           "DJANGO_COOKIES"]

#: Cookies Django writes itself, whose values never end in ".<route>": a pool sticky on one of them
#: without a route cookie never sticks. Other names are left alone: Tomcat's JSESSIONID carries its
#: jvmRoute, and an application may append the route to its own cookie as Apache's docs describe.
DJANGO_COOKIES = frozenset({"sessionid", "csrftoken"})


class _ReadThrough:
    """Attributes a plan value does not define are read from the table it was compiled from (rule 2)."""

    __slots__ = ()

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(object.__getattribute__(self, "config"), name)


# -- the plan's values ------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class MemberPlan(_ReadThrough):
    """One pool member (Apache ``BalancerMember``): where it is and how it is addressed."""

    index: int
    name: str                  # the URL as written: the member's identity in its pool
    route: str | None
    weight: int
    status: str
    lbset: int
    ignore_errors: bool
    scheme: str
    host: str
    port: int
    path: str                  # URL path without trailing "/"; "" for the root
    host_header: bytes         # Host sent to it: host[:port], the port only when not the default
    server_hostname: str | None  # SNI and certificate name for https members
    config: Any


@dataclass(frozen=True, slots=True)
class PoolPlan(_ReadThrough):
    """A balancer pool: its members, how it picks, and its loaded backend TLS context."""

    name: str
    lbmethod: str
    members: tuple[MemberPlan, ...]
    retry: float
    sticky_spec: StickySpec | None     # where the route is read: sticky, or else the route cookie
    route_cookie_name: str | None
    hash_kind: str                     # "", "client", "cookie" or "header" (only with lbmethod hash)
    hash_name: bytes                   # the cookie name, or the header name in lower case
    max_tries: int                     # max_tries, 0 resolved to the number of members
    failonstatus: frozenset[int]
    client_tls: ssl.SSLContext | None  # for https:// members
    config: Any


@dataclass(frozen=True, slots=True)
class AuthPlan(_ReadThrough):
    """Basic authentication of a route: the parsed htpasswd table and the challenge to send."""

    htpasswd: Path
    users: Mapping[str, str]           # user -> stored hash, every hash one ferryman can check
    realm: str
    challenge: bytes
    trusted_header: bytes | None       # lower case, "-" for "_"
    config: Any


@dataclass(frozen=True, slots=True)
class RoutePlan(_ReadThrough):
    """A public prefix on some listeners -> a pool (Apache ``ProxyPass`` + ``ProxyPassReverse``)."""

    index: int
    path: str
    prefix: bytes                      # b"" for the root route, else the path as bytes
    listeners: tuple[str, ...] | None  # None: every listener
    pool: str | None                   # None: a static route (``static``, the directory it serves)
    cookie_domains: Mapping[bytes, bytes]
    keep_encoded_slashes: bool
    auth: AuthPlan | None
    config: Any


@dataclass(frozen=True, slots=True)
class ListenerPlan(_ReadThrough):
    """A listening socket: where it binds, its TLS context and the routes it serves."""

    index: int
    name: str
    bind: str
    host: str
    port: int
    addresses: tuple[tuple[int, str], ...]  # (address family, address) it will bind, resolved
    ssl_context: ssl.SSLContext | None
    trusted_proxies: tuple[Any, ...]        # networks in effect (the listener's or the top-level)
    routes: tuple[int, ...]                 # indexes of the routes it serves
    config: Any


@dataclass(frozen=True, slots=True)
class AdminPlan:
    """The admin listener: where it binds and who may log in from elsewhere (None: loopback only)."""

    host: str
    port: int
    users: Mapping[str, str] | None    # htpasswd table; None when no htpasswd is configured
    challenge: bytes


@dataclass(frozen=True, slots=True)
class Plan:
    """Everything `run` needs, compiled and checked; see the module docstring."""

    config: Config
    source: str                              # the configuration file, for messages
    listeners: tuple[ListenerPlan, ...]
    pools: Mapping[str, PoolPlan]
    routes: tuple[RoutePlan, ...]
    router: Router[RoutePlan]
    vouched_headers: frozenset[bytes]         # SSO trusted_header names, stripped from clients too
    warnings: tuple[ConfigIssue, ...]
    admin: AdminPlan | None = None            # [admin]: None when the table is absent

    def where(self, loc: Loc) -> str:
        """``file:line`` of the key path `loc` (``file`` alone when the line is unknown)."""
        source = getattr(self.config, "_source", None)
        line = source.lines.line_of(loc) if source is not None else None
        return f"{self.source}:{line}" if line else self.source

    def listener(self, name: str) -> ListenerPlan:
        """The listener called `name` (KeyError when there is none)."""
        for lst in self.listeners:
            if lst.name == name:
                return lst
        raise KeyError(name)


# -- compiling --------------------------------------------------------------------------------------

class _Problems:
    """Errors and warnings found while compiling, each at a key path."""

    def __init__(self) -> None:
        self.errors: list[tuple[Loc, str]] = []
        self.warnings: list[tuple[Loc, str]] = []

    def error(self, loc: Loc, message: str) -> None:
        self.errors.append((loc, message))

    def warn(self, loc: Loc, message: str) -> None:
        self.warnings.append((loc, message))


def compile_plan(config: Config) -> Plan:
    """Compile a validated `config` into the `Plan` that `run` serves.

    Reads the htpasswd, certificate, key and CA files the configuration names (relative paths were
    resolved by the loader) and resolves listener host names.

    Raises:
        ConfigError: every problem found, each ``file:line: key.path: what is wrong; what would be
            valid``, lines taken from the file `config` was loaded from (`load_config`).
    """
    source = getattr(config, "_source", None)
    filename = source.filename if source is not None else "<configuration>"

    def locate(loc: Loc, message: str, level: str = "error") -> ConfigIssue:
        line = source.lines.line_of(loc) if source is not None else None
        return ConfigIssue(filename, line, format_key(loc), message, level)

    found = _Problems()
    htpasswd_cache: dict[Path, Mapping[str, str] | None] = {}
    pools = {name: _pool(name, p, found) for name, p in config.pool.items()}
    routes = tuple(_route(i, r, pools, found, htpasswd_cache) for i, r in enumerate(config.route))
    listeners = tuple(_listener(i, lst, config, routes, found) for i, lst in enumerate(config.listener))
    _bind_collisions(listeners, found, source)
    _log_file(("log", "path"), config.log.path, found)
    admin = _admin(config.admin, found, htpasswd_cache) if config.admin is not None else None
    for i, lst in enumerate(config.listener):
        if lst.access_log.format != "off":
            _log_file(("listener", i, "access_log", "path"), lst.access_log.path, found)
    router: Router[RoutePlan] | None = None
    try:
        router = Router([(r.listeners, r.prefix or b"/", r) for r in routes])
    except ValueError as err:  # the loader's cross checks should have said it already
        found.error(("route",), f"{err}; each (listener, path) must be unique")
    if found.errors:
        issues = [locate(loc, msg) for loc, msg in found.errors]
        issues.sort(key=lambda i: i.line or 0)
        raise ConfigError(issues)
    assert router is not None
    warnings = sorted((locate(loc, msg, "warning") for loc, msg in found.warnings), key=lambda i: i.line or 0)
    vouched = frozenset(r.auth.trusted_header for r in routes
                        if r.auth is not None and r.auth.trusted_header is not None)
    return Plan(config, filename, listeners, MappingProxyType(pools), routes, router, vouched, tuple(warnings),
                admin)


def is_loopback_host(host: str) -> bool:
    """`host` (a bind address) reaches only this machine: 127.0.0.0/8, ::1 or ``localhost``."""
    if host.lower() in ("localhost", "localhost."):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _admin(cfg: Any, found: _Problems, cache: dict[Path, Mapping[str, str] | None]) -> AdminPlan:
    users = None
    if cfg.htpasswd is not None:
        users = _htpasswd(("admin", "htpasswd"), cfg.htpasswd, found, cache) or MappingProxyType({})
    elif not is_loopback_host(cfg.host):
        found.error(("admin", "bind"), f"{show(cfg.bind)} is not a loopback address, so the admin listener "
                    'needs a password: add htpasswd = "admin.htpasswd" to [admin] (users made with htpasswd -B), '
                    'or bind "127.0.0.1:9900"')
    return AdminPlan(cfg.host, cfg.port, users, challenge("ferryman admin"))


# -- pools ------------------------------------------------------------------------------------------

def _pool(name: str, cfg: Any, found: _Problems) -> PoolPlan:
    at: Loc = ("pool", name)
    server_name = cfg.tls.server_name if cfg.tls is not None and cfg.tls.server_name else None
    members: list[MemberPlan] = []
    urls: dict[str, int] = {}
    for i, m in enumerate(cfg.members):
        if m.url in urls:
            found.error(at + ("members", i, "url"), f"{show(m.url)} is already members[{urls[m.url]}]; each member "
                        f"of a pool needs its own URL (its state is kept by URL)")
        urls.setdefault(m.url, i)
        host = f"[{m.host}]" if ":" in m.host else m.host
        default = 443 if m.scheme == "https" else 80
        members.append(MemberPlan(
            i, m.url, m.route, m.weight, m.status, m.lbset, m.ignore_errors, m.scheme, m.host, m.port, m.path,
            (host if m.port == default else f"{host}:{m.port}").encode(),
            (server_name or m.host) if m.scheme == "https" else None, m))

    client_tls = None
    if any(m.scheme == "https" for m in members):
        client_tls = _client_tls(at, cfg.tls, found)
    elif cfg.tls is not None:
        found.warn(at + ("tls",), f"no member of pool {name} is https://, so this table is unused; "
                   "remove tls, or write the members' URLs with https://")

    kind, _, hname = (cfg.hash_on or "").partition(":")
    if cfg.hash_on is not None and cfg.lbmethod != "hash":
        found.error(at + ("hash_on",), f'is set but lbmethod is "{cfg.lbmethod}", which never hashes, so it '
                    f'would be ignored; add lbmethod = "hash" to pool {name}, or remove hash_on')
    if cfg.lbmethod == "hash" and cfg.hash_on is None:
        found.warn(at + ("lbmethod",), '"hash" without hash_on has no key to hash, so every request is balanced '
                   'by request count; add hash_on = "client", "cookie:NAME" or "header:NAME"')

    rc = cfg.route_cookie
    cookie_name = (rc.name or default_route_cookie_name(name)) if rc is not None else None
    spec: StickySpec | None = None
    if cfg.sticky:
        spec = StickySpec.parse(cfg.sticky, scolonpathdelim=cfg.scolonpathdelim, sep=cfg.stickysessionsep)
    elif cookie_name:
        spec = StickySpec.parse(cookie_name)
    routed = [m for m in members if m.route]
    if spec is not None and not routed:
        key = "sticky" if cfg.sticky else "route_cookie"
        found.warn(at + (key,), f"no member of pool {name} has a route, so no request can stick to one; "
                   'give each member a route, such as route = "http-1"')
    elif cfg.sticky and rc is None and spec is not None and spec.cookie in DJANGO_COOKIES:
        found.warn(at + ("sticky",), f"Django's {spec.cookie} values never end in \".<route>\", so requests "
                   f"of pool {name} never stick to a member; add route_cookie = {{}} to pool {name} "
                   "(ferryman then sets and reads its own route cookie)")
    if rc is not None:
        for m in routed:
            if not is_route_cookie_safe(m.route or ""):
                found.error(at + ("members", m.index, "route"), f"{show(m.route)} cannot be written in a route "
                            "cookie; use letters, digits, '-', '_' and '.'")
        if rc.samesite == "None" and rc.secure is False:
            found.error(at + ("route_cookie", "secure"), 'is false with samesite = "None", which browsers drop; '
                        'set secure = true, or samesite = "Lax"')
    return PoolPlan(
        name, cfg.lbmethod, tuple(members), cfg.retry, spec, cookie_name,
        kind if cfg.lbmethod == "hash" else "", (hname if kind == "cookie" else hname.lower()).encode(),
        cfg.max_tries or len(members), frozenset(cfg.failonstatus), client_tls, cfg)


def _client_tls(at: Loc, tls: Any, found: _Problems) -> ssl.SSLContext | None:
    """The context for https:// members, or None with the problem recorded."""
    try:
        return client_context(tls)
    except (ssl.SSLError, OSError, ValueError) as err:
        if tls is not None and tls.ca is not None and _pem_problem(tls.ca, "CERTIFICATE") is not None:
            found.error(at + ("tls", "ca"), f"{tls.ca} {_pem_problem(tls.ca, 'CERTIFICATE')}; write a PEM file of "
                        "CA certificates (-----BEGIN CERTIFICATE-----)")
        elif tls is not None and tls.cert is not None:
            found.error(at + ("tls", "cert"), f"cannot load the client certificate: {_ssl_reason(err)}; write a PEM "
                        "certificate chain and its private key (key, or in the same file)")
        else:
            found.error(at + ("tls",), f"cannot set up backend TLS: {_ssl_reason(err)}")
        return None


# -- routes and authentication ----------------------------------------------------------------------

def _route(i: int, cfg: Any, pools: Mapping[str, PoolPlan], found: _Problems,
           cache: dict[Path, Mapping[str, str] | None]) -> RoutePlan:
    if cfg.static is not None and not os.access(cfg.static, os.R_OK | os.X_OK):
        found.error(("route", i, "static"), f"cannot read the directory {cfg.static}; make it readable and "
                    "searchable (r-x) by the user running ferryman")
    auth = None
    if cfg.auth is not None:
        users = _htpasswd(("route", i, "auth", "htpasswd"), cfg.auth.htpasswd, found, cache)
        trusted = cfg.auth.trusted_header
        auth = AuthPlan(cfg.auth.htpasswd, users or MappingProxyType({}), cfg.auth.realm, challenge(cfg.auth.realm),
                        trusted.lower().replace("_", "-").encode() if trusted else None, cfg.auth)
    return RoutePlan(
        i, cfg.path, b"" if cfg.path == "/" else cfg.path.encode(), cfg.listeners, cfg.pool,
        MappingProxyType({k.lower().encode(): v.encode() for k, v in cfg.cookie_domain.items()}),
        cfg.encoded_slashes == "keep", auth, cfg)


_HTPASSWD_FIX = "write one user:hash per line, as htpasswd -B (bcrypt), -m (APR1 MD5) or -s (SHA) writes them"


def _htpasswd(loc: Loc, path: Path, found: _Problems,
              cache: dict[Path, Mapping[str, str] | None]) -> Mapping[str, str] | None:
    """The htpasswd file's users, parsed once per file; None (and an error) when it is unusable."""
    if path in cache:
        if cache[path] is None:
            found.error(loc, f"{path.name} is unusable (see the first route that names it)")
        return cache[path]
    cache[path] = None
    try:
        text = path.read_bytes().decode("utf-8")
    except OSError as err:
        found.error(loc, f"cannot read {path}: {err.strerror}; make it readable by the user running ferryman")
        return None
    except UnicodeDecodeError:
        found.error(loc, f"{path.name} is not UTF-8 text; {_HTPASSWD_FIX}")
        return None
    try:
        users = parse_htpasswd(text)
    except HtpasswdSyntaxError as err:
        found.error(loc, f"{path.name} line {err.line}: {err.reason}; {_HTPASSWD_FIX}")
        return None
    bad = [(user, stored) for user, stored in users.items() if not is_supported_hash(stored)]
    if bad:
        lines = _user_lines(text)
        shown = ", ".join(f"{user!r} (line {lines.get(user, '?')}: {_hash_kind(stored)})" for user, stored in bad)
        found.error(loc, f"{path.name}: ferryman cannot check the password of {shown}; re-create "
                    f"{'it' if len(bad) == 1 else 'them'} with htpasswd -B (bcrypt), -m (APR1 MD5) or -s (SHA)")
        return None
    if not users:
        found.warn(loc, f"{path.name} has no users, so every request on this route gets 401; "
                   "add users with htpasswd -B")
    table = MappingProxyType(dict(users))
    cache[path] = table
    return table


def _user_lines(text: str) -> dict[str, int]:
    """user -> line number, as `parse_htpasswd` reads them."""
    out: dict[str, int] = {}
    for number, raw in enumerate(text.lstrip("\ufeff").splitlines(), start=1):
        line = raw.strip()
        if line and not line.startswith("#") and ":" in line:
            out.setdefault(line.partition(":")[0].rstrip(), number)
    return out


def _hash_kind(stored: str) -> str:
    """What a hash ferryman cannot check looks like, without repeating it."""
    for prefix, kind in (("$1$", "MD5-crypt $1$"), ("$5$", "SHA-256-crypt $5$"), ("$6$", "SHA-512-crypt $6$"),
                         ("$2", "a malformed bcrypt hash"), ("$apr1$", "a malformed APR1 hash"),
                         ("{SHA}", "a malformed {SHA} hash"), ("$", "an unknown crypt scheme")):
        if stored.startswith(prefix):
            return kind
    if len(stored) == 13:
        return "DES crypt, or plain text"
    return "plain text or an unknown scheme"


# -- listeners --------------------------------------------------------------------------------------

def _listener(i: int, cfg: Any, config: Config, routes: Sequence[RoutePlan], found: _Problems) -> ListenerPlan:
    at: Loc = ("listener", i)
    addresses = _resolve(at, cfg, found)
    ctx = None
    certs = cfg.tls_certs
    if certs:
        ok = True
        for k, cert in enumerate(certs):
            where = at + (("tls",) if len(certs) == 1 and not isinstance(cfg.tls, tuple) else ("tls", k))
            problem = _server_cert_problem(cert)
            if problem is not None:
                key, message = problem
                found.error(where + (key,), message)
                ok = False
        if ok:
            try:
                ctx = server_context(certs, cfg.tls_profile, cfg.tls_client_ca, cfg.tls_verify_client)
            except (ssl.SSLError, OSError, ValueError) as err:
                if cfg.tls_client_ca is not None and _pem_problem(cfg.tls_client_ca, "CERTIFICATE") is not None:
                    found.error(at + ("tls_client_ca",), f"{cfg.tls_client_ca.name} "
                                f"{_pem_problem(cfg.tls_client_ca, 'CERTIFICATE')}; write a PEM file of CA certificates")
                else:
                    found.error(at + ("tls",), f"cannot set up TLS: {_ssl_reason(err)}")
    nets = cfg.trusted_proxies if cfg.trusted_proxies is not None else config.trusted_proxies
    mine = tuple(r.index for r in routes if r.listeners is None or cfg.name in r.listeners)
    return ListenerPlan(i, cfg.name, cfg.bind, cfg.host, cfg.port, addresses, ctx, tuple(nets), mine, cfg)


def _resolve(at: Loc, cfg: Any, found: _Problems) -> tuple[tuple[int, str], ...]:
    """The (family, address) pairs `run` will bind, resolved as asyncio's create_server does."""
    host = cfg.host
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        pass
    else:
        return ((socket.AF_INET6 if ip.version == 6 else socket.AF_INET, str(ip)),)
    try:
        infos = socket.getaddrinfo(host, cfg.port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except (socket.gaierror, UnicodeError) as err:
        found.error(at + ("bind",), f"host {host!r} does not resolve ({getattr(err, 'strerror', err)}); write an "
                    'IP address, such as "127.0.0.1:8080", or a name this machine resolves')
        return ()
    out: dict[tuple[int, str], None] = {}
    for family, _, _, _, addr in infos:
        if family in (socket.AF_INET, socket.AF_INET6):
            out[(int(family), str(ipaddress.ip_address(str(addr[0]).partition("%")[0])))] = None
    return tuple(out)


def _is_wildcard(address: str) -> bool:
    return ipaddress.ip_address(address).is_unspecified


def _bind_collisions(listeners: Sequence[ListenerPlan], found: _Problems, source: Any) -> None:
    """Refuse two listeners that could not both listen: same port, and the same address or a wildcard
    (0.0.0.0, ::) of the same family. IPv4 and IPv6 never collide: IPv6 sockets are IPv6-only."""
    for j, later in enumerate(listeners):
        if later.port == 0:
            continue
        for earlier in listeners[:j]:
            if earlier.port != later.port:
                continue
            clash = _clash(earlier.addresses, later.addresses)
            if clash is None:
                continue
            family, a, b = clash
            line = source.lines.line_of(("listener", earlier.index, "bind")) if source is not None else None
            where = f"listener[{earlier.index}] ({earlier.name}, {show(earlier.bind)}{f', line {line}' if line else ''})"
            ip = "IPv6" if family == socket.AF_INET6 else "IPv4"
            if a == b:
                why = f"both would listen on {a} port {later.port}"
            else:
                wild = a if _is_wildcard(a) else b
                why = f"{wild} already takes port {later.port} on every {ip} address"
            found.error(("listener", later.index, "bind"),
                        f"{show(later.bind)} collides with {where}: {why}, so ferryman could not listen on both; "
                        "give one of them another port, or keep only the wildcard listener")
            break


def _clash(a: Sequence[tuple[int, str]], b: Sequence[tuple[int, str]]) -> tuple[int, str, str] | None:
    for fa, xa in a:
        for fb, xb in b:
            if fa == fb and (xa == xb or _is_wildcard(xa) or _is_wildcard(xb)):
                return fa, xa, xb
    return None


def _log_file(loc: Loc, path: str, found: _Problems) -> None:
    """A log file `run` will append to (relative to the working directory, as `run` opens it)."""
    if path == "-":
        return
    p = Path(path)
    if p.is_dir():
        found.error(loc, f"{show(path)} is a directory; write a file path, or \"-\" for the terminal")
    elif p.exists():
        if not os.access(p, os.W_OK):
            found.error(loc, f"{show(path)} is not writable by this user; fix its permissions, or write "
                        "another path")
    elif not p.absolute().parent.is_dir():
        found.error(loc, f"{show(path)} is in a directory that does not exist ({p.absolute().parent}); create it, "
                    "or write another path")
    elif not os.access(p.absolute().parent, os.W_OK | os.X_OK):
        found.error(loc, f"{show(path)} cannot be created: its directory is not writable by this user")


# -- TLS files --------------------------------------------------------------------------------------

def _pem_problem(path: Path, kind: str) -> str | None:
    """Why `path` is not a PEM file of `kind` ("CERTIFICATE" or "PRIVATE KEY"), or None."""
    try:
        data = path.read_bytes()
    except OSError as err:
        return f"cannot be read ({err.strerror})"
    if kind == "CERTIFICATE":
        if b"-----BEGIN CERTIFICATE-----" not in data:
            return "holds no PEM certificate"
        try:
            from cryptography import x509
            x509.load_pem_x509_certificates(data)
        except ImportError:  # pragma: no cover - cryptography comes with the TLS test tools
            return None
        except ValueError:
            return "holds a certificate that cannot be parsed"
        return None
    if b"PRIVATE KEY-----" not in data:
        return "holds no PEM private key"
    return None


def _server_cert_problem(cert: Any) -> tuple[str, str] | None:
    """(key, message) of what is wrong with a listener certificate and its key, or None."""
    problem = _pem_problem(cert.cert, "CERTIFICATE")
    if problem is not None:
        return "cert", f"{cert.cert.name} {problem}; write the PEM certificate chain, leaf first"
    problem = _pem_problem(cert.key, "PRIVATE KEY")
    if problem is not None:
        return "key", f"{cert.key.name} {problem}; write the PEM private key of {cert.cert.name}"
    try:
        server_context([cert])
    except ssl.SSLError as err:
        if "KEY_VALUES_MISMATCH" in str(err) or err.reason == "KEY_VALUES_MISMATCH":
            return "key", f"{cert.key.name} is not the private key of {cert.cert.name}; write the key that " \
                          "belongs to this certificate"
        return "cert", f"cannot load {cert.cert.name} with {cert.key.name}: {_ssl_reason(err)}"
    except (OSError, ValueError) as err:
        return "cert", f"cannot load {cert.cert.name}: {_ssl_reason(err)}"
    return None


def _ssl_reason(err: BaseException) -> str:
    if isinstance(err, ssl.SSLError) and err.reason:
        return err.reason.lower().replace("_", " ")
    return getattr(err, "strerror", None) or str(err)

