"""Migration 0002 on a database filled at revision 0001: everything reads back through the
repository, existing answers are linked to their questions, and the new statuses are accepted."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import closing, contextmanager
from pathlib import Path

import pytest
from alembic import command
from sqlalchemy import create_engine

from storage import Exchange, NewMessage, Repository, ScopeKey, alembic_config
from storage.engine import head_revision

TOPIC = ScopeKey("telegram", "-100", "7")
CHANNEL = ScopeKey("discord", "555")
NOW = "2025-11-30 12:00:00.000000"


def migrate(db: Path, revision: str, *, down: bool = False) -> None:
    engine = create_engine(f"sqlite:///{db}")
    try:
        with engine.begin() as connection:
            config = alembic_config()
            config.attributes["connection"] = connection
            (command.downgrade if down else command.upgrade)(config, revision)
    finally:
        engine.dispose()


@contextmanager
def raw(db: Path) -> Iterator[sqlite3.Connection]:
    with closing(sqlite3.connect(db)) as connection, connection:
        yield connection


def fill_at_0001(db: Path) -> None:
    """What a 0001 database holds after a while: two scopes, an old and a current conversation,
    answers of each status, a failed turn, usage figures, bindings."""
    with raw(db) as c:
        c.execute("INSERT INTO scopes (id, platform, chat_id, thread_id) VALUES (1, ?, ?, ?)",
                  ("telegram", TOPIC.chat_id, TOPIC.thread_id))  # fmt: skip
        c.execute("INSERT INTO scopes (id, platform, chat_id, thread_id) VALUES (2, ?, ?, '')",
                  ("discord", CHANNEL.chat_id))  # fmt: skip
        for conversation_id, scope_id in ((1, 1), (2, 1), (3, 2)):
            c.execute("INSERT INTO conversations (id, scope_id, started_at) VALUES (?, ?, ?)",
                      (conversation_id, scope_id, NOW))  # fmt: skip
        rows = [
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
        for conversation_id, role, author, content, status, tokens in rows:
            prompt, completion, total = tokens or (None, None, None)
            c.execute(
                "INSERT INTO messages (conversation_id, role, author_name, content, status,"
                " prompt_tokens, completion_tokens, total_tokens, first_chunk_ms, total_ms,"
                " platform_message_ids, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, 120, 900,"
                " '[\"42\"]', ?)",
                (conversation_id, role, author, content, status, prompt, completion, total, NOW),
            )
        c.execute(
            "INSERT INTO bindings (scope_id, gpt_id, group_id, bound_by_id, bound_by_name,"
            " bound_at) VALUES (2, 'g-Discord01', 'guild-1', '9', 'Admin', ?)",
            (NOW,),
        )


@pytest.mark.asyncio
async def test_0001_database_upgrades_to_head_with_its_data(tmp_path: Path) -> None:
    db = tmp_path / "old.db"
    migrate(db, "0001")
    fill_at_0001(db)

    async with await Repository.open(f"sqlite+aiosqlite:///{db}") as repo:
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

    with raw(db) as c:
        usage = c.execute(
            "SELECT content, prompt_tokens, completion_tokens, total_tokens, first_chunk_ms,"
            " total_ms, platform_message_ids FROM messages WHERE total_tokens IS NOT NULL"
            " ORDER BY id"
        ).fetchall()
        version = c.execute("SELECT version_num FROM alembic_version").fetchall()
    assert usage == [
        ("old answer", 3, 4, 7, 120, 900, '["42"]'),
        ("first answer", 10, 20, 30, 120, 900, '["42"]'),
        ("half an ans", 11, 3, 14, 120, 900, '["42"]'),
        ("discord answer", 1, 2, 3, 120, 900, '["42"]'),
    ]
    assert version == [(head_revision(),)]


def test_0002_downgrades_to_0001_keeping_the_messages(tmp_path: Path) -> None:
    db = tmp_path / "round.db"
    migrate(db, "0001")
    fill_at_0001(db)
    migrate(db, "head")
    with raw(db) as c:
        c.execute(
            "INSERT INTO messages (conversation_id, role, content, status, platform_message_ids,"
            " created_at) VALUES (2, 'assistant', 'cut', 'interrupted', '[]', ?)",
            (NOW,),
        )
    migrate(db, "0001", down=True)
    with raw(db) as c:
        columns = {row[1] for row in c.execute("PRAGMA table_info(messages)")}
        statuses = c.execute("SELECT content, status FROM messages ORDER BY id").fetchall()
    assert "answers_id" not in columns and "full_length" not in columns
    assert len(statuses) == 11
    assert statuses[-1] == ("cut", "partial")
