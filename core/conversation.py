"""The conversation service: one turn, from the user's message to the stored answer.

    lock the scope → one transaction: history window, binding, the user's message stored and
    the answer's row started (`streaming`) → stream upstream into the reply, the answer saved
    every few seconds (`core.saving`) → finish the reply (with a short error line on failure)
    → store the answer's final text and status

Turns in one scope run in order (a queued one shows a waiting line); different scopes run in
parallel. On PostgreSQL that holds across processes too: a turn also holds its scope in the
database (`Repository.hold_scope`). A platform update delivered twice (a re-delivery, a retried
webhook, another process) is answered once: its message is stored with the update's key, and a
second one with the same key is dropped before upstream is called, with one DEBUG line.

A turn holds its scope for at most `gpts.turn_timeout_s`. Nothing a user wrote is lost: their
message is stored before upstream is called, whatever happens next, and a process that dies
mid-answer leaves the answer's saved text to be settled at the next start (`core.interrupted`).
A message refused before upstream (empty, over the input limit, over a `[quota]` limit) is stored
as `refused`, an over-long one truncated with its real length. An answer the endpoint sent no
token counts for is stored with an estimate, marked as such (`core.quota`). While another
process holds the database's lock, storage tries again for a bounded time; if it finally fails,
the user gets one short line.

While it streams, the answer's message carries a Stop button and the turn is listed in `running`
by its answer id: Stop cancels the task reading upstream (the connection closes), and the turn
shows and stores what arrived as `stopped`. An ended answer carries a Retry button (a stopped
one none): `retry` asks its question again, under the scope's lock like any turn, into a new
message, and marks the earlier answer `superseded`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from contextlib import aclosing
from dataclasses import dataclass, field
from typing import Literal

from core import attachments, i18n, metrics
from core.answer_markup import AnswerMarkup
from core.bindings import Bindings
from core.buttons import retry_button, stop_button
from core.config import Config
from core.errors import (
    STOP_REQUESTED,
    EmptyMessage,
    GptsBotError,
    MessageTooLong,
    NoGptBound,
    TurnTimedOut,
    UpstreamError,
    user_message,
)
from core.gpts import ChatMessage, GptsClient, Usage
from core.gpts.wire import content_chars
from core.history import upstream_messages
from core.images import AnswerImages, ImageFetcher, images_for, upload
from core.quota import Quotas, estimate, has_counts
from core.running import RunningTurn, RunningTurns, ScopeLocks
from core.saving import AnswerSaver
from core.streaming import StreamingReply
from core.turn_report import report_turn
from core.turns import Scope, Turn
from storage import (
    DuplicateUpdate,
    Exchange,
    MessageStatus,
    NewMessage,
    Repository,
    StorageBusy,
    TurnStart,
)

logger = logging.getLogger(__name__)

# On shutdown, how long a cancelled turn may take to show and store what had arrived.
SHUTDOWN_GRACE_S = 5.0
# A refused over-long message is stored cut to this many characters (and its real length).
REFUSED_KEPT_CHARS = 2000
# The answer's row as a turn starts it.
_STREAMING_ANSWER = NewMessage("assistant", "", status="streaming")


@dataclass(frozen=True, slots=True)
class AnswerOutcome:
    status: MessageStatus | Literal["duplicate"]  # duplicate: delivered twice, answered once
    text: str
    model: str | None
    error: BaseException | None = None


@dataclass(slots=True)
class _Progress:
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


class ConversationService(Bindings):
    def __init__(
        self,
        config: Config,
        repo: Repository,
        client: GptsClient,
        images: ImageFetcher | None = None,
    ) -> None:
        self.config = config
        self.repo = repo
        self.client = client
        self.images = images or ImageFetcher()  # downloads an answer's image links
        self._locks = ScopeLocks()
        self.running = RunningTurns()  # the turns streaming now, by answer id (Stop finds them)
        self.quotas = Quotas(config, repo)
        self._updates_here: set[str] = set()  # the update keys of the turns in this process
        # Per platform, how its files are fetched by reference (`register_fetcher`).
        self.fetchers: dict[str, attachments.Fetcher] = {}
        # Tests set this to see unexpected exceptions instead of the user's apology.
        self.reraise_unexpected = False

    def register_fetcher(self, platform: str, fetcher: attachments.Fetcher) -> None:
        """How the images and files of `platform` are fetched by their reference: for a turn's
        own, and again for the images history sends."""
        self.fetchers[platform] = fetcher

    async def answer(self, turn: Turn, reply: StreamingReply) -> AnswerOutcome:
        """Answer one user message into `reply`. Never raises for upstream or binding errors.

        While an earlier turn in the scope is still answering, `reply` shows a waiting line.
        """
        return await self._take_turn(turn, reply, None)

    async def retry(self, answer_id: int, turn: Turn, reply: StreamingReply) -> AnswerOutcome:
        """Ask again the question answer `answer_id` answered, into `reply` (a new message).

        `turn` is that question as it was asked (its author and text; `Commands.retry` builds
        it). Under the scope's lock like any turn: then the earlier answer is marked `superseded`
        and the new one answers the same question, with the history that came before it. When
        the answer can no longer be retried (retried already, /reset since), `reply` says so.
        """
        return await self._take_turn(turn, reply, answer_id)

    async def _take_turn(
        self, turn: Turn, reply: StreamingReply, retrying: int | None
    ) -> AnswerOutcome:
        waited = started = False
        key = turn.update_key
        # What people see is cleaned in the turn's language (notes such as a sandbox file's).
        reply.set_markup(AnswerMarkup(turn.language, self.config.bot.image_prompt))

        def show_waiting() -> None:
            nonlocal waited
            waited = True
            reply.show_waiting(i18n.WAITING(turn.language))

        async def busy_elsewhere() -> None:
            # Another process answers here: maybe this very update, delivered to it too.
            if key is not None and await self.repo.is_update_stored(key):
                raise DuplicateUpdate(key)
            show_waiting()

        if key is not None and key in self._updates_here:
            return await self._skip_duplicate(turn, reply, waited=False)
        if key is not None:
            self._updates_here.add(key)
        try:
            async with (
                self._locks.hold(turn.scope, show_waiting),
                self.repo.hold_scope(turn.scope, busy_elsewhere),
            ):
                started = True
                if waited:
                    reply.end_waiting()
                return await self._answer_locked(turn, reply, retrying)
        except DuplicateUpdate:
            return await self._skip_duplicate(turn, reply, waited=waited)
        except asyncio.CancelledError as exc:
            if waited and not started:
                # Shutting down while queued: the waiting line must not stay as if still true.
                async with asyncio.timeout(SHUTDOWN_GRACE_S):
                    await reply.finish(user_message(exc, turn.language))
            raise
        finally:
            if key is not None:
                self._updates_here.discard(key)

    async def _skip_duplicate(
        self, turn: Turn, reply: StreamingReply, *, waited: bool
    ) -> AnswerOutcome:
        """An update delivered twice: not answered again. A waiting line already shown says so."""
        logger.debug("update %s in %s came again: answered once", turn.update_key, turn.scope)
        await reply.finish(i18n.ALREADY_ANSWERED(turn.language) if waited else None)
        return AnswerOutcome("duplicate", "", None)

    async def _answer_locked(
        self, turn: Turn, reply: StreamingReply, retrying: int | None
    ) -> AnswerOutcome:
        scope = turn.scope
        if retrying is None:  # a retry asks again a question already taken and counted
            fetch = self.fetchers.get(scope.platform)
            turn, refused_file = await attachments.prepare(turn, self.config.gpts, fetch)
            refusal = refused_file or self._refusal(turn) or await self.quotas.check(turn)
            if refusal is not None:
                return await self._refuse(turn, reply, refusal)
        elif turn.attachments:  # a retried question's images, fetched again
            turn = await attachments.fetched_again(turn, self.fetchers.get(scope.platform))
        # The turn's whole life in the scope (retries included) ends by this time.
        deadline = asyncio.get_running_loop().time() + self.config.gpts.turn_timeout_s
        try:
            start = await self._start(turn, retrying)
        except StorageBusy as exc:
            logger.error("a message in %s was not stored: %s", scope, exc)
            await reply.finish(user_message(exc, turn.language))
            report_turn(turn, "error", reply)
            return AnswerOutcome("error", "", None, exc)
        if start is None:  # retried already, or reset since the Retry was pressed
            await reply.finish(i18n.CANNOT_RETRY(turn.language))
            return AnswerOutcome("refused", "", None, None)
        assert start.answer_id is not None
        reply.set_buttons((stop_button(start.answer_id),))
        saver = AnswerSaver(self.repo, start.answer_id, reply, self.config.storage.save_interval_s)
        saver.start()
        progress = _Progress(start.conversation_id, start.answer_id, saver)
        task = asyncio.current_task()
        assert task is not None
        running = RunningTurn(start.answer_id, scope, turn.author.id, task)
        metrics.ACTIVE_STREAMS.labels(scope.platform).inc()
        try:
            binding = self.binding_info(scope, start.binding)
            if binding is None:
                raise NoGptBound()
            progress.model, progress.gpt_id = binding.model, binding.gpt_id
            messages = await self._upstream_messages(start.history, turn)
            progress.prompt_chars = sum(content_chars(message["content"]) for message in messages)
            # Stop cancels this task while it reads upstream: it is suspended nowhere else
            # while listed.
            self.running.add(running)
            try:
                await self._stream(binding.gpt_id, messages, reply, progress, deadline)
            finally:
                self.running.remove(start.answer_id)
        except GptsBotError as exc:
            progress.error = exc
            level = logging.WARNING if isinstance(exc, UpstreamError) else logging.INFO
            logger.log(level, "turn in %s failed: %s", scope, type(exc).__name__)
        except asyncio.CancelledError as exc:
            if running.stop_requested and task.uncancel() == 0:
                # A Stop press, and nothing else, cancelled the upstream read: the turn goes on.
                progress.error = asyncio.CancelledError(STOP_REQUESTED)
                logger.info("answer %s in %s stopped on request", start.answer_id, scope)
            else:
                # Shutting down mid-answer: show and store what arrived, then stop.
                progress.error = exc
                logger.info("turn in %s cancelled", scope)
                async with asyncio.timeout(SHUTDOWN_GRACE_S):
                    await self._conclude(turn, reply, progress)
                raise
        except Exception as exc:
            if self.reraise_unexpected:
                saver.stop()
                metrics.ACTIVE_STREAMS.labels(scope.platform).dec()
                raise
            progress.error = exc
            logger.exception("turn in %s failed unexpectedly", scope)
        return await self._conclude(turn, reply, progress)

    async def _start(self, turn: Turn, retrying: int | None) -> TurnStart | None:
        """One transaction: the conversation, its history window, the GPT bound here (or on the
        parent chat), the user's message stored (or, retrying, the earlier answer superseded)
        and the answer's row started. None: the answer can no longer be retried."""
        history_limit = self.config.gpts.history_messages // 2
        if retrying is not None:
            return await self.repo.retry_turn(
                turn.scope,
                retrying,
                history_limit=history_limit,
                with_binding=True,
                answer=_STREAMING_ANSWER,
            )
        author = turn.author
        message = NewMessage(
            "user",
            turn.text,
            author_id=author.id,
            author_name=author.display_name,
            platform_message_ids=(turn.message_id,) if turn.message_id else (),
            update_key=turn.update_key,
            attachments=attachments.records_of(turn) if turn.attachments else (),
        )
        return await self.repo.start_turn(
            turn.scope,
            message,
            history_limit=history_limit,
            with_binding=True,
            answer=_STREAMING_ANSWER,
        )

    async def _stream(
        self,
        gpt_id: str,
        messages: list[ChatMessage],
        reply: StreamingReply,
        progress: _Progress,
        deadline: float,
    ) -> None:
        """Read the answer from upstream into `reply`. Cancelled (a Stop, a shutdown), the
        stream is closed unfinished: its HTTP connection closes, so the GPT stops generating."""
        timeout = asyncio.timeout_at(deadline)
        try:
            async with timeout, aclosing(self.client.stream_chat(gpt_id, messages)) as deltas:
                async for delta in deltas:
                    if delta.text:
                        progress.first_text_at = progress.first_text_at or time.monotonic()
                        reply.append(delta.text)
                    progress.usage = delta.usage or progress.usage
        except TimeoutError as exc:
            if not timeout.expired():
                raise
            raise TurnTimedOut(self.config.gpts.turn_timeout_s) from exc

    async def _conclude(
        self, turn: Turn, reply: StreamingReply, progress: _Progress
    ) -> AnswerOutcome:
        """Finish the reply (with a short error line on failure) and store the answer."""
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
        usage, estimated = progress.usage, False
        if not has_counts(usage) and text and progress.prompt_chars is not None:
            usage, estimated = estimate(progress.prompt_chars, text), True
        # An ended answer can be asked again; one stopped (by a person, or a shutdown) shows none.
        buttons = () if status == "stopped" else (retry_button(progress.answer_id),)
        images = AnswerImages()
        if not (isinstance(error, asyncio.CancelledError) and error.args != (STOP_REQUESTED,)):
            # Not when shutting down: no time. The stored text stays as the GPT wrote it.
            images = await images_for(self.images, reply.channel, text, turn.language)
        if images.notes:
            error_line = f"{images.notes}\n{error_line}" if error_line else images.notes
        try:
            await reply.finish(error_line, buttons)
        finally:
            started, first = progress.started, progress.first_text_at
            answer = NewMessage(
                "assistant",
                text,
                status=status,
                model=progress.model,
                usage=usage,
                tokens_estimated=estimated,
                first_chunk_ms=_ms(first - started) if first else None,
                total_ms=_ms(time.monotonic() - started),
                platform_message_ids=tuple(ref.message_id for ref in reply.messages),
            )
            await self._store_answer(turn, reply, progress.answer_id, answer)
            report_turn(
                turn,
                status,
                reply,
                gpt_id=progress.gpt_id,
                usage=progress.usage,
                first_token_ms=answer.first_chunk_ms,
                total_ms=answer.total_ms,
            )
        if images.cancelled is not None:
            raise images.cancelled  # shut down while downloading: shown and stored, now stop
        await upload(reply, images.images, turn.language)
        return AnswerOutcome(status, text, progress.model, error)

    async def _store_answer(
        self, turn: Turn, reply: StreamingReply, answer_id: int, answer: NewMessage
    ) -> None:
        try:
            await self.repo.finish_answer(answer_id, answer)
        except StorageBusy as exc:
            # The row keeps the text saved last while streaming; say so rather than pretend.
            logger.error(
                "the answer %s in %s was not stored in full: %s", answer_id, turn.scope, exc
            )
            try:
                await reply.channel.send(i18n.ANSWER_NOT_SAVED(turn.language), final=True)
            except Exception as send_error:
                logger.warning("could not say so: %s", type(send_error).__name__)

    def _refusal(self, turn: Turn) -> GptsBotError | None:
        """Why the message can't go upstream: it must say something (an image says enough) and
        fit the part of a request kept for messages."""
        text = turn.text
        if not text.strip() and not turn.attachments:
            return EmptyMessage()
        limit = self.config.gpts.history_chars
        if len(text) > limit:
            return MessageTooLong(len(text), limit)
        return None

    async def _refuse(
        self, turn: Turn, reply: StreamingReply, refusal: GptsBotError
    ) -> AnswerOutcome:
        """Store the message as refused (an over-long one cut, with its real length), never
        for upstream, and say why."""
        text, author = turn.text, turn.author
        kept = text[:REFUSED_KEPT_CHARS]
        message = NewMessage(
            "user",
            kept,
            status="refused",
            author_id=author.id,
            author_name=author.display_name,
            platform_message_ids=(turn.message_id,) if turn.message_id else (),
            full_length=len(text) if len(kept) < len(text) else None,
            update_key=turn.update_key,
        )
        logger.info("turn in %s refused: %s", turn.scope, type(refusal).__name__)
        try:
            await self.repo.start_turn(turn.scope, message, history_limit=0)
        except StorageBusy as exc:
            logger.error("a refused message in %s was not stored: %s", turn.scope, exc)
        await reply.finish(user_message(refusal, turn.language))
        report_turn(turn, "refused", reply)
        return AnswerOutcome("refused", "", None, refusal)

    async def _upstream_messages(self, history: list[Exchange], turn: Turn) -> list[ChatMessage]:
        """System prompt, then the newest exchanges that fit `history_chars`, then the turn.
        The images of the last `history_images` questions that had any are fetched again."""
        gpts = self.config.gpts
        fetch = self.fetchers.get(turn.scope.platform)
        earlier = await attachments.history_images(history, gpts.history_images, fetch)
        return upstream_messages(
            history,
            turn.text,
            author_name=turn.author.display_name,
            shared=not turn.is_private,
            history_chars=gpts.history_chars,
            system_prompt=gpts.system_prompt,
            images=attachments.turn_images(turn) if turn.attachments else (),
            history_images=earlier,
        )

    async def reset(self, scope: Scope) -> None:
        """Start a new conversation here; the old one stays stored but is no longer sent."""
        async with self._locks.hold(scope), self.repo.hold_scope(scope):
            await self.repo.start_conversation(scope)


def _ms(seconds: float) -> int:
    return round(seconds * 1000)
