"""In-process fakes for pure core tests: a virtual clock and a platform that records calls."""

from __future__ import annotations

import asyncio
import heapq
import itertools
from dataclasses import dataclass, field

from core.platform import MessageGone, MessageRef, PlatformRateLimited


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


@dataclass
class Call:
    at: float
    kind: str  # "send" | "edit"
    message_id: str
    text: str
    final: bool


@dataclass
class RecordingChannel:
    """A ReplyChannel that keeps every message and call; faults can be queued per call kind."""

    clock: FakeClock
    max_chars: int = 2000
    calls: list[Call] = field(default_factory=list)
    texts: dict[str, str] = field(default_factory=dict)
    faults: list[Exception] = field(default_factory=list)  # raised by the next edits, in order
    deleted: set[str] = field(default_factory=set)

    def measure(self, text: str) -> int:
        return len(text)

    async def send(self, text: str, *, final: bool) -> MessageRef:
        assert len(text) <= self.max_chars, len(text)
        message_id = str(len(self.texts) + 1)
        self.texts[message_id] = text
        self.calls.append(Call(self.clock.now, "send", message_id, text, final))
        return MessageRef("chat", message_id)

    async def edit(self, ref: MessageRef, text: str, *, final: bool) -> None:
        assert len(text) <= self.max_chars, len(text)
        if ref.message_id in self.deleted:
            raise MessageGone(ref.message_id)
        if self.faults:
            raise self.faults.pop(0)
        self.texts[ref.message_id] = text
        self.calls.append(Call(self.clock.now, "edit", ref.message_id, text, final))

    def visible(self) -> list[str]:
        """The messages a reader sees now, oldest first (deleted ones gone)."""
        return [text for mid, text in self.texts.items() if mid not in self.deleted]


def rate_limited(seconds: float) -> PlatformRateLimited:
    return PlatformRateLimited(seconds)
