"""Per-scope locks that hold across processes: PostgreSQL advisory locks.

A turn holds its scope from before its user message is stored until its answer is, with
`pg_advisory_lock(key)` (`key`: a 64-bit hash of the scope) on a connection of its own, held
only while the turn runs. The lock belongs to that connection's session: a process that dies
drops its connections and the server their locks, so no scope stays locked after a crash.
PostgreSQL queues the waiters, so turns of one scope run in the order they asked, in every
process.

The connections come from a pool of their own, without transactions (autocommit: a turn that
waits or streams for minutes is an idle session, not an idle transaction), and unbounded, so
turns holding scopes never take the connections the repository's calls need. A connection that
might still hold a lock it should not (a wait cancelled, an unlock that failed) is closed, never
returned to the pool.

SQLite needs none of this: one process answers per file (`core.answerer_lock`) and the core's
in-process lock orders its turns.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from contextlib import asynccontextmanager
from typing import Final

from sqlalchemy import text
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import AsyncConnection, create_async_engine

from storage.records import ScopeKey

logger = logging.getLogger(__name__)

# Lock connections kept open between turns; more are opened while more scopes are held at once.
LOCK_POOL_SIZE: Final = 5
_TRY_LOCK: Final = text("SELECT pg_try_advisory_lock(:key)")
_LOCK: Final = text("SELECT pg_advisory_lock(:key)")
_UNLOCK: Final = text("SELECT pg_advisory_unlock(:key)")
_UNLOCK_ALL: Final = text("SELECT pg_advisory_unlock_all()")


def scope_lock_key(scope: ScopeKey) -> int:
    """The scope's advisory lock key: the same in every process (a hash of its three parts, not
    Python's `hash`, which changes per process). Two scopes sharing a key only wait for each
    other; with 64 bits that stays theoretical."""
    name = "\x1f".join((scope.platform, scope.chat_id, scope.thread_id)).encode()
    digest = hashlib.blake2b(name, digest_size=8, person=b"gptsbot.scope").digest()
    return int.from_bytes(digest, "big", signed=True)


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

    async def close(self) -> None:
        await self._engine.dispose()

    @asynccontextmanager
    async def hold(
        self, scope: ScopeKey, on_busy: Callable[[], Awaitable[None]] | None = None
    ) -> AsyncIterator[None]:
        """Hold the scope's lock, waiting for another holder (any process) to let go first.
        `on_busy` is awaited before waiting, only when the scope is held; what it raises is
        raised here, without the lock."""
        key = scope_lock_key(scope)
        connection = await self._engine.connect()
        try:
            if not await connection.scalar(_TRY_LOCK, {"key": key}):
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
        try:
            yield
        finally:
            await _release(connection, key, scope)

    @asynccontextmanager
    async def free(self, scopes: Iterable[ScopeKey]) -> AsyncIterator[set[ScopeKey]]:
        """Hold, for the block, those of `scopes` that no one holds now (never waits); yields
        them. A scope no live turn holds has no answer streaming in any process."""
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
