"""Log once per key and window: a flood of the same event must not flood the log.

Pure: the caller passes the time. Used for failed TLS handshakes, where one scanner or one broken
client can fail thousands of times a minute, and for clients going over a limit.
"""

from __future__ import annotations

from collections import OrderedDict

__all__ = ["LogGate"]


class LogGate:
    """Says whether an event for `key` should be logged now, and how many were held back.

    The first event of a key is logged; later ones within `window` seconds are only counted; the
    first event after the window is logged again, carrying the number held back since the last
    line, so the log still tells how often it happened. At most `max_keys` keys are remembered
    (the one logged longest ago is forgotten first): a forgotten key is logged afresh, so memory is
    bounded and nothing is ever hidden for longer than a window.
    """

    def __init__(self, window: float = 60.0, max_keys: int = 4096) -> None:
        if window <= 0 or max_keys < 1:
            raise ValueError("window must be > 0 and max_keys >= 1")
        self.window = window
        self.max_keys = max_keys
        self._last: OrderedDict[str, tuple[float, int]] = OrderedDict()  # key -> (logged at, held back)

    def allow(self, key: str, now: float) -> int | None:
        """None: hold this event back. Otherwise log it: the number of events held back before it."""
        entry = self._last.get(key)
        if entry is not None and now - entry[0] < self.window:
            self._last[key] = (entry[0], entry[1] + 1)
            return None
        held = entry[1] if entry is not None else 0
        self._last.pop(key, None)
        self._last[key] = (now, 0)
        while len(self._last) > self.max_keys:
            self._last.popitem(last=False)
        return held

    def __len__(self) -> int:
        return len(self._last)
