"""A database at an older revision, filled as a bot would have filled it, for the migrations'
tests (SQLite and PostgreSQL alike): `fill_at_0001`, `filled_at` a later revision, and
`upgraded_from` it; `migrate` runs Alembic up or down on a URL."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from alembic import command
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

from storage import NewMessage, Repository, ScopeKey, alembic_config
from tests.databases import rows

TOPIC = ScopeKey("telegram", "-100", "7")
CHANNEL = ScopeKey("discord", "555")
NOW = datetime(2025, 11, 30, 12, tzinfo=UTC)
SCRIPTS = ScriptDirectory.from_config(alembic_config())

# The tables as revision 0001 made them (typed, so each database gets its own formats).
SCOPES = sa.table(
    "scopes", *(sa.column(name) for name in ("id", "platform", "chat_id", "thread_id"))
)
CONVERSATIONS = sa.table(
    "conversations", sa.column("id"), sa.column("scope_id"),
    sa.column("started_at", sa.DateTime(timezone=True)),
)  # fmt: skip
MESSAGES = sa.table(
    "messages",
    *(sa.column(name) for name in ("id", "conversation_id", "role", "author_name", "content",
                                   "status", "prompt_tokens", "completion_tokens", "total_tokens",
                                   "first_chunk_ms", "total_ms")),
    sa.column("platform_message_ids", sa.JSON()),
    sa.column("created_at", sa.DateTime(timezone=True)),
)  # fmt: skip
BINDINGS = sa.table(
    "bindings",
    *(sa.column(name) for name in ("scope_id", "gpt_id", "group_id", "bound_by_id",
                                   "bound_by_name")),
    sa.column("bound_at", sa.DateTime(timezone=True)),
)  # fmt: skip


async def migrate(url: str, revision: str, *, down: bool = False) -> None:
    def run(connection: Connection) -> None:
        config = alembic_config()
        config.attributes["connection"] = connection
        (command.downgrade if down else command.upgrade)(config, revision)

    await on(url, run)


async def on(url: str, work: Any) -> Any:
    """Run `work(connection)` in one transaction on the database at `url`."""
    engine = create_async_engine(url, poolclass=NullPool)
    try:
        async with engine.begin() as connection:
            return await connection.run_sync(work)
    finally:
        await engine.dispose()


async def fill_at_0001(url: str) -> None:
    """What a 0001 database holds after a while: two scopes, an old and a current conversation,
    answers of each status, a failed turn, usage figures, bindings."""
    messages = [
        # (conversation, role, author, content, status, tokens)
        (1, "user", "Ann", "forgotten", "complete", None),
        (1, "assistant", None, "old answer", "complete", (3, 4, 7)),
        (2, "user", "Ann", "first question", "complete", None),
        (2, "assistant", None, "first answer", "complete", (10, 20, 30)),
        (2, "user", "Bob", "no gpt answered", "complete", None),
        (2, "assistant", None, "", "error", None),
        (2, "user", "Ann", "second question", "complete", None),
        (2, "assistant", None, "half an ans", "partial", (11, 3, 14)),
        (3, "user", "Cy", "in discord", "complete", None),
        (3, "assistant", None, "discord answer", "complete", (1, 2, 3)),
    ]

    def fill(c: Connection) -> None:
        c.execute(sa.insert(SCOPES), [
            {"id": 1, "platform": "telegram", "chat_id": TOPIC.chat_id,
             "thread_id": TOPIC.thread_id},
            {"id": 2, "platform": "discord", "chat_id": CHANNEL.chat_id, "thread_id": ""},
        ])  # fmt: skip
        c.execute(sa.insert(CONVERSATIONS), [
            {"id": conversation_id, "scope_id": scope_id, "started_at": NOW}
            for conversation_id, scope_id in ((1, 1), (2, 1), (3, 2))
        ])  # fmt: skip
        c.execute(sa.insert(MESSAGES), [
            {"id": n, "conversation_id": conversation_id, "role": role, "author_name": author,
             "content": content, "status": status,
             **dict(zip(("prompt_tokens", "completion_tokens", "total_tokens"),
                        tokens or (None, None, None), strict=True)),
             "first_chunk_ms": 120, "total_ms": 900, "platform_message_ids": ["42"],
             "created_at": NOW}
            for n, (conversation_id, role, author, content, status, tokens)
            in enumerate(messages, start=1)
        ])  # fmt: skip
        c.execute(sa.insert(BINDINGS), [
            {"scope_id": 2, "gpt_id": "g-Discord01", "group_id": "guild-1", "bound_by_id": "9",
             "bound_by_name": "Admin", "bound_at": NOW}
        ])  # fmt: skip

    await on(url, fill)
    if url.startswith("postgresql"):
        # Rows written with their ids, as a 0001 database has them: its sequences moved on.
        for table in ("scopes", "conversations", "messages"):
            await rows(url, f"SELECT setval('{table}_id_seq', (SELECT max(id) FROM {table}))")


async def filled_at(url: str, revision: str = "0001") -> None:
    """The database at `url` filled at revision 0001 (`fill_at_0001`), then migrated to
    `revision`."""
    await migrate(url, "0001")
    await fill_at_0001(url)
    await migrate(url, revision)


def revision_before(revision: str) -> str:
    """The revision `revision` follows: a migration's test starts there, and follows it if it
    changes."""
    script = SCRIPTS.get_revision(revision)
    assert script is not None
    return str(script.down_revision)


@contextlib.asynccontextmanager
async def upgraded_from(url: str, revision: str) -> AsyncIterator[Repository]:
    """The database filled at `revision` (`filled_at`), opened and upgraded: at head, checked."""
    await filled_at(url, revision)
    async with await Repository.open(url) as repo:
        await repo.upgrade()
        versions = await rows(url, "SELECT version_num FROM alembic_version")
        assert versions == [(SCRIPTS.get_current_head(),)], versions
        yield repo


async def downgraded_after(url: str, message: NewMessage, *, to: str) -> list[Any]:
    """Fill the database at `to`, upgrade it, store `message` as a turn in CHANNEL, then
    downgrade it to `to` again: the content of each message it holds, by id."""
    async with upgraded_from(url, to) as repo:
        await repo.start_turn(CHANNEL, message, history_limit=0)
    await migrate(url, to, down=True)
    return await rows(url, "SELECT content FROM messages ORDER BY id")
