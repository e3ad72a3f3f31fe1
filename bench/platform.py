"""An in-process platform that records every send and edit and enforces nothing (checked against
the published limits afterwards, with `fakes.rate_window`), and a clock that remembers why a
reply waited.

Bot-added latency of a platform call = the call's time minus the moment it became due: the later
of (a) the arrival of the newest chunk its text carries and (b) the intended end of the last
deliberate wait (per-message interval, shared budget) the calling task made since its previous
call, or when a full shared budget freed the slot it granted (waiting in a budget's FIFO queue is
the platform's limit too). What the platform's limits impose is not counted; what the event
loop adds is.
"""

from __future__ import annotations

import asyncio
import bisect
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from core.buttons import Button
from core.pacing import RateBudget
from core.platform import MessageRef
from fakes.rate_window import Limits

_BUDGET_ACQUIRE = RateBudget.acquire.__code__


class TracingClock:
    """The system clock; `sleep` remembers, per task, when the wait was meant to end."""

    def __init__(self) -> None:
        self.due: dict[asyncio.Task[object] | None, float] = {}

    def monotonic(self) -> float:
        now = time.monotonic()
        # A full budget reads the clock once its FIFO queue lets a caller through: the call is
        # due when the budget's window frees a slot (waiting for it is the platform's limit).
        frame = sys._getframe(1)
        if frame.f_code is _BUDGET_ACQUIRE:
            budget = frame.f_locals["self"]
            slot = budget.next_slot_at()
            task = asyncio.current_task()
            if slot > self.due.get(task, 0.0):
                self.due[task] = slot
        return now

    async def sleep(self, seconds: float) -> None:
        task = asyncio.current_task()
        end = time.monotonic() + seconds
        if end > self.due.get(task, 0.0):
            self.due[task] = end
        await asyncio.sleep(seconds)

    def take_due(self) -> float:
        """The latest intended wake-up of the current task since this was last asked."""
        return self.due.pop(asyncio.current_task(), 0.0)


@dataclass(slots=True)
class Call:
    at: float
    kind: str  # "send" | "edit"
    chat: str
    message_id: str
    chars: int
    final: bool
    ready: float  # when the call became due (see the module docstring)
    carried_arrival: float  # arrival of the newest chunk the text carries (0: unknown)


@dataclass
class Recorder:
    """Every call of every channel, in order."""

    limits: Limits
    clock: TracingClock
    calls: list[Call] = field(default_factory=list)
    _ids: int = 0

    def next_id(self) -> str:
        self._ids += 1
        return str(self._ids)


class Arrivals:
    """When the reply's text reached each length (one entry per appended chunk)."""

    __slots__ = ("lengths", "times")

    def __init__(self) -> None:
        self.times: list[float] = []
        self.lengths: list[int] = []

    def add(self, length: int) -> None:
        self.times.append(time.monotonic())
        self.lengths.append(length)

    def arrival_of(self, length: int) -> float:
        """When the text first reached `length` characters (0.0 when no chunk did)."""
        index = bisect.bisect_left(self.lengths, length)
        if index >= len(self.times):
            return self.times[-1] if self.times else 0.0
        return self.times[index]


@dataclass
class RecordingChannel:
    """A `ReplyChannel` for one answer: records calls, never refuses one."""

    recorder: Recorder
    chat: str
    arrivals: Arrivals
    indicator: str
    max_chars: int = field(init=False)

    def __post_init__(self) -> None:
        self.max_chars = self.recorder.limits.max_chars - len(self.indicator)

    def measure(self, text: str) -> int:
        return len(text)

    def _record(self, kind: str, message_id: str, text: str, final: bool) -> None:
        now = time.monotonic()
        body = text if final else text.removesuffix(self.indicator)
        # The bench's answers fit one message: its text is the answer so far, so its length
        # names the newest chunk it carries.
        carried = self.arrivals.arrival_of(len(body))
        due = self.recorder.clock.take_due()
        self.recorder.calls.append(
            Call(now, kind, self.chat, message_id, len(text), final, max(carried, due), carried)
        )

    async def send(self, text: str, *, final: bool, buttons: Sequence[Button] = ()) -> MessageRef:
        message_id = self.recorder.next_id()
        self._record("send", message_id, text, final)
        return MessageRef(self.chat, message_id)

    async def edit(
        self, ref: MessageRef, text: str, *, final: bool, buttons: Sequence[Button] = ()
    ) -> None:
        self._record("edit", ref.message_id, text, final)
