"""The history window and the start-up sweep in SQL: bounded (on SQLite and PostgreSQL), index
seeks, never a scan (SQLite's query plans)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from storage import NewMessage, Repository, ScopeKey
from tests.sql_probes import captured_sql, query_plans


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "window.db"


@pytest_asyncio.fixture
async def repo(db_url: str) -> AsyncIterator[Repository]:
    async with await Repository.open(db_url) as repository:
        await repository.upgrade()
        yield repository


@pytest_asyncio.fixture
async def sqlite_repo(db_path: Path) -> AsyncIterator[Repository]:
    async with await Repository.open(f"sqlite+aiosqlite:///{db_path}") as repository:
        await repository.upgrade()
        yield repository


@pytest.mark.asyncio
async def test_the_window_looks_a_bounded_way_back_past_unanswered_messages(
    repo: Repository,
) -> None:
    conversation_id = await repo.current_conversation(ScopeKey("telegram", "quiet"))
    question = await repo.add_message(conversation_id, NewMessage("user", "answered"))
    await repo.add_message(conversation_id, NewMessage("assistant", "yes", answers_id=question))

    async def unanswered(count: int) -> None:
        for _ in range(count):
            asked = await repo.add_message(conversation_id, NewMessage("user", "no GPT bound"))
            error = NewMessage("assistant", "", status="error", answers_id=asked)
            await repo.add_message(conversation_id, error)

    await unanswered(5)  # 10 messages: within the 16 that 2 exchanges may look back
    assert [e.answer for e in await repo.exchanges(conversation_id, limit=2)] == ["yes"]
    await unanswered(3)  # 16 messages past it: out of reach, however long the conversation
    assert await repo.exchanges(conversation_id, limit=2) == []
    assert [e.answer for e in await repo.exchanges(conversation_id, limit=3)] == ["yes"]


@pytest.mark.asyncio
async def test_the_window_and_the_start_up_sweep_are_index_seeks(
    sqlite_repo: Repository, db_path: Path
) -> None:
    scope = ScopeKey("telegram", "plan")
    streaming = NewMessage("assistant", "", status="streaming")
    for _ in range(3):
        await sqlite_repo.start_turn(
            scope, NewMessage("user", "q"), history_limit=0, answer=streaming
        )
    conversation_id = await sqlite_repo.current_conversation(scope)
    async with captured_sql(sqlite_repo) as statements:
        await sqlite_repo.exchanges(conversation_id, limit=2)
        await sqlite_repo.interrupt_streaming("telegram")

    # The window, the sweep's two SELECTs.
    window_plan, sweep_plan, rows_plan = query_plans(db_path, statements[:3])
    assert "ix_messages_conversation_id_id" in window_plan, window_plan
    assert "ix_messages_answers_id" in window_plan, window_plan
    assert "TEMP B-TREE" not in window_plan, window_plan
    # The sweep at start finds the few streaming answers, not the whole table, then their rows.
    assert sweep_plan.startswith("SCAN messages USING"), sweep_plan
    assert "INDEX ix_messages_streaming" in sweep_plan, sweep_plan
    assert rows_plan.startswith("SEARCH messages USING INTEGER PRIMARY KEY"), rows_plan


@pytest.mark.asyncio
async def test_the_window_takes_each_questions_newest_answer_that_retry_did_not_replace(
    repo: Repository,
) -> None:
    scope = ScopeKey("telegram", "retry")
    conversation_id = await repo.current_conversation(scope)
    question = await repo.add_message(conversation_id, NewMessage("user", "q1"))
    # Two answers to one question (rows from before Retry existed): only the newest goes up.
    for text in ("old", "new"):
        await repo.add_message(conversation_id, NewMessage("assistant", text, answers_id=question))
    window = await repo.exchanges(conversation_id, limit=5)
    assert [(e.question, e.answer) for e in window] == [("q1", "new")]

    start = await repo.start_turn(
        scope, NewMessage("user", "q2"), history_limit=5, answer=NewMessage("assistant", "a2")
    )
    assert start.answer_id is not None
    retried = await repo.retry_turn(
        scope, start.answer_id, history_limit=5, answer=NewMessage("assistant", "a2 again")
    )
    assert retried is not None and retried.message_id == start.message_id
    assert [(e.question, e.answer) for e in retried.history] == [("q1", "new")]  # before q2
    superseded = await repo.stored_answer(start.answer_id)
    assert superseded is not None and superseded.status == "superseded"
    assert not superseded.can_retry
    window = await repo.exchanges(conversation_id, limit=5)
    assert [(e.question, e.answer) for e in window] == [("q1", "new"), ("q2", "a2 again")]
    # Retried once, it is not retried again; nothing is written.
    again = await repo.retry_turn(
        scope, start.answer_id, history_limit=5, answer=NewMessage("assistant", "x")
    )
    assert again is None
    assert await repo.count_messages(conversation_id) == 6
    latest = await repo.latest_answer(scope)
    assert latest is not None and latest.id == retried.answer_id and latest.can_retry
    await repo.start_conversation(scope)  # /reset: the old answers are no longer retryable
    after_reset = await repo.stored_answer(latest.id)
    assert after_reset is not None and not after_reset.is_current and not after_reset.can_retry
    assert await repo.latest_answer(scope) is None
