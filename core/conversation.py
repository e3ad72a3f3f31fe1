"""The conversation service: one turn, from the user's message to the stored answer.

    lock the scope → one transaction: history window, binding, the user's message stored
    → stream upstream into the reply → finish the reply (with a short error line on failure)
    → store the answer with its status

Turns in one scope run in order (a queued one shows a waiting line); different scopes run in
parallel. A turn holds its scope for at most `gpts.turn_timeout_s`. Nothing a user wrote is lost:
their message is stored before upstream is called, whatever happens next.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable
from contextlib import aclosing, asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime

from core import i18n
from core.config import Config
from core.errors import (
    EmptyMessage,
    GptsBotError,
    MessageTooLong,
    NoGptBound,
    TurnTimedOut,
    UpstreamError,
    user_message,
)
from core.gpt_names import gpt_url, model_name, parse_gpt_id
from core.gpts import ChatMessage, GptsClient, Usage
from core.streaming import StreamingReply
from core.turns import Author, Scope, Turn
from storage import BindingRecord, MessageRecord, MessageStatus, NewMessage, Repository

logger = logging.getLogger(__name__)

# On shutdown, how long a cancelled turn may take to show and store what had arrived.
SHUTDOWN_GRACE_S = 5.0


@dataclass(frozen=True, slots=True)
class BindingInfo:
    """The GPT that answers in a scope, and where that choice comes from."""

    gpt_id: str
    model: str
    bound_scope: Scope | None  # None: the configured default GPT
    bound_by_name: str | None
    bound_at: datetime | None
    inherited: bool  # bound on the parent channel or group, not on this thread/topic

    @property
    def url(self) -> str:
        return gpt_url(self.gpt_id)

    @property
    def is_default(self) -> bool:
        return self.bound_scope is None


@dataclass(frozen=True, slots=True)
class AnswerOutcome:
    status: MessageStatus
    text: str
    model: str | None
    error: BaseException | None = None


@dataclass(slots=True)
class _Progress:
    """What one turn has got so far, for the answer's record."""

    conversation_id: int
    started: float = field(default_factory=time.monotonic)
    model: str | None = None
    usage: Usage | None = None
    first_text_at: float | None = None
    error: BaseException | None = None


class _ScopeLocks:
    """One lock per scope, dropped when no turn holds or awaits it (scopes are unbounded)."""

    def __init__(self) -> None:
        self._locks: dict[Scope, tuple[asyncio.Lock, int]] = {}

    @asynccontextmanager
    async def hold(
        self, scope: Scope, on_wait: Callable[[], None] | None = None
    ) -> AsyncIterator[None]:
        """Hold the scope's lock; `on_wait` is called first if another turn holds or awaits it."""
        lock, users = self._locks.get(scope, (asyncio.Lock(), 0))
        self._locks[scope] = (lock, users + 1)
        if users and on_wait is not None:
            on_wait()
        try:
            async with lock:
                yield
        finally:
            lock, users = self._locks[scope]
            if users == 1:
                del self._locks[scope]
            else:
                self._locks[scope] = (lock, users - 1)

    def __len__(self) -> int:
        return len(self._locks)


class ConversationService:
    def __init__(self, config: Config, repo: Repository, client: GptsClient) -> None:
        self.config = config
        self.repo = repo
        self.client = client
        self._locks = _ScopeLocks()
        # Tests set this to see unexpected exceptions instead of the user's apology.
        self.reraise_unexpected = False

    async def answer(self, turn: Turn, reply: StreamingReply) -> AnswerOutcome:
        """Answer one user message into `reply`. Never raises for upstream or binding errors.

        While an earlier turn in the scope is still answering, `reply` shows a waiting line.
        """
        waited = started = False

        def show_waiting() -> None:
            nonlocal waited
            waited = True
            reply.show_waiting(i18n.WAITING(turn.language))

        try:
            async with self._locks.hold(turn.scope, show_waiting):
                started = True
                if waited:
                    reply.end_waiting()
                return await self._answer_locked(turn, reply)
        except asyncio.CancelledError as exc:
            if waited and not started:
                # Shutting down while queued: the waiting line must not stay as if still true.
                async with asyncio.timeout(SHUTDOWN_GRACE_S):
                    await reply.finish(user_message(exc, turn.language))
            raise

    async def _answer_locked(self, turn: Turn, reply: StreamingReply) -> AnswerOutcome:
        gpts = self.config.gpts
        scope, author = turn.scope, turn.author
        # The turn's whole life in the scope (retries included) ends by this time.
        deadline = asyncio.get_running_loop().time() + gpts.turn_timeout_s
        # One transaction: the conversation, its history window, the GPT bound here (or on the
        # parent chat), the user's message stored.
        message = NewMessage(
            "user",
            turn.text,
            author_id=author.id,
            author_name=author.display_name,
            platform_message_ids=(turn.message_id,) if turn.message_id else (),
        )
        start = await self.repo.start_turn(
            scope, message, history_limit=gpts.history_messages, with_binding=True
        )
        progress = _Progress(start.conversation_id)
        try:
            self._check_length(turn.text)
            binding = self._binding_info(scope, start.binding)
            if binding is None:
                raise NoGptBound()
            progress.model = binding.model
            messages = self._upstream_messages(start.history, turn)
            timeout = asyncio.timeout_at(deadline)
            try:
                async with (
                    timeout,
                    aclosing(self.client.stream_chat(binding.gpt_id, messages)) as deltas,
                ):
                    async for delta in deltas:
                        if delta.text:
                            progress.first_text_at = progress.first_text_at or time.monotonic()
                            reply.append(delta.text)
                        progress.usage = delta.usage or progress.usage
            except TimeoutError as exc:
                if not timeout.expired():
                    raise
                raise TurnTimedOut(gpts.turn_timeout_s) from exc
        except GptsBotError as exc:
            progress.error = exc
            level = logging.WARNING if isinstance(exc, UpstreamError) else logging.INFO
            logger.log(level, "turn in %s failed: %s", scope, type(exc).__name__)
        except asyncio.CancelledError as exc:
            progress.error = exc  # shutting down mid-answer: show and store what arrived, then stop
            logger.info("turn in %s cancelled", scope)
            async with asyncio.timeout(SHUTDOWN_GRACE_S):
                await self._conclude(turn, reply, progress)
            raise
        except Exception as exc:
            if self.reraise_unexpected:
                raise
            progress.error = exc
            logger.exception("turn in %s failed unexpectedly", scope)
        return await self._conclude(turn, reply, progress)

    async def _conclude(
        self, turn: Turn, reply: StreamingReply, progress: _Progress
    ) -> AnswerOutcome:
        """Finish the reply (with a short error line on failure) and store the answer."""
        text, error = reply.text, progress.error
        status: MessageStatus = "complete" if error is None else ("partial" if text else "error")
        error_line = user_message(error, turn.language) if error is not None else None
        if error is None and not text.strip():
            status, error_line = "error", i18n.EMPTY_ANSWER(turn.language)
        try:
            await reply.finish(error_line)
        finally:
            started, first = progress.started, progress.first_text_at
            answer = NewMessage(
                "assistant",
                text,
                status=status,
                model=progress.model,
                usage=progress.usage,
                first_chunk_ms=_ms(first - started) if first else None,
                total_ms=_ms(time.monotonic() - started),
                platform_message_ids=tuple(ref.message_id for ref in reply.messages),
            )
            await self.repo.add_message(progress.conversation_id, answer)
        return AnswerOutcome(status, text, progress.model, error)

    def _check_length(self, text: str) -> None:
        """The message must say something and fit the part of a request kept for messages."""
        if not text.strip():
            raise EmptyMessage()
        limit = self.config.gpts.history_chars
        if len(text) > limit:
            raise MessageTooLong(len(text), limit)

    def _upstream_messages(self, history: list[MessageRecord], turn: Turn) -> list[ChatMessage]:
        """System prompt, then the newest history that fits `history_chars`, then the turn."""
        gpts = self.config.gpts
        shared = not turn.is_private
        current = ChatMessage(
            role="user", content=_speaker(turn.author.display_name, turn.text, shared)
        )
        budget = gpts.history_chars - len(current["content"])
        window: list[ChatMessage] = []
        for record in reversed(history):
            if record.status == "error" and not record.content:
                continue
            content = (
                _speaker(record.author_name, record.content, shared)
                if record.role == "user"
                else record.content
            )
            budget -= len(content)
            if budget < 0:
                break
            window.append(ChatMessage(role=record.role, content=content))
        window.reverse()
        system = (
            [ChatMessage(role="system", content=gpts.system_prompt)] if gpts.system_prompt else []
        )
        return [*system, *window, current]

    async def reset(self, scope: Scope) -> None:
        """Start a new conversation here; the old one stays stored but is no longer sent."""
        async with self._locks.hold(scope):
            await self.repo.start_conversation(scope)

    async def bind(
        self, scope: Scope, gpt_text: str, author: Author, group_id: str | None = None
    ) -> BindingInfo:
        """Bind the GPT named by `gpt_text` (id, model name or link) to `scope`. Who may bind is
        checked by the command layer (`core.commands`). `group_id`: the server or group of the
        scope, so its bound GPTs can be suggested there."""
        gpt_id = parse_gpt_id(gpt_text)
        record = await self.repo.set_binding(
            scope,
            gpt_id=gpt_id,
            group_id=group_id,
            bound_by_id=author.id,
            bound_by_name=author.display_name,
        )
        logger.info("%s bound %s to %s", author.id, gpt_id, scope)
        return BindingInfo(
            gpt_id=gpt_id,
            model=model_name(self.config.gpts.model_template, gpt_id),
            bound_scope=scope,
            bound_by_name=record.bound_by_name,
            bound_at=record.bound_at,
            inherited=False,
        )

    async def unbind(self, scope: Scope) -> bool:
        """Remove this scope's own binding; False if it had none."""
        return await self.repo.delete_binding(scope)

    async def binding(self, scope: Scope) -> BindingInfo | None:
        """The GPT answering in `scope`: its own binding, its parent's, or the default GPT."""
        for candidate in (scope, scope.parent):
            if candidate is None:
                continue
            record = await self.repo.get_binding(candidate)
            if record is not None:
                return self._binding_info(scope, record)
        return self._binding_info(scope, None)

    def _binding_info(self, scope: Scope, record: BindingRecord | None) -> BindingInfo | None:
        """`record` (the binding of `scope` or of its parent) as a BindingInfo; the default GPT
        when there is no record, None when there is no default either."""
        template = self.config.gpts.model_template
        if record is not None:
            return BindingInfo(
                gpt_id=record.gpt_id,
                model=model_name(template, record.gpt_id),
                bound_scope=record.scope,
                bound_by_name=record.bound_by_name,
                bound_at=record.bound_at,
                inherited=record.scope != scope,
            )
        default = self.config.gpts.default_gpt
        if default is None:
            return None
        gpt_id = parse_gpt_id(default)
        return BindingInfo(gpt_id, model_name(template, gpt_id), None, None, None, inherited=False)

    async def bound_gpts(self, platform: str, group_id: str) -> list[str]:
        return await self.repo.bound_gpts(platform, group_id)


def _speaker(name: str | None, text: str, shared: bool) -> str:
    # In a shared chat the GPT sees who said what.
    return f"{name}: {text}" if shared and name else text


def _ms(seconds: float) -> int:
    return round(seconds * 1000)
