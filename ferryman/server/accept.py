"""What a listening socket makes of each accepted connection: a plain `ClientConnection`, or on a TLS
listener a `TlsAcceptor` that first completes the handshake (with its timeout, failure count and log,
client certificate user) and then hands the connection to one. Start-up and reload both use it, so a
listener behaves the same whichever of them opened its socket."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from ferryman.server.proxy import ClientConnection
from ferryman.server.runtime import ListenerRuntime, Server
from ferryman.server.tls import TlsAcceptor


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
