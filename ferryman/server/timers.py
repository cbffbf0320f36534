"""Per-connection deadlines on the event loop's own timers (no periodic sweep over every connection).

A connection sets `deadline` (loop time; 0 disarms) as often as it likes: moving it later costs an
attribute write, because the armed timer is not moved; when it fires early it re-arms itself for the
current deadline. Only a deadline earlier than the armed timer re-arms at once. So a body streamed in
many reads costs one timer, not one per read.
"""

from __future__ import annotations

import asyncio


class Deadline:
    """Mixin: `deadline` property backed by one lazily re-armed `loop.call_at` timer; calls
    `timed_out()` when the deadline passes."""

    _loop: asyncio.AbstractEventLoop
    _deadline: float = 0.0
    _timer: asyncio.TimerHandle | None = None
    _timer_at: float = 0.0

    @property
    def deadline(self) -> float:
        return self._deadline

    @deadline.setter
    def deadline(self, when: float) -> None:
        self._deadline = when
        if when and (self._timer is None or when < self._timer_at):
            if self._timer is not None:
                self._timer.cancel()
            self._timer_at = when
            self._timer = self._loop.call_at(when, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        when = self._deadline
        if not when:
            return
        if when > self._loop.time():
            self._timer_at = when
            self._timer = self._loop.call_at(when, self._on_timer)
            return
        self._deadline = 0.0
        try:
            self.timed_out()
        except Exception as exc:  # a callback edge: ferryman's bug, handled like any other
            self.timer_fault(exc)

    def cancel_deadline(self) -> None:
        self._deadline = 0.0
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def timed_out(self) -> None:  # pragma: no cover - overridden
        raise NotImplementedError

    def timer_fault(self, exc: Exception) -> None:  # pragma: no cover - overridden
        raise exc
