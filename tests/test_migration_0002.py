"""Migration 0002 on a database filled at revision 0001: everything reads back through the
repository, existing answers are linked to their questions, and the new statuses are accepted.
On SQLite and PostgreSQL (`db_url`)."""

from __future__ import annotations

import json
from typing import Any

import pytest
import sqlalchemy as sa

from storage import Exchange, NewMessage
from tests.databases import rows
from tests.revisions import CHANNEL, MESSAGES, NOW, TOPIC, filled_at, migrate, on, upgraded_from


def as_list(value: Any) -> Any:
    """A JSON column as read by a plain query: text on SQLite, decoded by asyncpg."""
    return json.loads(value) if isinstance(value, str) else value


@pytest.mark.asyncio
async def test_0001_database_upgrades_to_head_with_its_data(db_url: str) -> None:
    async with upgraded_from(db_url, "0001") as repo:
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
    await filled_at(db_url, "head")
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
