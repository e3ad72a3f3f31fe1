"""End to end: corpus answers streamed by the fake GPTs endpoint through the real core and the real
python-telegram-bot client into the fake Bot API; the messages it stores keep every character and
carry only safe links (`tests.test_rendering` says what that means)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from telegram import MessageEntity

from bots.telegram_adapter.rendering import render_markdown
from fakes.gpts import FakeGpts, Reply
from fakes.telegram import FakeTelegram
from tests.rendering_corpus import CORPUS, Answer
from tests.test_rendering import check_answer, check_page, pages
from tests.test_telegram import WAIT_S, answer_to, make_config, running

BY_NAME = {answer.name: answer for answer in CORPUS}
END_TO_END = (
    "java_generics",
    "br_in_table",
    "html_block",
    "entities",
    "unsafe_links",
    "safe_links",
    "emoji_surrogates",
    "chinese",
    "long_code_fence_split",
)


def _entities(message: dict[str, Any]) -> list[MessageEntity]:
    return [MessageEntity.de_json(e, None) for e in message.get("entities", [])]


async def ask(tg: FakeTelegram, chat: dict[str, Any], user: dict[str, Any], answer: Answer) -> None:
    """Ask in `chat`; wait until every page of the answer shows its final rendering; check it."""
    expected = []
    for page in pages(answer.text):
        rendered = render_markdown(page)
        assert rendered is not None
        expected.append(rendered[0])
    asked = tg.user_message(chat, user, f"show me {answer.name}")

    def final() -> bool:
        return [m.get("text") for m in answer_to(tg, asked)] == expected

    try:
        await tg.wait_until(final, WAIT_S)
    except TimeoutError:
        shown = [m.get("text") for m in answer_to(tg, asked)]
        raise AssertionError(f"{answer.name}: the bot shows {shown!r}") from None
    messages = answer_to(tg, asked)
    rendered_messages = []
    for page, message in zip(pages(answer.text), messages, strict=True):
        entities = _entities(message)
        check_page(page, message["text"], entities, visible=answer.visible)
        rendered_messages.append((message["text"], entities))
    check_answer(answer, rendered_messages)


async def ask_in_a_dm(
    tmp_path: Path,
    tg: FakeTelegram,
    fake_gpts: FakeGpts,
    asked: list[tuple[Answer, dict[str, Any]]],
    **telegram: Any,
) -> dict[str, Any]:
    """Ann asks for each answer in her DM (streamed with the given `Reply` options) and each is
    checked as it finally shows; the chat."""
    ann = tg.user(10, "Ann")
    chat = tg.private_chat(ann)
    async with running(make_config(tmp_path, tg, fake_gpts, **telegram)):
        for answer, options in asked:
            fake_gpts.enqueue(Reply(answer.text, **options))
            await ask(tg, chat, ann, answer)
    return chat


@pytest.mark.asyncio
async def test_corpus_answers_arrive_whole_with_safe_links(
    tmp_path: Path, tg: FakeTelegram, fake_gpts: FakeGpts
) -> None:
    chat = await ask_in_a_dm(
        tmp_path, tg, fake_gpts, [(BY_NAME[name], {"chunk_chars": 400}) for name in END_TO_END]
    )
    # The code fence cut into two pages was closed and reopened: both pages carry a pre entity.
    code_pages = [
        m
        for m in tg.bot_messages(chat["id"])
        if any(e["type"] == "pre" for e in m.get("entities", []))
    ]
    assert len(code_pages) >= 2


@pytest.mark.asyncio
async def test_streamed_text_is_plain_and_the_final_one_is_rendered(
    tmp_path: Path, tg: FakeTelegram, fake_gpts: FakeGpts
) -> None:
    answer = BY_NAME["comparisons"]
    await ask_in_a_dm(
        tmp_path, tg, fake_gpts, [(answer, {"chunk_chars": 8, "chunk_delay_s": 0.06})]
    )
    calls = [c for c in tg.calls if c.method in {"sendMessage", "editMessageText"} and c.ok]
    assert len(calls) >= 2
    # The streamed versions showed the text as it came, and the final one took nothing away.
    assert calls[-1].params["text"] == answer.text
    streamed = [c.params["text"] for c in calls[:-1]]
    assert all(answer.text.startswith(t.removesuffix(" ▌")) for t in streamed)
    assert all("entities" not in c.params for c in calls)


@pytest.mark.asyncio
async def test_draft_mode_posts_the_rendered_final_text(
    tmp_path: Path, tg: FakeTelegram, fake_gpts: FakeGpts
) -> None:
    names = ("link_text_with_markup", "jsx_in_prose")
    asked = [(BY_NAME[name], {"chunk_chars": 20}) for name in names]
    await ask_in_a_dm(tmp_path, tg, fake_gpts, asked, dm_streaming="draft")
