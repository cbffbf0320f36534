"""What one member process knows about itself and shares between its HTTP views and its consumers."""

from __future__ import annotations

import asyncio
import os

MEMBER = os.environ.get("WS_MEMBER_NAME", "member")
PORT = int(os.environ.get("WS_MEMBER_PORT", "0"))

# stall key -> the Event a stalled consumer waits on before it reads again (set by the release view)
_RELEASE: dict[str, asyncio.Event] = {}
# stall key -> the number of messages a stalled consumer has taken (1 while it stalls)
STALLED: dict[str, int] = {}
# ?key= values of the WebSocket connections open right now (the app has not seen their disconnect)
OPEN: set[str] = set()


def release_event(key: str) -> asyncio.Event:
    """The Event for `key`, created on first use (views and consumers share one event loop)."""
    ev = _RELEASE.get(key)
    if ev is None:
        ev = _RELEASE[key] = asyncio.Event()
    return ev
