"""The async repository: the only way the core reads and writes the database.

It takes and returns frozen records (`storage.records`), never ORM rows: a scope is a `ScopeKey`,
a message to store a `NewMessage`. Each public call is one short transaction of one or two
statements on the hot paths (`current_conversation` on an existing scope is one SELECT,
`add_message` one INSERT, `history` one SELECT); `start_turn` does the three a turn starts with
(and the binding lookup, if asked) in one transaction. The same code runs on SQLite (the default)
and PostgreSQL: the SQL (`storage.queries`) is portable, and the SQLite pragmas are applied only
when the dialect is SQLite.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Final, Self, TypeVar, cast

from sqlalchemy import create_engine, event
from sqlalchemy.engine import URL, Connection, Engine, make_url
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from storage import queries
from storage.models import utcnow
from storage.records import BindingRecord, MessageRecord, NewMessage, ScopeKey, TurnStart

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


class Repository:
    """Conversations, messages and GPT bindings, keyed by scope (`ScopeKey`).

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

    async def start_turn(
        self,
        scope: ScopeKey,
        message: NewMessage,
        *,
        history_limit: int,
        with_binding: bool = False,
    ) -> TurnStart:
        """One transaction for the start of a turn: the scope's current conversation (created
        when missing), its last `history_limit` messages, then `message` (the user's) stored.

        The same as `current_conversation`, `history` and `add_message` in a row, in one round
        of the connection instead of three. With `with_binding`, it also reads the scope's
        binding or, for a thread, its parent chat's: `get_binding(scope)`, then
        `get_binding(scope.parent)`, in the same transaction.
        """
        values = queries.message_values(message)

        def work(connection: Connection) -> TurnStart:
            conversation_id = queries.current_conversation(connection, scope)
            history = (
                queries.history(connection, conversation_id, history_limit)
                if history_limit > 0
                else []
            )
            binding = queries.turn_binding(connection, scope) if with_binding else None
            values["conversation_id"] = conversation_id
            message_id = queries.insert_message(connection, values)
            return TurnStart(conversation_id, history, message_id, binding)

        return await self._write(work)

    async def count_messages(self, conversation_id: int) -> int:
        return await self._run(
            lambda connection: queries.count_messages(connection, conversation_id)
        )

    # -- bindings ------------------------------------------------------------------------------

    async def get_binding(self, scope: ScopeKey) -> BindingRecord | None:
        """The binding of exactly this scope (no fallback to a parent channel or default)."""
        return await self._run(lambda connection: queries.get_binding(connection, scope))

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
        await self._write(lambda connection: queries.set_binding(connection, binding))
        return binding

    async def delete_binding(self, scope: ScopeKey) -> bool:
        """Remove the scope's own binding; True when there was one."""
        return await self._run(lambda connection: queries.delete_binding(connection, scope))

    async def bound_gpts(self, platform: str, group_id: str) -> list[str]:
        """Distinct GPT ids bound anywhere in the group (a guild), most recently bound first."""
        return await self._run(
            lambda connection: queries.bound_gpts(connection, platform, group_id)
        )

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
