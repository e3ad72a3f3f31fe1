"""The read timeout of one stream: `Watchdog`, used by the transport for every read."""

from __future__ import annotations

import asyncio
from typing import Any


class Watchdog:
    """The read timeout of one stream: one timer, re-armed only when it fires early.

    Entering and leaving an `asyncio.timeout` around every read costs a timer handle, a heap
    push and a cancellation per chunk. Instead `start` before a read only moves `deadline`
    (and the task to cancel); when the timer fires before the current deadline it sleeps on,
    and when it fires during a read past the deadline it cancels the reading task, as
    `asyncio.timeout` would, and `claim` then tells that CancelledError from any other.
    Between reads (while the consumer holds a Delta) it never cancels anything.
    """

    __slots__ = ("_armed_for", "_cancelling", "_expired", "_handle", "_loop", "_task", "deadline")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._handle: asyncio.TimerHandle | None = None
        self._armed_for = 0.0  # when the pending timer fires
        self._task: asyncio.Task[Any] | None = None  # the reading task, None between reads
        self._cancelling = 0
        self._expired = False
        self.deadline = 0.0

    def start(self, deadline: float) -> None:
        """A read begins, to be cancelled at `deadline`."""
        self.deadline = deadline
        if self._handle is None or deadline < self._armed_for:
            if self._handle is not None:
                self._handle.cancel()
            self._armed_for = deadline
            self._handle = self._loop.call_at(deadline, self._fire)
        task = self._task = asyncio.current_task()
        assert task is not None
        self._cancelling = task.cancelling()

    def stop(self) -> None:
        """The read is over (without a cancellation)."""
        self._task = None

    def claim(self) -> bool:
        """The read was cancelled: True when by this watchdog alone, i.e. it timed out."""
        task, self._task = self._task, None
        if not self._expired or task is None:
            return False
        self._expired = False
        return task.uncancel() <= self._cancelling

    def close(self) -> None:
        self._task = None
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def _fire(self) -> None:
        self._handle = None
        if self.deadline > self._armed_for:  # moved on since this timer was set
            self._armed_for = self.deadline
            self._handle = self._loop.call_at(self.deadline, self._fire)
        elif self._task is not None and not self._expired:
            self._expired = True
            self._task.cancel()
