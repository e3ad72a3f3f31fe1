"""An answer saved while it streams, so a crash leaves what was shown, never a hole.

The answer's row is started with the turn (status `streaming`). Once its first platform message
shows, the saver stores the text so far and the ids of the messages showing it; after that at
most once per `interval_s`, and only when the text or the messages changed: one UPDATE per
interval per answer, never one per chunk. Text and message ids are read and saved together, so
the saved text always reaches into every saved message and the next start can settle each one
(`core.interrupted`). The final update (`Repository.finish_answer`) is the conversation's.
"""

from __future__ import annotations

import asyncio
import logging

from core.streaming import StreamingReply
from storage import Repository

logger = logging.getLogger(__name__)


class AnswerSaver:
    def __init__(
        self, repo: Repository, answer_id: int, reply: StreamingReply, interval_s: float
    ) -> None:
        self._repo = repo
        self._answer_id = answer_id
        self._reply = reply
        self._interval_s = interval_s
        self._task: asyncio.Task[None] | None = None
        self._stopped = False
        self._saving = False

    def start(self) -> None:
        self._task = asyncio.create_task(self._save_while_streaming())

    def stop(self) -> None:
        """Stop saving (the final update follows). Nothing is awaited, so finishing the reply
        right after happens exactly as it would without a saver; a save already queued to the
        database's thread still lands first, and one landing late changes nothing once the
        answer is finished. So a save under way is let finish rather than cancelled: cut while
        it opens a PostgreSQL connection, asyncpg would log an error no one can catch."""
        self._stopped = True
        if self._task is not None and not self._saving:
            self._task.cancel()

    async def _save_while_streaming(self) -> None:
        reply = self._reply
        await reply.first_sent.wait()
        saved: tuple[int, tuple[str, ...]] | None = None
        while not self._stopped:
            text = reply.text
            ids = tuple(ref.message_id for ref in reply.messages)
            # The text only grows: its length says whether it changed.
            if (len(text), ids) != saved:
                saved = (len(text), ids)
                self._saving = True
                try:
                    await self._save(text, ids)
                finally:
                    self._saving = False
                if self._stopped:
                    return
            await asyncio.sleep(self._interval_s)

    async def _save(self, text: str, ids: tuple[str, ...]) -> None:
        # Best effort (the repository logs a failed save): the final update stores it all.
        try:
            await self._repo.save_answer(self._answer_id, text, ids)
        except Exception as exc:
            # Never the exception's text: it could quote the answer.
            logger.warning(
                "answer %s not saved while streaming: %s", self._answer_id, type(exc).__name__
            )
