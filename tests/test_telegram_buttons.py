"""Stop and Retry on Telegram, end to end: the real python-telegram-bot polls the fake Bot API,
which shows the inline keyboard under the answer and sends the presses back as callback
queries; the real core answers from a SQLite file, the fake GPTs endpoint streams upstream."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from bots.telegram_adapter.adapter import TelegramAdapter
from core import i18n
from core.history import CUT_MARK
from core.turns import Scope
from fakes.gpts import Fail, FakeGpts, Gate, Reply
from fakes.telegram import FakeTelegram
from tests import test_telegram
from tests.helpers import alternating
from tests.test_telegram import WAIT_S, Json, answer_to, make_config, running, wait_answer

# test_telegram.py's fixtures, found here by name: the same bot, people and chats.
bot, ann, bob, dm, group = (
    test_telegram.bot,
    test_telegram.ann,
    test_telegram.bob,
    test_telegram.dm,
    test_telegram.group,
)

STOPPED = i18n.STOPPED("en")


def buttons(message: Json) -> list[tuple[str, str]]:
    """The inline keyboard under a message as (label, callback data), as the fake holds it."""
    rows = message.get("reply_markup", {}).get("inline_keyboard", [])
    return [(button["text"], button["callback_data"]) for row in rows for button in row]


async def showing(tg: FakeTelegram, asked: Json, text: str) -> Json:
    """The bot's one answer to `asked`, once its text starts with `text`."""

    def found() -> bool:
        messages = answer_to(tg, asked)
        return len(messages) == 1 and messages[0]["text"].startswith(text)

    await tg.wait_until(found, WAIT_S)
    return answer_to(tg, asked)[0]


async def statuses(adapter: TelegramAdapter, chat: Json) -> list[tuple[str, str]]:
    repo = adapter.service.repo
    conversation = await repo.current_conversation(Scope("telegram", str(chat["id"])))
    return [(r.content, r.status) for r in await repo.history(conversation, limit=50)]


@pytest.mark.asyncio
async def test_stop_closes_the_upstream_connection_and_keeps_the_text(
    bot: TelegramAdapter, tg: FakeTelegram, fake_gpts: FakeGpts, gate: Gate, ann: Json, group: Json
) -> None:
    asked = tg.user_message(group, ann, f"@{tg.username} tell me a story")
    gate.send("Once upon a time")
    streaming = await showing(tg, asked, "Once upon a time")
    [(label, data)] = buttons(streaming)
    assert label == i18n.STOP_BUTTON("en") and data.startswith("stop:")

    query = tg.press(streaming, ann)
    answered = await tg.wait_query_answer(query)
    assert "text" not in answered  # nothing to say: the message shows it
    await asyncio.wait_for(fake_gpts.requests[-1].disconnected.wait(), WAIT_S)
    (final,) = await wait_answer(tg, asked, f"Once upon a time\n\n{STOPPED}")
    assert buttons(final) == []  # the final edit took the button away, and put no Retry
    assert (await statuses(bot, group))[-1] == ("Once upon a time", "stopped")

    # A press that arrives after the end (a slow client) just says so.
    late = tg.press(streaming, ann, data)
    assert (await tg.wait_query_answer(late))["text"] == i18n.ANSWER_ENDED("en")
    # The next turn carries the stopped answer, marked as cut.
    await wait_answer(tg, tg.user_message(group, ann, f"@{tg.username} go on"), "echo: Ann: go on")
    assert fake_gpts.requests[-1].messages[-3:] == alternating(
        "Ann: tell me a story", "Once upon a time" + CUT_MARK, "Ann: go on"
    )


@pytest.mark.asyncio
async def test_a_member_who_did_not_ask_is_refused_privately_and_the_stream_goes_on(
    bot: TelegramAdapter,
    tg: FakeTelegram,
    fake_gpts: FakeGpts,
    gate: Gate,
    ann: Json,
    bob: Json,
    group: Json,
) -> None:
    asked = tg.user_message(group, ann, f"@{tg.username} count")
    gate.send("one")
    streaming = await showing(tg, asked, "one")
    query = tg.press(streaming, bob)
    answered = await tg.wait_query_answer(query)
    assert answered["text"] == i18n.NOT_YOURS_TO_STOP("en")  # a toast only Bob sees
    assert tg.calls_to("getChatMember")[-1].params["user_id"] == bob["id"]
    gate.send(" two")
    gate.finish()
    (final,) = await wait_answer(tg, asked, "one two")
    assert not fake_gpts.requests[-1].disconnected.is_set()
    [(label, data)] = buttons(final)
    assert label == i18n.RETRY_BUTTON("en") and data.startswith("retry:")
    assert (await statuses(bot, group))[-1] == ("one two", "complete")
    # Nor may Bob retry Ann's question; an admin may.
    query = tg.press(final, bob)
    assert (await tg.wait_query_answer(query))["text"] == i18n.NOT_YOURS_TO_RETRY("en")
    tg.set_member(group, bob, "administrator")
    fake_gpts.enqueue(Reply("one two three"))
    query = tg.press(final, bob)
    assert "text" not in await tg.wait_query_answer(query)
    retried = await wait_answer(tg, asked, "one two three", pages=2)
    assert retried[-1]["reply_to_message"]["message_id"] == asked["message_id"]


@pytest.mark.asyncio
async def test_retry_of_an_answer_and_of_an_error_line_asks_again_in_a_new_message(
    bot: TelegramAdapter, tg: FakeTelegram, fake_gpts: FakeGpts, ann: Json, dm: Json
) -> None:
    fake_gpts.enqueue(Reply("Paris, I think"), Fail(500), Reply("Paris."))
    asked = tg.user_message(dm, ann, "capital of France?")
    (first,) = await wait_answer(tg, asked, "Paris, I think")
    tg.press(first, ann)
    error_line = i18n.UPSTREAM_FAILED("en", message="")
    await tg.wait_until(lambda: len(answer_to(tg, asked)) == 2, WAIT_S)
    await tg.wait_until(lambda: buttons(answer_to(tg, asked)[1]) != [], WAIT_S)
    failed = answer_to(tg, asked)[1]
    assert failed["text"].startswith(error_line.split(":")[0])
    assert buttons(failed)[0][1].startswith("retry:")  # the error line has its Retry too
    tg.press(failed, ann)
    messages = await wait_answer(tg, asked, "Paris.", pages=3)
    assert [m["text"] for m in messages[:1]] == ["Paris, I think"]  # the first stays shown
    assert [r.messages for r in fake_gpts.requests] == [
        [{"role": "user", "content": "capital of France?"}],
    ] * 3  # the same question each time, no earlier answer with it
    assert await statuses(bot, dm) == [
        ("capital of France?", "complete"),
        ("Paris, I think", "superseded"),
        ("", "superseded"),
        ("Paris.", "complete"),
    ]
    await wait_answer(tg, tg.user_message(dm, ann, "and Italy?"), "echo: and Italy?")
    assert fake_gpts.requests[-1].messages == alternating(
        "capital of France?", "Paris.", "and Italy?"
    )


@pytest.mark.asyncio
async def test_retry_works_after_a_restart_and_twice_says_it_no_longer_can(
    tmp_path: Path, tg: FakeTelegram, fake_gpts: FakeGpts, ann: Json, dm: Json
) -> None:
    config = make_config(tmp_path, tg, fake_gpts)
    async with running(config):
        asked = tg.user_message(dm, ann, "hello")
        (answer,) = await wait_answer(tg, asked, "echo: hello")
    fake_gpts.enqueue(Reply("hello again"))
    async with running(config) as restarted:  # a new process over the same database
        query = tg.press(answer, ann)
        assert "text" not in await tg.wait_query_answer(query)
        await wait_answer(tg, asked, "hello again", pages=2)
        query = tg.press(answer, ann)
        assert (await tg.wait_query_answer(query))["text"] == i18n.CANNOT_RETRY("en")
        assert len(fake_gpts.requests) == 2
        assert [status for _, status in await statuses(restarted, dm)] == [
            "complete",
            "superseded",
            "complete",
        ]


@pytest.mark.asyncio
async def test_buttons_ride_on_the_calls_the_answer_makes_anyway(
    bot: TelegramAdapter, tg: FakeTelegram, fake_gpts: FakeGpts, ann: Json, dm: Json
) -> None:
    """One send, one edit per change (each with Stop), one final edit (with Retry): exactly the
    calls the same stream makes without buttons, and never a call for a button alone."""
    gate = Gate()
    fake_gpts.enqueue(gate)
    asked = tg.user_message(dm, ann, "count")
    pieces = ["one", " two", " three", " four"]
    shown = ""
    for piece in pieces:
        gate.send(piece)
        shown += piece
        await showing(tg, asked, shown + bot.config.bot.streaming_indicator.rstrip())
    gate.finish()
    await wait_answer(tg, asked, shown)
    await asyncio.sleep(0.3)  # nothing else comes
    chat_calls = [c for c in tg.calls if c.params.get("chat_id") == dm["id"]]
    made = [c for c in chat_calls if c.method != "sendChatAction"]
    assert [c.method for c in made] == ["sendMessage"] + ["editMessageText"] * len(pieces)
    keyboards: list[Any] = [c.params.get("reply_markup") for c in made]
    stop = [[b["callback_data"].split(":")[0] for b in k["inline_keyboard"][0]] for k in keyboards]
    assert stop == [["stop"]] * len(pieces) + [["retry"]]
