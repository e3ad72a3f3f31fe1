"""Telegram's `[telegram]` config section, and how gptsbot finds this platform (`PLATFORM`)."""

from __future__ import annotations

import argparse
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar, Literal
from urllib.parse import urlsplit

from core.config import Config, non_negative, positive, secret, url
from core.errors import ConfigError
from core.platforms import AddCommand, Platform

if TYPE_CHECKING:
    from bots.telegram_adapter.adapter import TelegramAdapter
    from core.conversation import ConversationService

NAME = "telegram"
MAX_PORT = 65535
CONFIG_HELP = "TOML config file (default: $GPTSBOT_CONFIG, then ./config.toml if present)"
# What Telegram accepts as a webhook's secret token.
SECRET_TOKEN = re.compile(r"[A-Za-z0-9_-]{1,256}")


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
    # An album arrives as one message per item: answered once none came for this long.
    album_wait_s: float = positive(1.0)
    # "webhook": Telegram posts updates to webhook_url, which this worker serves on `listen`.
    mode: Literal["polling", "webhook"] = "polling"
    webhook_url: str = ""  # https://...
    listen: str = ""  # host:port
    secret_token: str = secret("TELEGRAM_WEBHOOK_SECRET")
    set_webhook_at_start: bool = False

    # Who may use the bot is the core's `[access]` now, for every platform.
    MOVED_KEYS: ClassVar[dict[str, str]] = {
        "allowed_chat_ids": "list the same ids as telegram_chats under [access.allow]",
    }

    def __post_init__(self) -> None:
        if self.listen and listen_address(self.listen) is None:
            raise ConfigError(f"{NAME}.listen", f"must be host:port, got {self.listen!r}")
        url = urlsplit(self.webhook_url)
        if self.webhook_url and (url.scheme != "https" or not url.netloc):
            problem = f"must be an https:// URL, got {self.webhook_url!r}"
            raise ConfigError(f"{NAME}.webhook_url", problem)
        if self.mode != "webhook":
            return
        if not self.webhook_url:
            problem = "webhook mode needs the public https:// URL Telegram posts updates to"
            raise ConfigError(f"{NAME}.webhook_url", problem)
        if not self.listen:
            problem = 'webhook mode needs the host:port this worker serves (e.g. "0.0.0.0:8443")'
            raise ConfigError(f"{NAME}.listen", problem)
        if not self.secret_token:
            problem = "webhook mode needs a secret (better: set TELEGRAM_WEBHOOK_SECRET)"
            raise ConfigError(f"{NAME}.secret_token", problem)
        if not SECRET_TOKEN.fullmatch(self.secret_token):
            problem = "must be 1 to 256 characters, each a letter, a digit, _ or -"
            raise ConfigError(f"{NAME}.secret_token", problem)


def listen_address(listen: str) -> tuple[str, int] | None:
    """("host", port) from "host:port" (port 0: any free one), or None if it is not that."""
    host, colon, port = listen.rpartition(":")
    if not colon or not host or not port.isdigit() or int(port) > MAX_PORT:
        return None
    return host.strip("[]"), int(port)


def create_adapter(config: Config, service: ConversationService) -> TelegramAdapter | None:
    """Called by `gptsbot run`: a Telegram adapter, or None without a bot token."""
    if not config.platform(NAME, TelegramConfig).token:
        return None
    # Imported here, not at the top: PTB is only loaded when Telegram runs (`gptsbot chat` and
    # `check` start faster without it).
    from bots.telegram_adapter.adapter import TelegramAdapter

    return TelegramAdapter(config, service)


async def _set_webhook(config: Config, args: argparse.Namespace) -> int:
    from bots.telegram_adapter.webhook import set_webhook_command

    return await set_webhook_command(config)


def add_commands(add: AddCommand) -> None:
    """`gptsbot telegram set-webhook` (PTB is imported only when it runs)."""
    actions = add("telegram", "Telegram's own commands").add_subparsers(
        dest="action", required=True
    )
    about = "register [telegram] webhook_url and secret_token with Telegram"
    register = actions.add_parser("set-webhook", help=about, description=about)
    register.add_argument("--config", default=argparse.SUPPRESS, help=CONFIG_HELP)
    register.set_defaults(handler=_set_webhook)


PLATFORM = Platform(NAME, TelegramConfig, create_adapter, add_commands)
