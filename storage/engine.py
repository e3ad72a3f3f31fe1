"""Engines for the repository: SQLite's pragmas and pool reset, the migrations' Alembic config,
and what "the database is locked" looks like.

Engines hide statement parameters in their errors (`hide_parameters=True`): an error's text is
logged, and the parameters of a message's INSERT are what the user wrote.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Final

from sqlalchemy import create_engine, event, text
from sqlalchemy.engine import URL, Connection, Engine, make_url
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

if TYPE_CHECKING:
    from alembic.config import Config
    from sqlalchemy.engine.interfaces import DBAPIConnection
    from sqlalchemy.pool import ConnectionPoolEntry, PoolResetState

MIGRATIONS_DIR: Final = Path(__file__).resolve().with_name("migrations")
# How long an SQLite connection waits for another connection's write lock before failing.
SQLITE_BUSY_TIMEOUT_MS: Final = 5000
_SQLITE_PRAGMAS: Final = (
    # Readers don't block the writer and vice versa; persistent in the file once set.
    "PRAGMA journal_mode = WAL",
    # Durable across application crashes; in WAL mode only a power loss can drop the last commits.
    "PRAGMA synchronous = NORMAL",
    "PRAGMA foreign_keys = ON",
)
# SQLite's "database is locked" / "database table is locked" (SQLITE_BUSY, SQLITE_LOCKED).
_SQLITE_BUSY_CODES: Final = frozenset({5, 6})
# A UNIQUE index or PRIMARY KEY refused a row: SQLite's extended codes, PostgreSQL's SQLSTATE.
_SQLITE_UNIQUE_CODES: Final = frozenset({1555, 2067})
_PG_UNIQUE_VIOLATION: Final = "23505"
# Held by the transaction that migrates a PostgreSQL database: processes starting at once on an
# empty database would each create the tables (and all but one fail); the others wait, then find
# it up to date. Any fixed 64-bit number; scope locks are hashes (storage.scope_locks).
_MIGRATING: Final = text("SELECT pg_advisory_xact_lock(7220308217460930609)")


def alembic_config() -> Config:
    """Alembic config for the bundled migrations, built in code: no ini file, no logging setup."""
    from alembic.config import Config

    config = Config()
    # ConfigParser interpolation: a literal "%" in the install path must be doubled.
    config.set_main_option("script_location", str(MIGRATIONS_DIR).replace("%", "%%"))
    config.set_main_option("path_separator", "os")
    return config


def head_revision() -> str:
    """The newest migration's revision: what `upgrade_to_head` brings a database to."""
    from alembic.script import ScriptDirectory

    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None
    return head


def upgrade_to_head(connection: Connection) -> None:
    from alembic import command

    if connection.dialect.name == "postgresql":
        connection.execute(_MIGRATING)  # released when the migration's transaction ends
    config = alembic_config()
    # env.py migrates on this connection instead of opening its own engine.
    config.attributes["connection"] = connection
    command.upgrade(config, "head")


def sqlite_file(url: str | URL) -> Path | None:
    """The file of an SQLite URL; None for other databases, in-memory SQLite and URI filenames
    (which SQLite resolves itself)."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        return None
    database = parsed.database or ""
    if not database or database == ":memory:" or database.startswith("file:"):
        return None
    return Path(database)


def is_locked(exc: BaseException) -> bool:
    """Whether `exc` says another connection holds the database's lock (still, after the busy
    timeout): worth trying again later, unlike any other error."""
    if not isinstance(exc, OperationalError):
        return False
    code = getattr(exc.orig, "sqlite_errorcode", None)
    if code is not None:
        return code & 0xFF in _SQLITE_BUSY_CODES
    return "database is locked" in str(exc.orig) or "database table is locked" in str(exc.orig)


def is_unique_violation(exc: BaseException) -> bool:
    """Whether `exc` is a row refused by a unique index (not a foreign key, CHECK or NOT NULL)."""
    if not isinstance(exc, IntegrityError):
        return False
    code = getattr(exc.orig, "sqlite_errorcode", None)
    if code is not None:
        return code in _SQLITE_UNIQUE_CODES
    return getattr(exc.orig, "sqlstate", None) == _PG_UNIQUE_VIOLATION


def create_engines(url: str, busy_timeout_ms: int) -> tuple[AsyncEngine, Engine | None]:
    """The async engine, and for an SQLite file a plain one for the repository's own thread."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        return create_async_engine(parsed, hide_parameters=True), None
    path = sqlite_file(parsed)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
    engine = create_async_engine(parsed, pool_reset_on_return=None, hide_parameters=True)
    _listen_sqlite(engine.sync_engine, busy_timeout_ms)
    if path is None:
        return engine, None
    thread_engine = create_engine(
        parsed.set(drivername="sqlite"), pool_reset_on_return=None, hide_parameters=True
    )
    _listen_sqlite(thread_engine, busy_timeout_ms)
    return engine, thread_engine


def _listen_sqlite(engine: Engine, busy_timeout_ms: int) -> None:
    def set_pragmas(dbapi_connection: DBAPIConnection, _record: ConnectionPoolEntry) -> None:
        cursor = dbapi_connection.cursor()
        try:
            # First, so that switching the journal mode below also waits instead of failing.
            cursor.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
            for pragma in _SQLITE_PRAGMAS:
                cursor.execute(pragma)
        finally:
            cursor.close()

    event.listen(engine, "connect", set_pragmas)
    event.listen(engine, "reset", _rollback_if_open)


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
