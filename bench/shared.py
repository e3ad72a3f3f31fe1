"""What several `gptsbot run` processes of one bot share in the benchmark: a fresh PostgreSQL
database (created before the run, dropped after) and a Redis key prefix of the run's own (its
keys deleted after), so runs never see each other's state.

    BENCH_PG_URL     default postgresql+asyncpg://postgres@127.0.0.1:5432/postgres (its server
                     is where the fresh database is created)
    BENCH_REDIS_URL  default redis://127.0.0.1:6379/0
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
from collections.abc import Iterator
from dataclasses import dataclass

from sqlalchemy.engine import make_url

PG_URL = os.environ.get("BENCH_PG_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/postgres")
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")


@dataclass(frozen=True)
class Shared:
    storage_url: str
    redis_url: str
    key_prefix: str


@contextlib.contextmanager
def backends() -> Iterator[Shared]:
    """A fresh database and key prefix for one run; both gone afterwards."""
    name = "gptsbot_bench_" + secrets.token_hex(4)
    prefix = "gptsbot-bench-" + secrets.token_hex(4)
    asyncio.run(_database(f"CREATE DATABASE {name}"))
    try:
        url = make_url(PG_URL).set(database=name)
        yield Shared(url.render_as_string(hide_password=False), REDIS_URL, prefix)
    finally:
        asyncio.run(_database(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        from fakes.redis_keys import forget_keys  # redis is an optional extra

        asyncio.run(forget_keys(REDIS_URL, f"{prefix}*"))


def reachable() -> str | None:
    """Why the shared backends cannot be used here, or None when they can."""
    try:
        asyncio.run(_database("SELECT 1"))
    except Exception as exc:  # any failure means "not here"
        return f"PostgreSQL at {make_url(PG_URL).render_as_string()} unreachable: {exc!r}"
    try:
        asyncio.run(_ping())
    except Exception as exc:
        return f"Redis at {REDIS_URL} unreachable: {exc!r}"
    return None


async def _database(statement: str) -> object:
    import asyncpg

    url = make_url(PG_URL)
    connection = await asyncpg.connect(
        host=url.host, port=url.port, user=url.username, password=url.password,
        database=url.database, timeout=5,
    )  # fmt: skip
    try:
        return await connection.fetchval(statement)
    finally:
        await connection.close()


async def _ping() -> None:
    from redis.asyncio import Redis

    client = Redis.from_url(REDIS_URL, socket_connect_timeout=2)
    try:
        await client.ping()
    finally:
        await client.aclose()
