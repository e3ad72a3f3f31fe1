"""Looking at a repository from outside: its SQLite file through the stdlib, the SQL it sends."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import closing, contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import event

from storage import Repository


@contextmanager
def raw(db_path: Path) -> Iterator[sqlite3.Connection]:
    """A plain stdlib connection, to look at the file from outside the repository."""
    with closing(sqlite3.connect(db_path)) as connection:
        yield connection


@contextmanager
def captured_sql(
    repository: Repository, starting_with: str = ""
) -> Iterator[list[tuple[str, Any]]]:
    """The SQL the repository sends while the block runs, as (statement, parameters), as it is
    sent; only the statements `starting_with` that text, when given."""
    statements: list[tuple[str, Any]] = []
    # An SQLite file is used through a thread of the repository's own (the stdlib driver).
    engines = [
        engine
        for engine in (repository._engine.sync_engine, repository._thread_engine)
        if engine is not None
    ]

    def record(_conn: Any, _cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        if statement.startswith(starting_with):
            statements.append((statement, parameters))

    for engine in engines:
        event.listen(engine, "before_cursor_execute", record)
    try:
        yield statements
    finally:
        for engine in engines:
            event.remove(engine, "before_cursor_execute", record)


def query_plans(db_path: Path, statements: list[tuple[str, Any]]) -> list[str]:
    """SQLite's EXPLAIN QUERY PLAN of each captured (sql, params), its steps joined by " | "."""
    with raw(db_path) as connection:
        return [
            " | ".join(row[3] for row in connection.execute(f"EXPLAIN QUERY PLAN {sql}", params))
            for sql, params in statements
        ]
