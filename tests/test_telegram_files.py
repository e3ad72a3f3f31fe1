"""Photos and documents sent to the Telegram bot go to the GPT: the real python-telegram-bot
polls the fake Bot API (getFile, file downloads), the fake GPTs endpoint records what went up."""

from __future__ import annotations

import base64
import dataclasses
import json
from collections import Counter
from pathlib import Path

import pytest

from bots.telegram_adapter.adapter import TelegramAdapter
from bots.telegram_adapter.files import file_base_url
from fakes.gpts import FakeGpts, image_urls, text_of
from fakes.telegram import FakeTelegram
from tests import test_telegram
from tests.helpers import data_url_bytes
from tests.test_telegram import Json, make_config, reply_text, running, wait_answer

# test_telegram.py's fixtures, found here by name: the same bot, people and chats.
bot, ann, dm, group = test_telegram.bot, test_telegram.ann, test_telegram.dm, test_telegram.group

JPEG = b"\xff\xd8\xff\xe0\x00\x10JFIF" + bytes(range(256)) * 8


def jpeg(n: int) -> bytes:
    return JPEG + bytes([n])


def data_of(url: str) -> bytes:
    return data_url_bytes(url, ("image/jpeg", "image/png"))


def no_request_has_the_token(tg: FakeTelegram, fake_gpts: FakeGpts) -> bool:
    bodies = [json.dumps(request.json) for request in fake_gpts.requests]
    secret = tg.token.split(":")[1]
    return not any(tg.token in body or secret in body for body in bodies)


@pytest.mark.asyncio
async def test_a_photo_with_a_caption_goes_up_as_the_caption_and_its_largest_size(
    bot: TelegramAdapter, tg: FakeTelegram, fake_gpts: FakeGpts, ann: Json, dm: Json
) -> None:
    asked = tg.user_photo(dm, ann, JPEG, caption="what is in this picture?")
    await wait_answer(tg, asked, "echo: what is in this picture? (+1 images)")

    content = fake_gpts.requests[-1].messages[-1]["content"]
    assert content[0] == {"type": "text", "text": "what is in this picture?"}
    assert [data_of(url) for url in image_urls(content)] == [JPEG]
    assert no_request_has_the_token(tg, fake_gpts)
    largest = asked["photo"][-1]["file_id"]
    assert tg.downloads == Counter({largest: 1})  # never the thumbnail


@pytest.mark.asyncio
async def test_a_photo_without_a_caption_in_a_group_that_replies_to_the_bot(
    bot: TelegramAdapter, tg: FakeTelegram, fake_gpts: FakeGpts, ann: Json, group: Json
) -> None:
    tg.set_member(group, ann, "member")
    asked = tg.user_photo(group, ann, JPEG, caption=f"@{tg.username} describe it")
    await wait_answer(tg, asked, "echo: Ann: describe it (+1 images)")
    assert no_request_has_the_token(tg, fake_gpts)


@pytest.mark.asyncio
async def test_an_image_sent_as_a_document_goes_up_as_an_image(
    bot: TelegramAdapter, tg: FakeTelegram, fake_gpts: FakeGpts, ann: Json, dm: Json
) -> None:
    png = b"\x89PNG\r\n\x1a\n" + bytes(300)
    asked = tg.user_document(dm, ann, png, "chart.png", "image/png", caption="read the chart")
    await wait_answer(tg, asked, "echo: read the chart (+1 images)")
    content = fake_gpts.requests[-1].messages[-1]["content"]
    assert image_urls(content) == [f"data:image/png;base64,{base64.b64encode(png).decode()}"]


@pytest.mark.asyncio
async def test_a_text_file_goes_up_in_the_message(
    bot: TelegramAdapter, tg: FakeTelegram, fake_gpts: FakeGpts, ann: Json, dm: Json
) -> None:
    table = "城市,人口\n上海,2487\n".encode("gb18030")
    asked = tg.user_document(dm, ann, table, "cities.csv", "text/csv", caption="which is larger?")
    sent = "which is larger?\n\ncities.csv:\n```csv\n城市,人口\n上海,2487\n```"
    shown = await reply_text(tg, asked)  # the fence shows as a code block
    assert shown.startswith("echo: which is larger?\n\ncities.csv:\n城市,人口")
    assert fake_gpts.requests[-1].messages[-1]["content"] == sent


@pytest.mark.asyncio
async def test_a_pdf_gets_a_clear_line_and_nothing_goes_upstream(
    bot: TelegramAdapter, tg: FakeTelegram, fake_gpts: FakeGpts, ann: Json, dm: Json
) -> None:
    asked = tg.user_document(dm, ann, b"%PDF-1.7\n", "paper.pdf", "application/pdf")
    line = await reply_text(tg, asked)
    assert line.startswith("⚠️ paper.pdf: this file type isn't supported")
    assert fake_gpts.requests == []
    assert tg.downloads == Counter()


@pytest.mark.asyncio
async def test_a_photo_over_the_size_limit_gets_a_clear_line(
    tmp_path: Path, tg: FakeTelegram, fake_gpts: FakeGpts, ann: Json, dm: Json
) -> None:
    config = make_config(tmp_path, tg, fake_gpts)
    small = dataclasses.replace(config.gpts, max_image_bytes=1024)
    config = dataclasses.replace(config, gpts=small)
    async with running(config):
        asked = tg.user_photo(dm, ann, JPEG, caption="and this?")
        line = await reply_text(tg, asked)
    assert line.startswith("⚠️ photo.jpg is too large for the GPT (0.0 MB; at most 0.0 MB)")
    assert fake_gpts.requests == []


@pytest.mark.asyncio
async def test_history_sends_again_the_photos_of_the_last_two_photo_turns_only(
    bot: TelegramAdapter, tg: FakeTelegram, fake_gpts: FakeGpts, ann: Json, dm: Json
) -> None:
    photos = []
    for n in (1, 2, 3):
        asked = tg.user_photo(dm, ann, jpeg(n), caption=f"photo {n}")
        await wait_answer(tg, asked, f"echo: photo {n} (+1 images)")
        photos.append(asked["photo"][-1]["file_id"])
    before = Counter(tg.downloads)
    asked = tg.user_message(dm, ann, "which was the brightest?")
    await wait_answer(tg, asked, "echo: which was the brightest?")

    users = [m for m in fake_gpts.requests[-1].messages if m["role"] == "user"]
    assert [(text_of(m["content"]), [data_of(u)[-1] for u in image_urls(m["content"])])
            for m in users] == [
        ("photo 1", []),
        ("photo 2", [2]),
        ("photo 3", [3]),
        ("which was the brightest?", []),
    ]  # fmt: skip
    assert tg.downloads - before == Counter({photos[1]: 1, photos[2]: 1})
    assert no_request_has_the_token(tg, fake_gpts)


def test_the_file_endpoint_sits_beside_the_bot_api() -> None:
    assert file_base_url("https://api.telegram.org/bot") == "https://api.telegram.org/file/bot"
    assert file_base_url("http://127.0.0.1:8081/bot") == "http://127.0.0.1:8081/file/bot"
    assert file_base_url("https://tg.example/api/") == "https://tg.example/file/bot"
