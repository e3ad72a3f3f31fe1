"""Discord's `[discord]` config section, and how gptsbot finds this platform (`PLATFORM`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar, Literal

from core.config import Config, non_negative, positive, secret, url
from core.platforms import Platform

if TYPE_CHECKING:
    from bots.discord_adapter.adapter import DiscordAdapter
    from core.conversation import ConversationService

NAME = "discord"
DEFAULT_API_BASE = "https://discord.com/api/v10"


@dataclass(frozen=True, slots=True)
class DiscordConfig:
    token: str = secret("DISCORD_BOT_TOKEN")
    api_base: str = url(DEFAULT_API_BASE)
    edit_interval_s: float = non_negative(1.0)
    # Discord allows about 50 requests a second per bot and 5 edits per 5 s per channel.
    requests_per_second: float = positive(48.0)  # a little under the 50/s limit, for jitter
    channel_edits_per_5s: int = positive(5)
    dev_guild_id: int | None = None
    # Who may add the bot: "guild" (server admins), "user" (anyone, to use /chat everywhere) or
    # "both". Bindings and admin commands stay with the server install.
    install: Literal["guild", "user", "both"] = "both"

    # Who may use the bot is the core's `[access]` now, for every platform.
    MOVED_KEYS: ClassVar[dict[str, str]] = {
        "allowed_guild_ids": "list the same ids as discord_guilds under [access.allow]",
    }


def create_adapter(config: Config, service: ConversationService) -> DiscordAdapter | None:
    """Called by `gptsbot run`: a Discord adapter, or None without a token."""
    if not config.platform(NAME, DiscordConfig).token:
        return None
    # Imported here, not at the top: discord.py is only loaded when Discord runs.
    from bots.discord_adapter.adapter import DiscordAdapter

    return DiscordAdapter(config, service)


PLATFORM = Platform(NAME, DiscordConfig, create_adapter)
