"""Migration 0004 (update keys) on a database filled at the revision before it: everything reads
back, old messages have no key (and never collide), new ones are stored once per update, and a
downgrade keeps the messages. On SQLite and PostgreSQL (`db_url`)."""

from __future__ import annotations

import pytest

from storage import DuplicateUpdate, Exchange, NewMessage, Repository
from tests.databases import scalar
from tests.revisions import CHANNEL, TOPIC, downgraded_after, revision_before, upgraded_from

BEFORE = revision_before("0004")  # 0002 when this test was written
STREAMING = NewMessage("assistant", "", status="streaming")


@pytest.mark.asyncio
async def test_a_filled_database_upgrades_and_stores_each_update_once(db_url: str) -> None:
    async with upgraded_from(db_url, BEFORE) as repo:
        current = await repo.current_conversation(TOPIC)
        assert [(m.role, m.content) for m in await repo.history(current, limit=3)] == [
            ("assistant", ""),
            ("user", "second question"),
            ("assistant", "half an ans"),
        ]
        assert [e.question for e in await repo.exchanges(current, limit=5)] == [
            "first question",
            "second question",
        ]
        binding = await repo.get_binding(CHANNEL)
        assert binding is not None and binding.gpt_id == "g-Discord01"

        # Messages without a key (all the old ones, answers, the terminal's) never collide.
        for text in ("a", "b"):
            await repo.start_turn(TOPIC, NewMessage("user", text), history_limit=0)
        keyed = NewMessage("user", "third question", update_key="telegram:-100:77")
        start = await repo.start_turn(TOPIC, keyed, history_limit=5, answer=STREAMING)
        assert [e.question for e in start.history] == ["first question", "second question"]
        with pytest.raises(DuplicateUpdate):
            await repo.start_turn(TOPIC, keyed, history_limit=5, answer=STREAMING)
        assert await repo.is_update_stored("telegram:-100:77")

    assert await scalar(db_url, "SELECT count(*) FROM messages WHERE update_key IS NULL") == 13


@pytest.mark.asyncio
async def test_0004_downgrades_keeping_the_messages(db_url: str) -> None:
    keyed = NewMessage("user", "keyed", update_key="discord:1234")
    contents = await downgraded_after(db_url, keyed, to=BEFORE)
    assert len(contents) == 11 and contents[-1] == ("keyed",)
    async with await Repository.open(db_url) as repo:
        await repo.upgrade()  # and up again: the old key is gone, so the update is new
        start = await repo.start_turn(CHANNEL, keyed, history_limit=1)
        assert start.history == [
            Exchange(start.history[0].question_id, "Cy", "in discord", "discord answer",
                     "complete"),
        ]  # fmt: skip
