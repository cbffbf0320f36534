"""Backpressure between a client connection and the backend connection serving it, both ways.

One `Flow` per client connection pairs its transport with the backend transport of the current
exchange (or tunnel). asyncio reports a full write buffer with `pause_writing` and a drained one with
`resume_writing`; the flow turns that into reading less on the other side:

- client -> backend (request body, tunnel bytes): the backend's buffer is full, so the client is not read;
- backend -> client (response body, tunnel bytes): the client's buffer is full, so the backend is not read.

The client can also be held for reasons of its own: pipelined bytes already held, a body arriving before a
backend connection exists. Reading resumes only when no reason is left, so memory stays bounded whatever
the speeds of the two peers.
"""

from __future__ import annotations

import asyncio

# Reasons the client is not read; reading resumes when none is left.
PAUSE_PIPELINE = 1   # bytes of a later request are held until the current answer is written
PAUSE_UPLOAD = 2     # the backend cannot take the body as fast as the client sends it
PAUSE_BUFFER = 4     # the body arrives before a backend connection exists
PAUSE_TUNNEL = 8     # the backend cannot take tunnel bytes as fast as the client sends them


class Flow:
    """The pairing of one client transport with the backend transport serving it."""

    __slots__ = ("client", "backend", "client_holds", "client_full", "backend_paused")

    def __init__(self, client: asyncio.Transport) -> None:
        self.client = client
        self.backend: asyncio.Transport | None = None
        self.client_holds = 0          # PAUSE_* reasons the client is not read
        self.client_full = False       # the client's write buffer is full
        self.backend_paused = False    # the backend is not read because the client's buffer is full

    # -- the pairing ----------------------------------------------------------------------------------

    def attach(self, backend: asyncio.Transport) -> None:
        """A backend connection now serves this client: apply the client's state to it."""
        self.backend = backend
        self.backend_paused = False  # a connection closed without `detach` leaves nothing behind
        if self.client_full:
            self.backend_paused = True
            backend.pause_reading()

    def detach(self, backend: asyncio.Transport) -> None:
        """The backend connection is done with this client (back to its pool, or closed)."""
        if self.backend is backend:
            self.backend = None
            if self.backend_paused:
                self.backend_paused = False
                if not backend.is_closing():
                    backend.resume_reading()

    # -- backend -> client ----------------------------------------------------------------------------

    def client_buffer_full(self) -> bool:
        """The client's write buffer is full: stop reading the backend. True if it was paused now."""
        self.client_full = True
        backend = self.backend
        if backend is not None and not self.backend_paused and not backend.is_closing():
            self.backend_paused = True
            backend.pause_reading()
            return True
        return False

    def client_buffer_drained(self) -> bool:
        """The client's write buffer drained: read the backend again. True if it was resumed now."""
        self.client_full = False
        backend = self.backend
        if self.backend_paused:
            self.backend_paused = False
            if backend is not None and not backend.is_closing():
                backend.resume_reading()
                return True
        return False

    # -- client -> backend ----------------------------------------------------------------------------

    def hold_client(self, reason: int) -> bool:
        """Stop reading the client for `reason`. True if reading stopped now."""
        was = self.client_holds
        self.client_holds = was | reason
        if not was and not self.client.is_closing():
            self.client.pause_reading()
            return True
        return False

    def release_client(self, reason: int) -> bool:
        """`reason` no longer holds the client. True if reading resumed now (no reason left)."""
        holds = self.client_holds
        if not holds & reason:
            return False
        self.client_holds = holds & ~reason
        if not self.client_holds and not self.client.is_closing():
            self.client.resume_reading()
            return True
        return False
