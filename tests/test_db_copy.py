"""`gptsbot db copy`: an install's SQLite database copied into an empty one (PostgreSQL, or another
SQLite file) with every row and id, then used by the bot; a target with rows is refused, and so is
a source a `gptsbot run` is answering from."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

from core.answerer_lock import answerer_lock
from core.gpts import Usage
from storage import NewMessage, Repository, ScopeKey
from storage.models import Base
from tests.databases import scalar
from tests.test_cli import environment, gptsbot

DM = ScopeKey("telegram", "501")
TOPIC = ScopeKey("telegram", "-100", "7")
CHANNEL = ScopeKey("discord", "555")


async def fill(url: str) -> None:
    """A database in use for a while: scopes, an old conversation, answers of every kind."""
    async with await Repository.open(url) as repo:
        await repo.upgrade()
        await repo.start_turn(DM, NewMessage("user", "forgotten"), history_limit=0)
        await repo.start_conversation(DM)
        for n, scope in enumerate((DM, TOPIC, CHANNEL, DM)):
            start = await repo.start_turn(
                scope,
                NewMessage("user", f"question {n}", author_id="10", author_name="Ann",
                           platform_message_ids=(str(n),), update_key=f"{scope.platform}:{n}"),
                history_limit=5,
                with_binding=True,
                answer=NewMessage("assistant", "", status="streaming"),
            )  # fmt: skip
            assert start.answer_id is not None
            status = ("complete", "partial", "stopped", "streaming")[n]
            answer = NewMessage(
                "assistant", f"answer {n}", status=status, model="gpt-4-gizmo-g-x",
                usage=Usage(1, 2, 3), first_chunk_ms=100, total_ms=900,
                platform_message_ids=(f"{n}a", f"{n}b"),
            )  # fmt: skip
            if status == "streaming":
                await repo.save_answer(start.answer_id, "answer 3 so f", ["3a"])
            else:
                await repo.finish_answer(start.answer_id, answer)
        refused = NewMessage("user", "x" * 20, status="refused", full_length=99_999)
        await repo.start_turn(TOPIC, refused, history_limit=0)
        for scope, gpt_id in ((TOPIC, "g-Topic01"), (CHANNEL, "g-Chan01")):
            await repo.set_binding(
                scope, gpt_id=gpt_id, group_id="guild", bound_by_id="9", bound_by_name="Admin"
            )
        await repo.delete_binding(TOPIC)
        await repo.set_binding(
            TOPIC, gpt_id="g-Topic02", group_id=None, bound_by_id=None, bound_by_name=None
        )


async def everything(url: str) -> dict[str, list[Any]]:
    """Every row of every table, as the models read them (aware datetimes, decoded JSON)."""
    engine = create_async_engine(url, poolclass=NullPool)
    try:
        async with engine.connect() as connection:
            return {
                table.name: [
                    tuple(row)
                    for row in await connection.execute(
                        select(table).order_by(*table.primary_key.columns)
                    )
                ]
                for table in Base.metadata.sorted_tables
            }
    finally:
        await engine.dispose()


@pytest.mark.asyncio
async def test_db_copy_moves_everything_with_its_ids(tmp_path: Path, db_url: str) -> None:
    env = environment(tmp_path, None)
    source = f"sqlite+aiosqlite:///{tmp_path / 'chat.db'}"  # the config's [storage] url
    await fill(source)
    before = await everything(source)

    copied = await gptsbot("db", "copy", "--to", db_url, env=env)

    assert copied.code == 0, copied.err
    assert "Copied " in copied.out and "10 messages" in copied.out, copied.out
    after = await everything(db_url)
    assert after == before
    assert {table: len(rows) for table, rows in after.items()} == {
        "scopes": 3, "conversations": 4, "bindings": 2, "messages": 10,
    }  # fmt: skip

    # The bot goes on there: the history, the binding, the answer left streaming; new ids.
    async with await Repository.open(db_url) as repo:
        await repo.upgrade()
        assert [a.content for a in await repo.interrupt_streaming("telegram")] == ["answer 3 so f"]
        start = await repo.start_turn(TOPIC, NewMessage("user", "more"), history_limit=5,
                                      with_binding=True)  # fmt: skip
        assert [(e.question, e.answer) for e in start.history] == [("question 1", "answer 1")]
        assert start.binding is not None and start.binding.gpt_id == "g-Topic02"
        assert start.message_id == max(row[0] for row in before["messages"]) + 1
        assert await repo.start_conversation(CHANNEL) == 5
        assert await repo.bound_gpts("discord", "guild") == ["g-Chan01"]
        assert await repo.is_update_stored("discord:2")

    # A database with rows is never a target: nothing changes.
    again = await gptsbot("db", "copy", "--to", db_url, env=env)
    assert again.code == 1
    assert again.err.strip().endswith("is not empty (scopes: 3 rows); nothing was copied.")
    assert await scalar(db_url, "SELECT count(*) FROM messages") == 11


@pytest.mark.asyncio
async def test_db_copy_refuses_a_source_being_answered_from_or_missing(
    tmp_path: Path, sqlite_url: str
) -> None:
    env = environment(tmp_path, None)
    source = f"sqlite+aiosqlite:///{tmp_path / 'chat.db'}"
    await fill(source)
    with answerer_lock(source):  # as a `gptsbot run` holds it
        refused = await gptsbot("db", "copy", "--to", sqlite_url, env=env)
    assert refused.code == 1
    assert "is already answering from" in refused.err and "nothing was copied" in refused.err

    missing = tmp_path / "nowhere.db"
    gone = await gptsbot("db", "copy", "--from", f"sqlite:///{missing}", "--to", sqlite_url,
                         env=env)  # fmt: skip
    assert (gone.code, gone.err.strip()) == (
        1,
        f"gptsbot: db copy: {missing} does not exist; nothing was copied.",
    )
    assert not missing.exists()
