"""Virtual time for pure core tests: `sleep` returns only when the test advances the clock."""

from __future__ import annotations

import asyncio
import heapq
import itertools


class FakeClock:
    """Virtual time: `sleep` waits until the test `advance`s the clock past its deadline."""

    def __init__(self) -> None:
        self.now = 0.0
        self._sleepers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._order = itertools.count()

    def monotonic(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        if seconds <= 0:
            await asyncio.sleep(0)
            return
        future = asyncio.get_running_loop().create_future()
        heapq.heappush(self._sleepers, (self.now + seconds, next(self._order), future))
        await future

    async def advance(self, seconds: float) -> None:
        target = self.now + seconds
        await settle()
        while self._sleepers and self._sleepers[0][0] <= target:
            deadline, _, future = heapq.heappop(self._sleepers)
            self.now = max(self.now, deadline)
            if not future.done():
                future.set_result(None)
            await settle()
        self.now = target
        await settle()

    async def run_until(self, done: asyncio.Future[object], step: float = 0.05) -> None:
        """Advance in steps until `done` completes (bounded, so a bug fails instead of hanging)."""
        for _ in range(100_000):
            if done.done():
                return
            await self.advance(step)
        raise AssertionError("never finished in virtual time")


async def settle(rounds: int = 20) -> None:
    """Let every ready task run until they all wait again."""
    for _ in range(rounds):
        await asyncio.sleep(0)
