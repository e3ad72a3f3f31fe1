"""The fake Bot API answers the real python-telegram-bot `Bot` the way Telegram does."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
from telegram import (
    Bot,
    BotCommand,
    ChatMemberAdministrator,
    ChatMemberMember,
    ChatMemberOwner,
    ReplyParameters,
)
from telegram.error import BadRequest, InvalidToken, RetryAfter

from fakes.telegram import FakeTelegram, Fault, MarkdownV2Error, parse_markdown_v2

WAIT_S = 5.0

# PTB's Bot, used directly here, logs the token in URLs: redacted as the adapter does.
pytestmark = pytest.mark.usefixtures("bot_api_redacted")


@pytest_asyncio.fixture
async def bot(tg: FakeTelegram) -> AsyncIterator[Bot]:
    async with Bot(tg.token, base_url=tg.base_url) as client:
        yield client


@pytest.mark.asyncio
async def test_get_me_and_wrong_token(tg: FakeTelegram, bot: Bot) -> None:
    assert bot.username == tg.username
    assert bot.id == tg.bot_id
    with pytest.raises(InvalidToken):
        async with Bot("999:wrong", base_url=tg.base_url):
            pass


@pytest.mark.asyncio
async def test_send_and_edit_with_telegram_errors(tg: FakeTelegram, bot: Bot) -> None:
    chat = tg.private_chat(tg.user(10, "Ann"))
    sent = await bot.send_message(chat["id"], "hello")
    assert sent.text == "hello" and sent.from_user is not None and sent.from_user.is_bot

    edited = await bot.edit_message_text("hello there", chat_id=chat["id"], message_id=sent.id)
    assert not isinstance(edited, bool) and edited.text == "hello there"

    with pytest.raises(BadRequest, match=r"(?i)message is not modified"):
        await bot.edit_message_text("hello there", chat_id=chat["id"], message_id=sent.id)
    with pytest.raises(BadRequest, match=r"(?i)message to edit not found"):
        await bot.edit_message_text("x", chat_id=chat["id"], message_id=999)
    with pytest.raises(BadRequest, match=r"(?i)message is too long"):
        await bot.send_message(chat["id"], "😀" * 2049)  # 4098 UTF-16 units
    assert (await bot.send_message(chat["id"], "😀" * 2048)).text == "😀" * 2048

    calls = tg.calls_to("editMessageText")
    assert [c.status for c in calls] == [200, 400, 400]
    assert calls[0].params == {"chat_id": chat["id"], "message_id": sent.id, "text": "hello there"}


@pytest.mark.asyncio
async def test_markdown_v2_is_checked(tg: FakeTelegram, bot: Bot) -> None:
    chat = tg.private_chat(tg.user(10, "Ann"))
    good = await bot.send_message(chat["id"], r"*bold* and `code` 1\.5", parse_mode="MarkdownV2")
    assert good.text == "bold and code 1.5"
    assert [(e.type, e.offset, e.length) for e in good.entities] == [
        ("bold", 0, 4),
        ("code", 9, 4),
    ]
    with pytest.raises(BadRequest, match=r"(?i)can't parse entities: character '.' is reserved"):
        await bot.send_message(chat["id"], "version 1.5", parse_mode="MarkdownV2")
    with pytest.raises(BadRequest, match=r"(?i)can't parse entities: can't find end"):
        await bot.send_message(chat["id"], "*never closed", parse_mode="MarkdownV2")


def test_markdown_v2_parser() -> None:
    assert parse_markdown_v2("plain") == ("plain", [])
    text, entities = parse_markdown_v2("```python\nprint(1)\n```\n[link](https://x.y/\\))")
    assert text == "print(1)\n\nlink"
    assert entities == [
        {"type": "pre", "offset": 0, "length": 9, "language": "python"},
        {"type": "text_link", "offset": 10, "length": 4, "url": "https://x.y/)"},
    ]
    assert parse_markdown_v2("__u__ _i_ ~s~ ||p||")[0] == "u i s p"
    with pytest.raises(MarkdownV2Error, match="byte offset 3"):
        parse_markdown_v2("ab *c")  # "ab " is 3 bytes


@pytest.mark.asyncio
async def test_entities_are_checked_in_utf16(tg: FakeTelegram, bot: Bot) -> None:
    from telegram import MessageEntity

    chat = tg.private_chat(tg.user(10, "Ann"))
    ok = await bot.send_message(chat["id"], "😀 hi", entities=[MessageEntity("bold", 3, 2)])
    assert ok.entities[0].offset == 3
    with pytest.raises(BadRequest, match=r"(?i)can't parse entities"):
        await bot.send_message(chat["id"], "😀 hi", entities=[MessageEntity("bold", 3, 3)])


@pytest.mark.asyncio
async def test_flood_control_becomes_retry_after(tg: FakeTelegram, bot: Bot) -> None:
    chat = tg.private_chat(tg.user(10, "Ann"))
    sent = await bot.send_message(chat["id"], "a")
    tg.inject("editMessageText", Fault.flood(7))
    with pytest.raises(RetryAfter) as caught:
        await bot.edit_message_text("b", chat_id=chat["id"], message_id=sent.id)
    assert caught.value.retry_after.total_seconds() == 7  # type: ignore[union-attr]
    # Like Telegram, the chat stays closed until retry_after has passed; other chats are open.
    with pytest.raises(RetryAfter):
        await bot.send_message(chat["id"], "c")
    other = tg.private_chat(tg.user(11, "Bob"))
    await bot.send_message(other["id"], "d")
    assert [c.status for c in tg.calls if c.method != "getMe"] == [200, 429, 429, 200]


@pytest.mark.asyncio
async def test_replies_and_topics(tg: FakeTelegram, bot: Bot) -> None:
    owner = tg.user(10, "Ann")
    group = tg.group(-1001, "Forum", forum=True)
    thread = tg.create_topic(group, "Ideas", owner)
    asked = tg.user_message(group, owner, "hi", thread_id=thread)
    assert asked["reply_to_message"]["forum_topic_created"]["name"] == "Ideas"
    sent = await bot.send_message(
        group["id"],
        "answer",
        message_thread_id=thread,
        reply_parameters=ReplyParameters(asked["message_id"]),
    )
    assert sent.message_thread_id == thread
    assert sent.reply_to_message is not None and sent.reply_to_message.id == asked["message_id"]
    with pytest.raises(BadRequest, match=r"(?i)message thread not found"):
        await bot.send_message(group["id"], "x", message_thread_id=4242)


@pytest.mark.asyncio
async def test_get_updates_long_polls(tg: FakeTelegram, bot: Bot) -> None:
    ann = tg.user(10, "Ann")
    group = tg.group(-1001, "Team")
    polling = asyncio.create_task(bot.get_updates(offset=0, timeout=5))
    await tg.wait_for_call("getUpdates", timeout=WAIT_S)
    await asyncio.sleep(0.05)
    assert not polling.done()  # nothing queued: the poll waits
    tg.user_message(group, ann, f"😀 @{tg.username} /x hello")
    updates = await asyncio.wait_for(polling, WAIT_S)
    assert len(updates) == 1
    message = updates[0].message
    assert message is not None and message.chat.type == "supergroup"
    mention = message.entities[0]
    assert mention.type == "mention" and mention.offset == 3  # the emoji takes two UTF-16 units
    assert message.parse_entity(mention) == f"@{tg.username}"

    command = tg.user_message(group, ann, f"/gpt@{tg.username} info")
    updates = await bot.get_updates(offset=updates[0].update_id + 1, timeout=1)
    assert [u.update_id for u in updates] == [2]
    assert updates[0].message is not None
    assert updates[0].message.entities[0].type == "bot_command"
    assert updates[0].message.entities[0].length == len(f"/gpt@{tg.username}")
    assert command["text"].startswith("/gpt@")
    # Confirming with the offset drops the update.
    assert await bot.get_updates(offset=3, timeout=0) == ()


@pytest.mark.asyncio
async def test_chat_members_and_other_methods(tg: FakeTelegram, bot: Bot) -> None:
    ann, bob, cid = tg.user(10, "Ann"), tg.user(11, "Bob"), tg.user(12, "Cid")
    group = tg.group(-1001, "Team")
    tg.set_member(group, ann, "creator")
    tg.set_member(group, bob, "administrator")
    assert isinstance(await bot.get_chat_member(group["id"], ann["id"]), ChatMemberOwner)
    assert isinstance(await bot.get_chat_member(group["id"], bob["id"]), ChatMemberAdministrator)
    assert isinstance(await bot.get_chat_member(group["id"], cid["id"]), ChatMemberMember)

    assert await bot.set_my_commands([BotCommand("gpt", "Bind a GPT")])
    assert tg.commands == [{"command": "gpt", "description": "Bind a GPT"}]
    assert await bot.send_chat_action(group["id"], "typing")
    assert await bot.delete_webhook()

    private = tg.private_chat(ann)
    assert await bot.send_message_draft(private["id"], 5, "partial")
    assert [(d.draft_id, d.text) for d in tg.drafts] == [(5, "partial")]
    with pytest.raises(BadRequest):
        await bot.send_message_draft(group["id"], 5, "partial")
