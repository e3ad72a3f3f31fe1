"""`Repository.start_turn`: the three calls a turn starts with, in one transaction."""

from __future__ import annotations

from pathlib import Path

import pytest

from storage.repository import Repository


@pytest.mark.asyncio
async def test_start_turn_is_conversation_history_then_the_new_message(tmp_path: Path) -> None:
    async with await Repository.open(f"sqlite+aiosqlite:///{tmp_path / 'turns.db'}") as repo:
        await repo.upgrade()
        first = await repo.start_turn("test", "chat", "", history_limit=2, content="one",
                                      author_id="1", author_name="Ann",
                                      platform_message_ids=["m1"])  # fmt: skip
        assert first.history == []
        assert first.conversation_id == await repo.current_conversation("test", "chat")
        await repo.add_message(first.conversation_id, role="assistant", content="answer")
        second = await repo.start_turn("test", "chat", "", history_limit=2, content="two")
        assert second.conversation_id == first.conversation_id
        # The window is read before the new message is stored, and holds at most the limit.
        assert [(r.role, r.content) for r in second.history] == [
            ("user", "one"),
            ("assistant", "answer"),
        ]
        assert second.history[0].author_name == "Ann"
        stored = await repo.history(first.conversation_id, limit=10)
        assert [r.content for r in stored] == ["one", "answer", "two"]
        assert stored[-1].id == second.message_id
        none = await repo.start_turn("test", "chat", "", history_limit=0, content="three")
        assert none.history == []


@pytest.mark.asyncio
async def test_start_turn_after_reset_uses_the_new_conversation(tmp_path: Path) -> None:
    async with await Repository.open(f"sqlite+aiosqlite:///{tmp_path / 'reset.db'}") as repo:
        await repo.upgrade()
        old = await repo.start_turn("test", "chat", "t", history_limit=5, content="before")
        new_id = await repo.start_conversation("test", "chat", "t")
        new = await repo.start_turn("test", "chat", "t", history_limit=5, content="after")
        assert new.conversation_id == new_id != old.conversation_id
        assert new.history == []
