"""`Repository.start_turn`: the three calls a turn starts with, in one transaction; and the
same platform update stored once. On SQLite and PostgreSQL (`db_url`)."""

from __future__ import annotations

import asyncio

import pytest

from storage import DuplicateUpdate, Exchange, NewMessage, Repository, ScopeKey, TurnStart
from tests.databases import scalar

CHAT = ScopeKey("test", "chat")
THREAD = ScopeKey("test", "chat", "t1")
HI = NewMessage("user", "hi")
STREAMING = NewMessage("assistant", "", status="streaming")


@pytest.mark.asyncio
async def test_start_turn_is_conversation_history_then_the_new_message(db_url: str) -> None:
    async with await Repository.open(db_url) as repo:
        await repo.upgrade()
        one = NewMessage("user", "one", author_id="1", author_name="Ann",
                         platform_message_ids=("m1",))  # fmt: skip
        first = await repo.start_turn(CHAT, one, history_limit=2, answer=STREAMING)
        assert first.history == []
        assert first.conversation_id == await repo.current_conversation(CHAT)
        assert first.answer_id is not None
        await repo.finish_answer(first.answer_id, NewMessage("assistant", "answer"))
        second = await repo.start_turn(CHAT, NewMessage("user", "two"), history_limit=2)
        assert second.conversation_id == first.conversation_id
        assert second.answer_id is None
        # The window is read before the new message is stored: whole exchanges, at most the limit.
        assert second.history == [Exchange(first.message_id, "Ann", "one", "answer", "complete")]
        stored = await repo.history(first.conversation_id, limit=10)
        assert [(r.content, r.answers_id) for r in stored] == [
            ("one", None),
            ("answer", first.message_id),
            ("two", None),
        ]
        assert stored[-1].id == second.message_id
        none = await repo.start_turn(CHAT, NewMessage("user", "three"), history_limit=0)
        assert none.history == []


@pytest.mark.asyncio
async def test_start_turn_after_reset_uses_the_new_conversation(db_url: str) -> None:
    async with await Repository.open(db_url) as repo:
        await repo.upgrade()
        old = await repo.start_turn(THREAD, NewMessage("user", "before"), history_limit=5)
        new_id = await repo.start_conversation(THREAD)
        new = await repo.start_turn(THREAD, NewMessage("user", "after"), history_limit=5)
        assert new.conversation_id == new_id != old.conversation_id
        assert new.history == []


@pytest.mark.asyncio
async def test_start_turn_reads_the_binding_of_the_scope_or_its_parent_chat(db_url: str) -> None:
    await check_binding_fallback(db_url)


@pytest.mark.asyncio
async def test_start_turn_reads_the_binding_on_in_memory_sqlite_too() -> None:
    # A file runs in the repository's own thread; in-memory SQLite on the async engine.
    await check_binding_fallback("sqlite+aiosqlite://")


async def check_binding_fallback(url: str) -> None:
    async with await Repository.open(url) as repo:
        await repo.upgrade()

        async def turn(scope: ScopeKey, *, with_binding: bool = True) -> TurnStart:
            start = await repo.start_turn(
                scope, HI, history_limit=5, with_binding=with_binding, answer=STREAMING
            )
            assert start.answer_id is not None
            await repo.finish_answer(start.answer_id, NewMessage("assistant", "hello"))
            return start

        assert (await turn(THREAD)).binding is None
        # The thread inherits its chat's binding until it has one of its own.
        for bound, gpt_id in ((CHAT, "g-parent"), (THREAD, "g-own")):
            await repo.set_binding(
                bound, gpt_id=gpt_id, group_id=None, bound_by_id="1", bound_by_name="Ann"
            )
            start = await turn(THREAD)
            assert start.binding == await repo.get_binding(bound)
            assert start.binding is not None
            assert (start.binding.scope, start.binding.gpt_id) == (bound, gpt_id)
        # A chat never inherits from one of its threads.
        other_thread = ScopeKey("test", "other", "t")
        await repo.set_binding(
            other_thread, gpt_id="g-t", group_id=None, bound_by_id=None, bound_by_name=None
        )
        assert (await turn(ScopeKey("test", "other"))).binding is None
        assert (await turn(THREAD, with_binding=False)).binding is None
        assert [(e.question, e.answer) for e in start.history] == [("hi", "hello")] * 2
        assert await repo.count_messages(start.conversation_id) == 8


@pytest.mark.asyncio
async def test_a_platform_update_is_stored_once(db_url: str) -> None:
    async with await Repository.open(db_url) as repo:
        await repo.upgrade()
        first = NewMessage("user", "hi", update_key="test:chat:17")
        start = await repo.start_turn(CHAT, first, history_limit=5, answer=STREAMING)
        assert await repo.is_update_stored("test:chat:17")
        assert not await repo.is_update_stored("test:chat:18")
        assert not await repo.is_update_stored("other:chat:17")

        # Delivered again, to a new scope or after a /reset: refused, and nothing is stored,
        # not even the scope the turn would have created.
        await repo.start_conversation(CHAT)
        for scope in (CHAT, ScopeKey("test", "elsewhere")):
            with pytest.raises(DuplicateUpdate) as refused:
                await repo.start_turn(scope, first, history_limit=5, answer=STREAMING)
            assert refused.value.update_key == "test:chat:17"
        assert await scalar(db_url, "SELECT count(*) FROM messages") == 2
        assert await scalar(db_url, "SELECT count(*) FROM scopes") == 1
        # The same id on another platform, or in a message without one, is another update.
        await repo.start_turn(CHAT, NewMessage("user", "x", update_key="other:chat:17"),
                              history_limit=0)  # fmt: skip
        await repo.start_turn(CHAT, NewMessage("user", "y"), history_limit=0)
        await repo.start_turn(CHAT, NewMessage("user", "z"), history_limit=0)
        assert await scalar(db_url, "SELECT count(*) FROM messages") == 5
        assert start.answer_id is not None


@pytest.mark.asyncio
async def test_concurrent_deliveries_of_one_update_store_it_once(db_url: str) -> None:
    async with await Repository.open(db_url) as one, await Repository.open(db_url) as two:
        await one.upgrade()
        message = NewMessage("user", "hi", update_key="test:chat:99")

        async def deliver(repo: Repository) -> bool:
            try:
                await repo.start_turn(CHAT, message, history_limit=5, answer=STREAMING)
            except DuplicateUpdate:
                return False
            return True

        stored = await asyncio.gather(*(deliver(repo) for repo in (one, two) * 5))
    assert sorted(stored) == [False] * 9 + [True]
    assert await scalar(db_url, "SELECT count(*) FROM messages") == 2
