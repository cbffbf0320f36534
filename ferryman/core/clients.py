"""Which client a limit counts: an address alone is the wrong unit for IPv6.

Pure. A single IPv6 host usually holds a whole /64 and can send from any address in it, so a limit
counted per address (a login lockout, connections per client) would never bind it.
"""

from __future__ import annotations

import ipaddress

__all__ = ["client_unit"]


def client_unit(addr: str) -> str:
    """The unit a per-client limit counts: an IPv4 address as it is, an IPv6 address's /64 network,
    an IPv4-mapped IPv6 address as its IPv4 address; anything else as it is."""
    if ":" not in addr:
        return addr
    try:
        ip = ipaddress.IPv6Address(addr.partition("%")[0])
    except ValueError:
        return addr
    if ip.ipv4_mapped is not None:
        return str(ip.ipv4_mapped)
    return str(ipaddress.IPv6Network((int(ip) >> 64 << 64, 64)))
