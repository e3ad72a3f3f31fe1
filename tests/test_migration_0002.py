"""Migration 0002 on a database filled at revision 0001: everything reads back through the
repository, existing answers are linked to their questions, and the new statuses are accepted.
On SQLite and PostgreSQL (`db_url`)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest
import sqlalchemy as sa
from alembic import command
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

from storage import Exchange, NewMessage, Repository, ScopeKey, alembic_config
from tests.databases import rows

TOPIC = ScopeKey("telegram", "-100", "7")
CHANNEL = ScopeKey("discord", "555")
NOW = datetime(2025, 11, 30, 12, tzinfo=UTC)

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


def as_list(value: Any) -> Any:
    """A JSON column as read by a plain query: text on SQLite, decoded by asyncpg."""
    return json.loads(value) if isinstance(value, str) else value


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


@pytest.mark.asyncio
async def test_0001_database_upgrades_to_head_with_its_data(db_url: str) -> None:
    await migrate(db_url, "0001")
    await fill_at_0001(db_url)

    async with await Repository.open(db_url) as repo:
        await repo.upgrade()
        current = await repo.current_conversation(TOPIC)
        assert current == 2  # the newest conversation is still the current one
        messages = await repo.history(current, limit=10)
        assert [(m.role, m.author_name, m.content, m.status) for m in messages] == [
            ("user", "Ann", "first question", "complete"),
            ("assistant", None, "first answer", "complete"),
            ("user", "Bob", "no gpt answered", "complete"),
            ("assistant", None, "", "error"),
            ("user", "Ann", "second question", "complete"),
            ("assistant", None, "half an ans", "partial"),
        ]
        # Each answer is linked to the question before it; history is built from those pairs,
        # and the message no GPT answered is left out.
        questions = [m.id for m in messages if m.role == "user"]
        answers = [m.answers_id for m in messages if m.role == "assistant"]
        assert answers == questions
        assert await repo.exchanges(current, limit=10) == [
            Exchange(questions[0], "Ann", "first question", "first answer", "complete"),
            Exchange(questions[2], "Ann", "second question", "half an ans", "partial"),
        ]
        old = await repo.history(1, limit=10)
        assert [m.content for m in old] == ["forgotten", "old answer"]
        discord = await repo.exchanges(await repo.current_conversation(CHANNEL), limit=10)
        assert [(e.question, e.answer) for e in discord] == [("in discord", "discord answer")]
        binding = await repo.get_binding(CHANNEL)
        assert binding is not None
        assert (binding.gpt_id, binding.group_id, binding.bound_by_name) == (
            "g-Discord01",
            "guild-1",
            "Admin",
        )
        assert await repo.bound_gpts("discord", "guild-1") == ["g-Discord01"]
        # The statuses 0002 adds are accepted now.
        for status in ("streaming", "interrupted", "stopped", "refused", "superseded"):
            await repo.add_message(current, NewMessage("assistant", status, status=status))
        # A turn on the upgraded database.
        start = await repo.start_turn(
            TOPIC,
            NewMessage("user", "third question"),
            history_limit=5,
            answer=NewMessage("assistant", "", status="streaming"),
        )
        assert [e.question for e in start.history] == ["first question", "second question"]
        streaming = [m.id for m in await repo.history(current, limit=20) if m.status == "streaming"]
        assert [a.id for a in await repo.interrupt_streaming("telegram")] == streaming
        assert len(streaming) == 2

    usage = await rows(
        db_url,
        "SELECT content, prompt_tokens, completion_tokens, total_tokens, first_chunk_ms,"
        " total_ms, platform_message_ids FROM messages WHERE total_tokens IS NOT NULL"
        " ORDER BY id",
    )
    assert [(*row[:6], as_list(row[6])) for row in usage] == [
        ("old answer", 3, 4, 7, 120, 900, ["42"]),
        ("first answer", 10, 20, 30, 120, 900, ["42"]),
        ("half an ans", 11, 3, 14, 120, 900, ["42"]),
        ("discord answer", 1, 2, 3, 120, 900, ["42"]),
    ]


@pytest.mark.asyncio
async def test_0002_downgrades_to_0001_keeping_the_messages(db_url: str) -> None:
    await migrate(db_url, "0001")
    await fill_at_0001(db_url)
    await migrate(db_url, "head")
    await on(db_url, lambda c: c.execute(sa.insert(MESSAGES).values(
        conversation_id=2, role="assistant", content="cut", status="interrupted",
        platform_message_ids=[], created_at=NOW,
    )))  # fmt: skip
    await migrate(db_url, "0001", down=True)
    columns = await on(
        db_url, lambda c: {col["name"] for col in sa.inspect(c).get_columns("messages")}
    )
    statuses = await rows(db_url, "SELECT content, status FROM messages ORDER BY id")
    assert "answers_id" not in columns and "full_length" not in columns
    assert len(statuses) == 11
    assert statuses[-1] == ("cut", "partial")
