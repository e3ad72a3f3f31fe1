"""End to end: an answer full of ChatGPT-only markup, streamed in small chunks that split every
marker, through the real python-telegram-bot, the real discord.py and the terminal. No version
of a message ever shows a marker; the final text lists the sources; the database (and so the
history sent upstream) keeps what the GPT wrote."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from core import i18n
from fakes.gpts import FakeGpts, Reply
from fakes.images import FakeImageHost
from fakes.telegram import FakeTelegram
from tests.test_cli import environment, gptsbot
from tests.test_discord import TIMEOUT, world
from tests.test_telegram import WAIT_S, answer_to, make_config, running, stream_calls

RAW = (
    "Foxes live in many places【4:0†source】 and eat mice【12†Fox facts】.\n"
    "See the survey\ue200cite\ue202turn0search0\ue202turn0news3\ue201 and the notes"
    "\ue200filecite\ue202turn0file1\ue201.\n"
    'Red foxes [[1]](https://example.org/red "Red fox") and arctic foxes '
    "[[2]](https://example.org/arctic) differ.\n"
    "Your table: [foxes.csv](sandbox:/mnt/data/foxes.csv)\n"
    '```json\n{"prompt": "a red fox in snow", "size": "1024x1024"}\n```\n'
    "Done."
)
# The chunks split the markers at many points; paced, so the platform sees many versions.
STREAMED = Reply(RAW, chunk_chars=3, chunk_delay_s=0.005)
MARKERS = re.compile('[【†\ue200-\ue2ff]|\\[\\[|sandbox:|"prompt"|```')


def cleaned(language: i18n.Language) -> str:
    sources = i18n.SOURCES(language)
    return (
        "Foxes live in many places and eat mice.\n"
        "See the survey and the notes.\n"
        "Red foxes [1] and arctic foxes [2] differ.\n"
        f"Your table: {i18n.SANDBOX_FILE(language, name='foxes.csv')}\n"
        "Done.\n\n"
        f"{sources}\n[1] Red fox: https://example.org/red\n[2] https://example.org/arctic"
    )


def assert_clean(versions: list[str]) -> None:
    assert len(versions) >= 3, versions  # streamed, not sent whole
    for version in versions:
        assert not MARKERS.search(version), version


@pytest.mark.asyncio
async def test_telegram_never_shows_a_marker_and_stores_the_raw_answer(
    tmp_path: Path, tg: FakeTelegram, fake_gpts: FakeGpts
) -> None:
    ann = tg.user(10, "Ann")
    dm = tg.private_chat(ann)
    fake_gpts.enqueue(STREAMED, Reply("ok"))
    async with running(make_config(tmp_path, tg, fake_gpts)):
        asked = tg.user_message(dm, ann, "Tell me about foxes")

        def finished() -> bool:
            return any("Sources:" in m.get("text", "") for m in answer_to(tg, asked))

        await tg.wait_until(finished, WAIT_S)
        (message,) = answer_to(tg, asked)
        assert message["text"] == cleaned("en")
        assert_clean([str(call.params["text"]) for call in stream_calls(tg, dm["id"])])

        tg.user_message(dm, ann, "and wolves?")
        await fake_gpts.wait_requests(2)
    assert fake_gpts.requests[1].messages[1] == {"role": "assistant", "content": RAW}


@pytest.mark.asyncio
async def test_discord_never_shows_a_marker_and_stores_the_raw_answer(
    tmp_path: Path, fake_gpts: FakeGpts
) -> None:
    fake_gpts.enqueue(STREAMED, Reply("ok"))
    async with world(tmp_path, fake_gpts) as w:
        await w.fake.user_says(w.channel_id, w.member, "foxes?", mention_bot=True)

        def finished() -> Any:
            return [m for m in w.fake.bot_messages(w.channel_id) if "Sources:" in m.content]

        (message,) = await w.fake.wait_for(finished, TIMEOUT)
        assert message.content == cleaned("en")
        assert_clean([content for _, content in message.history])

        await w.fake.user_says(w.channel_id, w.member, "and wolves?", mention_bot=True)
        await fake_gpts.wait_requests(2)
    assert fake_gpts.requests[1].messages[-2] == {"role": "assistant", "content": RAW}


@pytest.mark.asyncio
@pytest.mark.parametrize(("lang", "language"), [("C", "en"), ("zh_CN.UTF-8", "zh")])
async def test_the_terminal_prints_the_cleaned_answer_in_its_language(
    fake_gpts: FakeGpts, tmp_path: Path, lang: str, language: i18n.Language
) -> None:
    env = environment(tmp_path, fake_gpts, LANG=lang)
    fake_gpts.enqueue(STREAMED)
    # The terminal prints only what each version adds: a marker shown once would stay on screen.
    first = await gptsbot("chat", env=env, stdin="foxes?\n")
    assert first.code == 0, first.err
    assert first.out == cleaned(language) + "\n"
    await gptsbot("chat", env=env, stdin="and wolves?\n")
    assert fake_gpts.requests[1].messages[1] == {"role": "assistant", "content": RAW}


@pytest.mark.asyncio
async def test_image_prompt_show_keeps_the_prompt_block(
    tmp_path: Path, fake_gpts: FakeGpts, host: FakeImageHost
) -> None:
    block = '```json\n{"prompt": "a red fox in snow"}\n```\n'
    image = f"![image]({host.url('/png/fox')})"  # the image itself follows as an upload
    answer = Reply(block + image, chunk_chars=3)
    fake_gpts.enqueue(answer, answer)
    async with world(tmp_path, fake_gpts, bot_config={"image_prompt": "show"}) as w:
        await w.fake.user_says(w.channel_id, w.member, "draw a fox", mention_bot=True)
        await w.answered(w.channel_id, block + image, count=2)  # the text, then the image
    async with world(tmp_path, fake_gpts) as w:  # "hide", the default
        await w.fake.user_says(w.channel_id, w.member, "draw a fox", mention_bot=True)
        await w.answered(w.channel_id, image, count=2)
