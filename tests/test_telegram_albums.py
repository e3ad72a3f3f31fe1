"""Telegram albums: several photos sent together arrive as one message (and update) each, sharing
a media_group_id; the bot asks the GPT once with all of them. The real python-telegram-bot polls
the fake Bot API; the fake GPTs endpoint records what went up."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime
from pathlib import Path

import pytest
import pytest_asyncio
from telegram import Chat, Message
from telegram.constants import ChatType

from bots.telegram_adapter.adapter import TelegramAdapter
from bots.telegram_adapter.albums import ALBUM_MAX_WAIT_S, Albums, Handle
from core import i18n
from fakes.clock import FakeClock
from fakes.gpts import FakeGpts, image_urls, text_of
from fakes.telegram import FakeTelegram
from tests import test_telegram
from tests.test_telegram import Json, make_config, reply_text, running, wait_answer
from tests.test_telegram_files import data_of, jpeg, no_request_has_the_token
from tests.test_updates_once import skipped

# test_telegram.py's fixtures, found here by name: the same people and chats.
ann, dm, group = test_telegram.ann, test_telegram.dm, test_telegram.group

ALBUM_WAIT_S = 0.3  # every item the fake queues at once arrives well within it


@pytest_asyncio.fixture
async def bot(
    tmp_path: Path, tg: FakeTelegram, fake_gpts: FakeGpts
) -> AsyncIterator[TelegramAdapter]:
    config = make_config(tmp_path, tg, fake_gpts, album_wait_s=ALBUM_WAIT_S)
    async with running(config) as adapter:
        yield adapter


@pytest.mark.asyncio
async def test_an_album_with_a_caption_is_one_question_with_all_its_photos(
    bot: TelegramAdapter, tg: FakeTelegram, fake_gpts: FakeGpts, ann: Json, dm: Json
) -> None:
    album = tg.user_album(dm, ann, [jpeg(1), jpeg(2), jpeg(3)], caption="compare these")
    await wait_answer(tg, album[0], "echo: compare these (+3 images)")

    (request,) = fake_gpts.requests
    content = request.messages[-1]["content"]
    assert text_of(content) == "compare these"
    assert [data_of(url) for url in image_urls(content)] == [jpeg(1), jpeg(2), jpeg(3)]
    assert no_request_has_the_token(tg, fake_gpts)
    assert len(tg.bot_messages(dm["id"])) == 1  # one answer, to the first item


@pytest.mark.asyncio
async def test_in_a_group_an_album_is_answered_only_when_its_caption_mentions_the_bot(
    bot: TelegramAdapter, tg: FakeTelegram, fake_gpts: FakeGpts, ann: Json, group: Json
) -> None:
    tg.set_member(group, ann, "member")
    tg.user_album(group, ann, [jpeg(1), jpeg(2)], caption="our holiday")
    asked = tg.user_album(group, ann, [jpeg(3), jpeg(4)], caption=f"@{tg.username} which?")
    # The first album's wait ends first: it was looked at (and ignored) before this answer.
    await wait_answer(tg, asked[0], "echo: Ann: which? (+2 images)")

    (request,) = fake_gpts.requests
    content = request.messages[-1]["content"]
    assert [data_of(url) for url in image_urls(content)] == [jpeg(3), jpeg(4)]
    assert len(tg.bot_messages(group["id"])) == 1


@pytest.mark.asyncio
async def test_an_album_over_the_image_limit_gets_one_line_and_nothing_goes_upstream(
    tmp_path: Path, tg: FakeTelegram, fake_gpts: FakeGpts, ann: Json, dm: Json
) -> None:
    config = make_config(tmp_path, tg, fake_gpts, album_wait_s=ALBUM_WAIT_S)
    config = dataclasses.replace(
        config, gpts=dataclasses.replace(config.gpts, max_images_per_turn=4)
    )
    async with running(config):
        album = tg.user_album(dm, ann, [jpeg(n) for n in range(5)], caption="all of them?")
        line = await reply_text(tg, album[0])
    assert line == i18n.TOO_MANY_IMAGES("en", count=5, limit=4)
    assert fake_gpts.requests == []
    assert len(tg.bot_messages(dm["id"])) == 1
    assert tg.downloads == {}


@pytest.mark.asyncio
async def test_two_albums_back_to_back_are_two_questions(
    bot: TelegramAdapter, tg: FakeTelegram, fake_gpts: FakeGpts, ann: Json, dm: Json
) -> None:
    tg.user_album(dm, ann, [jpeg(1), jpeg(2)], caption="first")
    tg.user_album(dm, ann, [jpeg(3), jpeg(4)], caption="second")
    # The second waits for the first (its waiting line may come first): both are answered.
    answers = {"echo: first (+2 images)", "echo: second (+2 images)"}
    await tg.wait_until(lambda: {m.get("text") for m in tg.bot_messages(dm["id"])} == answers)
    sent = [request.messages[-1]["content"] for request in fake_gpts.requests]
    assert [[data_of(url) for url in image_urls(content)] for content in sent] == [
        [jpeg(1), jpeg(2)],
        [jpeg(3), jpeg(4)],
    ]


@pytest.mark.asyncio
async def test_an_album_still_being_collected_at_shutdown_is_asked_at_once(
    tmp_path: Path, tg: FakeTelegram, fake_gpts: FakeGpts, ann: Json, dm: Json
) -> None:
    config = make_config(tmp_path, tg, fake_gpts, album_wait_s=60.0)
    async with running(config) as adapter:
        tg.user_album(dm, ann, [jpeg(1), jpeg(2)], caption="later")
        # Updates are handled in order: once this is answered, the album's items were collected.
        await wait_answer(tg, tg.user_message(dm, ann, "meanwhile"), "echo: meanwhile")
        assert adapter.albums.waiting == 1
    # Stopping did not wait the minute out, nor drop what Ann sent: it was asked and answered
    # (running() checks that nothing failed).
    assert adapter.albums.waiting == 0
    sent = [r.messages[-1]["content"] for r in fake_gpts.requests]
    assert [text_of(content) for content in sent] == ["meanwhile", "later"]
    assert [data_of(url) for url in image_urls(sent[1])] == [jpeg(1), jpeg(2)]
    texts = [m["text"] for m in tg.bot_messages(dm["id"])]
    assert texts == ["echo: meanwhile", "echo: later (+2 images)"]


@pytest.mark.asyncio
async def test_an_album_delivered_again_is_answered_once(
    bot: TelegramAdapter,
    tg: FakeTelegram,
    fake_gpts: FakeGpts,
    ann: Json,
    dm: Json,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="core.conversation")
    album = tg.user_album(dm, ann, [jpeg(1), jpeg(2)], caption="once")
    await wait_answer(tg, album[0], "echo: once (+2 images)")
    for item in album:  # as Telegram does when the bot's confirmation never reached it
        tg.deliver_again(tg.update_id_of(item))
    await skipped(caplog)  # the album again: the same first message, so the same turn
    await wait_answer(tg, tg.user_message(dm, ann, "next"), "echo: next")
    assert [text_of(r.messages[-1]["content"]) for r in fake_gpts.requests] == ["once", "next"]


def album_item(message_id: int, group_id: str = "g1", chat_id: int = 7) -> Message:
    chat = Chat(chat_id, ChatType.PRIVATE)
    return Message(message_id, datetime.now(UTC), chat, media_group_id=group_id)


def recorder(clock: FakeClock) -> tuple[list[tuple[float, list[int]]], Handle]:
    """What the albums handed over (when, which items), and the handler that notes it."""
    handled: list[tuple[float, list[int]]] = []

    async def handle(items: Sequence[Message]) -> None:
        handled.append((clock.now, [item.id for item in items]))

    return handled, handle


@pytest.mark.asyncio
async def test_a_chats_albums_go_to_the_core_in_the_order_they_were_sent() -> None:
    clock = FakeClock()
    albums = Albums(clock, wait_s=1.0)
    handled, handle = recorder(clock)
    albums.add(album_item(1, "first"), handle)
    await clock.advance(0.1)
    albums.add(album_item(3, "second"), handle)
    albums.add(album_item(9, "elsewhere", chat_id=8), handle)  # another chat: not held back
    await clock.advance(0.4)
    albums.add(album_item(2, "first"), handle)  # the first album's window now ends last
    await clock.advance(0.6)
    assert handled == [(1.1, [9])]  # the second album's window is over; it waits for the first
    await clock.advance(0.4)
    assert handled == [(1.1, [9]), (1.5, [1, 2]), (1.5, [3])]


@pytest.mark.asyncio
async def test_the_wait_restarts_with_each_item_up_to_a_cap() -> None:
    clock = FakeClock()
    albums = Albums(clock, wait_s=1.0)
    handled, handle = recorder(clock)
    albums.add(album_item(2), handle)
    albums.add(album_item(9, chat_id=8), handle)  # another chat: another album
    await clock.advance(0.8)
    albums.add(album_item(1), handle)  # late, and earlier in the album: sorted by message id
    albums.add(album_item(2), handle)  # the same item again: once
    await clock.advance(0.8)
    assert handled == [(1.0, [9])]
    await clock.advance(0.2)
    assert handled == [(1.0, [9]), (1.8, [1, 2])]

    albums.add(album_item(5, "g2"), handle)  # an item every 0.9 s: handled at the cap
    for n in range(6, 14):
        await clock.advance(0.9)
        albums.add(album_item(n, "g2"), handle)
    assert handled[-1] == (1.8 + ALBUM_MAX_WAIT_S, [5, 6, 7, 8, 9, 10])
    await albums.close()  # the rest, still waiting: handled at once, with what came
    assert albums.waiting == 0 and handled[-1] == (clock.now, [11, 12, 13])
