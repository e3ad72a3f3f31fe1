"""A platform that records every send and edit on a `FakeClock`, for pure core tests."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from core.buttons import Button
from core.platform import MessageGone, MessageRef, PlatformRateLimited
from fakes.clock import FakeClock


@dataclass
class Call:
    at: float
    kind: str  # "send" | "edit"
    message_id: str
    text: str
    final: bool
    buttons: tuple[Button, ...] = ()


@dataclass
class RecordingChannel:
    """A ReplyChannel that keeps every message and call; faults can be queued per call kind."""

    clock: FakeClock
    max_chars: int = 2000
    calls: list[Call] = field(default_factory=list)
    texts: dict[str, str] = field(default_factory=dict)
    faults: list[Exception] = field(default_factory=list)  # raised by the next edits, in order
    deleted: set[str] = field(default_factory=set)
    _called: asyncio.Event = field(default_factory=asyncio.Event, repr=False)

    def measure(self, text: str) -> int:
        return len(text)

    async def send(self, text: str, *, final: bool, buttons: Sequence[Button] = ()) -> MessageRef:
        assert len(text) <= self.max_chars, len(text)
        message_id = str(len(self.texts) + 1)
        self.texts[message_id] = text
        self.calls.append(Call(self.clock.now, "send", message_id, text, final, tuple(buttons)))
        self._notify()
        return MessageRef("chat", message_id)

    async def edit(
        self, ref: MessageRef, text: str, *, final: bool, buttons: Sequence[Button] = ()
    ) -> None:
        assert len(text) <= self.max_chars, len(text)
        if ref.message_id in self.deleted:
            raise MessageGone(ref.message_id)
        if self.faults:
            raise self.faults.pop(0)
        self.texts[ref.message_id] = text
        self.calls.append(Call(self.clock.now, "edit", ref.message_id, text, final, tuple(buttons)))
        self._notify()

    def _notify(self) -> None:
        self._called.set()
        self._called = asyncio.Event()

    async def wait_until(self, condition: Callable[[], bool]) -> None:
        """Wait until `condition()` holds after some call (wrap it in a timeout)."""
        while not condition():
            await self._called.wait()

    def visible(self) -> list[str]:
        """The messages a reader sees now, oldest first (deleted ones gone)."""
        return [text for mid, text in self.texts.items() if mid not in self.deleted]


def rate_limited(seconds: float) -> PlatformRateLimited:
    return PlatformRateLimited(seconds)
