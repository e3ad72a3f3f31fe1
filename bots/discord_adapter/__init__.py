"""Discord: slash commands, mentions, replies and DMs, answers streamed in place."""

from bots.discord_adapter.adapter import DiscordAdapter, create_adapter

__all__ = ["DiscordAdapter", "create_adapter"]
