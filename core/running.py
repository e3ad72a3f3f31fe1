"""What runs in this process: one lock per scope (turns in a scope run in order), and the turns
streaming now, by answer id (what a Stop press finds and cancels).

Stopping cancels the turn's task while it reads upstream (the only place it waits while listed):
the HTTP response is released unfinished, so the connection closes and a paid relay stops
generating; the turn takes the cancellation back (`Task.uncancel`) and goes on to show and store
what had arrived (`ConversationService`), in the same task, so the reply makes no call it would
not have made anyway.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from core.errors import STOP_REQUESTED
from core.turns import Scope


class ScopeLocks:
    """One lock per scope, dropped when no turn holds or awaits it (scopes are unbounded)."""

    def __init__(self) -> None:
        self._locks: dict[Scope, tuple[asyncio.Lock, int]] = {}

    @asynccontextmanager
    async def hold(
        self, scope: Scope, on_wait: Callable[[], None] | None = None
    ) -> AsyncIterator[None]:
        """Hold the scope's lock; `on_wait` is called first if another turn holds or awaits it."""
        lock, users = self._locks.get(scope, (asyncio.Lock(), 0))
        self._locks[scope] = (lock, users + 1)
        if users and on_wait is not None:
            on_wait()
        try:
            async with lock:
                yield
        finally:
            lock, users = self._locks[scope]
            if users == 1:
                del self._locks[scope]
            else:
                self._locks[scope] = (lock, users - 1)

    def __len__(self) -> int:
        return len(self._locks)


@dataclass(slots=True)
class RunningTurn:
    """A turn streaming its answer: where, who asked, and the task reading upstream."""

    answer_id: int
    scope: Scope
    asker_id: str
    task: asyncio.Task[Any]
    stop_requested: bool = False

    def stop(self) -> None:
        """Cancel the upstream request now; the turn ends as `stopped`."""
        if not self.stop_requested:
            self.stop_requested = True
            self.task.cancel(STOP_REQUESTED)


class RunningTurns:
    def __init__(self) -> None:
        self._turns: dict[int, RunningTurn] = {}

    def add(self, turn: RunningTurn) -> None:
        self._turns[turn.answer_id] = turn

    def remove(self, answer_id: int) -> None:
        self._turns.pop(answer_id, None)

    def get(self, answer_id: int) -> RunningTurn | None:
        return self._turns.get(answer_id)

    def __len__(self) -> int:
        return len(self._turns)
