"""How a turn ends: the reply finished (with a short line on failure, and notes for images that
could not be shown), the answer stored with its status, usage and timings, the turn reported,
then the answer's images uploaded.

The status comes from what stopped the stream: nothing (`complete`), a Stop press or a shutdown
(`stopped`), an error after some text (`partial`) or before any (`error`). An ended answer gets
a Retry button; a stopped one none. The stored text is the GPT's, as it wrote it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from typing import Literal

from core import i18n, metrics
from core.buttons import retry_button
from core.errors import STOP_REQUESTED, user_message
from core.gpts import Usage
from core.images import AnswerImages, ImageFetcher, images_for, upload
from core.quota import estimate, has_counts
from core.saving import AnswerSaver
from core.streaming import StreamingReply
from core.turn_report import report_turn
from core.turns import Turn
from storage import MessageStatus, NewMessage, Repository, StorageBusy

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class AnswerOutcome:
    status: MessageStatus | Literal["duplicate"]  # duplicate: delivered twice, answered once
    text: str
    model: str | None
    error: BaseException | None = None


@dataclass(slots=True)
class TurnProgress:
    """What one turn has got so far, for the answer's record."""

    conversation_id: int
    answer_id: int
    saver: AnswerSaver
    started: float = field(default_factory=time.monotonic)
    model: str | None = None
    gpt_id: str | None = None
    usage: Usage | None = None
    prompt_chars: int | None = None  # what went upstream, for an estimate of its tokens
    first_text_at: float | None = None
    error: BaseException | None = None


async def conclude(
    turn: Turn,
    reply: StreamingReply,
    progress: TurnProgress,
    repo: Repository,
    image_fetcher: ImageFetcher,
) -> AnswerOutcome:
    """Finish the reply and store the answer; then upload its images."""
    progress.saver.stop()
    metrics.ACTIVE_STREAMS.labels(turn.scope.platform).dec()
    text, error = reply.text, progress.error
    status: MessageStatus = "complete"
    if isinstance(error, asyncio.CancelledError):
        status = "stopped"
    elif error is not None:
        status = "partial" if text else "error"
    error_line = user_message(error, turn.language) if error is not None else None
    if error is None and not text.strip():
        status, error_line = "error", i18n.EMPTY_ANSWER(turn.language)
    # An ended answer can be asked again; one stopped (by a person, or a shutdown) shows none.
    buttons = () if status == "stopped" else (retry_button(progress.answer_id),)
    images = AnswerImages()
    if not (isinstance(error, asyncio.CancelledError) and error.args != (STOP_REQUESTED,)):
        # Not when shutting down: no time. The stored text stays as the GPT wrote it.
        images = await images_for(image_fetcher, reply.channel, text, turn.language)
    if images.notes:
        error_line = f"{images.notes}\n{error_line}" if error_line else images.notes
    try:
        await reply.finish(error_line, buttons)
    finally:
        answer = _answer_record(text, status, progress, reply)
        await _store(repo, turn, reply, progress.answer_id, answer)
        report_turn(turn, status, reply, answer, progress.gpt_id)
    if images.cancelled is not None:
        raise images.cancelled  # shut down while downloading: shown and stored, now stop
    await upload(reply, images.images, turn.language)
    return AnswerOutcome(status, text, progress.model, error)


def _answer_record(
    text: str, status: MessageStatus, progress: TurnProgress, reply: StreamingReply
) -> NewMessage:
    """The answer as stored: with the endpoint's token counts, or an estimate marked as one."""
    usage, estimated = progress.usage, False
    if not has_counts(usage) and text and progress.prompt_chars is not None:
        usage, estimated = estimate(progress.prompt_chars, text), True
    first = progress.first_text_at
    return NewMessage(
        "assistant",
        text,
        status=status,
        model=progress.model,
        usage=usage,
        tokens_estimated=estimated,
        first_chunk_ms=_ms(first - progress.started) if first else None,
        total_ms=_ms(time.monotonic() - progress.started),
        platform_message_ids=tuple(ref.message_id for ref in reply.messages),
    )


async def _store(
    repo: Repository, turn: Turn, reply: StreamingReply, answer_id: int, answer: NewMessage
) -> None:
    try:
        await repo.finish_answer(answer_id, answer)
    except StorageBusy as exc:
        # The row keeps the text saved last while streaming; say so rather than pretend.
        logger.error("the answer %s in %s was not stored in full: %s", answer_id, turn.scope, exc)
        try:
            await reply.channel.send(i18n.ANSWER_NOT_SAVED(turn.language), final=True)
        except Exception as send_error:
            logger.warning("could not say so: %s", type(send_error).__name__)


def _ms(seconds: float) -> int:
    return round(seconds * 1000)
