"""How discord.py connects: the gateway intents it asks for, and the API it talks to when that is
not discord.com (`[discord] api_base`: a proxy, or the tests' fake Discord)."""

from __future__ import annotations

import logging

import aiohttp
import discord
import discord.gateway
import discord.http
import yarl

from bots.discord_adapter.settings import DEFAULT_API_BASE, DiscordConfig
from core.platform import PlatformRefused

logger = logging.getLogger(__name__)

REFUSED = "Discord refused the bot token: check DISCORD_BOT_TOKEN"


def intents(message_content: bool) -> discord.Intents:
    intents = discord.Intents.none()
    intents.guilds = True  # channels and threads arrive in GUILD_CREATE
    intents.guild_messages = True
    intents.dm_messages = True
    intents.message_content = message_content
    return intents


async def point_at_api(settings: DiscordConfig) -> None:
    """discord.py has no option for another API base: set the class attributes it reads
    (REST, interaction callbacks and webhooks all use `Route.BASE`), and fetch the gateway
    URL from `/gateway/bot` since a plain Client never asks for it."""
    base = settings.api_base.rstrip("/")
    if base == DEFAULT_API_BASE:
        return
    discord.http.Route.BASE = base
    headers = {"Authorization": f"Bot {settings.token}"}
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"{base}/gateway/bot", headers=headers) as response,
    ):
        if response.status == 401:
            raise PlatformRefused(REFUSED)
        if response.status != 200:
            raise RuntimeError(f"GET {base}/gateway/bot answered HTTP {response.status}")
        data = await response.json(content_type=None)
    discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(data["url"])
    logger.info("Discord API at %s, gateway at %s", base, data["url"])
