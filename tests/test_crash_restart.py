"""`kill -9` mid-answer, then a restart: the answer's saved text is kept as `interrupted`, its
platform message is settled (saved text + the interrupted line, no indicator; Telegram, Discord
including a /chat response), and the next request's history alternates user/assistant with the
cut answer marked. Plus: one `gptsbot run` per database."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.history import CUT_MARK
from core.i18n import INTERRUPTED
from fakes.gpts import FakeGpts, Gate
from fakes.telegram import FakeTelegram
from tests.gptsbot_process import (
    API_KEY,
    WAIT_S,
    Bot,
    DiscordChannel,
    TelegramChat,
    environment,
    write_config,
)
from tests.helpers import alternating

INDICATOR = " ▌"


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
    fake_gpts: FakeGpts, gate: Gate, db: Path, tmp_path: Path
) -> None:
    async with TelegramChat() as telegram:
        env = telegram.environment(tmp_path, fake_gpts.base_url, storage={"save_interval_s": 0.2})
        first = await telegram.start_run(env, db)
        await telegram.ask("tell me a story")
        await fake_gpts.wait_requests(1, within_s=WAIT_S)
        gate.send("Once upon a time")
        await telegram.wait_shown(lambda shown: shown == ["Once upon a time" + INDICATOR])
        gate.send(", there was a bot")
        saved = "Once upon a time, there was a bot"
        # Saved while streaming: the row exists before the answer ends, with its message id.
        await first.wait_stored(lambda rows: rows[-1] == ("assistant", saved, "streaming"))
        await first.kill()
        assert telegram.shown()[0].endswith(INDICATOR)  # frozen mid-answer
        assert actions(telegram.fake, 501) == [["stop"]]

        second = await Bot.start("run", env=env, database=db)
        settled = f"{saved}\n\n{INTERRUPTED('en')}"
        await telegram.wait_shown(lambda shown: shown == [settled])
        assert actions(telegram.fake, 501) == [["retry"]]  # Stop is gone; it can be retried
        assert second.stored() == [
            ("user", "tell me a story", "complete"),
            ("assistant", saved, "interrupted"),
        ]
        await telegram.ask("go on")
        await telegram.wait_shown(lambda shown: shown[-1] == "echo: go on")
        assert await second.terminate() == 0
    assert fake_gpts.requests[1].messages == [
        {"role": "user", "content": "tell me a story"},
        {"role": "assistant", "content": saved + CUT_MARK},
        {"role": "user", "content": "go on"},
    ]
    log = first.log + second.log
    assert telegram.fake.token not in log and API_KEY not in log
    assert "Traceback" not in second.log


@pytest.mark.asyncio
async def test_kill_9_of_chat_mid_answer_keeps_it_as_interrupted(
    fake_gpts: FakeGpts, gate: Gate, db: Path, tmp_path: Path
) -> None:
    config = write_config(tmp_path, fake_gpts.base_url, storage={"save_interval_s": 0.2})
    env = environment(config)
    first = await Bot.start("chat", env=env, database=db, stdin=True)
    await first.say("tell me a story")
    await fake_gpts.wait_requests(1, within_s=WAIT_S)
    gate.send("Once upon a time")
    await first.wait_output("Once upon a time")
    await first.wait_stored(lambda rows: rows[-1] == ("assistant", "Once upon a time", "streaming"))
    await first.kill()

    second = await Bot.start("chat", env=env, database=db, stdin=True)
    await second.say("go on")
    await second.wait_output("echo: go on")
    assert await second.wait() == 0
    assert second.stored() == [
        ("user", "tell me a story", "complete"),
        ("assistant", "Once upon a time", "interrupted"),
        ("user", "go on", "complete"),
        ("assistant", "echo: go on", "complete"),
    ]
    assert fake_gpts.requests[1].messages == alternating(
        "tell me a story", "Once upon a time" + CUT_MARK, "go on"
    )


@pytest.mark.asyncio
async def test_one_run_per_database_and_a_restart_after_kill_9_starts_at_once(
    fake_gpts: FakeGpts, db: Path, tmp_path: Path
) -> None:
    async with TelegramChat() as telegram:
        env = telegram.environment(tmp_path, fake_gpts.base_url)
        first = await telegram.start_run(env, db)

        second = await Bot.start("run", env=env, database=db)
        assert await second.wait() == 1
        pid = first.process.pid
        assert second.err.decode().strip() == (
            f"gptsbot: another gptsbot run (pid {pid}) is already answering from {db}; "
            "stop it first (two would answer every message)"
        )
        # `chat` has its own terminal scope: it may run beside `run`.
        chat = await Bot.start("chat", env=env, database=db, stdin=True)
        await chat.say("hello")
        await chat.wait_output("echo: hello")
        assert await chat.wait() == 0

        await first.kill()
        polls = len(telegram.fake.calls_to("getUpdates"))
        third = await Bot.start("run", env=env, database=db)
        await telegram.fake.wait_until(
            lambda: len(telegram.fake.calls_to("getUpdates")) > polls, WAIT_S
        )
        assert third.process.returncode is None
        assert await third.terminate() == 0


@pytest.mark.asyncio
async def test_kill_9_of_run_with_discord_settles_messages_and_chat_responses(
    fake_gpts: FakeGpts, db: Path, tmp_path: Path
) -> None:
    mentioned, slashed = Gate(), Gate()
    fake_gpts.enqueue(mentioned, slashed)
    discord = DiscordChannel()
    fake, mia = discord.fake, discord.mia
    other_id = fake.add_channel(discord.guild_id, "b")
    async with discord:
        env = discord.environment(tmp_path, fake_gpts.base_url, storage={"save_interval_s": 0.2})
        first = await discord.start_run(env, db)
        await discord.ask("tell me a story")
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
        assert discord.shown()[0].endswith(INDICATOR)

        second = await Bot.start("run", env=env, database=db)
        story = f"Once upon a time\n\n{INTERRUPTED('en')}"
        poem = f"> and a poem\nRoses are red\n\n{INTERRUPTED('en')}"
        await fake.wait_for(
            lambda: (
                discord.shown() == [story]
                and [m.content for m in fake.bot_messages(other_id)] == [poem]
            ),
            WAIT_S,
        )
        assert chat.original_id == fake.bot_messages(other_id)[0].id
        assert await second.terminate() == 0
    assert [row[2] for row in second.stored() if row[0] == "assistant"] == ["interrupted"] * 2
