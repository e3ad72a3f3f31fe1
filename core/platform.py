"""The small interface the core asks of a platform, and the clock it paces with.

An adapter implements `ReplyChannel` for each answer it streams: the core's `StreamingReply`
decides when to send and edit (pacing, splitting, the final text); the channel only performs
the calls and says what the platform answered.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, runtime_checkable

if TYPE_CHECKING:
    from core.buttons import Button
    from storage import InterruptedAnswer


@dataclass(frozen=True, slots=True)
class MessageRef:
    """A message the bot sent, as the platform names it."""

    chat_id: str
    message_id: str


class MessageGone(Exception):
    """The message to edit no longer exists (deleted, or the platform stopped accepting edits)."""


class PlatformRateLimited(Exception):
    """The platform refused a call for flood control and said when to try again."""

    def __init__(self, retry_after: float) -> None:
        super().__init__(f"rate limited for {retry_after:g} s")
        self.retry_after = retry_after


class PlatformRefused(Exception):
    """The platform refused the bot itself (e.g. its token): restarting the adapter won't help.
    The message must not contain the token."""


class ReplyChannel(Protocol):
    """Where one answer is written.

    `max_chars` is the platform's limit for one message as `measure` counts it (Telegram counts
    UTF-16 code units, Discord code points). `final` marks the text that will not change again:
    adapters may render it richly (e.g. Markdown) and must fall back to plain text, not fail.

    `buttons` go under the message, in the call that sends or edits it (never a call of their
    own): an edit shows exactly the buttons it is given, so an edit without any removes those
    the message had. A channel that cannot show buttons (the terminal, a draft) ignores them.
    """

    max_chars: int

    def measure(self, text: str) -> int:
        """The length of `text` as the platform counts it against `max_chars`."""
        ...

    async def send(self, text: str, *, final: bool, buttons: Sequence[Button] = ()) -> MessageRef:
        """Post a new message. Raises `PlatformRateLimited` when told to wait."""
        ...

    async def edit(
        self, ref: MessageRef, text: str, *, final: bool, buttons: Sequence[Button] = ()
    ) -> None:
        """Replace a sent message's text and buttons. Raises `MessageGone` or
        `PlatformRateLimited`."""
        ...


@dataclass(frozen=True, slots=True)
class Image:
    """An image downloaded for an answer, ready to upload: its bytes, their type (`image/png`),
    the file name to give it and the alt text the answer gave it."""

    data: bytes
    mime_type: str
    file_name: str
    alt: str


@runtime_checkable
class SendsImages(Protocol):
    """A `ReplyChannel` that can show images (the terminal and drafts need not).

    `send_images` posts them after the answer's final text, where the answer is, in as few
    calls as the platform allows (it takes at most `max_images_per_call` per call); like
    `send`, it raises `PlatformRateLimited` when told to wait."""

    max_images_per_call: int

    async def send_images(self, images: Sequence[Image]) -> None: ...


class Clock(Protocol):
    def monotonic(self) -> float: ...

    async def sleep(self, seconds: float) -> None: ...


class SystemClock:
    """The event loop's clock."""

    def monotonic(self) -> float:
        return time.monotonic()

    async def sleep(self, seconds: float) -> None:
        """At least `seconds` on `monotonic`: uvloop's timers count whole milliseconds, so one may
        fire up to a millisecond early, and a rate budget must never grant a call early."""
        deadline = time.monotonic() + seconds
        await asyncio.sleep(seconds)
        # Waiting on time itself, not polling for something another task sets. A millisecond
        # more: uvloop would run a timer of less than one at once, and this would spin.
        while (left := deadline - time.monotonic()) > 0:  # noqa: ASYNC110
            await asyncio.sleep(left + 0.001)


def code_points(text: str) -> int:
    return len(text)


def utf16_units(text: str) -> int:
    """Telegram measures text (limits, entity offsets) in UTF-16 code units."""
    if text.isascii():  # one unit a character; str knows it without looking at the text
        return len(text)
    return len(text.encode("utf-16-le")) // 2


class Adapter(Protocol):
    """A platform connection that `gptsbot run` starts, made by its module's
    `create_adapter(config, service) -> Adapter | None` (None when its token is unset)."""

    name: str
    # Set while connected and taking turns (`/readyz` asks it); cleared on disconnection.
    ready: asyncio.Event

    async def run(self) -> None:
        """Connect and serve until cancelled; on cancellation disconnect cleanly, then return."""
        ...


@runtime_checkable
class SettlesInterrupted(Protocol):
    """An adapter that can fix the messages of answers a dead process left streaming.

    `gptsbot run` marks those answers `interrupted` at start and, once the adapter's `ready` is
    set, calls `settle_interrupted` once with its platform's. The adapter edits each answer's
    messages to the saved text plus the interrupted line (`core.interrupted.settle`)."""

    ready: asyncio.Event

    async def settle_interrupted(self, answers: Sequence[InterruptedAnswer]) -> None: ...
