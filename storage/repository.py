"""The async repository: the only way the core reads and writes the database.

It takes plain strings and ints and returns frozen records, never ORM rows. Each public call is one
short transaction of one or two statements on the hot paths (`current_conversation` on an existing
scope is one SELECT, `add_message` one INSERT, `history` one SELECT); `start_turn` does the three a
turn starts with in one transaction. The same code runs on SQLite
(the default) and PostgreSQL: queries use only portable SQL, and the SQLite pragmas are applied only
when the dialect is SQLite.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Final, Self, TypeVar, cast

from sqlalchemy import ColumnElement, delete, event, func, insert, select, update
from sqlalchemy.engine import URL, Connection, CursorResult, make_url
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.sql.dml import ReturningInsert

from storage.models import MESSAGE_STATUSES, Binding, Conversation, Message, Scope, utcnow

if TYPE_CHECKING:
    from alembic.config import Config
    from sqlalchemy.engine.interfaces import DBAPIConnection
    from sqlalchemy.pool import ConnectionPoolEntry, PoolResetState

logger = logging.getLogger(__name__)

MIGRATIONS_DIR: Final = Path(__file__).resolve().with_name("migrations")
# How long an SQLite connection waits for another connection's write lock before failing.
SQLITE_BUSY_TIMEOUT_MS: Final = 5000
_SQLITE_PRAGMAS: Final = (
    # First, so that switching the journal mode below also waits instead of failing.
    f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}",
    # Readers don't block the writer and vice versa; persistent in the file once set.
    "PRAGMA journal_mode = WAL",
    # Durable across application crashes; in WAL mode only a power loss can drop the last commits.
    "PRAGMA synchronous = NORMAL",
    "PRAGMA foreign_keys = ON",
)

_T = TypeVar("_T")


@dataclass(frozen=True, slots=True)
class MessageRecord:
    id: int
    role: str
    content: str
    author_id: str | None
    author_name: str | None
    status: str
    model: str | None
    created_at: datetime


@dataclass(frozen=True, slots=True)
class BindingRecord:
    platform: str
    chat_id: str
    thread_id: str
    gpt_id: str
    group_id: str | None
    bound_by_id: str | None
    bound_by_name: str | None
    bound_at: datetime


def alembic_config() -> Config:
    """Alembic config for the bundled migrations, built in code: no ini file, no logging setup."""
    from alembic.config import Config

    config = Config()
    # ConfigParser interpolation: a literal "%" in the install path must be doubled.
    config.set_main_option("script_location", str(MIGRATIONS_DIR).replace("%", "%%"))
    config.set_main_option("path_separator", "os")
    return config


def _upgrade_to_head(connection: Connection) -> None:
    from alembic import command

    config = alembic_config()
    # env.py migrates on this connection instead of opening its own engine.
    config.attributes["connection"] = connection
    command.upgrade(config, "head")


def _set_sqlite_pragmas(dbapi_connection: DBAPIConnection, _record: ConnectionPoolEntry) -> None:
    cursor = dbapi_connection.cursor()
    try:
        for pragma in _SQLITE_PRAGMAS:
            cursor.execute(pragma)
    finally:
        cursor.close()


def _rollback_if_open(
    dbapi_connection: DBAPIConnection, _record: ConnectionPoolEntry, state: PoolResetState
) -> None:
    """The pool's reset on return, minus the ROLLBACK after a COMMIT.

    Every repository call is one `engine.begin()` block, which already commits or rolls back;
    the pool's default reset would then send one more ROLLBACK per call, and with aiosqlite each
    statement is a round trip to the connection's thread (about a fifth of a turn's DB calls).
    A transaction left open (a call cancelled mid-way) is still rolled back.
    """
    if state.terminate_only or state.transaction_was_reset:
        return
    driver = getattr(dbapi_connection, "_connection", dbapi_connection)
    if getattr(driver, "in_transaction", True):
        dbapi_connection.rollback()


def _ensure_sqlite_folder(url: URL) -> None:
    database = url.database
    if not database or database == ":memory:" or database.startswith("file:"):
        return  # in-memory, or a URI filename that SQLite resolves itself
    Path(database).parent.mkdir(parents=True, exist_ok=True)


def _is_scope(platform: str, chat_id: str, thread_id: str) -> tuple[ColumnElement[bool], ...]:
    return (Scope.platform == platform, Scope.chat_id == chat_id, Scope.thread_id == thread_id)


def _check_status(status: str) -> None:
    if status not in MESSAGE_STATUSES:
        raise ValueError(
            f"message status must be one of {sorted(MESSAGE_STATUSES)}, got {status!r}"
        )


@dataclass(frozen=True, slots=True)
class TurnStart:
    """What `Repository.start_turn` found and stored."""

    conversation_id: int
    history: list[MessageRecord]  # oldest first, without the new message
    message_id: int  # the user's message


_HISTORY_COLUMNS: Final = (
    Message.id,
    Message.role,
    Message.content,
    Message.author_id,
    Message.author_name,
    Message.status,
    Message.model,
    Message.created_at,
)


async def _history(
    connection: AsyncConnection, conversation_id: int, limit: int
) -> list[MessageRecord]:
    query = (
        select(*_HISTORY_COLUMNS)
        .where(Message.conversation_id == conversation_id)
        .order_by(Message.id.desc())
        .limit(limit)
    )
    rows = (await connection.execute(query)).all()
    return [
        MessageRecord(
            id=row.id,
            role=row.role,
            content=row.content,
            author_id=row.author_id,
            author_name=row.author_name,
            status=row.status,
            model=row.model,
            created_at=row.created_at,
        )
        for row in reversed(rows)
    ]


def _message_insert(
    *,
    role: str,
    content: str,
    author_id: str | None,
    author_name: str | None,
    status: str,
    model: str | None = None,
    prompt_tokens: int | None = None,
    completion_tokens: int | None = None,
    total_tokens: int | None = None,
    first_chunk_ms: int | None = None,
    total_ms: int | None = None,
    platform_message_ids: Sequence[str] = (),
) -> ReturningInsert[int]:
    """INSERT of one message (add `.values(conversation_id=...)`), returning its id."""
    _check_status(status)
    return (
        insert(Message)
        .values(
            role=role,
            content=content,
            author_id=author_id,
            author_name=author_name,
            status=status,
            model=model,
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
            total_tokens=total_tokens,
            first_chunk_ms=first_chunk_ms,
            total_ms=total_ms,
            platform_message_ids=list(platform_message_ids),
            created_at=utcnow(),
        )
        .returning(Message.id)
    )


class Repository:
    """Conversations, messages and GPT bindings, keyed by scope `(platform, chat_id, thread_id)`.

    Open with `await Repository.open(url)`, bring the schema up with `await repo.upgrade()`, and
    `await repo.close()` at shutdown (or use it as an async context manager).
    """

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    @classmethod
    async def open(cls, url: str) -> Repository:
        """Create the engine. Connects lazily and does not migrate."""
        parsed = make_url(url)
        if parsed.get_backend_name() == "sqlite":
            _ensure_sqlite_folder(parsed)
        if parsed.get_backend_name() == "sqlite":
            engine = create_async_engine(parsed, pool_reset_on_return=None)
            event.listen(engine.sync_engine, "connect", _set_sqlite_pragmas)
            event.listen(engine.sync_engine, "reset", _rollback_if_open)
        else:
            engine = create_async_engine(parsed)
        return cls(engine)

    async def close(self) -> None:
        await self._engine.dispose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    @property
    def dialect(self) -> str:
        """The database dialect name, e.g. "sqlite" or "postgresql"."""
        return self._engine.dialect.name

    async def upgrade(self) -> None:
        """Apply the Alembic migrations up to head; a no-op when already there."""
        started = time.perf_counter()
        async with self._engine.begin() as connection:
            await connection.run_sync(_upgrade_to_head)
        logger.info("database schema up to date in %.0f ms", (time.perf_counter() - started) * 1000)

    # -- conversations -------------------------------------------------------------------------

    async def current_conversation(self, platform: str, chat_id: str, thread_id: str = "") -> int:
        """The scope's current (newest) conversation id; creates the scope and its first
        conversation when missing. Safe to call concurrently for the same new scope."""

        async def work(connection: AsyncConnection) -> int:
            return await self._current_conversation(connection, platform, chat_id, thread_id)

        return await self._write(work)

    async def start_conversation(self, platform: str, chat_id: str, thread_id: str = "") -> int:
        """Start a new current conversation for the scope (`/reset`). Older ones stay stored."""

        async def work(connection: AsyncConnection) -> int:
            scope_id = await self._scope_id(connection, platform, chat_id, thread_id)
            if scope_id is None:
                # A brand-new scope's first conversation is already a fresh one.
                return (await self._insert_scope(connection, platform, chat_id, thread_id))[1]
            return await self._insert_conversation(connection, scope_id)

        return await self._write(work)

    async def add_message(
        self,
        conversation_id: int,
        *,
        role: str,
        content: str,
        author_id: str | None = None,
        author_name: str | None = None,
        status: str = "complete",
        model: str | None = None,
        prompt_tokens: int | None = None,
        completion_tokens: int | None = None,
        total_tokens: int | None = None,
        first_chunk_ms: int | None = None,
        total_ms: int | None = None,
        platform_message_ids: Sequence[str] = (),
    ) -> int:
        """Store one message; returns its id. IntegrityError for an unknown conversation."""
        statement = _message_insert(
            role=role,
            content=content,
            author_id=author_id,
            author_name=author_name,
            status=status,
            model=model,
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
            total_tokens=total_tokens,
            first_chunk_ms=first_chunk_ms,
            total_ms=total_ms,
            platform_message_ids=platform_message_ids,
        ).values(conversation_id=conversation_id)
        async with self._engine.begin() as connection:
            return (await connection.execute(statement)).scalar_one()

    async def history(self, conversation_id: int, *, limit: int) -> list[MessageRecord]:
        """The last `limit` messages of the conversation, oldest first."""
        if limit <= 0:
            return []  # and never "LIMIT -1", which SQLite reads as "no limit"
        async with self._engine.begin() as connection:
            return await _history(connection, conversation_id, limit)

    async def start_turn(
        self,
        platform: str,
        chat_id: str,
        thread_id: str,
        *,
        history_limit: int,
        content: str,
        author_id: str | None = None,
        author_name: str | None = None,
        platform_message_ids: Sequence[str] = (),
    ) -> TurnStart:
        """One transaction for the start of a turn: the scope's current conversation (created
        when missing), its last `history_limit` messages, then the user's message stored.

        The same as `current_conversation`, `history` and `add_message(role="user")` in a row,
        in one round of the connection instead of three.
        """
        statement = _message_insert(
            role="user",
            content=content,
            author_id=author_id,
            author_name=author_name,
            status="complete",
            platform_message_ids=platform_message_ids,
        )

        async def work(connection: AsyncConnection) -> TurnStart:
            conversation_id = await self._current_conversation(
                connection, platform, chat_id, thread_id
            )
            history = (
                await _history(connection, conversation_id, history_limit)
                if history_limit > 0
                else []
            )
            inserted = await connection.execute(statement.values(conversation_id=conversation_id))
            return TurnStart(conversation_id, history, inserted.scalar_one())

        return await self._write(work)

    async def count_messages(self, conversation_id: int) -> int:
        query = (
            select(func.count())
            .select_from(Message)
            .where(Message.conversation_id == conversation_id)
        )
        async with self._engine.begin() as connection:
            return (await connection.execute(query)).scalar_one()

    # -- bindings ------------------------------------------------------------------------------

    async def get_binding(
        self, platform: str, chat_id: str, thread_id: str = ""
    ) -> BindingRecord | None:
        """The binding of exactly this scope (no fallback to a parent channel or default)."""
        query = (
            select(
                Binding.gpt_id,
                Binding.group_id,
                Binding.bound_by_id,
                Binding.bound_by_name,
                Binding.bound_at,
            )
            .join(Scope, Binding.scope_id == Scope.id)
            .where(*_is_scope(platform, chat_id, thread_id))
        )
        async with self._engine.begin() as connection:
            row = (await connection.execute(query)).one_or_none()
        if row is None:
            return None
        return BindingRecord(
            platform=platform,
            chat_id=chat_id,
            thread_id=thread_id,
            gpt_id=row.gpt_id,
            group_id=row.group_id,
            bound_by_id=row.bound_by_id,
            bound_by_name=row.bound_by_name,
            bound_at=row.bound_at,
        )

    async def set_binding(
        self,
        platform: str,
        chat_id: str,
        thread_id: str,
        *,
        gpt_id: str,
        group_id: str | None,
        bound_by_id: str | None,
        bound_by_name: str | None,
    ) -> BindingRecord:
        """Bind the scope to a GPT, replacing any earlier binding of the same scope."""

        async def work(connection: AsyncConnection) -> BindingRecord:
            scope_id = await self._scope_id(connection, platform, chat_id, thread_id)
            if scope_id is None:
                scope_id = (await self._insert_scope(connection, platform, chat_id, thread_id))[0]
            values = {
                "gpt_id": gpt_id,
                "group_id": group_id,
                "bound_by_id": bound_by_id,
                "bound_by_name": bound_by_name,
                "bound_at": utcnow(),
            }
            updated = await connection.execute(
                update(Binding).where(Binding.scope_id == scope_id).values(values)
            )
            if cast("CursorResult[Any]", updated).rowcount == 0:
                await connection.execute(insert(Binding).values(scope_id=scope_id, **values))
            return BindingRecord(
                platform=platform,
                chat_id=chat_id,
                thread_id=thread_id,
                gpt_id=gpt_id,
                group_id=group_id,
                bound_by_id=bound_by_id,
                bound_by_name=bound_by_name,
                bound_at=cast(datetime, values["bound_at"]),
            )

        return await self._write(work)

    async def delete_binding(self, platform: str, chat_id: str, thread_id: str = "") -> bool:
        """Remove the scope's own binding; True when there was one."""
        scope_id = select(Scope.id).where(*_is_scope(platform, chat_id, thread_id))
        statement = delete(Binding).where(Binding.scope_id == scope_id.scalar_subquery())
        async with self._engine.begin() as connection:
            result = await connection.execute(statement)
        return cast("CursorResult[Any]", result).rowcount > 0

    async def bound_gpts(self, platform: str, group_id: str) -> list[str]:
        """Distinct GPT ids bound anywhere in the group (a guild), most recently bound first."""
        query = (
            select(Binding.gpt_id)
            .join(Scope, Binding.scope_id == Scope.id)
            .where(Scope.platform == platform, Binding.group_id == group_id)
            .group_by(Binding.gpt_id)
            .order_by(func.max(Binding.bound_at).desc(), Binding.gpt_id)
        )
        async with self._engine.begin() as connection:
            return list((await connection.scalars(query)).all())

    # -- internals -----------------------------------------------------------------------------

    async def _write(self, work: Callable[[AsyncConnection], Awaitable[_T]]) -> _T:
        """Run `work` in one transaction, and once more if it lost a race to insert the same scope
        (or binding): the unique constraint rejected our row, so the second run finds theirs."""
        try:
            async with self._engine.begin() as connection:
                return await work(connection)
        except IntegrityError:
            logger.debug("concurrent insert of the same scope; retrying with the winner's row")
        async with self._engine.begin() as connection:
            return await work(connection)

    async def _current_conversation(
        self, connection: AsyncConnection, platform: str, chat_id: str, thread_id: str
    ) -> int:
        newest = (
            select(Conversation.id)
            .where(Conversation.scope_id == Scope.id)
            .order_by(Conversation.id.desc())
            .limit(1)
            .scalar_subquery()
        )
        # One statement, so the scope and its newest conversation are read from one snapshot:
        # reading them separately could see a scope that a concurrent caller committed in between
        # and wrongly conclude it has no conversation yet.
        lookup = select(Scope.id, newest).where(*_is_scope(platform, chat_id, thread_id))
        row = (await connection.execute(lookup)).one_or_none()
        if row is None:
            return (await self._insert_scope(connection, platform, chat_id, thread_id))[1]
        scope_id, conversation_id = row
        if conversation_id is not None:
            return cast(int, conversation_id)
        # Unreachable through this API (scopes are born with a conversation); repairs rows
        # written by hand.
        return await self._insert_conversation(connection, scope_id)

    @staticmethod
    async def _scope_id(
        connection: AsyncConnection, platform: str, chat_id: str, thread_id: str
    ) -> int | None:
        return await connection.scalar(
            select(Scope.id).where(*_is_scope(platform, chat_id, thread_id))
        )

    @staticmethod
    async def _insert_scope(
        connection: AsyncConnection, platform: str, chat_id: str, thread_id: str
    ) -> tuple[int, int]:
        """Insert a scope together with its first conversation; returns both ids. Every scope
        has a conversation from birth, so `current_conversation` never races on an empty scope."""
        statement = (
            insert(Scope)
            .values(platform=platform, chat_id=chat_id, thread_id=thread_id)
            .returning(Scope.id)
        )
        scope_id = (await connection.execute(statement)).scalar_one()
        return scope_id, await Repository._insert_conversation(connection, scope_id)

    @staticmethod
    async def _insert_conversation(connection: AsyncConnection, scope_id: int) -> int:
        statement = (
            insert(Conversation)
            .values(scope_id=scope_id, started_at=utcnow())
            .returning(Conversation.id)
        )
        return (await connection.execute(statement)).scalar_one()
