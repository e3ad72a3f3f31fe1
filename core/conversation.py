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
import dataclasses
import logging
import time
from collections.abc import Awaitable, Callable
from contextlib import aclosing
from functools import partial

from core import attachments, i18n, metrics
from core.answer_markup import AnswerMarkup
from core.bindings import Bindings
from core.buttons import stop_button
from core.conclusion import AnswerOutcome, TurnProgress, conclude
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
from core.gpts import ChatMessage, GptsClient
from core.gpts.wire import content_chars
from core.history import upstream_messages
from core.images import ImageFetcher
from core.quota import Quotas
from core.running import RunningTurn, RunningTurns, ScopeLocks
from core.saving import AnswerSaver
from core.streaming import StreamingReply
from core.turn_report import report_turn
from core.turns import UNSTORABLE, Scope, Turn, storable_text
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


class ConversationService(Bindings):
    def __init__(
        self,
        config: Config,
        repo: Repository,
        client: GptsClient,
    ) -> None:
        self.config = config
        self.repo = repo
        self.client = client
        # Downloads an answer's image links (its owner closes it: `async with service.images`).
        self.images = ImageFetcher(private_hosts=config.bot.allow_private_image_hosts)
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
        if UNSTORABLE.search(turn.text):  # a NUL typed into the terminal, say
            turn = dataclasses.replace(turn, text=storable_text(turn.text))
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
        progress = TurnProgress(start.conversation_id, start.answer_id, saver)
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
                    await conclude(turn, reply, progress, self.repo, self.images)
                raise
        except Exception as exc:
            if self.reraise_unexpected:
                saver.stop()
                metrics.ACTIVE_STREAMS.labels(scope.platform).dec()
                raise
            progress.error = exc
            logger.exception("turn in %s failed unexpectedly", scope)
        return await conclude(turn, reply, progress, self.repo, self.images)

    async def _start(self, turn: Turn, retrying: int | None) -> TurnStart | None:
        """One transaction: the conversation, its history window, the GPT bound here (or on the
        parent chat), the user's message stored (or, retrying, the earlier answer superseded)
        and the answer's row started. None: the answer can no longer be retried."""
        begin: Callable[..., Awaitable[TurnStart | None]]
        if retrying is not None:
            begin = partial(self.repo.retry_turn, turn.scope, retrying)
        else:
            begin = partial(self.repo.start_turn, turn.scope, _question(turn, turn.text))
        return await begin(
            history_limit=self.config.gpts.history_messages // 2,
            with_binding=True,
            answer=_STREAMING_ANSWER,
        )

    async def _stream(
        self,
        gpt_id: str,
        messages: list[ChatMessage],
        reply: StreamingReply,
        progress: TurnProgress,
        deadline: float,
    ) -> None:
        """Read the answer from upstream into `reply`. Cancelled (a Stop, a shutdown), the
        stream is closed unfinished: its HTTP connection closes, so the GPT stops generating."""
        timeout = asyncio.timeout_at(deadline)
        try:
            # Read no more often than the reply can show it (a read wakes every layer above),
            # and just before it does.
            read_interval_s = min(self.config.gpts.read_interval_s, reply.edit_interval_s)
            answer = self.client.stream_chat(
                gpt_id, messages, read_interval_s=read_interval_s, shown_in=reply.shown_in
            )
            async with timeout, aclosing(answer) as deltas:
                async for delta in deltas:
                    if delta.text:
                        progress.first_text_at = progress.first_text_at or time.monotonic()
                        reply.append(delta.text)
                    progress.usage = delta.usage or progress.usage
        except TimeoutError as exc:
            if not timeout.expired():
                raise
            raise TurnTimedOut(self.config.gpts.turn_timeout_s) from exc

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
        text = turn.text
        kept = text[:REFUSED_KEPT_CHARS]
        message = _question(
            turn,
            kept,
            status="refused",
            full_length=len(text) if len(kept) < len(text) else None,
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


def _question(
    turn: Turn, text: str, *, status: MessageStatus = "complete", full_length: int | None = None
) -> NewMessage:
    """The user's message as stored: `text` (the turn's, or cut when refused) and who sent it
    from where, so the same platform update is never taken twice."""
    author = turn.author
    return NewMessage(
        "user",
        text,
        status=status,
        author_id=author.id,
        author_name=author.display_name,
        platform_message_ids=(turn.message_id,) if turn.message_id else (),
        full_length=full_length,
        update_key=turn.update_key,
        # A refused message's files never went upstream: nothing to send again.
        attachments=attachments.records_of(turn) if status != "refused" else (),
    )
