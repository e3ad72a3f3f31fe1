"""Shards: the gateway split by guild (Discord sends a guild's events to shard
`(guild_id >> 22) % shard_count`, DMs to shard 0). discord.py's `AutoShardedClient` runs the
shards of this process: all of them, as many as Discord recommends (`shard_count = 0`), or the
`shard_ids` of `shard_count` that `[discord]` names, so that several processes split the bot.

The adapter is ready (/readyz) while every shard of this process is connected."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import discord

from bots.discord_adapter.settings import DiscordConfig

logger = logging.getLogger(__name__)


def shard_options(settings: DiscordConfig) -> dict[str, Any]:
    """`AutoShardedClient` arguments: none asks `GET /gateway/bot` for the recommended count."""
    if settings.shard_count == 0:
        return {}
    options: dict[str, Any] = {"shard_count": settings.shard_count}
    if settings.shard_ids:
        options["shard_ids"] = list(settings.shard_ids)
    return options


def shard_of(guild_id: int, shard_count: int) -> int:
    """The shard Discord sends a guild's events to."""
    return (guild_id >> 22) % shard_count


class ShardReadiness:
    """Sets `ready` once every shard of the client is ready, clears it while one is not."""

    def __init__(self, ready: asyncio.Event) -> None:
        self.ready = ready
        self.connected: set[int] = set()

    def reset(self) -> None:
        self.connected.clear()
        self.ready.clear()

    def shard_ready(self, client: discord.AutoShardedClient, shard_id: int) -> None:
        self.connected.add(shard_id)
        expected = _shard_ids(client)
        logger.info("Discord shard %d of %s ready", shard_id, client.shard_count)
        if expected <= self.connected:
            self.ready.set()

    def shard_lost(self, shard_id: int) -> None:
        self.connected.discard(shard_id)
        self.ready.clear()  # until discord.py reconnects it


def _shard_ids(client: discord.AutoShardedClient) -> set[int]:
    if client.shard_ids is not None:
        return set(client.shard_ids)
    return set(range(client.shard_count or 0))
