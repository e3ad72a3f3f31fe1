"""Configuration: TOML validated into frozen dataclasses at start; secrets may come from the env.

Every section forbids unknown keys and checks types, so a typo fails at start with the key's name
(`ConfigError("gpts.idle_timeout", "unknown key")`) instead of being ignored at run time.
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from core.errors import BadGptName, ConfigError
from core.gpt_names import parse_gpt_id
from core.i18n import LanguageSetting

CONFIG_ENV = "GPTSBOT_CONFIG"
DEFAULT_CONFIG_PATH = Path("config.toml")

# Environment variables that override a secret in the file: (section, key) -> variable.
SECRET_ENV = {
    ("gpts", "api_key"): "GPTS_API_KEY",
    ("telegram", "token"): "TELEGRAM_BOT_TOKEN",
    ("discord", "token"): "DISCORD_BOT_TOKEN",
}


def _url(value: str) -> bool:
    parts = urlsplit(value)
    return parts.scheme in {"http", "https"} and bool(parts.netloc)


@dataclass(frozen=True, slots=True)
class GptsConfig:
    base_url: str = "https://www.anyapi.vip/v1"
    api_key: str = field(default="", repr=False)
    default_gpt: str | None = None
    model_template: str = "gpt-4-gizmo-{id}"
    stream: bool = True
    connect_timeout_s: float = 10.0
    # Relays send no headers until the GPT's first token; Cloudflare fronts cut at ~100 s (524).
    first_chunk_timeout_s: float = 150.0
    idle_timeout_s: float = 60.0
    total_timeout_s: float = 600.0
    max_retries: int = 2
    retry_backoff_s: float = 1.0
    history_messages: int = 20
    history_chars: int = 12_000
    system_prompt: str | None = None
    temperature: float | None = None


@dataclass(frozen=True, slots=True)
class StorageConfig:
    url: str = "sqlite+aiosqlite:///gptsbot.db"


@dataclass(frozen=True, slots=True)
class BotConfig:
    # Appended to intermediate edits only, so readers see the answer is still coming.
    streaming_indicator: str = " ▌"
    # The language of the bot's own lines: "auto" follows each person's app language.
    language: LanguageSetting = "auto"
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"


@dataclass(frozen=True, slots=True)
class TelegramConfig:
    token: str = field(default="", repr=False)
    base_url: str = "https://api.telegram.org/bot"
    edit_interval_s: float = 1.0
    # Telegram allows about 20 messages a minute per group.
    group_edit_interval_s: float = 3.0
    # Telegram allows about 30 messages a second per bot overall; a little under it, so that
    # network jitter never bunches 31 arrivals into one second.
    messages_per_second: float = 29.0
    dm_streaming: Literal["edit", "draft"] = "edit"
    # Empty: every chat may use the bot.
    allowed_chat_ids: tuple[int, ...] = ()


@dataclass(frozen=True, slots=True)
class DiscordConfig:
    token: str = field(default="", repr=False)
    api_base: str = "https://discord.com/api/v10"
    edit_interval_s: float = 1.0
    # Discord allows about 50 requests a second per bot and 5 edits per 5 s per channel.
    requests_per_second: float = 48.0  # a little under the 50/s limit, for network jitter
    channel_edits_per_5s: int = 5
    dev_guild_id: int | None = None
    allowed_guild_ids: tuple[int, ...] = ()


@dataclass(frozen=True, slots=True)
class Config:
    gpts: GptsConfig = field(default_factory=GptsConfig)
    storage: StorageConfig = field(default_factory=StorageConfig)
    bot: BotConfig = field(default_factory=BotConfig)
    telegram: TelegramConfig = field(default_factory=TelegramConfig)
    discord: DiscordConfig = field(default_factory=DiscordConfig)


_URL_KEYS = {"gpts.base_url", "telegram.base_url", "discord.api_base"}
_POSITIVE_KEYS = {
    "gpts.connect_timeout_s", "gpts.first_chunk_timeout_s", "gpts.idle_timeout_s",
    "gpts.total_timeout_s", "gpts.history_messages", "gpts.history_chars",
    "telegram.messages_per_second", "discord.requests_per_second",
    "discord.channel_edits_per_5s",
}  # fmt: skip
_NON_NEGATIVE_KEYS = {
    "gpts.max_retries", "gpts.retry_backoff_s", "telegram.edit_interval_s",
    "telegram.group_edit_interval_s", "discord.edit_interval_s",
}  # fmt: skip


def _check_value(key: str, value: Any, annotation: Any) -> Any:
    """Return `value` if it fits `annotation` (ints widen to floats), else raise naming `key`."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(annotation)
        if value is None and type(None) in options:
            return None
        (inner,) = [a for a in options if a is not type(None)]
        return _check_value(key, value, inner)
    if origin is Literal:
        choices = typing.get_args(annotation)
        if value not in choices:
            raise ConfigError(key, f"must be one of {', '.join(map(repr, choices))}")
        return value
    if origin is tuple:
        item = typing.get_args(annotation)[0]
        if not isinstance(value, list):
            raise ConfigError(key, "must be a list")
        return tuple(_check_value(f"{key}[{i}]", v, item) for i, v in enumerate(value))
    if annotation is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if annotation is int and isinstance(value, bool):
        raise ConfigError(key, "must be an integer")
    if not isinstance(value, annotation):
        raise ConfigError(key, f"must be {annotation.__name__}, got {type(value).__name__}")
    return value


def _build_section(name: str, cls: type[Any], raw: Mapping[str, Any]) -> Any:
    hints = typing.get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls)}
    for key in raw:
        if key not in known:
            raise ConfigError(f"{name}.{key}", "unknown key")
    values = {key: _check_value(f"{name}.{key}", value, hints[key]) for key, value in raw.items()}
    section = cls(**values)
    for f in dataclasses.fields(cls):
        key, value = f"{name}.{f.name}", getattr(section, f.name)
        if key in _URL_KEYS and not _url(value):
            raise ConfigError(key, f"must be an http(s) URL, got {value!r}")
        if key in _POSITIVE_KEYS and value <= 0:
            raise ConfigError(key, "must be greater than 0")
        if key in _NON_NEGATIVE_KEYS and value < 0:
            raise ConfigError(key, "must not be negative")
    return section


def parse_config(raw: Mapping[str, Any], env: Mapping[str, str] | None = None) -> Config:
    """Validate a TOML document (already parsed) plus the secret env overrides into a Config."""
    env = os.environ if env is None else env
    sections = {f.name: f.type for f in dataclasses.fields(Config)}
    hints = typing.get_type_hints(Config)
    for name, value in raw.items():
        if name not in sections:
            raise ConfigError(name, "unknown section")
        if not isinstance(value, dict):
            raise ConfigError(name, "must be a table ([" + name + "])")
    built: dict[str, Any] = {}
    for name in sections:
        section_raw = dict(raw.get(name, {}))
        for (section, key), variable in SECRET_ENV.items():
            if section == name and env.get(variable):
                section_raw[key] = env[variable]
        built[name] = _build_section(name, hints[name], section_raw)
    config = Config(**built)
    if config.gpts.default_gpt is not None:
        try:
            parse_gpt_id(config.gpts.default_gpt)
        except BadGptName as exc:
            raise ConfigError("gpts.default_gpt", str(exc)) from exc
    template = config.gpts.model_template
    if "{id}" not in template:
        raise ConfigError("gpts.model_template", "must contain {id}")
    try:
        template.format(id="g-x")
    except (KeyError, IndexError, ValueError) as exc:
        raise ConfigError("gpts.model_template", "only {id} may be used") from exc
    return config


def config_path(explicit: str | None, env: Mapping[str, str] | None = None) -> Path | None:
    """--config, then $GPTSBOT_CONFIG, then ./config.toml if it exists; None: defaults + env."""
    env = os.environ if env is None else env
    if explicit:
        return Path(explicit)
    if env.get(CONFIG_ENV):
        return Path(env[CONFIG_ENV])
    return DEFAULT_CONFIG_PATH if DEFAULT_CONFIG_PATH.exists() else None


def load_config(path: Path | None, env: Mapping[str, str] | None = None) -> Config:
    if path is None:
        return parse_config({}, env)
    try:
        with path.open("rb") as fh:
            raw = tomllib.load(fh)
    except FileNotFoundError as exc:
        raise ConfigError(str(path), "file not found") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(str(path), f"not valid TOML: {exc}") from exc
    return parse_config(raw, env)
