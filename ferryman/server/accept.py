"""Listening sockets: what one makes of each accepted connection: a plain `ClientConnection`, or on a TLS
listener a `TlsAcceptor` that first completes the handshake (with its timeout, failure count and log,
client certificate user) and then hands the connection to one; and the line saying where a listener
listens. Start-up, reload and a master all use them, so a listener behaves and is announced the same
whichever of them opened its socket."""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

from ferryman.server.proxy import ClientConnection
from ferryman.server.runtime import ListenerRuntime, Server
from ferryman.server.tls import TlsAcceptor

if TYPE_CHECKING:  # pragma: no cover
    from ferryman.plan import ListenerPlan

log = logging.getLogger("ferryman")


def announce(listener: "ListenerRuntime | ListenerPlan", socks: Iterable[socket.socket]) -> None:
    """Log where a listener listens (one line per socket: tests and operators wait for it)."""
    for sock in socks:
        host, port = sock.getsockname()[:2]
        shown = f"[{host}]" if ":" in host else host
        scheme = "https" if listener.ssl_context is not None else "http"
        log.info("listening on %s://%s:%d (listener %s)", scheme, shown, port, listener.name)


def protocol_factory(server: Server, listener_of: Callable[[], ListenerRuntime],
                     tls: bool) -> Callable[[], asyncio.Protocol]:
    """A protocol factory for `loop.create_server`; `listener_of` is asked at each accept (a reload
    decides a staged socket's listener only when it starts serving)."""

    def plain() -> ClientConnection:
        return ClientConnection(server, listener_of())

    if not tls:
        return plain

    def handshaken() -> ClientConnection:  # made once the TLS handshake succeeded
        listener = listener_of()
        server.metrics.tls_handshake(listener.name, True)
        return ClientConnection(server, listener)

    def acceptor() -> TlsAcceptor:
        return TlsAcceptor(listener_of(), handshaken, server.log_handshake_failure)

    return acceptor
