"""Per-scope locks that hold across processes: PostgreSQL advisory locks.

A turn holds its scope from before its user message is stored until its answer is, with a
session-level advisory lock on `key` (a 64-bit hash of the scope). The lock belongs to the
connection's session: a process that dies drops its connections and the server their locks, so
no scope stays locked after a crash.

One session holds many keys, so the process keeps one long-lived "holder" connection for them:
a scope no one holds is taken there with `pg_try_advisory_lock` and let go with
`pg_advisory_unlock`, two short statements, one at a time on that connection. Only a scope held
elsewhere (another process) costs a connection: the turn waits on one of its own with
`pg_advisory_lock`, which PostgreSQL queues fairly, so turns of one scope run in the order they
asked, in every process; it keeps the lock there for its life. So N answers at once need one
connection, plus one per answer waiting behind another process's. The core's in-process lock
already orders one scope's turns in the process; a second hold of a key the holder has (a caller
without that lock) waits on a connection of its own too, so the holder never takes a key twice.

If the holder connection is lost, every lock on it is gone with it: that is logged once, the
turns holding them run to their end, and new turns take their locks on a new holder.

The connections are without transactions (autocommit: a turn that waits or streams for minutes
is an idle session, not an idle transaction) and apart from the repository's, so turns holding
scopes never take the connections its calls need. A connection that might still hold a lock it
should not (a wait cancelled, an unlock that failed) is closed, never returned to the pool.

SQLite needs none of this: one process answers per file (`core.answerer_lock`) and the core's
in-process lock orders its turns.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Iterable
from contextlib import asynccontextmanager
from typing import Any, Final, TypeVar

from sqlalchemy import text
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import AsyncConnection, create_async_engine

from storage.records import ScopeKey

logger = logging.getLogger(__name__)

_T = TypeVar("_T")

# Connections kept open between turns (the holder among them); more are opened while more
# turns wait behind other processes at once.
LOCK_POOL_SIZE: Final = 3
_TRY_LOCK: Final = text("SELECT pg_try_advisory_lock(:key)")
_LOCK: Final = text("SELECT pg_advisory_lock(:key)")
_UNLOCK: Final = text("SELECT pg_advisory_unlock(:key)")
_UNLOCK_ALL: Final = text("SELECT pg_advisory_unlock_all()")
# The same, sent on the holder through the driver (asyncpg prepares and caches them).
_TRY_LOCK_SQL: Final = "SELECT pg_try_advisory_lock($1)"
_UNLOCK_SQL: Final = "SELECT pg_advisory_unlock($1)"


def scope_lock_key(scope: ScopeKey) -> int:
    """The scope's advisory lock key: the same in every process (a hash of its three parts, not
    Python's `hash`, which changes per process). Two scopes sharing a key only wait for each
    other; with 64 bits that stays theoretical."""
    name = "\x1f".join((scope.platform, scope.chat_id, scope.thread_id)).encode()
    digest = hashlib.blake2b(name, digest_size=8, person=b"gptsbot.scope").digest()
    return int.from_bytes(digest, "big", signed=True)


class _Holder:
    """The connection holding this process's uncontended scope locks, and the keys it holds."""

    def __init__(self, connection: AsyncConnection, driver: Any) -> None:
        self.connection = connection
        self.driver = driver  # the asyncpg connection under it: one round trip per statement
        self.keys: set[int] = set()
        self.lost = False


class AdvisoryLocks:
    """Scope locks on the PostgreSQL database at `url` (see the module's docstring)."""

    def __init__(self, url: str | URL) -> None:
        self._engine = create_async_engine(
            url,
            isolation_level="AUTOCOMMIT",
            pool_size=LOCK_POOL_SIZE,
            max_overflow=-1,
            # A pooled connection the server dropped (a restart) is replaced before a lock.
            pool_pre_ping=True,
            hide_parameters=True,
        )
        self._holder: _Holder | None = None
        # One statement at a time on the holder (and one reconnection when it is lost).
        self._holder_turn = asyncio.Lock()
        # Holder statements left to finish after their turn was cancelled (see `_uninterrupted`).
        self._unfinished: set[asyncio.Task[Any]] = set()

    async def close(self) -> None:
        while self._unfinished:
            await asyncio.gather(*self._unfinished, return_exceptions=True)
        if self._holder is not None and not self._holder.lost:
            await _discard(self._holder.connection)
        await self._engine.dispose()

    @asynccontextmanager
    async def hold(
        self, scope: ScopeKey, on_busy: Callable[[], Awaitable[None]] | None = None
    ) -> AsyncIterator[None]:
        """Hold the scope's lock, waiting for another holder (any process) to let go first.
        `on_busy` is awaited before waiting, only when the scope is held; what it raises is
        raised here, without the lock."""
        key = scope_lock_key(scope)
        holder = await self._uninterrupted(self._take(key), undo=lambda h: self._let_go(h, key))
        if holder is not None:
            try:
                yield
            finally:
                if not await self._uninterrupted(self._give_back(holder, key)):
                    logger.warning("the lock of %s was no longer held", scope)
            return
        connection = await self._wait_for(key, on_busy)
        try:
            yield
        finally:
            await _release(connection, key, scope)

    @asynccontextmanager
    async def free(self, scopes: Iterable[ScopeKey]) -> AsyncIterator[set[ScopeKey]]:
        """Hold, for the block, those of `scopes` that no one holds now (never waits); yields
        them. A scope no live turn holds has no answer streaming in any process. On a connection
        of its own: on the holder, a key this process holds would be taken again."""
        connection = await self._engine.connect()
        try:
            held = set()
            for scope in set(scopes):
                if await connection.scalar(_TRY_LOCK, {"key": scope_lock_key(scope)}):
                    held.add(scope)
            yield held
            await connection.execute(_UNLOCK_ALL)
        except BaseException:
            await _discard(connection)
            raise
        await connection.close()

    # -- on the holder -------------------------------------------------------------------------

    async def _take(self, key: int) -> _Holder | None:
        """The holder, if it took the key now; None if someone (maybe this process) holds it."""
        async with self._holder_turn:
            holder = await self._live_holder()
            if key in holder.keys:
                return None
            try:
                taken = await holder.driver.fetchval(_TRY_LOCK_SQL, key)
            except Exception as exc:
                await self._lose(holder, exc)
                holder = await self._live_holder()  # once more, on a new connection
                taken = await holder.driver.fetchval(_TRY_LOCK_SQL, key)
            if not taken:
                return None
            holder.keys.add(key)
            return holder

    async def _give_back(self, holder: _Holder, key: int) -> bool:
        """Unlock the key on the holder; False if it was not held there (never expected)."""
        async with self._holder_turn:
            if holder.lost:
                return True  # logged when it was lost, with every lock it held
            try:
                released = bool(await holder.driver.fetchval(_UNLOCK_SQL, key))
            except Exception as exc:
                await self._lose(holder, exc)
                return True
            holder.keys.discard(key)
            return released

    async def _let_go(self, holder: _Holder | None, key: int) -> None:
        """Undo a take whose turn was cancelled meanwhile."""
        if holder is not None:
            await self._give_back(holder, key)

    async def _live_holder(self) -> _Holder:
        """The holder, connected first if there is none (called with `_holder_turn` held)."""
        if self._holder is None or self._holder.lost:
            connection = await self._engine.connect()
            raw = await connection.get_raw_connection()
            self._holder = _Holder(connection, raw.driver_connection)
        return self._holder

    async def _lose(self, holder: _Holder, exc: Exception) -> None:
        """The holder failed: its session, and every lock on it, is gone (or must go now)."""
        logger.warning(
            "the scope locks' connection was lost, with the locks of %d running turns: %s",
            len(holder.keys),
            exc,
        )
        holder.lost = True
        await _discard(holder.connection)

    async def _uninterrupted(
        self,
        statement: Coroutine[Any, Any, _T],
        undo: Callable[[_T], Coroutine[Any, Any, None]] | None = None,
    ) -> _T:
        """Run a holder statement to its end even if the turn is cancelled meanwhile: cut short,
        it would leave the shared connection unusable. A cancelled turn's take is then undone."""
        task = asyncio.ensure_future(statement)
        try:
            return await asyncio.shield(task)
        except asyncio.CancelledError:
            self._unfinished.add(task)
            task.add_done_callback(lambda done: self._finished(done, undo))
            raise

    def _finished(
        self, task: asyncio.Task[Any], undo: Callable[[Any], Coroutine[Any, Any, None]] | None
    ) -> None:
        self._unfinished.discard(task)
        if task.cancelled():
            return
        if (exc := task.exception()) is not None:
            logger.debug("a scope lock statement failed after its turn ended: %r", exc)
        elif undo is not None:
            undone = asyncio.ensure_future(undo(task.result()))
            self._unfinished.add(undone)
            undone.add_done_callback(lambda done: self._finished(done, None))

    # -- on a connection of the turn's own -------------------------------------------------

    async def _wait_for(
        self, key: int, on_busy: Callable[[], Awaitable[None]] | None
    ) -> AsyncConnection:
        """A connection holding the key, once its holder (any process) has let it go."""
        connection = await self._engine.connect()
        try:
            if on_busy is not None:
                try:
                    await on_busy()
                except BaseException:
                    await connection.close()  # nothing held: back to the pool
                    raise
            await connection.execute(_LOCK, {"key": key})
        except BaseException:
            if not connection.closed:
                await _discard(connection)
            raise
        return connection


async def _release(connection: AsyncConnection, key: int, scope: ScopeKey) -> None:
    """Unlock and return the connection to the pool; on any failure close it instead (which
    drops its locks on the server), and log it: the turn itself is over."""
    try:
        released = await connection.scalar(_UNLOCK, {"key": key})
    except Exception as exc:
        logger.warning("the lock of %s was dropped with its connection: %s", scope, exc)
        await _discard(connection)
        return
    except BaseException:
        await _discard(connection)
        raise
    if not released:
        logger.warning("the lock of %s was no longer held (its connection was lost)", scope)
        await _discard(connection)
        return
    await connection.close()


async def _discard(connection: AsyncConnection) -> None:
    """Close the connection's session for good: the server drops every lock it held."""
    try:
        await connection.invalidate()
        await connection.close()
    except Exception as exc:
        logger.debug("closing a lock connection failed: %s", type(exc).__name__)
