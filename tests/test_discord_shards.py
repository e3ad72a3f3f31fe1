"""Discord shards against the fake Discord: `[discord] shard_count` / `shard_ids` split the gateway
between processes (two adapters here, one shard each), and automatic sharding runs the count
Discord recommends in one process. The fake sends each shard only its guilds
(`(guild_id >> 22) % shard_count == shard_id`) and their events, DMs to shard 0."""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from tests.discord_fixtures import discord  # discord.py imported with its audioop warning silenced

# isort: split
from bots.discord_adapter.adapter import DiscordAdapter
from bots.discord_adapter.shards import ShardReadiness, shard_of
from core.app import open_app
from core.config import Config, parse_config
from core.conversation import AnswerOutcome, ConversationService
from core.streaming import StreamingReply
from core.turns import Turn
from fakes.discord import FakeDiscord
from fakes.gpts import FakeGpts
from tests.gptsbot_process import Bot, environment, wait_for, write_config

TIMEOUT = 10.0
SHARDS = 2
GUILDS_PER_SHARD = 2


class RecordingService(ConversationService):
    """The real service, noting the turns it answered (which adapter got which message)."""

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.answered: list[Turn] = []

    async def answer(self, turn: Turn, reply: StreamingReply) -> AnswerOutcome:
        self.answered.append(turn)
        return await super().answer(turn, reply)


@dataclass
class Guilds:
    fake: FakeDiscord
    by_shard: dict[int, list[int]]  # shard id -> its guilds
    channels: dict[int, int]  # guild id -> its channel
    member: dict[str, Any]


def shard_guilds(recommended: int = 1) -> Guilds:
    fake = FakeDiscord(shards=recommended)
    member = fake.make_user("mia")
    by_shard: dict[int, list[int]] = {}
    channels: dict[int, int] = {}
    for shard in range(SHARDS):
        for i in range(GUILDS_PER_SHARD):
            guild = fake.add_guild(f"g{shard}-{i}", shard=(shard, SHARDS))
            assert shard_of(guild, SHARDS) == shard
            by_shard.setdefault(shard, []).append(guild)
            channels[guild] = fake.add_channel(guild)
            fake.add_member(guild, member)
    return Guilds(fake, by_shard, channels, member)


def config_for(fake: FakeDiscord, gpts: FakeGpts, tmp_path: Path, **discord: Any) -> Config:
    return parse_config(
        {
            "gpts": {
                "base_url": gpts.base_url,
                "api_key": "sk-shards",
                "default_gpt": "g-Default01",
            },
            "storage": {"url": f"sqlite+aiosqlite:///{tmp_path / 'bot.db'}"},
            "bot": {"shutdown_grace_s": 0.2},
            "discord": {
                "token": fake.token,
                "api_base": fake.api_base,
                "edit_interval_s": 0.05,
                **discord,
            },
        },
        env={},
    )


@contextlib.asynccontextmanager
async def running(*adapters: DiscordAdapter) -> AsyncIterator[None]:
    """Run the adapters until each is ready; stop them in reverse order (each restores the
    discord.py class attributes it found when it started)."""
    tasks = []
    for adapter in adapters:
        adapter.reraise_unexpected = True
        tasks.append(asyncio.create_task(adapter.run()))
    try:
        for adapter in adapters:
            await asyncio.wait_for(adapter.ready.wait(), TIMEOUT)
        yield
    finally:
        for task in reversed(tasks):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.wait_for(task, TIMEOUT)
    for adapter in adapters:
        assert adapter.unexpected == []


async def mention(w: Guilds, guild: int, text: str) -> None:
    """A member @mentions the bot in the guild; wait for the whole answer there."""
    channel = w.channels[guild]
    await w.fake.user_says(channel, w.member, text, mention_bot=True)

    def done() -> bool:
        messages = w.fake.bot_messages(channel)
        return len(messages) == 1 and messages[0].content == f"echo: mia: {text}"

    await w.fake.wait_for(done, TIMEOUT)


def identified_shards(fake: FakeDiscord) -> list[tuple[int, int]]:
    return sorted(tuple(i["shard"]) for i in fake.identifies)


def seen_guilds(adapter: DiscordAdapter) -> set[int]:
    assert adapter.client is not None
    return {guild.id for guild in adapter.client.guilds}


@pytest.mark.asyncio
async def test_two_processes_each_get_only_their_shards_guilds(
    tmp_path: Path, fake_gpts: FakeGpts
) -> None:
    w = shard_guilds()
    async with w.fake:
        configs = [
            config_for(w.fake, fake_gpts, tmp_path, shard_count=SHARDS, shard_ids=[shard])
            for shard in range(SHARDS)
        ]
        async with open_app(configs[0]) as app:
            services = [RecordingService(c, app.repo, app.client) for c in configs]
            adapters = [
                DiscordAdapter(c, s, guild_ready_timeout=0.05)
                for c, s in zip(configs, services, strict=True)
            ]
            async with running(*adapters):
                assert identified_shards(w.fake) == [(0, SHARDS), (1, SHARDS)]
                for shard, adapter in enumerate(adapters):
                    assert adapter.client is not None
                    assert adapter.client.shard_count == SHARDS
                    assert set(adapter.client.shards) == {shard}
                    assert seen_guilds(adapter) == set(w.by_shard[shard])

                # A mention in a guild of shard 1 reaches the second process only.
                guild = w.by_shard[1][0]
                await mention(w, guild, "who answers?")
                assert [t.scope.chat_id for t in services[1].answered] == [str(w.channels[guild])]
                assert services[0].answered == []

                # And one in a guild of shard 0 the first only; a DM goes to shard 0 too.
                await mention(w, w.by_shard[0][1], "and here?")
                dm = w.fake.dm_channel(w.member)
                await w.fake.user_says(dm, w.member, "in private")
                await w.fake.wait_for(lambda: len(services[0].answered) == 2, TIMEOUT)
                assert [t.is_private for t in services[0].answered] == [False, True]
                assert len(services[1].answered) == 1


@pytest.mark.asyncio
async def test_automatic_sharding_runs_every_recommended_shard_in_one_process(
    tmp_path: Path, fake_gpts: FakeGpts
) -> None:
    w = shard_guilds(recommended=SHARDS)
    async with w.fake:
        config = config_for(w.fake, fake_gpts, tmp_path)
        async with open_app(config) as app:
            service = RecordingService(config, app.repo, app.client)
            adapter = DiscordAdapter(config, service, guild_ready_timeout=0.05)
            async with running(adapter):
                assert identified_shards(w.fake) == [(0, SHARDS), (1, SHARDS)]
                assert isinstance(adapter.client, discord.AutoShardedClient)
                assert adapter.client.shard_count == SHARDS
                assert set(adapter.client.shards) == {0, 1}
                assert adapter.shards.connected == {0, 1}
                assert seen_guilds(adapter) == {g for gs in w.by_shard.values() for g in gs}
                for shard in range(SHARDS):
                    await mention(w, w.by_shard[shard][0], f"shard {shard}?")
                assert len(service.answered) == SHARDS


def test_one_shard_lost_means_not_ready_until_it_is_back() -> None:
    ready = asyncio.Event()
    readiness = ShardReadiness(ready)
    client: Any = SimpleNamespace(shard_ids=None, shard_count=2)  # what it reads of the client
    readiness.shard_ready(client, 0)
    assert not ready.is_set()  # shard 1 is not ready yet
    readiness.shard_ready(client, 1)
    assert ready.is_set()
    readiness.shard_lost(1)
    assert not ready.is_set()
    readiness.shard_ready(client, 1)  # resumed
    assert ready.is_set()


# --- two real `gptsbot run` processes, a shard each -------------------------------------------

SHARD_READY = re.compile(r"Discord shard (\d+) of (\d+) ready")


def turn_scopes(bot: Bot) -> list[str]:
    """The scopes of the turns a process answered (its per-turn INFO lines)."""
    return re.findall(r" INFO core\.turn_report: turn scope=(\S+) ", bot.log)


@pytest.mark.asyncio
async def test_two_processes_with_a_shard_each_split_the_guilds(
    tmp_path: Path, fake_gpts: FakeGpts, pg_url: str
) -> None:
    w = shard_guilds()
    async with w.fake:
        bots = []
        for shard in range(SHARDS):
            folder = tmp_path / f"shard{shard}"
            folder.mkdir()
            discord_section = {
                "api_base": w.fake.api_base,
                "edit_interval_s": 0.05,
                "shard_count": SHARDS,
                "shard_ids": [shard],
            }
            config = write_config(
                folder, fake_gpts.base_url, storage={"url": pg_url}, discord=discord_section
            )
            env = environment(config, DISCORD_BOT_TOKEN=w.fake.token)
            bots.append(await Bot.start("run", env=env))
        try:
            for bot in bots:
                await wait_for(lambda bot=bot: "Discord ready as" in bot.log)
            # Each process connected its own shard and was sent that shard's guilds only.
            assert identified_shards(w.fake) == [(0, SHARDS), (1, SHARDS)]
            for shard, bot in enumerate(bots):
                assert SHARD_READY.findall(bot.log) == [(str(shard), str(SHARDS))]
                assert f"in {GUILDS_PER_SHARD} guild(s)" in bot.log
            # A mention in each guild is answered once, by the process of the guild's shard; a
            # DM by shard 0's.
            for shard in range(SHARDS):
                for guild in w.by_shard[shard]:
                    await mention(w, guild, f"guild {guild}?")
            dm = w.fake.dm_channel(w.member)
            await w.fake.user_says(dm, w.member, "in private")
            await w.fake.wait_for(lambda: len(w.fake.bot_messages(dm)) == 1, TIMEOUT)
            await wait_for(lambda: sum(len(turn_scopes(bot)) for bot in bots) == 5)
        finally:
            codes = [await bot.terminate() for bot in bots]
    assert codes == [0, 0], [bot.log for bot in bots]
    for shard, bot in enumerate(bots):
        channels = [f"discord:{w.channels[guild]}" for guild in w.by_shard[shard]]
        assert sorted(turn_scopes(bot)) == sorted(
            channels + ([f"discord:{dm}"] if shard == 0 else [])
        )
        assert " ERROR " not in bot.log and w.fake.token not in bot.log
    assert len(fake_gpts.requests) == 5
