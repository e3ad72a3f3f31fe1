"""Migration 0003 on a database filled at revision 0002: everything reads back, answers without
token counts get estimated ones (marked), counted ones are kept, the usage indexes are there and
used, and a downgrade forgets only the estimates."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from storage import Exchange, NewMessage, Repository, ScopeKey, UsageFigures
from storage.engine import head_revision
from tests.revisions import migrate as migrate_url
from tests.sql_probes import raw

GROUP = ScopeKey("telegram", "-100")
TOPIC = ScopeKey("telegram", "-100", "7")
DM = ScopeKey("discord", "555")
NOW = datetime.now(UTC).replace(microsecond=0)
STAMP = NOW.strftime("%Y-%m-%d %H:%M:%S.000000")
LAST_YEAR = (NOW - timedelta(days=400)).strftime("%Y-%m-%d %H:%M:%S.000000")


async def migrate(db: Path, revision: str, *, down: bool = False) -> None:
    await migrate_url(f"sqlite+aiosqlite:///{db}", revision, down=down)


def fill_at_0002(db: Path) -> None:
    """A 0002 database: two chats (a group with a topic, a DM), questions by two people, answers
    with and without the endpoint's counts, a refused message, an error, an old conversation."""
    with raw(db) as c, c:  # committed when the block ends
        for scope_id, scope in enumerate((GROUP, TOPIC, DM), start=1):
            c.execute("INSERT INTO scopes (id, platform, chat_id, thread_id) VALUES (?, ?, ?, ?)",
                      (scope_id, scope.platform, scope.chat_id, scope.thread_id))  # fmt: skip
        for conversation_id, scope_id in ((1, 1), (2, 2), (3, 3), (4, 1)):
            c.execute("INSERT INTO conversations (id, scope_id, started_at) VALUES (?, ?, ?)",
                      (conversation_id, scope_id, STAMP))  # fmt: skip
        rows = [
            # (id, conversation, role, author, content, status, tokens, answers, created)
            (1, 4, "user", "10", "very old question", "complete", None, None, LAST_YEAR),
            (2, 4, "assistant", None, "very old answer", "complete", None, 1, LAST_YEAR),
            (3, 1, "user", "10", "12345678", "complete", None, None, STAMP),
            (4, 1, "assistant", None, "counted", "complete", (5, 6, 11), 3, STAMP),
            (5, 1, "user", "11", "abcd", "complete", None, None, STAMP),
            (6, 1, "assistant", None, "abcdefghi", "partial", None, 5, STAMP),
            (7, 2, "user", "11", "in a topic", "complete", None, None, STAMP),
            (8, 2, "assistant", None, "topic answer", "complete", None, 7, STAMP),
            (9, 1, "user", "10", "refused", "refused", None, None, STAMP),
            (10, 1, "user", "10", "failed", "complete", None, None, STAMP),
            (11, 1, "assistant", None, "", "error", None, 10, STAMP),
            (12, 3, "user", "10", "discord dm", "complete", None, None, STAMP),
            (13, 3, "assistant", None, "dm answer", "stopped", None, 12, STAMP),
        ]
        for id_, conversation, role, author, content, status, tokens, answers, created in rows:
            prompt, completion, total = tokens or (None, None, None)
            c.execute(
                "INSERT INTO messages (id, conversation_id, role, author_id, author_name, content,"
                " status, prompt_tokens, completion_tokens, total_tokens, first_chunk_ms,"
                " total_ms, platform_message_ids, created_at, answers_id, full_length)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 100, 800, '[\"9\"]', ?, ?, NULL)",
                (id_, conversation, role, author, f"user{author}" if author else None, content,
                 status, prompt, completion, total, created, answers),
            )  # fmt: skip


def tokens(db: Path) -> list[tuple[int, int | None, int | None, int | None, int]]:
    with raw(db) as c:
        return c.execute(
            "SELECT id, prompt_tokens, completion_tokens, total_tokens, tokens_estimated"
            " FROM messages WHERE role = 'assistant' ORDER BY id"
        ).fetchall()


@pytest.mark.asyncio
async def test_0002_database_upgrades_with_its_data_and_estimates(tmp_path: Path) -> None:
    db = tmp_path / "old.db"
    await migrate(db, "0002")
    fill_at_0002(db)

    async with await Repository.open(f"sqlite+aiosqlite:///{db}") as repo:
        await repo.upgrade()
        group = await repo.current_conversation(GROUP)
        assert group == 4  # the newest conversation of the group is still its current one
        messages = await repo.history(1, limit=20)
        assert [(m.id, m.author_id, m.content, m.status, m.answers_id) for m in messages] == [
            (3, "10", "12345678", "complete", None),
            (4, None, "counted", "complete", 3),
            (5, "11", "abcd", "complete", None),
            (6, None, "abcdefghi", "partial", 5),
            (9, "10", "refused", "refused", None),
            (10, "10", "failed", "complete", None),
            (11, None, "", "error", 10),
        ]
        assert await repo.exchanges(1, limit=10) == [
            Exchange(3, "user10", "12345678", "counted", "complete"),
            Exchange(5, "user11", "abcd", "abcdefghi", "partial"),
        ]
        day = NOW.replace(hour=0, minute=0, second=0)
        month = day.replace(day=1)
        report = await repo.usage(
            GROUP, "10", day_since=day, month_since=month, chat_top=5, whole_bot=True
        )
        # Ann ("10") on Telegram: her counted turn (11) and her failed one; the refused message
        # and her Discord DM are not hers here; last year's is outside the month.
        assert report.own == UsageFigures(2, 11, 2, 11, estimated=False)
        # The group with its topic: 11 + (1 + 3) + (3 + 3), two of them estimated.
        assert report.chat == UsageFigures(4, 21, 4, 21, estimated=True)
        assert [(u.user_id, u.name, u.figures) for u in report.top_users] == [
            ("10", "user10", UsageFigures(2, 11, 2, 11, estimated=False)),
            ("11", "user11", UsageFigures(2, 10, 2, 10, estimated=True)),
        ]
        # Every platform: the group's and the Discord DM's (3 + 3).
        assert report.bot == UsageFigures(5, 27, 5, 27, estimated=True)
        # New answers store whether their counts are estimated.
        start = await repo.start_turn(
            DM,
            NewMessage("user", "next", author_id="10"),
            history_limit=5,
            answer=NewMessage("assistant", "", status="streaming"),
        )
        assert start.answer_id is not None
        await repo.finish_answer(
            start.answer_id, NewMessage("assistant", "ok", usage=None, tokens_estimated=True)
        )

    assert tokens(db) == [
        (2, 5, 4, 9, 1),  # last year's answer: (17 + 3) // 4 + (15 + 3) // 4, estimated
        (4, 5, 6, 11, 0),  # the endpoint's counts, kept and not marked
        (6, 1, 3, 4, 1),
        (8, 3, 3, 6, 1),
        (11, None, None, None, 0),  # an error without text: nothing to estimate
        (13, 3, 3, 6, 1),  # a stopped answer counts what it showed
        (15, None, None, None, 1),
    ]
    with raw(db) as c:
        indexes = {row[1] for row in c.execute("PRAGMA index_list(messages)")}
        version = c.execute("SELECT version_num FROM alembic_version").fetchall()
        plan = " ".join(
            str(row[3])
            for row in c.execute(
                "EXPLAIN QUERY PLAN SELECT count(*) FROM messages"
                " WHERE author_id = '10' AND created_at >= ?",
                (STAMP,),
            )
        )
    assert {"ix_messages_author_id_created_at", "ix_messages_conversation_id_created_at"} <= indexes
    assert "ix_messages_author_id_created_at" in plan
    assert version == [(head_revision(),)]


@pytest.mark.asyncio
async def test_0003_downgrades_forgetting_only_the_estimates(tmp_path: Path) -> None:
    db = tmp_path / "round.db"
    await migrate(db, "0002")
    fill_at_0002(db)
    await migrate(db, "0003")
    await migrate(db, "0002", down=True)
    with raw(db) as c:
        columns = {row[1] for row in c.execute("PRAGMA table_info(messages)")}
        counted = c.execute(
            "SELECT id, total_tokens FROM messages WHERE total_tokens IS NOT NULL"
        ).fetchall()
        count = c.execute("SELECT count(*) FROM messages").fetchone()
    assert "tokens_estimated" not in columns
    assert counted == [(4, 11)]
    assert count == (13,)
