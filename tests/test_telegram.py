"""End to end: the real python-telegram-bot Application polls the fake Bot API, the real core and
a SQLite file answer (PostgreSQL too, with GPTSBOT_TEST_PG_URL set, where a test takes `db_url`),
and the fake GPTs endpoint streams upstream."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from bots.telegram_adapter import text as say
from bots.telegram_adapter.adapter import TelegramAdapter
from bots.telegram_adapter.settings import create_adapter
from core import commands, i18n
from core.app import open_app
from core.config import Config, parse_config
from core.i18n import APOLOGY
from core.platform import PlatformRefused
from fakes.gpts import Fail, FakeGpts, Gate, Reply
from fakes.rate_window import max_in_window
from fakes.telegram import Call, FakeTelegram, Fault

WAIT_S = 10.0
INTERVAL_S = 0.15
DEFAULT_GPT = "g-Default01"
CLOCK_SLACK_S = 0.02  # the fake's clock and the bot's see the same monotonic time, plus transit
Json = dict[str, Any]  # a user, chat or message as the Bot API sends it


def NOT_ADMIN_BIND(language: i18n.Language) -> str:
    return i18n.NOT_ADMIN(language, usage="/gpt bind")


def make_config(
    tmp_path: Path,
    tg: FakeTelegram,
    gpts: FakeGpts,
    *,
    bot: dict[str, Any] | None = None,
    access: dict[str, Any] | None = None,
    quota: dict[str, Any] | None = None,
    db_url: str | None = None,
    **telegram: Any,
) -> Config:
    """The config of a bot on the fakes; its database is an SQLite file under tmp_path unless
    `db_url` names another."""
    return parse_config(
        {
            # The image host (fakes/images.py) is on 127.0.0.1.
            "bot": {"allow_private_image_hosts": True, **(bot or {})},
            "access": access or {},
            "quota": quota or {},
            "gpts": {
                "base_url": gpts.base_url,
                "api_key": "sk-test",
                "default_gpt": DEFAULT_GPT,
                "max_retries": 0,
            },
            "storage": {"url": db_url or f"sqlite+aiosqlite:///{tmp_path / 'bot.db'}"},
            "telegram": {
                "token": tg.token,
                "base_url": tg.base_url,
                "edit_interval_s": INTERVAL_S,
                "group_edit_interval_s": INTERVAL_S,
                **telegram,
            },
        },
        env={},
    )


@contextlib.asynccontextmanager
async def running(
    config: Config, *, reraise_unexpected: bool = True, **options: Any
) -> AsyncIterator[TelegramAdapter]:
    """The adapter polling the fake, on a fresh ConversationService over the configured DB;
    `options` go to TelegramAdapter. With `reraise_unexpected` (the default) any unexpected
    error fails the test."""
    async with open_app(config) as app:
        app.service.reraise_unexpected = True
        adapter = TelegramAdapter(config, app.service, **options)
        adapter.reraise_unexpected = reraise_unexpected
        task = asyncio.create_task(adapter.run())
        ready = asyncio.create_task(adapter.ready.wait())
        try:
            await asyncio.wait({task, ready}, timeout=WAIT_S, return_when="FIRST_COMPLETED")
            if task.done():
                task.result()  # it failed to start: show why
            assert adapter.ready.is_set(), "the adapter did not start polling"
            yield adapter
        finally:
            ready.cancel()
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if reraise_unexpected:
            assert adapter.failures == []


@pytest_asyncio.fixture
async def bot(
    tmp_path: Path, tg: FakeTelegram, fake_gpts: FakeGpts
) -> AsyncIterator[TelegramAdapter]:
    async with running(make_config(tmp_path, tg, fake_gpts)) as adapter:
        yield adapter


@pytest.fixture
def config_on_db(tmp_path: Path, db_url: str, tg: FakeTelegram, fake_gpts: FakeGpts) -> Config:
    """The bot's config, on each database the storage tests run on."""
    return make_config(tmp_path, tg, fake_gpts, db_url=db_url)


@pytest.fixture
def ann(tg: FakeTelegram) -> Json:
    return tg.user(10, "Ann")


@pytest.fixture
def bob(tg: FakeTelegram) -> Json:
    return tg.user(11, "Bob")


@pytest.fixture
def dm(tg: FakeTelegram, ann: Json) -> Json:
    """Ann's private chat with the bot."""
    return tg.private_chat(ann)


@pytest.fixture
def group(tg: FakeTelegram) -> Json:
    return tg.group(-1001, "Team")


def answer_to(tg: FakeTelegram, asked: Json) -> list[Json]:
    """The bot's messages in the asking chat (and topic) sent after the question."""
    chat_id = asked["chat"]["id"]
    return [
        m
        for m in tg.bot_messages(chat_id, asked.get("message_thread_id"))
        if m["message_id"] > asked["message_id"]
    ]


async def wait_answer(tg: FakeTelegram, asked: Json, text: str, *, pages: int = 1) -> list[Json]:
    """Wait until the answer to `asked` shows `text` (its last page does, when several)."""

    def done() -> bool:
        messages = answer_to(tg, asked)
        return len(messages) >= pages and messages[-1].get("text") == text

    try:
        await tg.wait_until(done, WAIT_S)
    except TimeoutError:
        shown = [m.get("text") for m in answer_to(tg, asked)]
        raise AssertionError(f"no answer {text!r}; the bot shows {shown!r}") from None
    return answer_to(tg, asked)


async def reply_text(tg: FakeTelegram, asked: Json) -> str:
    """The bot's one-message reply to `asked`, once it has settled (errors follow text)."""
    await tg.wait_until(lambda: len(answer_to(tg, asked)) == 1, WAIT_S)
    await asyncio.sleep(INTERVAL_S)
    (message,) = answer_to(tg, asked)
    return str(message["text"])


def stream_calls(tg: FakeTelegram, chat_id: int) -> list[Call]:
    return [
        c
        for c in tg.calls
        if c.method in {"sendMessage", "editMessageText"} and c.params.get("chat_id") == chat_id
    ]


# --- private chats -------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_dm_streams_into_one_message_paced_after_typing(
    bot: TelegramAdapter, tg: FakeTelegram, fake_gpts: FakeGpts, ann: Json, dm: Json, gate: Gate
) -> None:
    asked = tg.user_message(dm, ann, "Tell me a story")
    await tg.wait_for_call("sendChatAction", timeout=WAIT_S)
    pieces = ["Once ", "upon ", "a ", "time ", "there ", "was ", "a ", "bot."]
    for piece in pieces:
        gate.send(piece)
        await asyncio.sleep(0.04)
    gate.finish()
    answer = "".join(pieces)
    messages = await wait_answer(tg, asked, answer)

    assert len(messages) == 1
    calls = stream_calls(tg, dm["id"])
    assert [c.method for c in calls].count("sendMessage") == 1
    assert calls[0].method == "sendMessage" and len(calls) >= 3  # streamed, not sent whole
    typing = tg.calls_to("sendChatAction")[0]
    assert typing.params == {"chat_id": dm["id"], "action": "typing"}
    assert typing.at <= calls[0].at
    gaps = [b.at - a.at for a, b in itertools.pairwise(calls)]
    assert min(gaps) >= INTERVAL_S - CLOCK_SLACK_S, gaps
    assert all(c.ok for c in calls)  # never an edit with unchanged text
    assert "reply_parameters" not in calls[0].params  # DMs are not quoted
    request = fake_gpts.requests[0]
    assert request.model == f"gpt-4-gizmo-{DEFAULT_GPT}"
    assert request.messages[-1] == {"role": "user", "content": "Tell me a story"}


@pytest.mark.asyncio
async def test_an_emoji_a_relay_split_between_chunks_is_shown_and_stored_whole(
    bot: TelegramAdapter, tg: FakeTelegram, fake_gpts: FakeGpts, ann: Json, dm: Json, gate: Gate
) -> None:
    """A relay cutting text by UTF-16 units sends each half of 😀 as a lone JSON escape."""
    asked = tg.user_message(dm, ann, "Smile")
    gate.send("smile \ud83d")
    await gate.wait_written(1)
    gate.send("\ude00 and a lone \udc00 half")
    gate.finish()
    answer = "smile \U0001f600 and a lone \ufffd half"
    await wait_answer(tg, asked, answer)
    await wait_answer(tg, tg.user_message(dm, ann, "again"), "echo: again")
    assert fake_gpts.requests[1].messages[-2] == {"role": "assistant", "content": answer}


@pytest.mark.asyncio
async def test_reset_and_separate_histories(
    config_on_db: Config, tg: FakeTelegram, fake_gpts: FakeGpts, ann: Json, dm: Json, bob: Json
) -> None:
    async with running(config_on_db):
        await check_reset_and_separate_histories(tg, fake_gpts, ann, dm, bob)


async def check_reset_and_separate_histories(
    tg: FakeTelegram, fake_gpts: FakeGpts, ann: Json, dm: Json, bob: Json
) -> None:
    await wait_answer(tg, tg.user_message(dm, ann, "one"), "echo: one")
    await wait_answer(tg, tg.user_message(tg.private_chat(bob), bob, "hello"), "echo: hello")
    await wait_answer(tg, tg.user_message(dm, ann, "two"), "echo: two")
    contents = [[m["content"] for m in r.messages] for r in fake_gpts.requests]
    assert contents[1] == ["hello"]  # Bob never sees Ann's conversation
    assert contents[2] == ["one", "echo: one", "two"]

    reset = tg.user_message(dm, ann, "/reset")
    await tg.wait_until(lambda: len(answer_to(tg, reset)) == 1, WAIT_S)
    assert "new conversation" in answer_to(tg, reset)[0]["text"]
    await wait_answer(tg, tg.user_message(dm, ann, "three"), "echo: three")
    assert [m["content"] for m in fake_gpts.requests[3].messages] == ["three"]


@pytest.mark.asyncio
async def test_long_answer_continues_in_a_second_message(
    bot: TelegramAdapter, tg: FakeTelegram, fake_gpts: FakeGpts, ann: Json, dm: Json
) -> None:
    paragraphs = [
        f"Paragraph {i}: " + " ".join(f"word{i}x{j}" for j in range(80)) for i in range(10)
    ]
    answer = "\n\n".join(paragraphs)
    assert 6000 <= len(answer) <= 8000
    fake_gpts.enqueue(Reply(answer, chunk_chars=700))
    asked = tg.user_message(dm, ann, "long please")

    def complete() -> bool:
        texts = [m.get("text", "") for m in answer_to(tg, asked)]
        return len(texts) == 2 and texts[-1].endswith(paragraphs[-1])

    await tg.wait_until(complete, WAIT_S)
    # Let any pending final edit land, then check nothing was lost, doubled or reordered.
    await asyncio.sleep(INTERVAL_S * 2)
    texts = [m["text"] for m in answer_to(tg, asked)]
    assert len(texts) == 2
    assert all(len(t.encode("utf-16-le")) // 2 <= 4096 for t in texts)
    assert " ".join(" ".join(texts).split()) == " ".join(answer.split())
    assert not any(t.endswith("▌") for t in texts)


@pytest.mark.asyncio
async def test_flood_control_on_edit_is_survived(
    bot: TelegramAdapter, tg: FakeTelegram, ann: Json, dm: Json, gate: Gate
) -> None:
    tg.inject("editMessageText", Fault.flood(1))
    asked = tg.user_message(dm, ann, "hi")
    gate.send("First part. ")
    await tg.wait_for_call("sendMessage", timeout=WAIT_S)
    gate.send("Second part. ")
    await tg.wait_for_call("editMessageText", timeout=WAIT_S)
    gate.send("Third part.")
    gate.finish()
    messages = await wait_answer(tg, asked, "First part. Second part. Third part.")

    assert len(messages) == 1
    calls = stream_calls(tg, dm["id"])
    flood = next(c for c in calls if c.status == 429)
    later = [c for c in calls if c.at > flood.at]
    assert later and later[-1].ok
    # Nothing got through before retry_after passed, and the bot did not hammer the chat.
    assert all(c.at - flood.at >= 1.0 - CLOCK_SLACK_S for c in later if c.ok)
    assert sum(c.status == 429 for c in calls) <= 2


@pytest.mark.asyncio
async def test_markdown_rendered_and_plain_fallback(
    bot: TelegramAdapter, tg: FakeTelegram, fake_gpts: FakeGpts, ann: Json, dm: Json
) -> None:
    fake_gpts.enqueue(Reply("**Bold** and `code`", chunk_chars=100))
    asked = tg.user_message(dm, ann, "format")
    (message,) = await wait_answer(tg, asked, "Bold and code")
    assert [(e["type"], e["offset"], e["length"]) for e in message["entities"]] == [
        ("bold", 0, 4),
        ("code", 9, 4),
    ]

    for method in ("sendMessage", "editMessageText"):
        tg.inject(method, Fault.cant_parse(), when=lambda p: "entities" in p)
    fake_gpts.enqueue(Reply("**Still** here", chunk_chars=100))
    asked = tg.user_message(dm, ann, "again")
    (message,) = await wait_answer(tg, asked, "**Still** here")
    assert "entities" not in message
    refused = [c for c in stream_calls(tg, dm["id"]) if not c.ok]
    assert len(refused) == 1 and "entities" in refused[0].params


@pytest.mark.asyncio
async def test_upstream_error_shows_what_arrived_and_a_short_line(
    bot: TelegramAdapter, tg: FakeTelegram, fake_gpts: FakeGpts, ann: Json, dm: Json
) -> None:
    fake_gpts.enqueue(
        Fail(404, {"error": {"message": "model not found", "code": "model_not_found"}})
    )
    asked = tg.user_message(dm, ann, "hi")
    await tg.wait_until(lambda: len(answer_to(tg, asked)) == 1, WAIT_S)
    await asyncio.sleep(INTERVAL_S)
    (message,) = answer_to(tg, asked)
    assert "not found" in message["text"] and "/gpt info" in message["text"]
    assert "Traceback" not in message["text"] and "sk-test" not in message["text"]


@pytest.mark.asyncio
async def test_deleted_message_continues_in_a_new_one(
    bot: TelegramAdapter, tg: FakeTelegram, ann: Json, dm: Json, gate: Gate
) -> None:
    asked = tg.user_message(dm, ann, "hi")
    gate.send("Hello ")
    (sent,) = await tg.wait_for_call("sendMessage", timeout=WAIT_S)
    tg.delete_message(dm["id"], sent.result["message_id"])
    gate.send("world")
    gate.finish()
    messages = await wait_answer(tg, asked, "Hello world")
    assert len(messages) == 1 and messages[0]["message_id"] != sent.result["message_id"]


@pytest.mark.asyncio
async def test_edited_messages_and_other_chats_are_ignored(
    tmp_path: Path, tg: FakeTelegram, fake_gpts: FakeGpts, ann: Json, dm: Json
) -> None:
    eve = tg.user(66, "Eve")
    config = make_config(tmp_path, tg, fake_gpts, access={"allow": {"telegram_chats": [ann["id"]]}})
    async with running(config):
        tg.user_message(tg.private_chat(eve), eve, "let me in")
        asked = tg.user_message(dm, ann, "first")
        await wait_answer(tg, asked, "echo: first")
        tg.edit_user_message(asked, "first, edited")
        await wait_answer(tg, tg.user_message(dm, ann, "second"), "echo: second")
    assert [r.messages[-1]["content"] for r in fake_gpts.requests] == ["first", "second"]
    # Eve's chat is not listed: she is told so, once, and nothing else happens.
    assert [m["text"] for m in tg.bot_messages(eve["id"])] == [i18n.ACCESS_NOT_YOU("en")]


@pytest.mark.asyncio
async def test_draft_mode_sends_drafts_then_one_message(
    tmp_path: Path, tg: FakeTelegram, fake_gpts: FakeGpts, ann: Json, dm: Json, gate: Gate
) -> None:
    async with running(make_config(tmp_path, tg, fake_gpts, dm_streaming="draft")):
        asked = tg.user_message(dm, ann, "hi")
        for piece in ["Drafts ", "stream ", "here."]:
            gate.send(piece)
            await tg.wait_until(lambda: any(d.text.startswith("Drafts") for d in tg.drafts))
            await asyncio.sleep(INTERVAL_S)
        gate.finish()
        await wait_answer(tg, asked, "Drafts stream here.")
    assert len(tg.drafts) >= 2
    assert len({d.draft_id for d in tg.drafts}) == 1
    assert tg.drafts[-1].text.startswith("Drafts stream")
    assert len(tg.calls_to("sendMessage")) == 1
    assert tg.calls_to("editMessageText") == []
    assert tg.calls_to("sendMessage")[0].at > tg.drafts[-1].at


# --- groups ---------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_group_answers_mentions_replies_and_chat_only(
    bot: TelegramAdapter, tg: FakeTelegram, fake_gpts: FakeGpts, ann: Json, bob: Json, group: Json
) -> None:
    handle = f"@{tg.username}"

    tg.user_message(group, ann, "just chatting, no bot here")
    mention = tg.user_message(group, ann, f"😀 {handle} what is 2+2?")
    (first,) = await wait_answer(tg, mention, "echo: Ann: 😀 what is 2+2?")
    assert first["reply_to_message"]["message_id"] == mention["message_id"]

    reply = tg.user_message(group, bob, "and 3+3?", reply_to=first)
    (second,) = await wait_answer(tg, reply, "echo: Bob: and 3+3?")
    assert second["reply_to_message"]["message_id"] == reply["message_id"]

    chat = tg.user_message(group, ann, f"/chat{handle} last one")
    (third,) = await wait_answer(tg, chat, "echo: Ann: last one")
    assert third["reply_to_message"]["message_id"] == chat["message_id"]

    tg.user_message(group, bob, "a reply to Ann, not the bot", reply_to=mention)
    tg.user_message(group, bob, "/chat@some_other_bot hi")
    plain = tg.user_message(group, ann, "/chat plain")
    await wait_answer(tg, plain, "echo: Ann: plain")

    assert [r.messages[-1]["content"] for r in fake_gpts.requests] == [
        "Ann: 😀 what is 2+2?",
        "Bob: and 3+3?",
        "Ann: last one",
        "Ann: plain",
    ]


@pytest.mark.asyncio
async def test_forum_topics_keep_separate_histories(
    bot: TelegramAdapter, tg: FakeTelegram, fake_gpts: FakeGpts, ann: Json
) -> None:
    forum = tg.group(-1002, "Forum", forum=True)
    ideas = tg.create_topic(forum, "Ideas", ann)
    bugs = tg.create_topic(forum, "Bugs", ann)
    handle = f"@{tg.username}"

    tg.user_message(forum, ann, "chatting in the topic", thread_id=ideas)  # not addressed
    asked = tg.user_message(forum, ann, f"{handle} idea one", thread_id=ideas)
    (answer,) = await wait_answer(tg, asked, "echo: Ann: idea one")
    assert answer["message_thread_id"] == ideas
    asked = tg.user_message(forum, ann, f"{handle} bug one", thread_id=bugs)
    await wait_answer(tg, asked, "echo: Ann: bug one")
    asked = tg.user_message(forum, ann, "idea two", thread_id=ideas, reply_to=answer)
    await wait_answer(tg, asked, "echo: Ann: idea two")

    contents = [[m["content"] for m in r.messages] for r in fake_gpts.requests]
    assert contents == [
        ["Ann: idea one"],
        ["Ann: bug one"],
        ["Ann: idea one", "echo: Ann: idea one", "Ann: idea two"],
    ]
    assert all(
        c.params.get("message_thread_id") in {ideas, bugs} for c in tg.calls_to("sendMessage")
    )


@pytest.mark.asyncio
async def test_binding_needs_an_admin_at_command_time(
    bot: TelegramAdapter, tg: FakeTelegram, fake_gpts: FakeGpts, ann: Json, bob: Json, group: Json
) -> None:
    tg.set_member(group, ann, "administrator")

    async def command(user: Json | None, text: str, **kw: Any) -> str:
        asked = tg.user_message(group, user, text, **kw)
        await tg.wait_until(lambda: len(answer_to(tg, asked)) == 1, WAIT_S)
        return str(answer_to(tg, asked)[0]["text"])

    assert await command(bob, "/gpt bind g-BobsGpt01") == NOT_ADMIN_BIND("en")
    assert DEFAULT_GPT in await command(bob, "/gpt info")
    assert await command(ann, f"/gpt@{tg.username} bind") == "Usage: /gpt bind <GPT link or id>"
    assert "is not a GPT" in await command(ann, "/gpt bind not-a-gpt")

    bound = await command(ann, f"/gpt@{tg.username} bind https://chatgpt.com/g/g-AnnsGpt01-helper")
    assert bound.startswith("✅ Ann bound g-AnnsGpt01")
    mention = tg.user_message(group, bob, f"@{tg.username} hi")
    await wait_answer(tg, mention, "echo: Bob: hi")
    assert fake_gpts.requests[-1].model == "gpt-4-gizmo-g-AnnsGpt01"

    info = await command(bob, "/gpt")
    assert "g-AnnsGpt01" in info and "https://chatgpt.com/g/g-AnnsGpt01" in info
    assert "by Ann" in info

    # Admin rights are asked at each command: Ann lost hers, Bob became the creator.
    tg.set_member(group, ann, "member")
    tg.set_member(group, bob, "creator")
    assert await command(ann, "/gpt unbind") == i18n.NOT_ADMIN("en", usage="/gpt unbind")
    assert (await command(bob, "/gpt bind g-BobsGpt01")).startswith("✅ Bob bound g-BobsGpt01")
    member_checks = tg.calls_to("getChatMember")
    assert len(member_checks) == 6  # every bind/unbind asked anew

    # An anonymous admin posts as the group itself.
    bound = await command(None, "/gpt bind g-AnonGpt01", sender_chat=group)
    assert bound.startswith("✅") and "g-AnonGpt01" in bound
    assert "by Team" in await command(ann, "/gpt info")
    mention = tg.user_message(group, ann, f"@{tg.username} hello")
    await wait_answer(tg, mention, "echo: Ann: hello")
    assert fake_gpts.requests[-1].model == "gpt-4-gizmo-g-AnonGpt01"
    # A channel posting in the group is not an admin.
    channel = {"id": -1009, "type": "channel", "title": "Some channel"}
    refused = await command(None, "/gpt bind g-ChanGpt01", sender_chat=channel)
    assert refused == NOT_ADMIN_BIND("en")


@pytest.mark.asyncio
async def test_commands_registered_and_help(
    bot: TelegramAdapter, tg: FakeTelegram, ann: Json, group: Json
) -> None:
    assert tg.commands is not None
    commands_shown = [c["command"] for c in tg.commands]
    assert commands_shown == ["help", "chat", "gpt", "reset", "usage", "retry"]
    asked = tg.user_message(group, ann, f"/help@{tg.username}")
    await tg.wait_until(lambda: len(answer_to(tg, asked)) == 1, WAIT_S)
    text = answer_to(tg, asked)[0]["text"]
    assert f"@{tg.username}" in text and "/gpt bind" in text and DEFAULT_GPT in text
    assert tg.calls_to("getMe") and tg.calls_to("deleteWebhook")
    assert tg.allowed_updates == {"message", "callback_query"}


SAMPLE_ARGUMENTS = {"prompt": "hello", "gpt": "g-AnnsGpt01"}


@pytest.mark.asyncio
async def test_every_registry_command_is_reachable_and_admin_ones_refused_to_members(
    bot: TelegramAdapter, tg: FakeTelegram, ann: Json, bob: Json, dm: Json, group: Json
) -> None:
    menus = tg.commands_by_language
    for code, language in (("", "en"), ("zh", "zh")):
        assert [(c["command"], c["description"]) for c in menus[code]] == [
            (name, text(language))
            for name, text in commands.top_level()  # type: ignore[arg-type]
        ]
    help_text = await reply_text(tg, tg.user_message(dm, ann, "/help"))
    listed = [line.split(" — ")[0] for line in help_text.splitlines() if line.startswith("/")]
    assert listed == [command.usage("en") for command in commands.REGISTRY]
    for command in commands.REGISTRY:
        args = " ".join(SAMPLE_ARGUMENTS[argument.name] for argument in command.arguments)
        text = f"/{command.name} {args}".strip()
        answer = await reply_text(tg, tg.user_message(dm, ann, text))
        assert "Unknown command" not in answer and not answer.startswith("Usage"), text
        if command.permission is not commands.Permission.ANYONE:
            refused = await reply_text(tg, tg.user_message(group, bob, text))
            assert refused == i18n.NOT_ADMIN("en", usage=f"/{command.name}")


# --- languages -----------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_command_menu_is_registered_in_english_and_chinese(
    bot: TelegramAdapter, tg: FakeTelegram
) -> None:
    calls = tg.calls_to("setMyCommands", ok=True)
    assert [c.params.get("language_code") for c in calls] == [None, "zh"]
    menus = tg.commands_by_language
    assert set(menus) == {"", "zh"}
    assert [c["command"] for c in menus[""]] == [c["command"] for c in menus["zh"]]
    descriptions = {c["command"]: c["description"] for c in menus["zh"]}
    assert descriptions["reset"] == "开始新对话"
    assert descriptions["chat"] == "向 GPT 提问"
    assert menus[""] == tg.commands
    assert {c["command"]: c["description"] for c in menus[""]}["reset"] == (
        "Start a new conversation"
    )


@pytest.mark.asyncio
async def test_a_chinese_app_gets_chinese_lines(
    bot: TelegramAdapter, tg: FakeTelegram, fake_gpts: FakeGpts
) -> None:
    li = tg.user(20, "Li", language_code="zh-hans")
    wang = tg.user(21, "Wang", language_code="zh")
    ann = tg.user(10, "Ann", language_code="en")
    dm = tg.private_chat(li)

    # The core's error line after the endpoint refused the key; the GPT was asked as usual.
    fake_gpts.enqueue(Fail(401, {"error": {"message": "Incorrect API key: sk-test"}}))
    error = await reply_text(tg, tg.user_message(dm, li, "你好"))
    assert error == i18n.AUTH_FAILED("zh")
    assert fake_gpts.requests[-1].messages[-1] == {"role": "user", "content": "你好"}

    help_text = await reply_text(tg, tg.user_message(dm, li, "/help"))
    assert help_text.startswith("我把你的消息转给一个 ChatGPT GPT")
    assert f"这里由 {DEFAULT_GPT} 回答" in help_text and "/reset — 开始新对话" in help_text
    info = await reply_text(tg, tg.user_message(dm, li, "/gpt info"))
    assert f"模型：gpt-4-gizmo-{DEFAULT_GPT}" in info and "默认 GPT" in info
    assert await reply_text(tg, tg.user_message(dm, li, "/chat")) == "用法：/chat <问题>"
    assert (await reply_text(tg, tg.user_message(dm, li, "/gpt bind g-LisGpt001"))).startswith(
        "✅ Li 已在这里绑定 g-LisGpt001。"
    )

    # In a group each person is answered in their own language.
    group = tg.group(-1010, "团队")
    tg.set_member(group, wang, "administrator")
    assert await reply_text(tg, tg.user_message(group, li, "/gpt bind g-LisGpt001")) == (
        NOT_ADMIN_BIND("zh")
    )
    assert await reply_text(tg, tg.user_message(group, ann, "/gpt bind g-AnnsGpt01")) == (
        NOT_ADMIN_BIND("en")
    )
    refused = await reply_text(tg, tg.user_message(group, wang, "/gpt bind not-a-gpt"))
    usage = i18n.USAGE("zh", usage="/gpt bind <GPT 链接或 id>")
    assert refused == f"{i18n.BAD_GPT_NAME('zh', text='not-a-gpt')}\n{usage}"
    await reply_text(tg, tg.user_message(group, wang, "/gpt bind g-WangsGpt1"))
    info = await reply_text(tg, tg.user_message(group, li, "/gpt info"))
    assert "已由 Wang 于 " in info and info.endswith(" UTC 绑定。")
    mention = await reply_text(tg, tg.user_message(group, li, f"@{tg.username}"))
    assert mention == say.EMPTY_MENTION("zh", username=tg.username)

    # An anonymous admin has no app language: Chinese text is answered in Chinese.
    anonymous = await reply_text(
        tg, tg.user_message(group, None, "/gpt bind 我的GPT", sender_chat=group)
    )
    assert anonymous.startswith("⚠️ '我的GPT' 不是有效的 GPT。")
    anonymous = await reply_text(tg, tg.user_message(group, None, "/gpt", sender_chat=group))
    assert "Bound by Wang on " in anonymous


@pytest.mark.asyncio
async def test_a_fixed_language_wins_over_the_app_language(
    tmp_path: Path, tg: FakeTelegram, fake_gpts: FakeGpts
) -> None:
    li = tg.user(20, "Li", language_code="zh-hans")
    dm = tg.private_chat(li)
    group = tg.group(-1011, "团队")
    fake_gpts.enqueue(Fail(401, {"error": {"message": "Incorrect API key: sk-test"}}))
    async with running(make_config(tmp_path, tg, fake_gpts, bot={"language": "en"})):
        assert await reply_text(tg, tg.user_message(dm, li, "你好")) == i18n.AUTH_FAILED("en")
        help_text = await reply_text(tg, tg.user_message(dm, li, "/help"))
        assert help_text.startswith("I pass your messages to a ChatGPT GPT")
        assert await reply_text(tg, tg.user_message(group, li, "/gpt bind g-LisGpt001")) == (
            NOT_ADMIN_BIND("en")
        )
    # Both menus are English, replacing a Chinese one an earlier run may have left.
    menus = tg.commands_by_language
    assert set(menus) == {"", "zh"} and menus["zh"] == menus[""]


# --- restarts -------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_restart_keeps_history_and_bindings(
    config_on_db: Config,
    tg: FakeTelegram,
    fake_gpts: FakeGpts,
    ann: Json,
    dm: Json,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    async with running(config_on_db):
        bound = tg.user_message(dm, ann, "/gpt bind g-AnnsGpt01")
        await tg.wait_until(lambda: len(answer_to(tg, bound)) == 1, WAIT_S)
        await wait_answer(tg, tg.user_message(dm, ann, "remember me"), "echo: remember me")
    async with running(config_on_db):
        await wait_answer(tg, tg.user_message(dm, ann, "still there?"), "echo: still there?")
    last = fake_gpts.requests[-1]
    assert last.model == "gpt-4-gizmo-g-AnnsGpt01"
    assert [m["content"] for m in last.messages] == [
        "remember me",
        "echo: remember me",
        "still there?",
    ]
    assert tg.token not in caplog.text
    assert tg.token.split(":")[1] not in caplog.text


def test_no_token_no_adapter(tmp_path: Path) -> None:
    config = parse_config({}, env={})
    service: Callable[..., Any] = object  # never used without a token
    assert create_adapter(config, service) is None  # type: ignore[arg-type]


# --- concurrency, typing, drafts kept alive, retried command replies ------------------------


@pytest.mark.asyncio
async def test_chats_are_answered_concurrently_with_typing_until_text(
    tg: FakeTelegram,
    fake_gpts: FakeGpts,
    tmp_path: Path,
    ann: Json,
    dm: Json,
    bob: Json,
    gate: Gate,
) -> None:
    async with running(make_config(tmp_path, tg, fake_gpts), typing_every_s=0.05):
        ann_asked = tg.user_message(dm, ann, "slow one")
        await fake_gpts.wait_requests(1)
        # While Ann's GPT thinks, her chat shows "typing" again and again, and Bob is answered.
        await wait_answer(tg, tg.user_message(tg.private_chat(bob), bob, "quick"), "echo: quick")
        await tg.wait_for_call(
            "sendChatAction", lambda c: c.params["chat_id"] == ann["id"], count=3
        )
        assert answer_to(tg, ann_asked) == []
        gate.send("done")
        gate.finish()
        await wait_answer(tg, ann_asked, "done")
        typing_calls = len(tg.calls_to("sendChatAction"))
        await asyncio.sleep(0.2)
        assert len(tg.calls_to("sendChatAction")) == typing_calls  # stopped once text showed


@pytest.mark.asyncio
async def test_drafts_are_refreshed_while_the_gpt_pauses(
    tg: FakeTelegram, fake_gpts: FakeGpts, tmp_path: Path, ann: Json, dm: Json, gate: Gate
) -> None:
    config = make_config(tmp_path, tg, fake_gpts, dm_streaming="draft")
    async with running(config, draft_refresh_s=0.1):
        asked = tg.user_message(dm, ann, "hi")
        gate.send("Thinking hard")
        await tg.wait_until(lambda: len(tg.drafts) >= 4, WAIT_S)  # no new text, drafts go on
        assert {d.text for d in tg.drafts} == {"Thinking hard ▌"}
        gate.finish()
        await wait_answer(tg, asked, "Thinking hard")
        drafts = len(tg.drafts)
        await asyncio.sleep(0.3)
        assert len(tg.drafts) == drafts  # the final message ended the refreshing


@pytest.mark.asyncio
async def test_command_reply_is_retried_after_flood_control(
    bot: TelegramAdapter, tg: FakeTelegram, fake_gpts: FakeGpts, ann: Json, group: Json
) -> None:
    tg.inject("sendMessage", Fault.flood(1))
    usage = await reply_text(tg, tg.user_message(group, ann, "/chat"))
    assert usage == "Usage: /chat <question>"
    hint = await reply_text(tg, tg.user_message(group, ann, f"@{tg.username}"))
    assert "Ask me something after the mention" in hint
    assert [c.status for c in tg.calls_to("sendMessage")] == [429, 200, 200]
    assert fake_gpts.requests == []


@pytest.mark.asyncio
async def test_many_streams_share_the_bot_wide_budget(
    tg: FakeTelegram, fake_gpts: FakeGpts, tmp_path: Path
) -> None:
    rate, chats = 40, 40
    config = make_config(tmp_path, tg, fake_gpts, messages_per_second=rate)
    users = [tg.user(1000 + i, f"User{i}") for i in range(chats)]
    answers = [f"Answer number {i} " + "la " * 12 for i in range(chats)]
    fake_gpts.enqueue(*(Reply(a, chunk_chars=6, chunk_delay_s=0.03) for a in answers))
    async with running(config):
        # Each request takes the next script, so send in order and match by request order.
        asked = []
        for user in users:
            asked.append(tg.user_message(tg.private_chat(user), user, "go"))
            await fake_gpts.wait_requests(len(asked))
        for question, answer in zip(asked, answers, strict=True):
            await wait_answer(tg, question, answer.strip())
    sends = [c for c in tg.calls if c.method in {"sendMessage", "editMessageText"}]
    assert all(c.ok for c in sends)  # the bot never provoked flood control
    busiest = max_in_window((c.at for c in sends), 1.0)
    assert busiest <= rate + 1, busiest
    assert busiest >= rate // 2  # the budget was actually the limit in this test


@pytest.mark.asyncio
async def test_shutdown_mid_answer_is_clean(
    tg: FakeTelegram, fake_gpts: FakeGpts, tmp_path: Path, ann: Json, dm: Json, gate: Gate
) -> None:
    async with running(make_config(tmp_path, tg, fake_gpts), shutdown_grace_s=0.2):
        tg.user_message(dm, ann, "hi")
        gate.send("partial")
        await tg.wait_for_call("sendMessage", timeout=WAIT_S)
    # The adapter stopped within the grace period; polling ended with the confirming call.
    last_poll = tg.calls_to("getUpdates")[-1]
    assert last_poll.params.get("timeout") == 0


@pytest.mark.asyncio
async def test_unexpected_failure_gets_a_short_apology(
    tg: FakeTelegram, fake_gpts: FakeGpts, tmp_path: Path, ann: Json, group: Json
) -> None:
    tg.inject("getChatMember", Fault(500, "Internal Server Error"))
    config = make_config(tmp_path, tg, fake_gpts)
    async with running(config, reraise_unexpected=False) as adapter:
        asked = tg.user_message(group, ann, "/gpt bind g-AnnsGpt01")
        await tg.wait_until(lambda: len(answer_to(tg, asked)) == 1, WAIT_S)
        assert answer_to(tg, asked)[0]["text"] == APOLOGY("en")
        assert len(adapter.failures) == 1
        # The next update is handled normally.
        info = tg.user_message(group, ann, "/gpt info")
        await tg.wait_until(lambda: len(answer_to(tg, info)) == 1, WAIT_S)
        assert DEFAULT_GPT in answer_to(tg, info)[0]["text"]


# --- a token revoked while running -------------------------------------------------------------

REFUSED = "Telegram refused the bot token: check TELEGRAM_BOT_TOKEN"


async def refused_while_running(
    config: Config, caplog: pytest.LogCaptureFixture, revoke: Callable[[], Any]
) -> PlatformRefused:
    """Run the adapter, `await revoke()` once it polls; the PlatformRefused it stops with."""
    caplog.set_level(logging.DEBUG)
    async with open_app(config) as app:
        adapter = TelegramAdapter(config, app.service, shutdown_grace_s=1.0)
        adapter.reraise_unexpected = True
        task = asyncio.create_task(adapter.run())
        try:
            await asyncio.wait_for(adapter.ready.wait(), WAIT_S)
            await revoke()
            with pytest.raises(PlatformRefused) as refused:
                await asyncio.wait_for(task, WAIT_S)
        finally:
            task.cancel()
    assert adapter.failures == []
    # The refusal is the adapter's one line; no library traceback or error about it.
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []
    return refused.value


@pytest.mark.asyncio
async def test_a_token_revoked_while_polling_stops_the_adapter(
    tg: FakeTelegram,
    fake_gpts: FakeGpts,
    tmp_path: Path,
    ann: Json,
    dm: Json,
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def revoke() -> None:
        await wait_answer(tg, tg.user_message(dm, ann, "hi"), "echo: hi")
        tg.revoke_token()  # the long poll waiting now answers 401

    refused = await refused_while_running(make_config(tmp_path, tg, fake_gpts), caplog, revoke)
    assert str(refused) == REFUSED and refused.__cause__ is None
    assert tg.calls_to("getUpdates")[-1].status == 401


@pytest.mark.asyncio
async def test_a_token_revoked_mid_answer_stops_the_adapter(
    tg: FakeTelegram,
    fake_gpts: FakeGpts,
    tmp_path: Path,
    ann: Json,
    dm: Json,
    gate: Gate,
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def revoke() -> None:
        tg.user_message(dm, ann, "hi")
        gate.send("first words")
        await tg.wait_for_call("sendMessage", timeout=WAIT_S)
        tg.revoke_token()  # the answer's next edit gets 401 too
        gate.send(" and more")
        await tg.wait_for_call("editMessageText", lambda c: c.status == 401, timeout=WAIT_S)
        gate.finish()

    refused = await refused_while_running(make_config(tmp_path, tg, fake_gpts), caplog, revoke)
    assert str(refused) == REFUSED
    assert [m["text"] for m in tg.bot_messages(dm["id"])] == ["first words ▌"]
