"""Telegram albums: several photos or documents sent together arrive as one message each, sharing a
`media_group_id` (only one item carries the caption). They are collected here until the chat has
been quiet for `[telegram] album_wait_s` (the wait restarts with each item, up to
`ALBUM_MAX_WAIT_S` in all), then handled as one message: one question with all the files. A
chat's albums are handed over in the order they were sent.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Final

from telegram import Message

from core.platform import Clock

logger = logging.getLogger(__name__)

# However slowly an album's items trickle in, it is answered this long after the first.
ALBUM_MAX_WAIT_S: Final = 5.0

# Handles an album's items (in the order they were sent) as one message.
Handle = Callable[[Sequence[Message]], Awaitable[None]]


@dataclass(eq=False)
class _Album:
    first_at: float
    last_at: float
    handle: Handle
    items: dict[int, Message] = field(default_factory=dict)  # by message id: once each
    collecting: bool = True
    task: asyncio.Task[None] | None = None
    handed_over: asyncio.Event = field(default_factory=asyncio.Event)


class Albums:
    """The albums being collected, by chat and media group. `close()` handles those still
    waiting at once (what people sent is asked, not dropped) and lets those being handled
    finish."""

    def __init__(self, clock: Clock, wait_s: float) -> None:
        self._clock = clock
        self._wait_s = wait_s
        self._max_wait_s = max(ALBUM_MAX_WAIT_S, wait_s)
        self._albums: dict[tuple[int, str], _Album] = {}

    @property
    def waiting(self) -> int:
        """How many albums are still being collected."""
        return sum(album.collecting for album in self._albums.values())

    def add(self, message: Message, handle: Handle) -> None:
        """Add an album item; the album is handled by `handle` once no item came for a while."""
        assert message.media_group_id is not None
        key = (message.chat.id, message.media_group_id)
        now = self._clock.monotonic()
        album = self._albums.get(key)
        if album is None or not album.collecting:
            # A late item of an album already handled (a re-delivery): it starts another album,
            # with the same first message, so the core answers it once.
            album = self._albums[key] = _Album(now, now, handle)
            album.task = asyncio.create_task(self._collect(key, album))
        album.last_at = now
        album.items[message.id] = message

    async def _collect(self, key: tuple[int, str], album: _Album) -> None:
        try:
            while True:
                deadline = min(album.last_at + self._wait_s, album.first_at + self._max_wait_s)
                remaining = deadline - self._clock.monotonic()
                if remaining <= 0:
                    break
                await self._clock.sleep(remaining)
            # A chat's albums go to the core in the order they were sent, whichever window
            # ended first: timers ending within a millisecond of each other fire in any order.
            for earlier in self._sent_before(key, album):
                await earlier.handed_over.wait()
            await self._handle(album)
        finally:
            if self._albums.get(key) is album:
                del self._albums[key]

    def _sent_before(self, key: tuple[int, str], album: _Album) -> list[_Album]:
        """The chat's other albums still collecting whose first item came before `album`'s."""
        first = min(album.items)
        return [
            other
            for (chat_id, _), other in self._albums.items()
            if chat_id == key[0] and other.collecting and other is not album
            and min(other.items) < first
        ]  # fmt: skip

    @staticmethod
    async def _handle(album: _Album) -> None:
        album.collecting = False
        album.handed_over.set()
        items = [album.items[message_id] for message_id in sorted(album.items)]
        # `handle` logs (and apologises for) what goes wrong itself, as for any message.
        with contextlib.suppress(Exception):
            await album.handle(items)

    async def close(self) -> None:
        """Stop waiting: the albums still being collected are handled now, with the items that
        came; then wait until every album has been handled."""
        albums = list(self._albums.values())
        waiting = [album for album in albums if album.collecting]
        for album in waiting:
            assert album.task is not None
            album.task.cancel()
        await asyncio.gather(
            *(a.task for a in albums if a.task is not None), return_exceptions=True
        )
        if waiting:
            logger.info("stopping: %d album(s) still being collected are asked now", len(waiting))
        for album in waiting:
            await self._handle(album)
