"""`kill -9` mid-answer, then a restart: the answer's saved text is kept as `interrupted`, its
platform message is settled (saved text + the interrupted line, no indicator; Telegram, Discord
including a /chat response), and the next request's history alternates user/assistant with the
cut answer marked. Plus: one `gptsbot run` per database."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.history import CUT_MARK
from core.i18n import INTERRUPTED
from fakes.discord import FakeDiscord
from fakes.gpts import FakeGpts, Gate
from fakes.telegram import FakeTelegram
from tests.gptsbot_process import API_KEY, WAIT_S, Bot, environment, write_config

INDICATOR = " ▌"


def texts(telegram: FakeTelegram, chat_id: int) -> list[str]:
    return [message["text"] for message in telegram.bot_messages(chat_id)]


def actions(telegram: FakeTelegram, chat_id: int) -> list[list[str]]:
    """The actions of the buttons under each of the bot's messages."""
    return [
        [b["callback_data"].split(":")[0] for row in keyboard for b in row]
        for keyboard in (
            m.get("reply_markup", {}).get("inline_keyboard", [])
            for m in telegram.bot_messages(chat_id)
        )
    ]


@pytest.mark.asyncio
async def test_kill_9_of_run_mid_answer_is_settled_at_the_next_start(
    fake_gpts: FakeGpts, tmp_path: Path
) -> None:
    gate = Gate()
    fake_gpts.enqueue(gate)
    async with FakeTelegram() as telegram:
        config = write_config(
            tmp_path,
            fake_gpts.base_url,
            telegram={"base_url": telegram.base_url},
            storage={"save_interval_s": 0.2},
        )
        env = environment(config, TELEGRAM_BOT_TOKEN=telegram.token)
        database = tmp_path / "bot.db"
        first = await Bot.start("run", env=env, database=database)
        await telegram.wait_for_call("getUpdates", timeout=WAIT_S)
        mei = telegram.user(501, "Mei")
        chat = telegram.private_chat(mei)
        telegram.user_message(chat, mei, "tell me a story")
        await fake_gpts.wait_requests(1, within_s=WAIT_S)
        gate.send("Once upon a time")
        await telegram.wait_until(
            lambda: texts(telegram, 501) == ["Once upon a time" + INDICATOR], WAIT_S
        )
        gate.send(", there was a bot")
        saved = "Once upon a time, there was a bot"
        # Saved while streaming: the row exists before the answer ends, with its message id.
        await first.wait_stored(lambda rows: rows[-1] == ("assistant", saved, "streaming"))
        await first.kill()
        assert texts(telegram, 501)[0].endswith(INDICATOR)  # frozen mid-answer
        assert actions(telegram, 501) == [["stop"]]

        second = await Bot.start("run", env=env, database=database)
        settled = f"{saved}\n\n{INTERRUPTED('en')}"
        await telegram.wait_until(lambda: texts(telegram, 501) == [settled], WAIT_S)
        assert actions(telegram, 501) == [["retry"]]  # Stop is gone; the answer can be retried
        assert second.stored() == [
            ("user", "tell me a story", "complete"),
            ("assistant", saved, "interrupted"),
        ]
        telegram.user_message(chat, mei, "go on")
        await telegram.wait_until(lambda: texts(telegram, 501)[-1] == "echo: go on", WAIT_S)
        assert await second.terminate() == 0
    assert fake_gpts.requests[1].messages == [
        {"role": "user", "content": "tell me a story"},
        {"role": "assistant", "content": saved + CUT_MARK},
        {"role": "user", "content": "go on"},
    ]
    log = first.log + second.log
    assert telegram.token not in log and API_KEY not in log
    assert "Traceback" not in second.log


@pytest.mark.asyncio
async def test_kill_9_of_chat_mid_answer_keeps_it_as_interrupted(
    fake_gpts: FakeGpts, tmp_path: Path
) -> None:
    gate = Gate()
    fake_gpts.enqueue(gate)
    config = write_config(tmp_path, fake_gpts.base_url, storage={"save_interval_s": 0.2})
    env = environment(config)
    database = tmp_path / "bot.db"
    first = await Bot.start("chat", env=env, database=database, stdin=True)
    await first.say("tell me a story")
    await fake_gpts.wait_requests(1, within_s=WAIT_S)
    gate.send("Once upon a time")
    await first.wait_output("Once upon a time")
    await first.wait_stored(lambda rows: rows[-1] == ("assistant", "Once upon a time", "streaming"))
    await first.kill()

    second = await Bot.start("chat", env=env, database=database, stdin=True)
    await second.say("go on")
    await second.wait_output("echo: go on")
    assert await second.wait() == 0
    assert second.stored() == [
        ("user", "tell me a story", "complete"),
        ("assistant", "Once upon a time", "interrupted"),
        ("user", "go on", "complete"),
        ("assistant", "echo: go on", "complete"),
    ]
    assert fake_gpts.requests[1].messages == [
        {"role": "user", "content": "tell me a story"},
        {"role": "assistant", "content": "Once upon a time" + CUT_MARK},
        {"role": "user", "content": "go on"},
    ]


@pytest.mark.asyncio
async def test_one_run_per_database_and_a_restart_after_kill_9_starts_at_once(
    fake_gpts: FakeGpts, tmp_path: Path
) -> None:
    async with FakeTelegram() as telegram:
        config = write_config(
            tmp_path, fake_gpts.base_url, telegram={"base_url": telegram.base_url}
        )
        env = environment(config, TELEGRAM_BOT_TOKEN=telegram.token)
        database = tmp_path / "bot.db"
        first = await Bot.start("run", env=env, database=database)
        await telegram.wait_for_call("getUpdates", timeout=WAIT_S)

        second = await Bot.start("run", env=env, database=database)
        assert await second.wait() == 1
        pid = first.process.pid
        assert second.err.decode().strip() == (
            f"gptsbot: another gptsbot run (pid {pid}) is already answering from {database}; "
            "stop it first (two would answer every message)"
        )
        # `chat` has its own terminal scope: it may run beside `run`.
        chat = await Bot.start("chat", env=env, database=database, stdin=True)
        await chat.say("hello")
        await chat.wait_output("echo: hello")
        assert await chat.wait() == 0

        await first.kill()
        polls = len(telegram.calls_to("getUpdates"))
        third = await Bot.start("run", env=env, database=database)
        await telegram.wait_until(lambda: len(telegram.calls_to("getUpdates")) > polls, WAIT_S)
        assert third.process.returncode is None
        assert await third.terminate() == 0


@pytest.mark.asyncio
async def test_kill_9_of_run_with_discord_settles_messages_and_chat_responses(
    fake_gpts: FakeGpts, tmp_path: Path
) -> None:
    mentioned, slashed = Gate(), Gate()
    fake_gpts.enqueue(mentioned, slashed)
    fake = FakeDiscord()
    guild_id = fake.add_guild()
    channel_id, other_id = fake.add_channel(guild_id, "a"), fake.add_channel(guild_id, "b")
    mia = fake.make_user("mia")
    fake.add_member(guild_id, mia)
    async with fake:
        config = write_config(
            tmp_path,
            fake_gpts.base_url,
            discord={"api_base": fake.api_base, "edit_interval_s": 0.1},
            storage={"save_interval_s": 0.2},
        )
        env = environment(config, DISCORD_BOT_TOKEN=fake.token)
        database = tmp_path / "bot.db"
        first = await Bot.start("run", env=env, database=database)
        await fake.wait_ready(within_s=WAIT_S)
        await fake.user_says(channel_id, mia, "tell me a story", mention_bot=True)
        await fake_gpts.wait_requests(1, within_s=WAIT_S)
        mentioned.send("Once upon a time")
        await fake.wait_for(lambda: fake.global_commands, WAIT_S)
        chat = await fake.slash(other_id, mia, "chat", [{"name": "prompt", "type": 3,
                                                        "value": "and a poem"}])  # fmt: skip
        await fake_gpts.wait_requests(2, within_s=WAIT_S)
        slashed.send("Roses are red")
        await first.wait_stored(
            lambda rows: (
                ("assistant", "Once upon a time", "streaming") in rows
                and ("assistant", "Roses are red", "streaming") in rows
            )
        )
        await first.kill()
        assert fake.bot_messages(channel_id)[0].content.endswith(INDICATOR)

        second = await Bot.start("run", env=env, database=database)
        story = f"Once upon a time\n\n{INTERRUPTED('en')}"
        poem = f"> and a poem\nRoses are red\n\n{INTERRUPTED('en')}"
        await fake.wait_for(
            lambda: (
                [m.content for m in fake.bot_messages(channel_id)] == [story]
                and [m.content for m in fake.bot_messages(other_id)] == [poem]
            ),
            WAIT_S,
        )
        assert chat.original_id == fake.bot_messages(other_id)[0].id
        assert await second.terminate() == 0
    assert [row[2] for row in second.stored() if row[0] == "assistant"] == ["interrupted"] * 2
