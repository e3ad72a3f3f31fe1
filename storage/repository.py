"""The async repository: the only way the core reads and writes the database.

It takes and returns frozen records (`storage.records`), never ORM rows: a scope is a `ScopeKey`,
a message to store a `NewMessage`. Each public call is one short transaction of one or two
statements on the hot paths (`current_conversation` on an existing scope is one SELECT,
`add_message` one INSERT, `history` one SELECT); `start_turn` does the three a turn starts with
(and the binding lookup, if asked) in one transaction, and starts the answer's row with them;
`save_answer` (every few seconds while it streams) and `finish_answer` are one UPDATE each.
The same code runs on SQLite (the default) and PostgreSQL: the SQL (`storage.queries`) is
portable, and the SQLite pragmas are applied only when the dialect is SQLite (`storage.engine`).
On PostgreSQL, several processes can share the database: `hold_scope` orders the turns of a
scope across all of them (advisory locks, `storage.scope_locks`), and a user message whose
platform update is already stored is refused (`DuplicateUpdate`), so each update is answered once.

How each call runs (a thread of its own for an SQLite file, retries while another process holds
the database's lock, then `StorageBusy`) is `storage.transactions`.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from datetime import datetime
from functools import partial

from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError, OperationalError

from storage import answers, bindings, queries, usage
from storage.engine import (
    alembic_config,
    is_unique_violation,
)
from storage.models import utcnow
from storage.records import (
    BindingRecord,
    Exchange,
    InterruptedAnswer,
    MessageRecord,
    NewMessage,
    QuotaUse,
    ScopeKey,
    StoredAnswer,
    TurnStart,
    UsageReport,
)
from storage.transactions import StorageBusy, Transactions

__all__ = ["DuplicateUpdate", "Repository", "StorageBusy", "alembic_config"]

logger = logging.getLogger(__name__)


class DuplicateUpdate(Exception):
    """The user message's platform update is already stored: the update was delivered twice
    (a re-delivery, a retried webhook, a replay, another process). Nothing was stored."""

    def __init__(self, update_key: str) -> None:
        super().__init__(f"update {update_key} is already stored")
        self.update_key = update_key


class Repository(Transactions):
    """Conversations, messages and GPT bindings, keyed by scope (`ScopeKey`).

    Open with `await Repository.open(url)`, bring the schema up with `await repo.upgrade()`, and
    `await repo.close()` at shutdown (or use it as an async context manager).

    Each call is one transaction written as plain synchronous SQLAlchemy. On an SQLite file it
    runs in one thread of the repository's own with the stdlib driver: one hand-off per call,
    where aiosqlite makes three or four per statement. Elsewhere (PostgreSQL, in-memory SQLite)
    it runs on the async engine through `run_sync`.
    """

    @asynccontextmanager
    async def hold_scope(
        self, scope: ScopeKey, on_busy: Callable[[], Awaitable[None]] | None = None
    ) -> AsyncIterator[None]:
        """Hold the scope against every other process sharing the database, for a whole turn.

        PostgreSQL: an advisory lock held for the block (on the process's lock connection, or
        one of its own while another process holds the scope), released if the process dies;
        `on_busy` is awaited first when another holds it (what it raises is raised here).
        SQLite: nothing to hold, one process answers per file.
        """
        if self._scope_locks is None:
            yield
            return
        async with self._scope_locks.hold(scope, on_busy):
            yield

    async def is_update_stored(self, update_key: str) -> bool:
        """Whether a message from this platform update is stored (`NewMessage.update_key`)."""
        return await self._run(lambda connection: queries.is_update_stored(connection, update_key))

    # -- conversations -------------------------------------------------------------------------

    async def current_conversation(self, scope: ScopeKey) -> int:
        """The scope's current (newest) conversation id; creates the scope and its first
        conversation when missing. Safe to call concurrently for the same new scope."""
        return await self._write(lambda connection: queries.current_conversation(connection, scope))

    async def start_conversation(self, scope: ScopeKey) -> int:
        """Start a new current conversation for the scope (`/reset`). Older ones stay stored."""
        return await self._write(lambda connection: queries.start_conversation(connection, scope))

    async def add_message(self, conversation_id: int, message: NewMessage) -> int:
        """Store one message; returns its id. IntegrityError for an unknown conversation."""
        values = queries.message_values(message)
        values["conversation_id"] = conversation_id
        return await self._run(lambda connection: queries.insert_message(connection, values))

    async def history(self, conversation_id: int, *, limit: int) -> list[MessageRecord]:
        """The last `limit` messages of the conversation, oldest first."""
        if limit <= 0:
            return []  # and never "LIMIT -1", which SQLite reads as "no limit"
        return await self._run(
            lambda connection: queries.history(connection, conversation_id, limit)
        )

    async def exchanges(self, conversation_id: int, *, limit: int) -> list[Exchange]:
        """The history window: the last `limit` questions that got an answer with text, each
        with its answer, oldest first (see `queries.PAIRED_STATUSES`)."""
        if limit <= 0:
            return []
        return await self._run(
            lambda connection: queries.exchanges(connection, conversation_id, limit)
        )

    async def start_turn(
        self,
        scope: ScopeKey,
        message: NewMessage,
        *,
        history_limit: int,
        with_binding: bool = False,
        answer: NewMessage | None = None,
    ) -> TurnStart:
        """One transaction for the start of a turn: the scope's current conversation (created
        when missing), its last `history_limit` exchanges (`exchanges`), then `message` (the
        user's) stored, and `answer`'s row, linked to it, when given (status `streaming`: it is
        saved while it arrives, see `save_answer` and `finish_answer`).

        With `with_binding`, it also reads the scope's binding or, for a thread, its parent
        chat's: `get_binding(scope)`, then `get_binding(scope.parent)`, in the same transaction.

        Raises `DuplicateUpdate`, storing nothing, when `message.update_key` is already stored.
        """
        values = queries.message_values(message)
        answer_values = queries.message_values(answer) if answer is not None else None

        def work(connection: Connection) -> TurnStart:
            conversation_id = queries.current_conversation(connection, scope)
            history = (
                queries.exchanges(connection, conversation_id, history_limit)
                if history_limit > 0
                else []
            )
            binding = bindings.turn_binding(connection, scope) if with_binding else None
            values["conversation_id"] = conversation_id
            try:
                message_id = queries.insert_message(connection, values)
            except IntegrityError as exc:
                # The one unique index a user message can break is its update's.
                if message.update_key is None or not is_unique_violation(exc):
                    raise
                raise DuplicateUpdate(message.update_key) from None
            answer_id = None
            if answer_values is not None:
                answer_values["conversation_id"] = conversation_id
                answer_values["answers_id"] = message_id
                answer_id = queries.insert_message(connection, answer_values)
            return TurnStart(conversation_id, history, message_id, binding, answer_id)

        return await self._write(work)

    async def retry_turn(
        self,
        scope: ScopeKey,
        answer_id: int,
        *,
        history_limit: int,
        with_binding: bool = False,
        answer: NewMessage,
    ) -> TurnStart | None:
        """One transaction for asking an answered question again (Retry): answer `answer_id`
        marked `superseded`, the exchanges before its question (`history_limit` of them), the
        binding (as `start_turn`), and `answer`'s row linked to the same question. None, and
        nothing written, when the answer can no longer be retried (`StoredAnswer.can_retry`)."""
        values = queries.message_values(answer)
        return await self._write(
            lambda connection: answers.retry_turn(
                connection,
                scope,
                answer_id,
                history_limit=history_limit,
                with_binding=with_binding,
                answer_values=values,
            )
        )

    async def stored_answer(self, answer_id: int) -> StoredAnswer | None:
        """Answer `answer_id` with its question (None when there is no such answer)."""
        return await self._run(lambda connection: answers.stored_answer(connection, answer_id))

    async def latest_answer(self, scope: ScopeKey) -> StoredAnswer | None:
        """The newest answer in the scope's current conversation that Retry did not replace."""
        return await self._run(lambda connection: answers.latest_answer(connection, scope))

    async def save_answer(
        self, answer_id: int, content: str, platform_message_ids: Sequence[str]
    ) -> None:
        """Save a streaming answer's text so far and the platform messages showing it. Does
        nothing once the answer is finished.

        Best effort: a save that fails (the database locked past the busy timeout) is logged and
        left to the next save or the final update. On an SQLite file it is queued to the
        repository's thread without waiting for it (in order with every later call): a turn
        saves every few seconds, and waiting would cost a wake-up of the event loop each time.
        """

        def work(connection: Connection) -> None:
            queries.save_answer(connection, answer_id, content, platform_message_ids)

        if self._db_thread is None:
            try:
                await self._run(work)
            except (StorageBusy, OperationalError) as exc:
                logger.warning("answer %s not saved while streaming: %s", answer_id, exc)
            return
        self._db_thread.submit(partial(self._save_in_thread, answer_id, work))

    async def finish_answer(self, answer_id: int, message: NewMessage) -> None:
        """Store the answer's final text, status, model, usage, timings and platform messages."""
        await self._run(lambda connection: queries.finish_answer(connection, answer_id, message))

    async def interrupt_streaming(
        self, platform: str, *, chat_id: str | None = None
    ) -> list[InterruptedAnswer]:
        """Mark `interrupted` the answers of `platform` (or of one of its chats) left `streaming`
        by a process that died, and return them. Call it at start. On SQLite, only for the scopes
        no live process answers; on PostgreSQL, the scopes a live turn holds (`hold_scope`) in
        any process are left alone."""
        if self._scope_locks is None:
            return await self._run(
                lambda connection: queries.interrupt_streaming(connection, platform, chat_id)
            )
        scopes = await self._run(
            lambda connection: queries.streaming_scopes(connection, platform, chat_id)
        )
        if not scopes:
            return []
        async with self._scope_locks.free(scopes) as free:
            if not free:
                return []
            return await self._run(
                lambda connection: queries.interrupt_streaming(connection, platform, chat_id, free)
            )

    async def count_messages(self, conversation_id: int) -> int:
        return await self._run(
            lambda connection: queries.count_messages(connection, conversation_id)
        )

    # -- quotas and usage (see storage.usage for what each figure costs) -----------------------

    async def quota_use(
        self,
        scope: ScopeKey,
        user_id: str,
        *,
        minute_since: datetime | None = None,
        day_since: datetime | None = None,
        chat_day_since: datetime | None = None,
    ) -> QuotaUse:
        """The person's turns since `minute_since` (and when the first was) and tokens since
        `day_since` on the scope's platform, and the tokens of the scope's chat (its threads
        included) since `chat_day_since`: each only when its time is given, in one transaction."""
        return await self._run(
            lambda connection: usage.quota_use(
                connection,
                scope,
                user_id,
                minute_since=minute_since,
                day_since=day_since,
                chat_day_since=chat_day_since,
            )
        )

    async def usage(
        self,
        scope: ScopeKey,
        user_id: str,
        *,
        day_since: datetime,
        month_since: datetime,
        chat_top: int | None = None,
        whole_bot: bool = False,
    ) -> UsageReport:
        """Turns and tokens since `day_since` and since `month_since`: the person's on the scope's
        platform; with `chat_top`, the scope's chat's and its `chat_top` top users; with
        `whole_bot`, everyone's."""
        return await self._run(
            lambda connection: usage.usage(
                connection,
                scope,
                user_id,
                day_since=day_since,
                month_since=month_since,
                chat_top=chat_top,
                whole_bot=whole_bot,
            )
        )

    # -- bindings ------------------------------------------------------------------------------

    async def get_binding(self, scope: ScopeKey) -> BindingRecord | None:
        """The binding of exactly this scope (no fallback to a parent channel or default)."""
        return await self._run(lambda connection: bindings.get_binding(connection, scope))

    async def set_binding(
        self,
        scope: ScopeKey,
        *,
        gpt_id: str,
        group_id: str | None,
        bound_by_id: str | None,
        bound_by_name: str | None,
    ) -> BindingRecord:
        """Bind the scope to a GPT, replacing any earlier binding of the same scope."""
        binding = BindingRecord(scope, gpt_id, group_id, bound_by_id, bound_by_name, utcnow())
        await self._write(lambda connection: bindings.set_binding(connection, binding))
        return binding

    async def delete_binding(self, scope: ScopeKey) -> bool:
        """Remove the scope's own binding; True when there was one."""
        return await self._run(lambda connection: bindings.delete_binding(connection, scope))

    async def bound_gpts(self, platform: str, group_id: str) -> list[str]:
        """Distinct GPT ids bound anywhere in the group (a guild), most recently bound first."""
        return await self._run(
            lambda connection: bindings.bound_gpts(connection, platform, group_id)
        )
