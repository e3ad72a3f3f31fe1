"""How the repository's calls run: one transaction each, on the repository's own thread for an
SQLite file (the stdlib driver: one hand-off per call, where aiosqlite makes three or four per
statement) or on the async engine elsewhere (PostgreSQL, in-memory SQLite); a call that finds
the database locked by another process past SQLite's busy timeout is tried again for a bounded
time, then raises `StorageBusy`. `Repository` builds its calls on this.
"""

from __future__ import annotations

import asyncio
import logging
import os
import stat
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from types import TracebackType
from typing import Final, Self, TypeVar

from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.ext.asyncio import AsyncEngine

from storage import queries
from storage.db_thread import DbThread
from storage.engine import (
    SQLITE_BUSY_TIMEOUT_MS,
    create_engines,
    is_locked,
    sqlite_file,
    upgrade_to_head,
)
from storage.scope_locks import AdvisoryLocks

logger = logging.getLogger(__name__)

# A call that finds the database locked past SQLite's busy timeout (another process holds its
# write lock) is tried again after pauses that double up to the maximum, for at most this long.
LOCK_RETRY_S: Final = 30.0
FIRST_LOCK_PAUSE_S: Final = 0.1
MAX_LOCK_PAUSE_S: Final = 2.0

_T = TypeVar("_T")


class StorageBusy(Exception):
    """The database stayed locked by another connection for `waited_s` seconds: nothing of the
    call was stored."""

    def __init__(self, waited_s: float) -> None:
        super().__init__(f"the database stayed locked for {waited_s:.0f} s")
        self.waited_s = waited_s


class DatabaseReplaced(Exception):
    """The SQLite file at the database's path is not the one the repository has open."""

    def __init__(self, path: Path) -> None:
        super().__init__(f"{path} was removed or replaced since it was opened")


def _file_identity(path: Path) -> tuple[int, int] | None:
    """(device, inode) of the regular file at `path`; None when there is none."""
    try:
        found = path.stat()
    except OSError:
        return None
    return (found.st_dev, found.st_ino) if stat.S_ISREG(found.st_mode) else None


class Transactions:
    """The engines and the way each call runs; see the module's docstring."""

    def __init__(
        self,
        engine: AsyncEngine,
        thread_engine: Engine | None = None,
        *,
        lock_retry_s: float = LOCK_RETRY_S,
    ) -> None:
        self._engine = engine
        self._thread_engine = thread_engine
        self._db_thread = DbThread("gptsbot-db") if thread_engine else None
        self._lock_retry_s = lock_retry_s
        self._thread_connection: Connection | None = None  # used in the database's thread only
        # The SQLite file the thread's connection opened (see `ping`).
        self._file_identity: tuple[int, int] | None = None
        # Called with the seconds each call took (the core's metrics), if set.
        self.observe_call: Callable[[float], None] | None = None
        # Scope locks across processes (`Repository.hold_scope`): only where several processes can
        # share the database. They hold connections of their own, closed with the engines.
        self._scope_locks = (
            AdvisoryLocks(engine.url) if engine.dialect.name == "postgresql" else None
        )

    @classmethod
    async def open(
        cls,
        url: str,
        *,
        busy_timeout_s: float = SQLITE_BUSY_TIMEOUT_MS / 1000,
        lock_retry_s: float = LOCK_RETRY_S,
    ) -> Self:
        """Create the engine. Connects lazily and does not migrate.

        `busy_timeout_s`: how long SQLite waits for another connection's lock in one attempt;
        `lock_retry_s`: for how long a call still locked out is tried again (`StorageBusy` after).
        """
        engine, thread_engine = create_engines(url, round(busy_timeout_s * 1000))
        return cls(engine, thread_engine, lock_retry_s=lock_retry_s)

    async def close(self) -> None:
        if self._scope_locks is not None:
            await self._scope_locks.close()
        if self._db_thread is not None and self._thread_engine is not None:
            await self._db_thread.run(self._close_in_thread)
            self._db_thread.stop()
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
            await connection.run_sync(upgrade_to_head)
        logger.info("database schema up to date in %.0f ms", (time.perf_counter() - started) * 1000)

    async def ping(self) -> None:
        """Read the schema's version once, without waiting out another process's lock: raises
        when the database does not answer. For an SQLite file, also `DatabaseReplaced` when the
        file at its path is no longer the one the repository has open (removed, replaced, made
        a folder): its connection would go on writing into a file nobody will find again. The
        file found there is never opened: another connection could disturb the open one's log."""
        if self._db_thread is None:
            async with self._engine.connect() as connection:
                await connection.run_sync(queries.read_version)
            return
        await self._db_thread.run(self._ping_in_thread)

    def _ping_in_thread(self) -> None:
        self._transaction_in_thread(queries.read_version)
        assert self._thread_engine is not None
        path = sqlite_file(self._thread_engine.url)
        if path is not None and _file_identity(path) != self._file_identity:
            raise DatabaseReplaced(path)
        if path is not None and not os.access(path, os.R_OK | os.W_OK):
            raise PermissionError(f"no permission to read and write {path}")

    # -- internals -----------------------------------------------------------------------------

    async def _run(self, work: Callable[[Connection], _T], *, retry: bool = False) -> _T:
        """Run `work` in one transaction: in the repository's thread, or on the async engine.
        While another process holds the database's lock, try again for up to `lock_retry_s`."""
        started = time.monotonic()
        pause = FIRST_LOCK_PAUSE_S
        while True:
            try:
                result = await self._run_once(work, retry)
            except OperationalError as exc:
                if not is_locked(exc):
                    raise
                waited = time.monotonic() - started
                if waited >= self._lock_retry_s:
                    # The error's text holds the SQL, never the values (hide_parameters).
                    raise StorageBusy(waited) from exc
                if pause == FIRST_LOCK_PAUSE_S:
                    logger.warning(
                        "the database is locked by another connection; retrying for up to %.0f s",
                        self._lock_retry_s,
                    )
                await asyncio.sleep(min(pause, self._lock_retry_s - waited))
                pause = min(pause * 2, MAX_LOCK_PAUSE_S)
                continue
            if pause != FIRST_LOCK_PAUSE_S:
                logger.info("the database was free again after %.1f s", time.monotonic() - started)
            if self.observe_call is not None:
                self.observe_call(time.monotonic() - started)
            return result

    async def _run_once(self, work: Callable[[Connection], _T], retry: bool) -> _T:
        if self._db_thread is None:
            return await self._run_async(work, retry=retry)
        return await self._db_thread.run(partial(self._run_in_thread, work, retry))

    def _run_in_thread(self, work: Callable[[Connection], _T], retry: bool) -> _T:
        if retry:
            try:
                return self._transaction_in_thread(work)
            except IntegrityError:
                logger.debug("concurrent insert of the same scope; retrying with the winner's row")
        return self._transaction_in_thread(work)

    def _transaction_in_thread(self, work: Callable[[Connection], _T]) -> _T:
        # The thread keeps one connection: no pool checkout, check-in and reset per call (a
        # turn makes three or four calls). A transaction that fails is rolled back by `begin`;
        # a connection the driver lost reconnects on its next use.
        connection = self._thread_connection
        if connection is None:
            assert self._thread_engine is not None
            connection = self._thread_connection = self._thread_engine.connect()
            path = sqlite_file(self._thread_engine.url)
            self._file_identity = _file_identity(path) if path is not None else None
        with connection.begin():
            return work(connection)

    def _save_in_thread(self, answer_id: int, work: Callable[[Connection], None]) -> None:
        try:
            self._transaction_in_thread(work)
        except Exception as exc:
            # The type only: the error's text could quote the answer.
            logger.warning("answer %s not saved while streaming: %s", answer_id, type(exc).__name__)

    def _close_in_thread(self) -> None:
        if self._thread_connection is not None:
            self._thread_connection.close()
            self._thread_connection = None
        assert self._thread_engine is not None
        self._thread_engine.dispose()

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
