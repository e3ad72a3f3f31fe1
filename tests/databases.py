"""The databases tests run on: SQLite always, PostgreSQL when GPTSBOT_TEST_PG_URL is set.

    GPTSBOT_TEST_PG_URL=postgresql+asyncpg://postgres@127.0.0.1:5432/postgres pytest -q

The URL names a server and a database to connect to for administration. The session creates
a database of its own there (`gptsbot_test_<random>`), gives each PostgreSQL test an empty
schema in it, and drops it at the end. Unset, the PostgreSQL variants are skipped (the run's
header and each skip say so); set but unreachable, they fail: CI sets it.

Fixtures: `db_url` (parametrized: `[sqlite]` and `[postgresql]`), `pg_url` (PostgreSQL only),
and `sqlite_url`; `rows` and `scalar` read a database from outside the repository.
"""

from __future__ import annotations

import asyncio
import os
import secrets
from collections.abc import Coroutine, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import pytest
import pytest_asyncio
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

PG_URL_ENV = "GPTSBOT_TEST_PG_URL"
BACKENDS = ["sqlite", "postgresql"]
# How long the reset between tests waits for a lock before failing instead of hanging.
RESET_LOCK_TIMEOUT = "10s"

_T = TypeVar("_T")


def _configured() -> str:
    return os.environ.get(PG_URL_ENV, "").strip()


def _shown(url: str) -> str:
    return make_url(url).render_as_string(hide_password=True)


def pytest_report_header() -> str:
    url = _configured()
    if not url:
        return f"postgresql: {PG_URL_ENV} is unset, the PostgreSQL variants are skipped"
    return f"postgresql: {_shown(url)} ({PG_URL_ENV})"


def _in_a_thread(coroutine: Coroutine[Any, Any, _T]) -> _T:
    """Run `coroutine` to its end in a loop of its own: fixtures may be set up from inside the
    test's event loop (an async fixture asking for one), where asyncio.run is refused."""
    with ThreadPoolExecutor(1) as executor:
        return executor.submit(asyncio.run, coroutine).result()


async def execute(url: str, *statements: str) -> None:
    """Run statements outside any transaction (CREATE DATABASE refuses one)."""
    engine = create_async_engine(url, poolclass=NullPool, isolation_level="AUTOCOMMIT")
    try:
        async with engine.connect() as connection:
            for statement in statements:
                await connection.execute(text(statement))
    finally:
        await engine.dispose()


async def rows(url: str, sql: str, **params: Any) -> list[tuple[Any, ...]]:
    """The rows of one query, read through a connection of the test's own."""
    engine = create_async_engine(url, poolclass=NullPool)
    try:
        async with engine.connect() as connection:
            result = await connection.execute(text(sql), params)
            return [tuple(row) for row in result]
    finally:
        await engine.dispose()


async def scalar(url: str, sql: str, **params: Any) -> Any:
    [(value,)] = await rows(url, sql, **params)
    return value


@pytest.fixture(scope="session")
def pg_database() -> Iterator[str]:
    """A database of this test session's own on the server of GPTSBOT_TEST_PG_URL; its URL."""
    admin = _configured()
    if not admin:
        pytest.skip(f"{PG_URL_ENV} is unset: the PostgreSQL variant is skipped")
    name = f"gptsbot_test_{secrets.token_hex(4)}"
    try:
        _in_a_thread(execute(admin, f'CREATE DATABASE "{name}"'))
    except Exception as exc:
        pytest.fail(f"{PG_URL_ENV} is set, but {_shown(admin)} is unusable: {exc}", pytrace=False)
    url = make_url(admin).set(database=name).render_as_string(hide_password=False)
    try:
        yield url
    finally:
        _in_a_thread(execute(admin, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


async def reset_pg(url: str) -> None:
    """An empty database for the next test: every session still connected is ended (a process
    a test killed, an engine it left open), then the schema is dropped and made anew."""
    await execute(
        url,
        f"SET lock_timeout = '{RESET_LOCK_TIMEOUT}'",
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
        " WHERE datname = current_database() AND pid <> pg_backend_pid()",
        "DROP SCHEMA public CASCADE",
        "CREATE SCHEMA public",
    )


@pytest_asyncio.fixture
async def pg_url(request: pytest.FixtureRequest) -> str:
    """An empty PostgreSQL database (skipped when GPTSBOT_TEST_PG_URL is unset)."""
    url: str = request.getfixturevalue("pg_database")
    await reset_pg(url)
    return url


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite+aiosqlite:///{tmp_path / 'gptsbot.db'}"


@pytest_asyncio.fixture(params=BACKENDS)
async def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A new empty database: an SQLite file under tmp_path, then PostgreSQL (see the module)."""
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'gptsbot.db'}"
    url: str = request.getfixturevalue("pg_database")
    await reset_pg(url)
    return url
