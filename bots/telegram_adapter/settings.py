"""Telegram's `[telegram]` config section, and how gptsbot finds this platform (`PLATFORM`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar, Literal

from core.config import Config, non_negative, positive, secret, url
from core.platforms import Platform

if TYPE_CHECKING:
    from bots.telegram_adapter.adapter import TelegramAdapter
    from core.conversation import ConversationService

NAME = "telegram"


@dataclass(frozen=True, slots=True)
class TelegramConfig:
    token: str = secret("TELEGRAM_BOT_TOKEN")
    base_url: str = url("https://api.telegram.org/bot")
    edit_interval_s: float = non_negative(1.0)
    # Telegram allows about 20 messages a minute per group.
    group_edit_interval_s: float = non_negative(3.0)
    # Telegram allows about 30 messages a second per bot overall; a little under it, so that
    # network jitter never bunches 31 arrivals into one second.
    messages_per_second: float = positive(29.0)
    dm_streaming: Literal["edit", "draft"] = "edit"

    # Who may use the bot is the core's `[access]` now, for every platform.
    MOVED_KEYS: ClassVar[dict[str, str]] = {
        "allowed_chat_ids": "list the same ids as telegram_chats under [access.allow]",
    }


def create_adapter(config: Config, service: ConversationService) -> TelegramAdapter | None:
    """Called by `gptsbot run`: a Telegram adapter, or None without a bot token."""
    if not config.platform(NAME, TelegramConfig).token:
        return None
    # Imported here, not at the top: PTB is only loaded when Telegram runs (`gptsbot chat` and
    # `check` start faster without it).
    from bots.telegram_adapter.adapter import TelegramAdapter

    return TelegramAdapter(config, service)


PLATFORM = Platform(NAME, TelegramConfig, create_adapter)
