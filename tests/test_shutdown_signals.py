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
from fakes.gpts import FakeGpts, Gate
from tests.gptsbot_process import WAIT_S, DiscordChannel, TelegramChat

INDICATOR = " ▌"
GRACE_S = 2.0


@pytest.mark.asyncio
@pytest.mark.parametrize("platform", [TelegramChat, DiscordChannel], ids=["telegram", "discord"])
async def test_sigterm_on_run_keeps_streaming_then_stores_what_arrived(
    platform: type[TelegramChat | DiscordChannel],
    fake_gpts: FakeGpts,
    gate: Gate,
    db: Path,
    tmp_path: Path,
) -> None:
    async with platform() as chat:
        env = chat.environment(tmp_path, fake_gpts.base_url, bot={"shutdown_grace_s": GRACE_S})
        bot = await chat.start_run(env, db)
        await chat.ask("tell me a story")
        await fake_gpts.wait_requests(1, within_s=WAIT_S)
        gate.send("First part")
        await chat.wait_shown(lambda shown: shown)
        stopping = time.monotonic()
        bot.process.send_signal(signal.SIGTERM)
        await asyncio.sleep(GRACE_S / 2)
        gate.send(" and more")  # arrives during the grace period
        assert await bot.wait() == 0
        took = time.monotonic() - stopping
        shown = chat.shown()
    assert shown == [f"First part and more\n\n{RESTARTING('en')}"]
    assert bot.stored()[-1] == ("assistant", "First part and more", "stopped")
    assert GRACE_S <= took < GRACE_S + 10
