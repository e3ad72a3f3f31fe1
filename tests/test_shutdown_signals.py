"""SIGTERM on `gptsbot run` mid-answer, with each platform: no new turns, the answer keeps
streaming for the grace period, then what arrived is shown (with the restarting line) and stored
as `stopped`."""

from __future__ import annotations

import asyncio
import signal
import time
from pathlib import Path

import pytest

from core.i18n import RESTARTING
from fakes.discord import FakeDiscord
from fakes.gpts import FakeGpts, Gate
from fakes.telegram import FakeTelegram
from tests.gptsbot_process import WAIT_S, Bot, environment, write_config

INDICATOR = " ▌"
GRACE_S = 2.0


@pytest.mark.asyncio
async def test_sigterm_on_run_with_telegram_keeps_streaming_then_stores_what_arrived(
    fake_gpts: FakeGpts, tmp_path: Path
) -> None:
    gate = Gate()
    fake_gpts.enqueue(gate)
    async with FakeTelegram() as telegram:
        config = write_config(
            tmp_path,
            fake_gpts.base_url,
            telegram={"base_url": telegram.base_url},
            bot={"shutdown_grace_s": GRACE_S},
        )
        bot = await Bot.start(
            "run", env=environment(config, TELEGRAM_BOT_TOKEN=telegram.token),
            database=tmp_path / "bot.db",
        )  # fmt: skip
        await telegram.wait_for_call("getUpdates", timeout=WAIT_S)
        mei = telegram.user(501, "Mei")
        telegram.user_message(telegram.private_chat(mei), mei, "tell me a story")
        await fake_gpts.wait_requests(1, within_s=WAIT_S)
        gate.send("First part")
        await telegram.wait_for_call("sendMessage", timeout=WAIT_S)
        stopping = time.monotonic()
        bot.process.send_signal(signal.SIGTERM)
        await asyncio.sleep(GRACE_S / 2)
        gate.send(" and more")  # arrives during the grace period
        assert await bot.wait() == 0
        took = time.monotonic() - stopping
        shown = [message["text"] for message in telegram.bot_messages(501)]
    assert shown == [f"First part and more\n\n{RESTARTING('en')}"]
    assert bot.stored()[-1] == ("assistant", "First part and more", "stopped")
    assert GRACE_S <= took < GRACE_S + 10


@pytest.mark.asyncio
async def test_sigterm_on_run_with_discord_keeps_streaming_then_stores_what_arrived(
    fake_gpts: FakeGpts, tmp_path: Path
) -> None:
    gate = Gate()
    fake_gpts.enqueue(gate)
    fake = FakeDiscord()
    guild_id = fake.add_guild()
    channel_id = fake.add_channel(guild_id)
    mia = fake.make_user("mia")
    fake.add_member(guild_id, mia)
    async with fake:
        config = write_config(
            tmp_path,
            fake_gpts.base_url,
            discord={"api_base": fake.api_base, "edit_interval_s": 0.1},
            bot={"shutdown_grace_s": GRACE_S},
        )
        bot = await Bot.start(
            "run", env=environment(config, DISCORD_BOT_TOKEN=fake.token),
            database=tmp_path / "bot.db",
        )  # fmt: skip
        await fake.wait_ready(within_s=WAIT_S)
        await fake.user_says(channel_id, mia, "tell me a story", mention_bot=True)
        await fake_gpts.wait_requests(1, within_s=WAIT_S)
        gate.send("First part")
        await fake.wait_for(lambda: fake.bot_messages(channel_id), WAIT_S)
        stopping = time.monotonic()
        bot.process.send_signal(signal.SIGTERM)
        await asyncio.sleep(GRACE_S / 2)
        gate.send(" and more")  # arrives during the grace period
        assert await bot.wait() == 0
        took = time.monotonic() - stopping
        shown = [message.content for message in fake.bot_messages(channel_id)]
    assert shown == [f"First part and more\n\n{RESTARTING('en')}"]
    assert bot.stored()[-1] == ("assistant", "First part and more", "stopped")
    assert GRACE_S <= took < GRACE_S + 10
