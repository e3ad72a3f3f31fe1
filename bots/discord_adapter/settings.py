"""Discord's `[discord]` config section, and how gptsbot finds this platform (`PLATFORM`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar, Literal

from core.config import Config, non_negative, positive, secret, url
from core.errors import ConfigError
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
    # Sharding: 0 asks Discord how many shards (one process runs them all); with a count set,
    # several processes may split the gateway, each running its `shard_ids` (empty: all).
    shard_count: int = non_negative(0)
    shard_ids: tuple[int, ...] = ()

    # Who may use the bot is the core's `[access]` now, for every platform.
    MOVED_KEYS: ClassVar[dict[str, str]] = {
        "allowed_guild_ids": "list the same ids as discord_guilds under [access.allow]",
    }

    def __post_init__(self) -> None:
        # Keys that only make sense together: checked here, naming the key at fault.
        if not self.shard_ids or self.shard_count < 0:
            return  # a negative count fails its own check
        if self.shard_count == 0:
            raise ConfigError(f"{NAME}.shard_ids", f"needs {NAME}.shard_count (the total)")
        for shard_id in self.shard_ids:
            if not 0 <= shard_id < self.shard_count:
                raise ConfigError(
                    f"{NAME}.shard_ids",
                    f"shard {shard_id} is not from 0 to shard_count - 1 ({self.shard_count - 1})",
                )
        if len(set(self.shard_ids)) != len(self.shard_ids):
            raise ConfigError(f"{NAME}.shard_ids", "lists a shard twice")


def create_adapter(config: Config, service: ConversationService) -> DiscordAdapter | None:
    """Called by `gptsbot run`: a Discord adapter, or None without a token."""
    if not config.platform(NAME, DiscordConfig).token:
        return None
    # Imported here, not at the top: discord.py is only loaded when Discord runs.
    from bots.discord_adapter.adapter import DiscordAdapter

    return DiscordAdapter(config, service)


PLATFORM = Platform(NAME, DiscordConfig, create_adapter)
