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


@pytest.mark.asyncio
@pytest.mark.parametrize("in_memory", [False, True], ids=["file", "memory"])
async def test_start_turn_reads_the_binding_of_the_scope_or_its_parent_chat(
    tmp_path: Path, in_memory: bool
) -> None:
    # A file runs in the repository's own thread; in-memory SQLite on the async engine.
    url = "sqlite+aiosqlite://" if in_memory else f"sqlite+aiosqlite:///{tmp_path / 'b.db'}"
    async with await Repository.open(url) as repo:
        await repo.upgrade()
        bare = await repo.start_turn("test", "chat", "t1", history_limit=5, content="hi",
                                     with_binding=True)  # fmt: skip
        assert bare.binding is None
        await repo.set_binding("test", "chat", "", gpt_id="g-parent", group_id=None,
                               bound_by_id="1", bound_by_name="Ann")  # fmt: skip
        inherited = await repo.start_turn("test", "chat", "t1", history_limit=5, content="hi",
                                          with_binding=True)  # fmt: skip
        assert inherited.binding == await repo.get_binding("test", "chat", "")
        assert inherited.binding is not None and inherited.binding.thread_id == ""
        await repo.set_binding("test", "chat", "t1", gpt_id="g-own", group_id=None,
                               bound_by_id="2", bound_by_name="Bob")  # fmt: skip
        own = await repo.start_turn("test", "chat", "t1", history_limit=5, content="hi",
                                    with_binding=True)  # fmt: skip
        assert own.binding == await repo.get_binding("test", "chat", "t1")
        assert own.binding is not None and own.binding.gpt_id == "g-own"
        # The chat itself never inherits from one of its threads.
        chat = await repo.start_turn("test", "other", "", history_limit=5, content="hi",
                                     with_binding=True)  # fmt: skip
        assert chat.binding is None
        without = await repo.start_turn("test", "chat", "t1", history_limit=5, content="hi")
        assert without.binding is None
        assert [r.content for r in own.history] == ["hi", "hi"]
        assert await repo.count_messages(own.conversation_id) == 4
