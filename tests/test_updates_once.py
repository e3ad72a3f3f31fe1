"""An update delivered twice is answered once: Telegram's re-delivery, a Discord gateway replay,
the same update reaching two processes. Each duplicate is dropped before upstream is called, with
one DEBUG line. On SQLite and PostgreSQL (`db_url`); two processes on PostgreSQL only."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest

from core.app import open_app
from core.streaming import StreamingReply
from core.turns import Author, Scope, Turn
from fakes.clock import FakeClock
from fakes.gpts import FakeGpts, Gate
from fakes.recording import RecordingChannel
from fakes.telegram import FakeTelegram
from tests.databases import rows
from tests.test_conversation import make_config as service_config
from tests.test_discord import world
from tests.test_telegram import WAIT_S, Json, answer_to, make_config, running, wait_answer

DM = Scope("test", "dm")
ANN = Author("1", "Ann")
SKIPPED = "came again: answered once"


def turn(text: str, update_id: str = "dm:7") -> Turn:
    return Turn(DM, ANN, text, is_private=True, message_id="7", update_id=update_id)


def reply() -> tuple[RecordingChannel, StreamingReply]:
    channel = RecordingChannel(FakeClock())
    return channel, StreamingReply(channel, edit_interval_s=0)


async def user_messages(url: str) -> list[tuple[str, str | None]]:
    return [
        (row[0], row[1])
        for row in await rows(
            url, "SELECT content, update_key FROM messages WHERE role = 'user' ORDER BY id"
        )
    ]


async def skipped(caplog: pytest.LogCaptureFixture, count: int = 1) -> None:
    """Wait for `count` duplicates dropped (their DEBUG line)."""
    async with asyncio.timeout(WAIT_S):
        while caplog.text.count(SKIPPED) < count:  # noqa: ASYNC110 (log records have no event)
            await asyncio.sleep(0.01)


@pytest.mark.asyncio
async def test_the_service_answers_an_update_once_whenever_it_comes_again(
    fake_gpts: FakeGpts, db_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="core.conversation")
    gate = Gate()
    fake_gpts.enqueue(gate)
    async with open_app(service_config(fake_gpts, db_url)) as app:
        app.service.reraise_unexpected = True
        first_channel, first = reply()
        answering = asyncio.create_task(app.service.answer(turn("hi"), first))
        await fake_gpts.wait_requests(1)
        # Again while it is answered in this process: dropped at once, no waiting line.
        again_channel, again = reply()
        assert (await app.service.answer(turn("hi"), again)).status == "duplicate"
        gate.send("hello")
        gate.finish()
        assert (await answering).status == "complete"
        # Again once answered (a re-delivery after a restart): the database knows it.
        late_channel, late = reply()
        assert (await app.service.answer(turn("hi"), late)).status == "duplicate"
        # A refused message (empty) delivered twice is refused once.
        for _ in range(2):
            await app.service.answer(turn(" ", update_id="dm:8"), reply()[1])
        # Another update, even with the same text, is a new turn.
        assert (await app.service.answer(turn("hi", "dm:9"), reply()[1])).status == "complete"

    assert len(fake_gpts.requests) == 2
    assert first_channel.visible() == ["hello"]
    assert again_channel.calls == [] and late_channel.calls == []
    assert await user_messages(db_url) == [
        ("hi", "test:dm:7"),
        (" ", "test:dm:8"),
        ("hi", "test:dm:9"),
    ]
    assert caplog.text.count(SKIPPED) == 3
    assert all(r.levelno == logging.DEBUG for r in caplog.records if SKIPPED in r.message)


@pytest.mark.asyncio
async def test_a_telegram_update_delivered_twice_is_answered_once(
    tmp_path: Path,
    db_url: str,
    tg: FakeTelegram,
    fake_gpts: FakeGpts,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="core.conversation")
    ann = tg.user(10, "Ann")
    dm = tg.private_chat(ann)
    async with running(make_config(tmp_path, tg, fake_gpts, db_url=db_url)):
        asked = tg.user_message(dm, ann, "hello")
        await wait_answer(tg, asked, "echo: hello")
        tg.deliver_again(tg.update_id_of(asked))
        await skipped(caplog)
        await wait_answer(tg, tg.user_message(dm, ann, "next"), "echo: next")

    assert [r.messages[-1]["content"] for r in fake_gpts.requests] == ["hello", "next"]
    assert [m["text"] for m in answer_to(tg, asked)] == ["echo: hello", "echo: next"]
    assert len(tg.calls_to("sendMessage")) == 2
    assert [text for text, _ in await user_messages(db_url)] == ["hello", "next"]


@pytest.mark.asyncio
async def test_a_discord_message_replayed_by_the_gateway_is_answered_once(
    tmp_path: Path, fake_gpts: FakeGpts, db_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="core.conversation")
    async with world(tmp_path, fake_gpts, db_url=db_url) as w:
        asked = await w.fake.user_says(w.channel_id, w.member, "hello", mention_bot=True)
        await w.answered(w.channel_id, "echo: mia: hello")
        await w.fake.replay(asked)
        await skipped(caplog)
        assert len(w.fake.bot_messages(w.channel_id)) == 1
    assert len(fake_gpts.requests) == 1
    assert await user_messages(db_url) == [("hello", f"discord:{asked.id}")]


@pytest.mark.asyncio
async def test_one_update_reaching_two_processes_is_answered_once(
    tmp_path: Path, pg_url: str, fake_gpts: FakeGpts, caplog: pytest.LogCaptureFixture
) -> None:
    """Two processes on one PostgreSQL database, each polling its own fake Bot API, get the same
    update: while the first answers it, and after."""
    caplog.set_level(logging.DEBUG, logger="core.conversation")
    gate = Gate()
    fake_gpts.enqueue(gate)
    async with FakeTelegram() as one, FakeTelegram() as two:
        chats: list[Json] = []
        for tg in (one, two):
            chats.append(tg.private_chat(tg.user(10, "Ann")))
        config_one = make_config(tmp_path, one, fake_gpts, db_url=pg_url)
        config_two = make_config(tmp_path, two, fake_gpts, db_url=pg_url)
        async with running(config_one), running(config_two):
            asked = one.user_message(chats[0], one.users[10], "hello")
            await fake_gpts.wait_requests(1)
            two.push_update({"message": asked})  # while the first process answers it
            await skipped(caplog)
            gate.send("hi Ann")
            gate.finish()
            await wait_answer(one, asked, "hi Ann")
            two.push_update({"message": asked})  # and once it is answered
            await skipped(caplog, 2)

    assert len(fake_gpts.requests) == 1
    assert len(one.calls_to("sendMessage")) == 1
    assert two.calls_to("sendMessage") == []
    assert await user_messages(pg_url) == [("hello", f"telegram:10:{asked['message_id']}")]
