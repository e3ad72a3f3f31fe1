"""Discord: slash commands, mentions, replies and DMs, answers streamed in place.

The slash commands are built from the core's command registry (`commands.py` here translates
them); the adapter answers what the core replies.
"""

from bots.discord_adapter.settings import PLATFORM, DiscordConfig

__all__ = ["PLATFORM", "DiscordConfig"]
