"""The streaming reply: one answer shown while it arrives, on any platform.

The GPT's text is appended as it streams; a background task shows it by sending the first message
at once and then editing it in place — at most once per `edit_interval_s` per message, never with
unchanged text, and only after every shared budget covering it grants a call. Past the platform's
length the answer continues in new messages (see `core.splitting`). `finish` ends with a final
edit of every message whose text is not yet the full, final text.

Buttons (`core.buttons`) ride on those same calls: the message still being written carries the
reply's `buttons` (Stop), the last message's final edit carries the buttons `finish` is given
(Retry, or none), and every other message none. They never cost a call of their own.

What is shown is the text cleaned of ChatGPT-only markup (`core.answer_markup`: citations,
sandbox links, image prompts), as it streams; `text` stays what the GPT wrote, for storage and
for the history sent upstream.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import math
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

from core.answer_markup import AnswerMarkup
from core.buttons import Button
from core.pacing import Budget
from core.platform import (
    Clock,
    Image,
    MessageGone,
    MessageRef,
    PlatformRateLimited,
    PlatformRefused,
    ReplyChannel,
    SendsImages,
    SystemClock,
)
from core.splitting import Page, split_pages

logger = logging.getLogger(__name__)

T = TypeVar("T")

# After the platform says "too many requests", this message's interval grows by this factor.
SLOWDOWN_FACTOR = 2.0
MAX_SLOWDOWN = 8.0


class _Pieces:
    """Text that grows by small pieces (every streamed delta), joined only when read."""

    __slots__ = ("_joined", "_pending")

    def __init__(self, text: str = "") -> None:
        self._joined = text
        self._pending: list[str] = []

    def append(self, piece: str) -> None:
        self._pending.append(piece)

    def joined(self) -> str:
        if self._pending:
            self._joined += "".join(self._pending)
            self._pending.clear()
        return self._joined


@dataclass(slots=True)
class _Shown:
    """A message of this reply and what it shows now."""

    ref: MessageRef
    text: str
    final: bool
    shown_at: float
    slowdown: float = 1.0
    buttons: tuple[Button, ...] = ()


class StreamingReply:
    def __init__(
        self,
        channel: ReplyChannel,
        *,
        edit_interval_s: float,
        budgets: Sequence[Budget] = (),
        indicator: str = "",
        clock: Clock | None = None,
        markup: AnswerMarkup | None = None,
    ) -> None:
        self.channel = channel
        self.edit_interval_s = edit_interval_s
        self._budgets = tuple(budgets)
        self._indicator = indicator
        self._clock = clock or SystemClock()
        self._text = _Pieces()
        self._markup = markup or AnswerMarkup()
        self._display = _Pieces()  # the text as shown: cleaned of markup as it streams
        self._markup_finished = False
        self._waiting = ""  # a line shown until the answer's text arrives (see show_waiting)
        self._buttons: tuple[Button, ...] = ()  # under the message being written
        self._final_buttons: tuple[Button, ...] = ()  # under the last message, once final
        self._shown: list[_Shown] = []
        # Pages before the last are final once computed: keep them instead of re-splitting.
        self._stable: list[Page] = []
        self._changed = asyncio.Event()
        self._pump: asyncio.Task[None] | None = None
        self._in_call = False
        self._finishing = False
        # After "too many requests", no call before this time (it survives finish() cancelling
        # the pump mid-wait, so the final edit does not provoke a second refusal).
        self._not_before = 0.0
        self.first_sent = asyncio.Event()
        self.calls = 0

    @property
    def text(self) -> str:
        """Everything appended so far."""
        return self._text.joined()

    @property
    def display_text(self) -> str:
        """What people see of the text so far: cleaned, without what may still be a marker."""
        return self._display.joined()

    def set_markup(self, markup: AnswerMarkup) -> None:
        """Clean the answer with `markup` (its language, its image prompt setting). Call before
        any text is appended."""
        self._markup = markup

    @property
    def is_waiting(self) -> bool:
        """A waiting line is shown (or about to be), and the answer has not started."""
        return bool(self._waiting)

    def shown_in(self) -> float | None:
        """Seconds until the text is next read to be shown, when there is new text for a
        message that waits out its edit interval (None otherwise): a source that gathers text
        can deliver more just before. Worked out here, not by the pump, so it holds as soon as
        the text is appended."""
        if not self._shown or not self._changed.is_set() or self._finishing:
            return None
        return self._due_at(self._shown[-1]) - self._clock.monotonic()

    @property
    def messages(self) -> list[MessageRef]:
        return [shown.ref for shown in self._shown]

    def append(self, text: str) -> None:
        """Add streamed text; it is shown by the next paced edit."""
        if not text or self._finishing:
            return
        self._waiting = ""
        self._text.append(text)
        self._display.append(self._markup.feed(text))
        self._wake()

    def show_waiting(self, line: str) -> None:
        """Show `line` (e.g. "waiting for the answer above") until the answer starts.

        The answer's first text or the final text replaces it; `end_waiting` says the wait is
        over sooner. A reply that never waits makes no call for it.
        """
        if self._finishing or self.text:
            return
        self._waiting = line
        self._wake()

    def end_waiting(self) -> None:
        """The answer is starting: a waiting line already shown becomes the streaming indicator
        alone (one edit); one not shown yet is never sent."""
        if not self._waiting:
            return
        self._waiting = ""
        if self._changed.is_set() and not self._shown:
            self._changed.clear()  # the pump has not picked the line up: it is never sent
        else:
            self._changed.set()  # shown, or being sent: replace it

    def set_buttons(self, buttons: Sequence[Button]) -> None:
        """Show `buttons` (e.g. Stop) under the message being written, from its next send or
        edit on: no call of their own."""
        self._buttons = tuple(buttons)

    def _wake(self) -> None:
        self._changed.set()
        if self._pump is None:
            self._pump = asyncio.create_task(self._show_while_streaming())

    def resume(self, refs: Sequence[MessageRef], text: str) -> None:
        """Take over messages an earlier reply left showing an older text (a process that died
        mid-answer): `finish` then edits them to `text` plus its line. Call before anything else.
        Give the reply the indicator the earlier one had, so the text splits the same way."""
        self._text = _Pieces(text)
        self._display = _Pieces(self._markup.clean(text))
        self._markup_finished = True
        # Never equal to a page's text, so every message is edited at once (no pacing wait).
        self._shown = [_Shown(ref, "", final=False, shown_at=-math.inf) for ref in refs]

    async def finish(self, error_line: str | None = None, buttons: Sequence[Button] = ()) -> None:
        """Show the final text (plus `error_line`, if any) in full, with `buttons` under the
        last message and none under the others. Call exactly once."""
        self._finishing = True
        if not self._markup_finished:
            self._markup_finished = True
            self._display.append(self._markup.finish())
        self._final_buttons = tuple(buttons)
        if self._pump is not None:
            if not self._in_call:
                self._pump.cancel()  # it is only waiting: nothing is half-sent
            with contextlib.suppress(asyncio.CancelledError):
                await self._pump
        text = self.display_text
        if error_line:
            text = f"{text.rstrip()}\n\n{error_line}" if text.strip() else error_line
        await self._show(text, final=True)

    async def send_images(self, images: Sequence[Image]) -> bool:
        """Post `images` after the final text, each call within the reply's budgets (a 429 is
        waited out as for text). False when the channel cannot show images (the terminal)."""
        channel = self.channel
        if not images or not isinstance(channel, SendsImages):
            return False
        per_call = max(1, channel.max_images_per_call)
        for start in range(0, len(images), per_call):
            batch = images[start : start + per_call]
            await self._call(functools.partial(channel.send_images, batch))
        return True

    async def _show_while_streaming(self) -> None:
        while not self._finishing:
            await self._changed.wait()
            # The text is read once the message may be edited again, not before the wait:
            # what the edit shows is as new as it can be.
            await self._until_editable()
            self._changed.clear()
            try:
                await self._show(self.display_text, final=False)
            except PlatformRefused:
                return  # nothing more can be shown; finish() raises it to the caller
            except Exception:
                # Nothing is lost: the next change (or finish) shows all the text again.
                logger.warning("showing a streamed answer failed", exc_info=True)

    async def _until_editable(self) -> None:
        """Sleep until the message being written may be edited (`edit_interval_s` after its
        last call, longer after a 429)."""
        if self._shown:
            await self._sleep_until_due(self._shown[-1])

    def _due_at(self, shown: _Shown) -> float:
        return shown.shown_at + self.edit_interval_s * shown.slowdown

    async def _sleep_until_due(self, shown: _Shown) -> None:
        due = self._due_at(shown) - self._clock.monotonic()
        if due > 0:
            await self._clock.sleep(due)

    async def _show(self, text: str, *, final: bool) -> None:
        if not text and not final:
            await self._show_placeholder()
            return
        pages = self._pages(text)
        for index, page in enumerate(pages):
            is_last = index == len(pages) - 1
            page_final = final or not is_last
            shown = page.render(text)
            if not page_final:
                shown += self._indicator
            if not shown.strip():
                continue  # platforms refuse empty messages; nothing to show yet
            buttons = (self._final_buttons if final else self._buttons) if is_last else ()
            if index < len(self._shown):
                await self._edit(self._shown[index], shown, final=page_final, buttons=buttons)
            else:
                await self._send(shown, final=page_final, buttons=buttons)
            if self._finishing and not final:
                return  # finish() takes over with the final text

    async def _show_placeholder(self) -> None:
        """Before any text: the waiting line, then (once the answer starts) the indicator."""
        shown = self._waiting or self._indicator.strip()
        if not shown:
            return
        if self._shown:
            await self._edit(self._shown[0], shown, final=False, buttons=self._buttons)
        elif self._waiting:
            await self._send(shown, final=False, buttons=self._buttons)

    def _pages(self, text: str) -> list[Page]:
        stable = self._stable
        start, reopen = (stable[-1].end, stable[-1].reopen) if stable else (0, "")
        # Room for the indicator on every page, so the split is the same while streaming and
        # at the end.
        limit = self.channel.max_chars - self.channel.measure(self._indicator)
        fresh = split_pages(text, limit, self.channel.measure, start=start, reopen=reopen)
        stable.extend(fresh[:-1])
        return [*stable, fresh[-1]]

    async def _send(self, text: str, *, final: bool, buttons: tuple[Button, ...]) -> None:
        ref = await self._call(lambda: self.channel.send(text, final=final, buttons=buttons))
        self._shown.append(_Shown(ref, text, final, self._clock.monotonic(), buttons=buttons))
        self.first_sent.set()

    async def _edit(
        self, shown: _Shown, text: str, *, final: bool, buttons: tuple[Button, ...]
    ) -> None:
        if shown.text == text and shown.final == final and shown.buttons == buttons:
            return
        await self._sleep_until_due(shown)
        try:
            await self._call(
                lambda: self.channel.edit(shown.ref, text, final=final, buttons=buttons), shown
            )
        except MessageGone:
            logger.info("message %s was deleted; sending the rest anew", shown.ref.message_id)
            shown.ref = await self._call(
                lambda: self.channel.send(text, final=final, buttons=buttons)
            )
        except PlatformRefused:
            raise  # the bot itself was refused: no later edit will do better
        except Exception:
            if final:
                raise
            # A refused intermediate edit loses nothing: the next edit carries all the text.
            logger.warning("intermediate edit of %s failed", shown.ref.message_id, exc_info=True)
            shown.shown_at = self._clock.monotonic()
            return
        shown.text, shown.final, shown.shown_at = text, final, self._clock.monotonic()
        shown.buttons = buttons

    async def _call(self, make_call: Callable[[], Awaitable[T]], shown: _Shown | None = None) -> T:
        while True:
            wait = self._not_before - self._clock.monotonic()
            if wait > 0:
                await self._clock.sleep(wait)
            for budget in self._budgets:
                await budget.acquire()
            self._in_call = True
            self.calls += 1
            try:
                return await make_call()
            except PlatformRateLimited as exc:
                retry_after = exc.retry_after
            finally:
                self._in_call = False
            if shown is not None:
                shown.slowdown = min(shown.slowdown * SLOWDOWN_FACTOR, MAX_SLOWDOWN)
            logger.info("platform rate limit: retrying in %.1f s", retry_after)
            self._not_before = self._clock.monotonic() + retry_after


@contextlib.asynccontextmanager
async def typing_until_first_message(
    reply: StreamingReply,
    show_typing: Callable[[], Awaitable[object]],
    budget: Budget,
    every_s: float,
) -> AsyncIterator[None]:
    """Show the platform's "typing…" while the GPT thinks, until the reply's first message exists.

    It is only cosmetic, so it spends a call of `budget` only when one is free: with hundreds of
    answers streaming, their sends and edits come first.
    """

    async def keep_typing() -> None:
        while not reply.first_sent.is_set():
            if await budget.try_acquire():
                try:
                    await show_typing()
                except Exception as exc:
                    logger.debug("typing indicator failed: %s", exc)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(reply.first_sent.wait(), every_s)

    task = asyncio.create_task(keep_typing())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
