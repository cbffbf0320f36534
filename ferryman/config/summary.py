"""What ``ferryman check`` prints: the setup a valid configuration describes, in plain text.

Written for an operator comparing it with the Apache configuration it replaces: which sockets,
which public prefixes go to which pool, and each pool's balancing and members. Values appear as they
are written in the file (durations as "60s"), defaults included, so nothing is implicit.
"""

from __future__ import annotations

from collections.abc import Sequence

from ferryman.config.schema import Config, Listener, Pool, Route
from ferryman.core.signing import key_id
from ferryman.core.units import format_duration

__all__ = ["summarize"]


def _table(rows: Sequence[Sequence[str]], indent: str = "  ") -> list[str]:
    """Rows as left-aligned columns; trailing spaces trimmed."""
    widths = [max(len(r[c]) for r in rows if c < len(r)) for c in range(max(len(r) for r in rows))]
    return [(indent + "  ".join(cell.ljust(widths[c]) for c, cell in enumerate(row))).rstrip() for row in rows]


def _listener_row(lst: Listener) -> list[str]:
    certs = lst.tls_certs
    if not certs:
        kind = "http"
    else:
        kind = f"https ({', '.join(c.cert.name for c in certs)}{', SNI' if len(certs) > 1 else ''})"
    notes = []
    if lst.trusted_proxies is not None:
        notes.append(f"trusted proxies: {', '.join(map(str, lst.trusted_proxies)) or 'none'}")
    if lst.forwarded:
        notes.append("Forwarded header")
    if lst.access_log.format == "off":
        notes.append("no access log")
    return [lst.name, lst.bind, kind, "; ".join(notes)]


def _route_row(route: Route) -> list[str]:
    on = ", ".join(route.listeners) if route.listeners is not None else "(every listener)"
    notes = []
    if route.auth is not None:
        notes.append(f'auth: {route.auth.htpasswd.name} realm "{route.auth.realm}"')
    if route.preserve_host:
        notes.append("preserve_host")
    if not route.reverse:
        notes.append("no ProxyPassReverse")
    if route.cookie_domain:
        notes.append("cookie_domain " + ", ".join(f"{k} -> {v}" for k, v in route.cookie_domain.items()))
    if route.encoded_slashes == "keep":
        notes.append("encoded slashes kept")
    return [on, route.path, "->", route.pool, "; ".join(notes)]


def _pool_lines(name: str, pool: Pool) -> list[str]:
    head = [f"lbmethod={pool.lbmethod}", f"sticky={pool.sticky or '-'}", f"retry={format_duration(pool.retry)}"]
    if pool.route_cookie is not None:
        head.append(f"route_cookie={pool.route_cookie.name or '(derived from pool name)'}")
    if pool.tls is not None:
        head.append(f"tls: ca={pool.tls.ca.name if pool.tls.ca else 'system'}"
                    + ("" if pool.tls.verify else " verify=false"))
    rows = [[m.url, f"route={m.route or '-'}", f"weight={m.weight}", m.status]
            + ([f"lbset={m.lbset}"] if m.lbset else []) for m in pool.members]
    return [f"  {name}: {' '.join(head)}", *_table(rows, indent="    ")]


def summarize(config: Config) -> str:
    """A readable summary of `config`: listeners, routes and pools, one line per item."""
    out = ["listeners:", *_table([_listener_row(lst) for lst in config.listener])]
    out += ["routes:", *_table([_route_row(r) for r in config.route])]
    out.append("pools:")
    for name, pool in config.pool.items():
        out += _pool_lines(name, pool)
    if config.trusted_proxies:
        out.append(f"trusted proxies: {', '.join(str(n) for n in config.trusted_proxies)}")
    if config.signing is not None:
        ids = [key_id(secret) for secret in config.signing.secrets]
        out.append(f"signing: Ferryman-Signature with key {ids[0]}"
                   + (f" (also listed: {', '.join(ids[1:])})" if ids[1:] else ""))
    return "\n".join(out)
