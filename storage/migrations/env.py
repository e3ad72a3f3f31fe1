"""Alembic environment for gptsbot's storage.

Normally driven by `Repository.upgrade()`, which passes its open connection in
`config.attributes["connection"]` and runs this inside `AsyncConnection.run_sync`.

From the command line (to write a new revision), give it a database URL:

    alembic -c storage/alembic.ini -x url=sqlite+aiosqlite:///gptsbot.db \
        revision --autogenerate -m "what changed"

Deliberately no `logging.config.fileConfig()`: the application owns the logging configuration.
"""

from __future__ import annotations

import asyncio
import os

from alembic import context
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

from storage.models import Base

URL_ENV = "GPTSBOT_DATABASE_URL"

config = context.config
target_metadata = Base.metadata


def _url() -> str:
    url = (
        context.get_x_argument(as_dictionary=True).get("url")
        or config.get_main_option("sqlalchemy.url")
        or os.environ.get(URL_ENV)
    )
    if not url:
        raise RuntimeError(f"no database URL: pass `-x url=...` or set {URL_ENV}")
    return url


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        # SQLite can't ALTER most things in place; batch mode copies the table instead.
        render_as_batch=connection.dialect.name == "sqlite",
    )
    with context.begin_transaction():
        context.run_migrations()


async def _run_with_own_engine(url: str) -> None:
    engine = create_async_engine(url, poolclass=NullPool)
    try:
        async with engine.begin() as connection:
            await connection.run_sync(_run)
    finally:
        await engine.dispose()


def main() -> None:
    if context.is_offline_mode():
        context.configure(url=_url(), target_metadata=target_metadata, literal_binds=True)
        with context.begin_transaction():
            context.run_migrations()
        return
    connection = config.attributes.get("connection")
    if isinstance(connection, Connection):
        _run(connection)
    else:
        asyncio.run(_run_with_own_engine(_url()))


main()
