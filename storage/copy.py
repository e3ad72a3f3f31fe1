"""Copy everything one database holds into another, ids included (`gptsbot db copy`): an install
moving from its SQLite file to PostgreSQL keeps its history, bindings and all.

Both databases are first brought to the newest schema. The target must be empty (every table of
the schema); the copy is one transaction there, so a copy that fails leaves it empty. Each table
goes over in id order and in batches, parents before children, every column as it is; on
PostgreSQL each id sequence is then moved past the highest id copied, so the rows the bot adds
next get new ids.
"""

from __future__ import annotations

import logging
from typing import Final

from sqlalchemy import Table, func, insert, select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from storage.engine import SQLITE_BUSY_TIMEOUT_MS, create_engines, upgrade_to_head
from storage.models import Base

logger = logging.getLogger(__name__)

# Rows read and inserted at a time: memory stays flat whatever the history holds.
COPY_BATCH_ROWS: Final = 1000


class TargetNotEmpty(Exception):
    """The target database holds rows already: a copy would mix two histories (or collide)."""

    def __init__(self, table: str, rows: int) -> None:
        super().__init__(f"the target database is not empty ({table}: {rows} rows)")
        self.table = table
        self.rows = rows


async def copy_database(
    source_url: str, target_url: str, *, batch_rows: int = COPY_BATCH_ROWS
) -> dict[str, int]:
    """Copy every table from `source_url` into the empty database at `target_url`; returns the
    rows copied per table. Raises `TargetNotEmpty`, copying nothing, if the target has rows."""
    engines: list[AsyncEngine] = []
    try:
        source = _engine(source_url, engines)
        target = _engine(target_url, engines)
        for engine in (source, target):
            async with engine.begin() as connection:
                await connection.run_sync(upgrade_to_head)
        async with source.connect() as reading, target.begin() as writing:
            tables = Base.metadata.sorted_tables  # parents first
            for table in tables:
                found = await writing.scalar(select(func.count()).select_from(table))
                if found:
                    raise TargetNotEmpty(table.name, found)
            copied = {}
            # A snapshot of the source for the whole copy (a transaction; on PostgreSQL a
            # repeatable read, so rows written meanwhile are all in or all out).
            if reading.dialect.name == "postgresql":
                await reading.execution_options(isolation_level="REPEATABLE READ")
            async with reading.begin():
                for table in tables:
                    copied[table.name] = await _copy_table(reading, writing, table, batch_rows)
            if writing.dialect.name == "postgresql":
                for table in tables:
                    await _advance_sequence(writing, table)
        return copied
    finally:
        for engine in engines:
            await engine.dispose()


def _engine(url: str, engines: list[AsyncEngine]) -> AsyncEngine:
    engine, thread_engine = create_engines(url, SQLITE_BUSY_TIMEOUT_MS)
    if thread_engine is not None:
        thread_engine.dispose()  # the copy runs on the async engine alone
    engines.append(engine)
    return engine


async def _copy_table(
    reading: AsyncConnection, writing: AsyncConnection, table: Table, batch_rows: int
) -> int:
    rows = 0
    query = select(table).order_by(*table.primary_key.columns)
    result = await reading.stream(query.execution_options(yield_per=batch_rows))
    async for batch in result.partitions(batch_rows):
        await writing.execute(insert(table), [row._asdict() for row in batch])
        rows += len(batch)
    logger.info("copied %s: %d rows", table.name, rows)
    return rows


async def _advance_sequence(writing: AsyncConnection, table: Table) -> None:
    """Move the table's id sequence to its highest id (nothing for an empty table or one without
    a sequence: setval of NULL does nothing)."""
    for column in table.primary_key.columns:
        await writing.execute(
            select(
                func.setval(func.pg_get_serial_sequence(table.name, column.name), func.max(column))
            ).select_from(table)
        )
