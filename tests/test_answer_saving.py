"""An answer is durable while it streams: its row exists from the start (`streaming`), its text
and platform messages are saved once the first message shows and then at most once per interval
(never per chunk), and an interrupted one is settled into its messages without the indicator."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from core.app import open_app
from core.i18n import INTERRUPTED, SANDBOX_FILE
from core.interrupted import interrupted_answers, settle
from core.platform import MessageRef
from core.streaming import StreamingReply
from core.turns import Author, Scope, Turn
from fakes.clock import FakeClock
from fakes.gpts import FakeGpts, Gate
from fakes.recording import RecordingChannel
from storage import InterruptedAnswer, Repository, ScopeKey
from tests.helpers import sqlite_config
from tests.sql_probes import captured_sql

DM = Scope("test", "dm")
ALICE = Author("1", "Alice")
INDICATOR = " ▌"


# The UPDATE that saves a streaming answer's text and messages (the test's text has no quote).
SAVE = "UPDATE messages SET content='[^']*', platform_message_ids="


@pytest.mark.asyncio
async def test_the_answer_is_saved_at_its_first_message_then_per_interval_not_per_chunk(
    fake_gpts: FakeGpts, gate: Gate, tmp_path: Path
) -> None:
    config = sqlite_config(fake_gpts, tmp_path / "s.db", {"GPTS_API_KEY": "k"}, save_interval_s=0.5)
    async with open_app(config) as app:
        repo = app.repo
        channel = RecordingChannel(FakeClock())
        reply = StreamingReply(channel, edit_interval_s=0, indicator=INDICATOR)
        async with captured_sql(repo, matching=SAVE) as saves:
            task = asyncio.create_task(app.service.answer(Turn(DM, ALICE, "go", True), reply))
            await fake_gpts.wait_requests(1)
            conversation = await repo.current_conversation(DM)
            # The row exists before any text, linked to its question.
            question, answer = await repo.history(conversation, limit=5)
            assert (answer.status, answer.content, answer.answers_id) == (
                "streaming",
                "",
                question.id,
            )
            gate.send("a")
            await asyncio.wait_for(reply.first_sent.wait(), 5)
            for _ in range(100):
                if saves:
                    break
                await asyncio.sleep(0.01)
            [saved] = await repo.history(conversation, limit=1)
            assert (saved.content, saved.status) == ("a", "streaming")
            for _ in range(200):  # 200 chunks within one interval
                gate.send("b")
            await asyncio.sleep(0.8)
            assert 2 <= len(saves) <= 3, saves
            gate.finish()
            outcome = await task
        assert outcome.status == "complete"
        [final] = await repo.history(conversation, limit=1)
        assert (final.content, final.status) == ("a" + "b" * 200, "complete")
        assert len(saves) <= 3  # the final update is not a save


@pytest.mark.asyncio
async def test_interrupted_answers_are_marked_per_platform_or_chat(tmp_path: Path) -> None:
    async with await Repository.open(f"sqlite+aiosqlite:///{tmp_path / 'i.db'}") as repo:
        await repo.upgrade()
        streaming = {"answer": None}
        from storage import NewMessage

        starts = {}
        for scope in (ScopeKey("telegram", "1"), ScopeKey("console", "alice"),
                      ScopeKey("console", "bob")):  # fmt: skip
            starts[scope] = await repo.start_turn(
                scope,
                NewMessage("user", f"question in {scope}", platform_message_ids=("7",)),
                history_limit=0,
                answer=NewMessage("assistant", "", status="streaming"),
            )
            answer_id = starts[scope].answer_id
            assert answer_id is not None
            await repo.save_answer(answer_id, f"saved in {scope}", ["11", "12"])
        del streaming
        alice = await interrupted_answers(repo, "console", chat_id="alice")
        assert alice == [
            InterruptedAnswer(
                id=starts[ScopeKey("console", "alice")].answer_id,  # type: ignore[arg-type]
                scope=ScopeKey("console", "alice"),
                content="saved in console:alice",
                platform_message_ids=("11", "12"),
                question="question in console:alice",
                question_message_ids=("7",),
            )
        ]
        assert await interrupted_answers(repo, "console", chat_id="alice") == []
        [telegram] = await interrupted_answers(repo, "telegram")
        assert telegram.scope == ScopeKey("telegram", "1")
        # A save after the row left `streaming` changes nothing.
        await repo.save_answer(telegram.id, "late", [])
        conversation = starts[ScopeKey("telegram", "1")].conversation_id
        [stored] = await repo.history(conversation, limit=1)
        assert (stored.content, stored.status) == ("saved in telegram:1", "interrupted")
        [bob] = await interrupted_answers(repo, "console")
        assert bob.scope == ScopeKey("console", "bob")


def interrupted(content: str, ids: tuple[str, ...]) -> InterruptedAnswer:
    return InterruptedAnswer(1, ScopeKey("test", "c"), content, ids, "你好", ())


@pytest.mark.asyncio
async def test_settling_edits_every_message_to_the_saved_text_and_the_line() -> None:
    channel = RecordingChannel(FakeClock(), max_chars=80)
    text = "word " * 20  # 100 characters: two messages of at most 80 (78 with the indicator)
    streamed = StreamingReply(channel, edit_interval_s=0, indicator=INDICATOR)
    streamed.append(text)
    await asyncio.sleep(0.05)
    frozen = channel.visible()
    assert len(frozen) == 2 and frozen[-1].endswith(INDICATOR)
    refs = [MessageRef("chat", message_id) for message_id in channel.texts]

    await settle(channel, interrupted(text, ("1", "2")), refs, indicator=INDICATOR)
    line = INTERRUPTED("zh")  # the question was Chinese
    assert channel.visible()[0] == frozen[0]
    assert "".join(channel.visible()) == f"{text.rstrip()}\n\n{line}"
    assert not any(message.endswith(INDICATOR) for message in channel.visible())
    assert [call.kind for call in channel.calls].count("send") == 2  # only the streamed ones


@pytest.mark.asyncio
async def test_settling_without_messages_sends_the_text_or_does_nothing() -> None:
    channel = RecordingChannel(FakeClock())
    await settle(channel, interrupted("", ()), [], indicator=INDICATOR, language="en")
    assert channel.calls == []
    await settle(channel, interrupted("saved", ()), [], indicator=INDICATOR, language="en")
    assert channel.visible() == [f"saved\n\n{INTERRUPTED('en')}"]


@pytest.mark.asyncio
async def test_settling_shows_the_saved_text_cleaned_in_the_settling_language() -> None:
    channel = RecordingChannel(FakeClock())
    saved = "表格【4:0†source】：[a.csv](sandbox:/mnt/data/a.csv)"
    await settle(channel, interrupted(saved, ()), [], indicator=INDICATOR)
    cleaned = f"表格：{SANDBOX_FILE('zh', name='a.csv')}"  # the question was Chinese
    assert channel.visible() == [f"{cleaned}\n\n{INTERRUPTED('zh')}"]
