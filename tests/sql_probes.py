"""Looking at a repository from outside: its SQLite file through the stdlib, the SQL it sends."""

from __future__ import annotations

import re
import sqlite3
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, closing, contextmanager
from pathlib import Path
from typing import Final

from sqlalchemy.engine import Connection

from storage import Repository

_TRANSACTION: Final = ("BEGIN", "COMMIT", "ROLLBACK")


@contextmanager
def raw(db_path: Path) -> Iterator[sqlite3.Connection]:
    """A plain stdlib connection, to look at the file from outside the repository."""
    with closing(sqlite3.connect(db_path)) as connection:
        yield connection


@asynccontextmanager
async def captured_sql(repository: Repository, matching: str = "") -> AsyncIterator[list[str]]:
    """The SQL the repository's SQLite file runs while the block runs, as SQLite traces it (its
    values in place), without the transactions' BEGIN and COMMIT; only the statements that
    start by `matching` (a regular expression), when given. It sees what SQLAlchemy runs and
    what `storage.direct` runs on the driver's connection alike."""
    statements: list[str] = []
    pattern = re.compile(matching)

    def record(statement: str) -> None:
        if pattern.match(statement) and not statement.startswith(_TRANSACTION):
            statements.append(statement)

    def trace(callback: Callable[[str], None] | None) -> Callable[[Connection], None]:
        def install(connection: Connection) -> None:
            driver = connection.connection.driver_connection
            assert isinstance(driver, sqlite3.Connection), "an SQLite file's repository"
            driver.set_trace_callback(callback)

        return install

    # Installed on the repository's own thread, between its calls.
    await repository._run(trace(record))
    try:
        yield statements
    finally:
        await repository._run(trace(None))


def query_plans(db_path: Path, statements: list[str]) -> list[str]:
    """SQLite's EXPLAIN QUERY PLAN of each captured statement, its steps joined by " | "."""
    with raw(db_path) as connection:
        return [
            " | ".join(row[3] for row in connection.execute(f"EXPLAIN QUERY PLAN {sql}"))
            for sql in statements
        ]
