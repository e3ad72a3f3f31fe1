"""Images out on Telegram, end to end: the real python-telegram-bot against the fake Bot API, an
answer from the fake GPTs endpoint whose image links point at a local image host. The answer's
text keeps every link; the images follow as photos (one: sendPhoto, several: sendMediaGroup),
uploaded as bytes in the answer's chat and topic."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from bots.telegram_adapter.adapter import TelegramAdapter
from core import i18n
from fakes.gpts import FakeGpts, Reply
from fakes.images import FakeImageHost, png
from fakes.rate_window import max_in_window
from fakes.telegram import FakeTelegram, Fault
from storage import MessageRecord, ScopeKey
from tests import test_telegram
from tests.helpers import long_image_answer
from tests.test_telegram import WAIT_S, Json, answer_to, make_config, running

PHOTO_METHODS = {"sendPhoto", "sendMediaGroup"}
pytestmark = pytest.mark.asyncio

# test_telegram.py's fixtures, found here by name: the same bot, person and private chat.
bot, ann, dm = test_telegram.bot, test_telegram.ann, test_telegram.dm


def link_urls(message: Json) -> list[str]:
    return [e["url"] for e in message.get("entities", []) if e["type"] == "text_link"]


async def photos_after(tg: FakeTelegram, asked: Json, count: int) -> list[bytes]:
    """The bytes of the `count` photos the bot sent in the asking chat, once all are there."""
    chat_id = asked["chat"]["id"]
    await tg.wait_until(lambda: len(tg.photo_messages(chat_id)) >= count, WAIT_S)
    messages = tg.photo_messages(chat_id)
    assert len(messages) == count
    return [tg.photos[(chat_id, m["message_id"])].data for m in messages]


async def final_text(tg: FakeTelegram, asked: Json, ends_with: str) -> Json:
    def done() -> bool:
        texts = [m for m in answer_to(tg, asked) if "text" in m]
        return bool(texts) and texts[-1]["text"].endswith(ends_with)

    await tg.wait_until(done, WAIT_S)
    return [m for m in answer_to(tg, asked) if "text" in m][-1]


async def last_stored(adapter: TelegramAdapter, chat: Json) -> MessageRecord:
    """The last message stored in the chat's current conversation."""
    repo = adapter.service.repo
    conversation = await repo.current_conversation(ScopeKey("telegram", str(chat["id"])))
    return (await repo.history(conversation, limit=2))[-1]


@pytest.mark.usefixtures("bot")
async def test_two_image_links_become_an_album_and_the_text_keeps_them(
    tg: FakeTelegram, fake_gpts: FakeGpts, host: FakeImageHost, ann: Json, dm: Json
) -> None:
    cat, dog = host.url("/png/cat?se=2026&sig=abc"), host.url("/png/dog")
    fake_gpts.enqueue(Reply(f"Here: ![a cat]({cat}) and ![a dog]({dog}) done.", chunk_chars=20))
    asked = tg.user_message(dm, ann, "draw two")

    assert await photos_after(tg, asked, 2) == [png("cat"), png("dog")]
    (album,) = tg.calls_to("sendMediaGroup")
    assert album.params["chat_id"] == dm["id"]
    text = await final_text(tg, asked, "done.")
    assert "a cat" in text["text"] and "a dog" in text["text"]
    assert link_urls(text) == [cat, dog]
    assert not tg.calls_to("sendPhoto")
    # The photos come after the answer's final text.
    last_edit = max(c.at for c in tg.calls if c.method in {"sendMessage", "editMessageText"})
    assert album.at >= last_edit


@pytest.mark.usefixtures("bot")
async def test_a_dead_link_keeps_its_text_with_one_note_and_the_other_image_is_sent(
    tg: FakeTelegram, fake_gpts: FakeGpts, host: FakeImageHost, ann: Json
) -> None:
    group = tg.group(-1005, "Forum", forum=True)
    topic = tg.create_topic(group, "art", ann)
    gone, fine = host.url("/missing?sig=x"), host.url("/png/fine")
    fake_gpts.enqueue(Reply(f"![old]({gone})\n\n![new]({fine})", chunk_chars=50))
    asked = tg.user_message(group, ann, f"@{tg.username} draw", thread_id=topic)
    note = i18n.IMAGE_UNREACHABLE("en", number=1)

    text = await final_text(tg, asked, note)
    assert text["text"].count("could not be loaded") == 1
    assert link_urls(text) == [gone, fine]
    assert await photos_after(tg, asked, 1) == [png("fine")]
    (photo,) = tg.calls_to("sendPhoto")
    assert photo.params["message_thread_id"] == topic
    assert tg.photo_messages(group["id"])[0]["message_thread_id"] == topic


@pytest.mark.usefixtures("bot")
async def test_too_large_and_not_an_image_are_refused_with_notes(
    tg: FakeTelegram, fake_gpts: FakeGpts, host: FakeImageHost, ann: Json, dm: Json
) -> None:
    huge, page = host.url("/huge"), host.url("/page")
    notes = [
        i18n.IMAGE_TOO_LARGE("en", number=1, megabytes=10),
        i18n.IMAGE_NOT_AN_IMAGE("en", number=2),
    ]
    fake_gpts.enqueue(Reply(f"Big ![big]({huge}) and ![web]({page})", chunk_chars=200))
    asked = tg.user_message(dm, ann, "draw")

    text = await final_text(tg, asked, notes[-1])
    assert text["text"].endswith("\n".join(notes))
    assert link_urls(text) == [huge, page]
    assert not tg.photo_messages(dm["id"])
    assert not any(c.method in PHOTO_METHODS for c in tg.calls)


async def test_by_default_a_private_address_is_not_asked_and_keeps_its_link_with_a_note(
    tg: FakeTelegram, fake_gpts: FakeGpts, host: FakeImageHost, tmp_path: Path, ann: Json, dm: Json
) -> None:
    config = make_config(tmp_path, tg, fake_gpts, bot={"allow_private_image_hosts": False})
    inside = host.url("/png/inside")
    fake_gpts.enqueue(Reply(f"Look: ![inside]({inside}) done.", chunk_chars=200))
    note = i18n.IMAGE_PRIVATE_ADDRESS("en", number=1)
    async with running(config):
        asked = tg.user_message(dm, ann, "draw")
        text = await final_text(tg, asked, note)

    assert text["text"] == f"Look: 🖼inside done.\n\n{note}"
    assert link_urls(text) == [inside]
    assert host.requests == []
    assert not any(c.method in PHOTO_METHODS for c in tg.calls)


async def test_eleven_images_take_two_calls_within_the_bot_wide_budget(
    tg: FakeTelegram, fake_gpts: FakeGpts, host: FakeImageHost, tmp_path: Path, ann: Json, dm: Json
) -> None:
    rate = 2
    config = make_config(tmp_path, tg, fake_gpts, messages_per_second=rate)
    names = [f"p{n}" for n in range(11)]
    links = " ".join(f"![{name}]({host.url('/png/' + name)})" for name in names)
    fake_gpts.enqueue(Reply(f"Eleven: {links}", chunk_chars=100))
    tg.inject("sendMediaGroup", Fault.flood(1))  # survived, as for a send
    async with running(config):
        asked = tg.user_message(dm, ann, "many")
        assert await photos_after(tg, asked, 11) == [png(name) for name in names]

    photo_calls = [c for c in tg.calls if c.method in PHOTO_METHODS]
    assert [(c.method, c.status) for c in photo_calls] == [
        ("sendMediaGroup", 429),
        ("sendMediaGroup", 200),
        ("sendPhoto", 200),
    ]
    assert photo_calls[1].at - photo_calls[0].at >= 1.0 - 0.02  # waited retry_after
    paced = [
        c.at for c in tg.calls if c.method in PHOTO_METHODS | {"sendMessage", "editMessageText"}
    ]
    assert max_in_window(paced, 1.0) <= rate + 1  # the photos shared the bot-wide budget


async def test_a_refused_upload_gets_one_line_and_the_stored_answer_is_as_written(
    bot: TelegramAdapter,
    tg: FakeTelegram,
    fake_gpts: FakeGpts,
    host: FakeImageHost,
    ann: Json,
    dm: Json,
) -> None:
    answer = f"![a]({host.url('/png/a')}) ![b]({host.url('/missing')})"
    fake_gpts.enqueue(Reply(answer, chunk_chars=200))
    tg.inject("sendPhoto", Fault(400, "Bad Request: PHOTO_INVALID_DIMENSIONS"))
    asked = tg.user_message(dm, ann, "draw")
    line = i18n.IMAGES_NOT_SENT("en")
    await tg.wait_until(
        lambda: [m.get("text") for m in answer_to(tg, asked)][-1:] == [line], WAIT_S
    )

    stored = await last_stored(bot, dm)
    assert (stored.role, stored.status, stored.content) == ("assistant", "complete", answer)
    assert [m.get("text", "") for m in answer_to(tg, asked)][-1] == line
    assert not tg.photo_messages(dm["id"])


@pytest.mark.usefixtures("bot")
async def test_a_long_answer_with_images_and_fences_splits_as_without_them(
    tg: FakeTelegram, fake_gpts: FakeGpts, host: FakeImageHost, ann: Json, dm: Json
) -> None:
    answer = long_image_answer(host, code_lines=90, prose_words=400)
    assert len(answer.text) > 2 * 4096
    fake_gpts.enqueue(Reply(answer.text, chunk_chars=1500))
    asked = tg.user_message(dm, ann, "long")

    assert await photos_after(tg, asked, 2) == [png("first"), png("last")]
    pages = [m for m in answer_to(tg, asked) if "text" in m]
    assert len(pages) >= 3
    assert all(len(m["text"].encode("utf-16-le")) // 2 <= 4096 for m in pages)
    assert "/png/code" not in "".join(host.requests)  # code is not downloaded
    # Every code line arrived inside a code block, once.
    shown = [line for m in pages for line in m["text"].splitlines()]
    assert [line for line in shown if line.startswith("print(")] == answer.code.splitlines()
    assert link_urls(pages[0])[0] == answer.first and link_urls(pages[-1])[-1] == answer.last


async def test_a_shutdown_while_images_download_still_shows_and_stores_the_answer(
    tmp_path: Path, tg: FakeTelegram, fake_gpts: FakeGpts, host: FakeImageHost, ann: Json, dm: Json
) -> None:
    answer = f"Slow: ![s]({host.url('/slow')}) end."
    fake_gpts.enqueue(Reply(answer, chunk_chars=200))
    config = make_config(tmp_path, tg, fake_gpts, bot={"shutdown_grace_s": 0.2})
    async with running(config):
        asked = tg.user_message(dm, ann, "draw")
        await tg.wait_until(lambda: bool(answer_to(tg, asked)), WAIT_S)
        await asyncio.wait_for(host.slow_started.wait(), WAIT_S)  # the download has begun
    (message,) = answer_to(tg, asked)
    assert message["text"] == "Slow: 🖼s end."  # final: no indicator, no note
    async with running(config) as adapter:
        stored = await last_stored(adapter, dm)
    assert (stored.status, stored.content) == ("complete", answer)
    assert not tg.photo_messages(dm["id"])
