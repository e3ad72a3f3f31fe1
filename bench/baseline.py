"""llmcord's pacing, for comparison: one global throttle shared by every answer.

llmcord (`llmcord.py`) keeps `last_task_time` as a module global: on each chunk, a reply edits
only when its previous edit task is done and a second has passed since *any* reply's last edit;
the first chunk sends a message at once and the end always edits. Calls are not budgeted (the
platform library deals with the 429s). This class offers what `ConversationService.answer` uses
of a `StreamingReply`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence

from core.buttons import Button
from core.platform import MessageRef, ReplyChannel

EDIT_DELAY_SECONDS = 1.0


class GlobalThrottle:
    def __init__(self) -> None:
        self.last_task_time = 0.0


class BaselineReply:
    def __init__(self, channel: ReplyChannel, throttle: GlobalThrottle, indicator: str) -> None:
        self.channel = channel
        self._throttle = throttle
        self._indicator = indicator
        self._text = ""
        self._ref: MessageRef | None = None
        self._start: asyncio.Task[None] | None = None
        self._edit: asyncio.Task[None] | None = None
        self.first_sent = asyncio.Event()
        # The core reads the stream as our replies pace it: as often as this one edits.
        self.edit_interval_s = EDIT_DELAY_SECONDS

    @property
    def text(self) -> str:
        return self._text

    def shown_in(self) -> float | None:
        """llmcord shows the text when a chunk comes, not at a time of its own."""
        return None

    @property
    def messages(self) -> list[MessageRef]:
        return [self._ref] if self._ref is not None else []

    def set_markup(self, markup: object) -> None:
        """The baseline (llmcord) shows the GPT's text as it comes, markup and all."""

    def append(self, text: str) -> None:
        if not text:
            return
        self._text += text
        if self._start is None:
            self._start = asyncio.create_task(self._send(self._text + self._indicator))
            self._throttle.last_task_time = time.monotonic()
            return
        ready = (
            self._ref is not None
            and (self._edit is None or self._edit.done())
            and time.monotonic() - self._throttle.last_task_time >= EDIT_DELAY_SECONDS
        )
        if ready:
            assert self._ref is not None
            ref, body = self._ref, self._text + self._indicator
            self._edit = asyncio.create_task(self.channel.edit(ref, body, final=False))
            self._throttle.last_task_time = time.monotonic()

    async def _send(self, text: str) -> None:
        self._ref = await self.channel.send(text, final=False)
        self.first_sent.set()

    def set_buttons(self, buttons: Sequence[Button]) -> None:
        """llmcord shows no buttons."""

    async def finish(self, error_line: str | None = None, buttons: Sequence[Button] = ()) -> None:
        text = self._text
        if error_line:
            text = f"{text.rstrip()}\n\n{error_line}" if text.strip() else error_line
        if self._start is not None:
            await self._start
        if self._edit is not None:
            await self._edit
        if self._ref is None:
            self._ref = await self.channel.send(text, final=True)
        else:
            await self.channel.edit(self._ref, text, final=True)
        self._throttle.last_task_time = time.monotonic()
