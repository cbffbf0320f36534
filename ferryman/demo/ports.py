"""Ports of the demo, all checked before anything starts.

Each port is bound here first (SO_REUSEADDR, as servers bind). The app servers' sockets are then
handed to gunicorn as open file descriptors, so nothing can take them in between; the front end's are
closed just before ``ferryman run`` binds them. Port 0 picks a free port.
"""

from __future__ import annotations

import errno
import socket
from dataclasses import dataclass, field


@dataclass
class Reserved:
    """A bound socket for one port of the demo, and the option that sets it."""

    what: str
    option: str
    host: str
    sock: socket.socket

    @property
    def port(self) -> int:
        return int(self.sock.getsockname()[1])

    def close(self) -> None:
        self.sock.close()


@dataclass
class PortError(Exception):
    """One or more ports could not be bound; `problems` says which and how to choose others."""

    problems: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        return "\n".join(self.problems)


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
    except BaseException:
        sock.close()
        raise
    sock.set_inheritable(False)
    return sock


def reserve(wanted: list[tuple[str, str, str, int]]) -> list[Reserved]:
    """Bind every (what, how to choose another, host, port); all of them or none (raises PortError
    listing each failure). "How to choose another" completes "choose another with ...", such as
    "--http-port PORT (0: any free port)"."""
    got: list[Reserved] = []
    problems: list[str] = []
    seen: dict[tuple[str, int], str] = {}
    for what, option, host, port in wanted:
        if port and (host, port) in seen:
            problems.append(f"port {port} is given twice ({seen[host, port]} and {what}); "
                            f"choose another with {option}")
            continue
        seen[host, port] = what
        try:
            got.append(Reserved(what, option, host, _bind(host, port)))
        except OSError as e:
            if e.errno == errno.EADDRINUSE:
                reason = "is already in use"
            elif e.errno == errno.EACCES:
                reason = "needs privileges to bind"
            elif e.errno == errno.EADDRNOTAVAIL:
                reason = f"cannot be bound: {host} is not an address of this machine"
            else:
                reason = f"cannot be bound ({e.strerror})"
            problems.append(f"port {port} on {host} ({what}) {reason}; choose another with {option}")
    if problems:
        for r in got:
            r.close()
        raise PortError(problems)
    return got
