"""The history window is built from question/answer pairs: in question order, whole pairs only,
cut answers marked, unanswered and refused messages left out (and never cutting the window)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from core.app import open_app
from core.config import parse_config
from core.conversation import REFUSED_KEPT_CHARS
from core.history import CUT_MARK, upstream_messages
from core.streaming import StreamingReply
from core.turns import Author, Scope, Turn
from fakes.clock import FakeClock
from fakes.gpts import FakeGpts, Reply
from fakes.recording import RecordingChannel
from storage import Exchange, MessageStatus, NewMessage
from tests.helpers import alternating

DM = Scope("test", "dm")
ALICE = Author("1", "Alice")


def exchange(n: int, status: MessageStatus = "complete", author: str = "Ann") -> Exchange:
    return Exchange(n, author, f"q{n}", f"a{n}", status)


def window(history: list[Exchange], **options: Any) -> list[tuple[str, str]]:
    settings = {"author_name": "Ann", "shared": False, "history_chars": 1000,
                "system_prompt": None} | options  # fmt: skip
    messages = upstream_messages(history, "now", **settings)
    return [(m["role"], m["content"]) for m in messages]


def test_the_window_alternates_and_marks_cut_answers() -> None:
    history = [
        exchange(1),
        exchange(2, "partial"),
        exchange(3, "interrupted"),
        exchange(4, "stopped"),
    ]
    assert window(history) == [
        ("user", "q1"),
        ("assistant", "a1"),
        ("user", "q2"),
        ("assistant", "a2" + CUT_MARK),
        ("user", "q3"),
        ("assistant", "a3" + CUT_MARK),
        ("user", "q4"),
        ("assistant", "a4" + CUT_MARK),
        ("user", "now"),
    ]


def test_the_budget_keeps_the_newest_whole_pairs() -> None:
    history = [exchange(n) for n in range(1, 6)]
    # "now" is 3 characters, each pair 4: room for two pairs, never half of one.
    assert window(history, history_chars=3 + 4 * 2 + 3) == [
        ("user", "q4"),
        ("assistant", "a4"),
        ("user", "q5"),
        ("assistant", "a5"),
        ("user", "now"),
    ]
    assert window(history, history_chars=3) == [("user", "now")]


def test_shared_chats_name_speakers_and_the_system_prompt_comes_first() -> None:
    history = [exchange(1, author="Bob")]
    assert window(history, shared=True, system_prompt="Be brief.") == [
        ("system", "Be brief."),
        ("user", "Bob: q1"),
        ("assistant", "a1"),
        ("user", "Ann: now"),
    ]


def config(fake: FakeGpts, db: Path | str, **gpts: Any) -> Any:
    """`db`: an SQLite file, or a database URL."""
    return parse_config(
        {
            "gpts": {"base_url": fake.base_url, "default_gpt": "g-B3hgivKK9", "max_retries": 0,
                     **gpts},
            "storage": {"url": db if isinstance(db, str) else f"sqlite+aiosqlite:///{db}"},
        },
        {"GPTS_API_KEY": "k"},
    )  # fmt: skip


async def say(app: Any, text: str) -> list[str]:
    channel = RecordingChannel(FakeClock())
    await app.service.answer(
        Turn(DM, ALICE, text, True), StreamingReply(channel, edit_interval_s=0)
    )
    return channel.visible()


@pytest.mark.asyncio
async def test_a_refused_long_message_is_stored_cut_and_does_not_cut_the_window(
    fake_gpts: FakeGpts, tmp_path: Path
) -> None:
    async with open_app(config(fake_gpts, tmp_path / "w.db", history_chars=3000)) as app:
        await say(app, "first")
        enormous = "x" * 10_000_000  # 10 MB
        shown = await say(app, enormous)
        assert shown[0].startswith("⚠️ Your message is too long for the GPT (10000000 characters")
        await say(app, "second")
        conversation = await app.repo.current_conversation(DM)
        stored = await app.repo.history(conversation, limit=10)
    assert [(m.role, len(m.content), m.status, m.full_length) for m in stored] == [
        ("user", 5, "complete", None),
        ("assistant", 11, "complete", None),
        ("user", REFUSED_KEPT_CHARS, "refused", 10_000_000),
        ("user", 6, "complete", None),
        ("assistant", 12, "complete", None),
    ]
    assert (tmp_path / "w.db").stat().st_size < 1_000_000
    assert [m["content"] for m in fake_gpts.requests[-1].messages] == [
        "first",
        "echo: first",
        "second",
    ]


@pytest.mark.asyncio
async def test_unanswered_messages_stay_stored_but_never_go_upstream(
    fake_gpts: FakeGpts, db_url: str
) -> None:
    async with open_app(config(fake_gpts, db_url, default_gpt=None)) as app:
        await say(app, "nobody answers this")  # no GPT bound
        await app.service.bind(DM, "g-B3hgivKK9", ALICE)
        fake_gpts.enqueue(Reply("Half of it", chunk_chars=5, drop_after=1))
        await say(app, "cut me off")  # partial: goes up marked
        await say(app, "   ")  # refused: empty
        await say(app, "last")
        conversation = await app.repo.current_conversation(DM)
        statuses = [(m.role, m.status) for m in await app.repo.history(conversation, limit=20)]
    assert statuses == [
        ("user", "complete"),
        ("assistant", "error"),
        ("user", "complete"),
        ("assistant", "partial"),
        ("user", "refused"),
        ("user", "complete"),
        ("assistant", "complete"),
    ]
    assert fake_gpts.requests[-1].messages == alternating("cut me off", "Half " + CUT_MARK, "last")


@pytest.mark.asyncio
async def test_pairs_keep_question_order_whatever_order_rows_were_written(
    fake_gpts: FakeGpts, db_url: str
) -> None:
    async with open_app(config(fake_gpts, db_url)) as app:
        repo = app.repo
        conversation = await repo.current_conversation(DM)
        # Two writers interleaved: both questions first, the answers in reverse order.
        one = await repo.add_message(conversation, NewMessage("user", "one"))
        two = await repo.add_message(conversation, NewMessage("user", "two"))
        await repo.add_message(conversation, NewMessage("assistant", "answer two", answers_id=two))
        await repo.add_message(conversation, NewMessage("assistant", "answer one", answers_id=one))
        await say(app, "three")
    assert fake_gpts.requests[-1].messages == alternating(
        "one", "answer one", "two", "answer two", "three"
    )
