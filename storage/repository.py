"""The async repository: the only way the core reads and writes the database.

It takes plain strings and ints and returns frozen records, never ORM rows. Each public call is one
short transaction of one or two statements on the hot paths (`current_conversation` on an existing
scope is one SELECT, `add_message` one INSERT, `history` one SELECT); `start_turn` does the three a
turn starts with (and the binding lookup, if asked) in one transaction. The same code runs on SQLite
(the default) and PostgreSQL: queries use only portable SQL, and the SQLite pragmas are applied only
when the dialect is SQLite.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Final, Self, TypeVar, cast

from sqlalchemy import (
    ColumnElement,
    Integer,
    Table,
    bindparam,
    create_engine,
    delete,
    event,
    func,
    insert,
    literal,
    select,
    update,
)
from sqlalchemy.engine import URL, Connection, CursorResult, Engine, make_url
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

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


def _is_sqlite_file(url: URL) -> bool:
    """A plain file path (not in-memory, not a URI filename that SQLite resolves itself)."""
    database = url.database or ""
    return bool(database) and database != ":memory:" and not database.startswith("file:")


def _ensure_sqlite_folder(url: URL) -> None:
    if _is_sqlite_file(url):
        Path(cast(str, url.database)).parent.mkdir(parents=True, exist_ok=True)


def _listen_sqlite(engine: Engine) -> None:
    event.listen(engine, "connect", _set_sqlite_pragmas)
    event.listen(engine, "reset", _rollback_if_open)


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
    binding: BindingRecord | None = None  # with_binding: the scope's, else its parent chat's


_SCOPES: Final = cast(Table, Scope.__table__)
_CONVERSATIONS: Final = cast(Table, Conversation.__table__)
_MESSAGES: Final = cast(Table, Message.__table__)
_BINDINGS: Final = cast(Table, Binding.__table__)

# The hot paths' statements are built once, on Core tables, with named parameters: executing them
# skips statement construction, ORM compilation and cache-key generation on every call.
_HISTORY: Final = (
    select(
        _MESSAGES.c.id,
        _MESSAGES.c.role,
        _MESSAGES.c.content,
        _MESSAGES.c.author_id,
        _MESSAGES.c.author_name,
        _MESSAGES.c.status,
        _MESSAGES.c.model,
        _MESSAGES.c.created_at,
    )
    .where(_MESSAGES.c.conversation_id == bindparam("conversation_id"))
    .order_by(_MESSAGES.c.id.desc())
    .limit(bindparam("limit", type_=Integer))
)
_NEWEST_CONVERSATION: Final = (
    select(_CONVERSATIONS.c.id)
    .where(_CONVERSATIONS.c.scope_id == _SCOPES.c.id)
    .order_by(_CONVERSATIONS.c.id.desc())
    .limit(1)
    .scalar_subquery()
)
_IS_SCOPE: Final = (
    _SCOPES.c.platform == bindparam("platform"),
    _SCOPES.c.chat_id == bindparam("chat_id"),
    _SCOPES.c.thread_id == bindparam("thread_id"),
)
# One statement, so the scope and its newest conversation are read from one snapshot: reading
# them separately could see a scope that a concurrent caller committed in between and wrongly
# conclude it has no conversation yet.
_CURRENT_CONVERSATION: Final = select(_SCOPES.c.id, _NEWEST_CONVERSATION).where(*_IS_SCOPE)
_SCOPE_ID: Final = select(_SCOPES.c.id).where(*_IS_SCOPE)
_INSERT_SCOPE: Final = insert(_SCOPES).returning(_SCOPES.c.id)
_INSERT_CONVERSATION: Final = insert(_CONVERSATIONS).returning(_CONVERSATIONS.c.id)
_INSERT_MESSAGE: Final = insert(_MESSAGES).returning(_MESSAGES.c.id)
_BINDING_COLUMNS: Final = (
    _BINDINGS.c.gpt_id,
    _BINDINGS.c.group_id,
    _BINDINGS.c.bound_by_id,
    _BINDINGS.c.bound_by_name,
    _BINDINGS.c.bound_at,
)
_GET_BINDING: Final = (
    select(*_BINDING_COLUMNS).join(_SCOPES, _BINDINGS.c.scope_id == _SCOPES.c.id).where(*_IS_SCOPE)
)
# A scope's binding and its parent's (the same chat, thread ""): what a turn needs to know.
_TURN_BINDINGS: Final = (
    select(_SCOPES.c.thread_id, *_BINDING_COLUMNS)
    .join(_SCOPES, _BINDINGS.c.scope_id == _SCOPES.c.id)
    .where(
        _SCOPES.c.platform == bindparam("platform"),
        _SCOPES.c.chat_id == bindparam("chat_id"),
        _SCOPES.c.thread_id.in_([bindparam("thread_id"), literal("")]),
    )
)


def _history(connection: Connection, conversation_id: int, limit: int) -> list[MessageRecord]:
    rows = connection.execute(_HISTORY, {"conversation_id": conversation_id, "limit": limit}).all()
    return [MessageRecord(*row) for row in reversed(rows)]


def _message_values(
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
) -> dict[str, Any]:
    """The parameters of `_INSERT_MESSAGE` for one message (add `conversation_id`)."""
    _check_status(status)
    return {
        "role": role,
        "content": content,
        "author_id": author_id,
        "author_name": author_name,
        "status": status,
        "model": model,
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": total_tokens,
        "first_chunk_ms": first_chunk_ms,
        "total_ms": total_ms,
        "platform_message_ids": list(platform_message_ids),
        "created_at": utcnow(),
    }


def _binding_record(platform: str, chat_id: str, thread_id: str, row: Any) -> BindingRecord:
    return BindingRecord(platform, chat_id, thread_id, *row)


class Repository:
    """Conversations, messages and GPT bindings, keyed by scope `(platform, chat_id, thread_id)`.

    Open with `await Repository.open(url)`, bring the schema up with `await repo.upgrade()`, and
    `await repo.close()` at shutdown (or use it as an async context manager).

    Each call is one transaction written as plain synchronous SQLAlchemy. On an SQLite file it
    runs in one thread of the repository's own with the stdlib driver: one hand-off per call,
    where aiosqlite makes three or four per statement. Elsewhere (PostgreSQL, in-memory SQLite)
    it runs on the async engine through `run_sync`.
    """

    def __init__(self, engine: AsyncEngine, thread_engine: Engine | None = None) -> None:
        self._engine = engine
        self._thread_engine = thread_engine
        self._executor = (
            ThreadPoolExecutor(1, thread_name_prefix="gptsbot-db") if thread_engine else None
        )

    @classmethod
    async def open(cls, url: str) -> Repository:
        """Create the engine. Connects lazily and does not migrate."""
        parsed = make_url(url)
        if parsed.get_backend_name() != "sqlite":
            return cls(create_async_engine(parsed))
        _ensure_sqlite_folder(parsed)
        engine = create_async_engine(parsed, pool_reset_on_return=None)
        _listen_sqlite(engine.sync_engine)
        thread_engine = None
        if _is_sqlite_file(parsed):
            thread_engine = create_engine(
                parsed.set(drivername="sqlite"), pool_reset_on_return=None
            )
            _listen_sqlite(thread_engine)
        return cls(engine, thread_engine)

    async def close(self) -> None:
        if self._executor is not None and self._thread_engine is not None:
            loop = asyncio.get_running_loop()
            await loop.run_in_executor(self._executor, self._thread_engine.dispose)
            self._executor.shutdown(wait=False)
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

        def work(connection: Connection) -> int:
            return _current_conversation(connection, platform, chat_id, thread_id)

        return await self._write(work)

    async def start_conversation(self, platform: str, chat_id: str, thread_id: str = "") -> int:
        """Start a new current conversation for the scope (`/reset`). Older ones stay stored."""

        def work(connection: Connection) -> int:
            scope_id = _scope_id(connection, platform, chat_id, thread_id)
            if scope_id is None:
                # A brand-new scope's first conversation is already a fresh one.
                return _insert_scope(connection, platform, chat_id, thread_id)[1]
            return _insert_conversation(connection, scope_id)

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
        values = _message_values(
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
        )
        values["conversation_id"] = conversation_id

        def work(connection: Connection) -> int:
            return cast(int, connection.execute(_INSERT_MESSAGE, values).scalar_one())

        return await self._run(work)

    async def history(self, conversation_id: int, *, limit: int) -> list[MessageRecord]:
        """The last `limit` messages of the conversation, oldest first."""
        if limit <= 0:
            return []  # and never "LIMIT -1", which SQLite reads as "no limit"
        return await self._run(lambda connection: _history(connection, conversation_id, limit))

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
        with_binding: bool = False,
    ) -> TurnStart:
        """One transaction for the start of a turn: the scope's current conversation (created
        when missing), its last `history_limit` messages, then the user's message stored.

        The same as `current_conversation`, `history` and `add_message(role="user")` in a row,
        in one round of the connection instead of three. With `with_binding`, it also reads the
        scope's binding or, for a thread (`thread_id` not ""), its parent chat's: `get_binding`
        of the scope, then of `(platform, chat_id, "")`, in the same transaction.
        """
        values = _message_values(
            role="user",
            content=content,
            author_id=author_id,
            author_name=author_name,
            status="complete",
            platform_message_ids=platform_message_ids,
        )

        def work(connection: Connection) -> TurnStart:
            conversation_id = _current_conversation(connection, platform, chat_id, thread_id)
            history = (
                _history(connection, conversation_id, history_limit) if history_limit > 0 else []
            )
            binding = (
                _turn_binding(connection, platform, chat_id, thread_id) if with_binding else None
            )
            values["conversation_id"] = conversation_id
            message_id = connection.execute(_INSERT_MESSAGE, values).scalar_one()
            return TurnStart(conversation_id, history, message_id, binding)

        return await self._write(work)

    async def count_messages(self, conversation_id: int) -> int:
        query = (
            select(func.count())
            .select_from(Message)
            .where(Message.conversation_id == conversation_id)
        )
        return await self._run(lambda connection: connection.execute(query).scalar_one())

    # -- bindings ------------------------------------------------------------------------------

    async def get_binding(
        self, platform: str, chat_id: str, thread_id: str = ""
    ) -> BindingRecord | None:
        """The binding of exactly this scope (no fallback to a parent channel or default)."""
        key = {"platform": platform, "chat_id": chat_id, "thread_id": thread_id}

        def work(connection: Connection) -> BindingRecord | None:
            row = connection.execute(_GET_BINDING, key).one_or_none()
            return None if row is None else _binding_record(platform, chat_id, thread_id, row)

        return await self._run(work)

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

        def work(connection: Connection) -> BindingRecord:
            scope_id = _scope_id(connection, platform, chat_id, thread_id)
            if scope_id is None:
                scope_id = _insert_scope(connection, platform, chat_id, thread_id)[0]
            values = {
                "gpt_id": gpt_id,
                "group_id": group_id,
                "bound_by_id": bound_by_id,
                "bound_by_name": bound_by_name,
                "bound_at": utcnow(),
            }
            updated = connection.execute(
                update(Binding).where(Binding.scope_id == scope_id).values(values)
            )
            if cast("CursorResult[Any]", updated).rowcount == 0:
                connection.execute(insert(Binding).values(scope_id=scope_id, **values))
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

        def work(connection: Connection) -> bool:
            return cast("CursorResult[Any]", connection.execute(statement)).rowcount > 0

        return await self._run(work)

    async def bound_gpts(self, platform: str, group_id: str) -> list[str]:
        """Distinct GPT ids bound anywhere in the group (a guild), most recently bound first."""
        query = (
            select(Binding.gpt_id)
            .join(Scope, Binding.scope_id == Scope.id)
            .where(Scope.platform == platform, Binding.group_id == group_id)
            .group_by(Binding.gpt_id)
            .order_by(func.max(Binding.bound_at).desc(), Binding.gpt_id)
        )
        return await self._run(lambda connection: list(connection.scalars(query).all()))

    # -- internals -----------------------------------------------------------------------------

    async def _run(self, work: Callable[[Connection], _T], *, retry: bool = False) -> _T:
        """Run `work` in one transaction: in the repository's thread, or on the async engine."""
        if self._executor is None:
            return await self._run_async(work, retry=retry)
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self._run_in_thread, work, retry)

    def _run_in_thread(self, work: Callable[[Connection], _T], retry: bool) -> _T:
        assert self._thread_engine is not None
        if retry:
            try:
                with self._thread_engine.begin() as connection:
                    return work(connection)
            except IntegrityError:
                logger.debug("concurrent insert of the same scope; retrying with the winner's row")
        with self._thread_engine.begin() as connection:
            return work(connection)

    async def _run_async(self, work: Callable[[Connection], _T], *, retry: bool) -> _T:
        if retry:
            try:
                async with self._engine.begin() as connection:
                    return await connection.run_sync(work)
            except IntegrityError:
                logger.debug("concurrent insert of the same scope; retrying with the winner's row")
        async with self._engine.begin() as connection:
            return await connection.run_sync(work)

    async def _write(self, work: Callable[[Connection], _T]) -> _T:
        """Run `work` in one transaction, and once more if it lost a race to insert the same scope
        (or binding): the unique constraint rejected our row, so the second run finds theirs."""
        return await self._run(work, retry=True)


def _current_conversation(
    connection: Connection, platform: str, chat_id: str, thread_id: str
) -> int:
    key = {"platform": platform, "chat_id": chat_id, "thread_id": thread_id}
    row = connection.execute(_CURRENT_CONVERSATION, key).one_or_none()
    if row is None:
        return _insert_scope(connection, platform, chat_id, thread_id)[1]
    scope_id, conversation_id = row
    if conversation_id is not None:
        return cast(int, conversation_id)
    # Unreachable through this API (scopes are born with a conversation); repairs rows written by
    # hand.
    return _insert_conversation(connection, scope_id)


def _turn_binding(
    connection: Connection, platform: str, chat_id: str, thread_id: str
) -> BindingRecord | None:
    key = {"platform": platform, "chat_id": chat_id, "thread_id": thread_id}
    rows = {row[0]: row[1:] for row in connection.execute(_TURN_BINDINGS, key)}
    for candidate in (thread_id, "") if thread_id else (thread_id,):
        if candidate in rows:
            return _binding_record(platform, chat_id, candidate, rows[candidate])
    return None


def _scope_id(connection: Connection, platform: str, chat_id: str, thread_id: str) -> int | None:
    key = {"platform": platform, "chat_id": chat_id, "thread_id": thread_id}
    return cast("int | None", connection.execute(_SCOPE_ID, key).scalar())


def _insert_scope(
    connection: Connection, platform: str, chat_id: str, thread_id: str
) -> tuple[int, int]:
    """Insert a scope together with its first conversation; returns both ids. Every scope has a
    conversation from birth, so `current_conversation` never races on an empty scope."""
    key = {"platform": platform, "chat_id": chat_id, "thread_id": thread_id}
    scope_id = cast(int, connection.execute(_INSERT_SCOPE, key).scalar_one())
    return scope_id, _insert_conversation(connection, scope_id)


def _insert_conversation(connection: Connection, scope_id: int) -> int:
    values = {"scope_id": scope_id, "started_at": utcnow()}
    return cast(int, connection.execute(_INSERT_CONVERSATION, values).scalar_one())
