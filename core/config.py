"""Configuration: TOML validated into frozen dataclasses at start; secrets (and a few keys a first
run needs, such as `gpts.base_url`) may come from the environment.

The core's sections are declared here; each platform declares its own section (a dataclass in its
`bots/<name>/` package, see `core.platforms`) and the same loader (`core.settings`) validates it.
Every section forbids unknown keys and checks types, so a typo fails at start with the key's name
(`ConfigError("gpts.idle_timeout", "unknown key")`) instead of being ignored at run time.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import os
import tomllib
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar
from urllib.parse import urlsplit

from core.answer_markup import ImagePrompt
from core.database import data_folder, resolve_url
from core.errors import BadGptName, ConfigError
from core.gpt_names import parse_gpt_id
from core.i18n import LanguageSetting
from core.settings import Check as Check
from core.settings import between as between
from core.settings import build_section as build_section
from core.settings import env_variables as env_variables
from core.settings import from_env as from_env
from core.settings import non_negative as non_negative
from core.settings import positive as positive
from core.settings import redis_url, secret_values, setting
from core.settings import secret as secret
from core.settings import secret_variables as secret_variables
from core.settings import url as url
from core.settings import verbatim as verbatim

CONFIG_ENV = "GPTSBOT_CONFIG"
DEFAULT_CONFIG_PATH = Path("config.toml")

_T = TypeVar("_T")
_S = TypeVar("_S")


def _template_problem(template: str) -> str | None:
    if "{id}" not in template:
        return "must contain {id}"
    try:
        template.format(id="g-x")
    except (KeyError, IndexError, ValueError):
        return "only {id} may be used"
    return None


def model_name_template(default: _T) -> _T:
    """How a GPT id becomes a model name: a text with `{id}` and no other field."""
    return typing.cast(_T, setting(default, check=_template_problem))


def _gpt_name_problem(value: str) -> str | None:
    try:
        parse_gpt_id(value)
    except BadGptName as exc:
        return str(exc)
    return None


@dataclass(frozen=True, slots=True)
class EndpointConfig:
    """One `[[gpts.endpoints]]` table: an upstream that turns are sent to (see core.gpts.endpoints
    for how one is chosen)."""

    base_url: str = url("", required=True)
    # Empty: `api_key_env`'s variable, else `[gpts] api_key` (GPTS_API_KEY).
    api_key: str = secret()
    # The name of the environment variable holding the key; read at start, must be set.
    api_key_env: str = ""
    # How logs and `gptsbot check` name it; empty: its host.
    name: str = ""
    # None: `[gpts] model_template`.
    model_template: str | None = model_name_template(None)
    # Its share of the turns among the healthy endpoints.
    weight: float = positive(1.0)
    # The most turns it answers at once; 0: no limit.
    max_concurrent: int = non_negative(0)


@dataclass(frozen=True, slots=True)
class GptsConfig:
    base_url: str = url("https://www.anyapi.vip/v1", env="GPTS_BASE_URL")
    api_key: str = secret("GPTS_API_KEY")
    default_gpt: str | None = from_env("GPTS_DEFAULT_GPT", None, check=_gpt_name_problem)
    model_template: str = model_name_template("gpt-4-gizmo-{id}")
    # Several upstreams with failover; empty: `base_url` and `api_key` are the one endpoint.
    endpoints: tuple[EndpointConfig, ...] = ()
    # An endpoint that failed before any text is skipped this long, doubled per failure in a row.
    endpoint_backoff_s: float = positive(15.0)
    endpoint_max_backoff_s: float = positive(300.0)
    stream: bool = True
    connect_timeout_s: float = positive(10.0)
    # Relays send no headers until the GPT's first token; Cloudflare fronts cut at ~100 s (524).
    first_chunk_timeout_s: float = positive(150.0)
    idle_timeout_s: float = positive(60.0)
    total_timeout_s: float = positive(600.0)
    # Once text flows, the stream is read at most this often: the chunks that arrived meanwhile
    # are read in one go, a fraction of the CPU of one read each. A reply edited more often
    # (the terminal's) is read as often as it is shown. 0: every chunk as it comes.
    read_interval_s: float = between(0, 1, 1.0)
    # The most a turn may hold its chat, retries included: the next turn there waits for it.
    turn_timeout_s: float = positive(300.0)
    max_retries: int = non_negative(2)
    retry_backoff_s: float = non_negative(1.0)
    history_messages: int = positive(20)
    history_chars: int = positive(12_000)
    system_prompt: str | None = None
    temperature: float | None = between(0, 2, None)
    # Images and text files sent to the GPT (core.attachments): more images in one message, or a
    # larger one, is refused with a line; images go upstream again with the last
    # `history_images` user messages that had any (fetched again from the platform).
    max_images_per_turn: int = non_negative(4)
    max_image_bytes: int = positive(10 * 1024 * 1024)
    history_images: int = non_negative(2)
    max_file_chars: int = positive(100_000)


@dataclass(frozen=True, slots=True)
class StorageConfig:
    url: str = from_env("GPTSBOT_DATABASE_URL", "sqlite+aiosqlite:///gptsbot.db")
    # A streaming answer's text is saved at most this often (and once its first message shows),
    # so a crash loses at most this much of it.
    save_interval_s: float = positive(5.0)
    # SQLite: how long one write waits for another process's lock, and for how long a write
    # still locked out is tried again before the turn gives up with a short line.
    busy_timeout_s: float = positive(5.0)
    lock_retry_s: float = non_negative(30.0)


@dataclass(frozen=True, slots=True)
class BotConfig:
    # Appended to intermediate edits only, so readers see the answer is still coming.
    streaming_indicator: str = verbatim(" ▌")
    # The language of the bot's own lines: "auto" follows each person's app language.
    language: LanguageSetting = "auto"
    # On SIGTERM, how long `gptsbot run` lets answers in progress finish before it cuts them
    # (showing and storing what arrived). None: each platform's default (10 s).
    shutdown_grace_s: float | None = non_negative(None)
    # An image GPT's ```json block with the image's prompt: "hide" folds it away from answers.
    image_prompt: ImagePrompt = "hide"
    # Answers' image links to loopback or private-network addresses (a relay serving its images
    # on the operator's network): refused by default, since users can steer what a GPT writes.
    allow_private_image_hosts: bool = False


def _user_ids_problem(users: tuple[str, ...]) -> str | None:
    for user in users:
        platform, _, user_id = user.partition(":")
        if not platform or not user_id:
            return f"{user!r} is not platform:user_id"
    return None


def user_ids() -> tuple[str, ...]:
    """A list of platform user ids, each written "telegram:123" / "discord:456"."""
    return typing.cast(tuple[str, ...], setting((), check=_user_ids_problem))


@dataclass(frozen=True, slots=True)
class AccessList:
    """`[access.allow]` or `[access.block]`: who and where, by id (see core.access)."""

    users: tuple[str, ...] = user_ids()
    # Telegram chat ids: groups (-100...) and private chats (a person's own id).
    telegram_chats: tuple[int, ...] = ()
    discord_guilds: tuple[int, ...] = ()
    # Discord channel ids; a thread is in its channel's list, or in its own.
    discord_channels: tuple[int, ...] = ()
    discord_roles: tuple[int, ...] = ()


@dataclass(frozen=True, slots=True)
class LogConfig:
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = from_env("GPTSBOT_LOG_LEVEL", "INFO")
    # "text": one line per event for people; "json": one JSON object per line for collectors.
    format: Literal["text", "json"] = from_env("GPTSBOT_LOG_FORMAT", "text")


def _listen_problem(value: str) -> str | None:
    if value and listen_address(value) is None:
        return f"must be host:port (e.g. 127.0.0.1:9464), got {value!r}"
    return None


def listen_address(value: str) -> tuple[str, int] | None:
    """`host:port` (`[::1]:9464` for IPv6) as (host, port); None when it is not one."""
    host, _, port = value.rpartition(":")
    host = host.removeprefix("[").removesuffix("]")
    if not host or not port.isdigit() or int(port) > 65535:
        return None
    return host, int(port)


@dataclass(frozen=True, slots=True)
class MetricsConfig:
    # Where /metrics, /healthz and /readyz are served (`gptsbot run`); empty: nowhere.
    listen: str = from_env("GPTSBOT_METRICS_LISTEN", "", check=_listen_problem)


@dataclass(frozen=True, slots=True)
class AccessConfig:
    # Platform user ids written "telegram:123" / "discord:456": admins in every chat, never
    # refused, exempt from quotas.
    owners: tuple[str, ...] = user_ids()
    # Whether private chats (DMs) with the bot are answered.
    allow_dms: bool = True
    # Blocked wins over allowed; an empty allow list allows everyone.
    allow: AccessList = field(default_factory=AccessList)
    block: AccessList = field(default_factory=AccessList)


@dataclass(frozen=True, slots=True)
class QuotaConfig:
    """Limits per person and per chat (core.quota); 0: unlimited. Owners are exempt."""

    # Messages for the GPT a person may send in any 60 seconds.
    turns_per_user_per_minute: int = non_negative(0)
    # Tokens (the endpoint's count, else an estimate) per person per UTC day.
    tokens_per_user_per_day: int = non_negative(0)
    # Tokens per chat (a channel or group with its threads and topics) per UTC day.
    tokens_per_scope_per_day: int = non_negative(0)


@dataclass(frozen=True, slots=True)
class LimitsConfig:
    """Where the platforms' rate budgets live: this process ("memory") or Redis, shared by
    every process of the bot (see `core.pacing.make_budgets`)."""

    backend: Literal["memory", "redis"] = "memory"
    redis_url: str = redis_url("redis://127.0.0.1:6379/0")
    key_prefix: str = "gptsbot"
    # While Redis is unreachable each process keeps this share of every budget (1/n).
    expected_processes: int = positive(2)
    # While Redis is unreachable, a process tries it again at most this often.
    redis_retry_s: float = positive(5.0)


@dataclass(frozen=True, slots=True)
class Config:
    gpts: GptsConfig = field(default_factory=GptsConfig)
    storage: StorageConfig = field(default_factory=StorageConfig)
    bot: BotConfig = field(default_factory=BotConfig)
    access: AccessConfig = field(default_factory=AccessConfig)
    limits: LimitsConfig = field(default_factory=LimitsConfig)
    quota: QuotaConfig = field(default_factory=QuotaConfig)
    log: LogConfig = field(default_factory=LogConfig)
    metrics: MetricsConfig = field(default_factory=MetricsConfig)
    # Each platform's own section ([telegram], [discord]...), as the platform declared it.
    platforms: Mapping[str, object] = field(default_factory=dict)

    def platform(self, name: str, settings: type[_S]) -> _S:
        """The `[name]` section, of the type its platform declared."""
        section = self.platforms.get(name)
        if section is None:
            section = settings()
        if not isinstance(section, settings):
            raise TypeError(f"[{name}] is a {type(section).__name__}, not {settings.__name__}")
        return section

    def secrets(self) -> list[str]:
        """Every secret value set in this config: what must never reach a log line."""
        sections = [
            self.gpts,
            self.storage,
            self.bot,
            self.access,
            self.quota,
            *self.platforms.values(),
        ]
        values = [value for section in sections for value in secret_values(section)]
        redis_password = urlsplit(self.limits.redis_url).password
        return [*values, redis_password] if redis_password else values


_CORE_SECTIONS = {f.name for f in dataclasses.fields(Config)} - {"platforms"}


def parse_config(
    raw: Mapping[str, Any],
    env: Mapping[str, str] | None = None,
    platforms: Mapping[str, type[Any]] | None = None,
) -> Config:
    """Validate a TOML document (already parsed) plus the secret env overrides into a Config.
    `platforms` maps each platform's section name to its settings class (default: the installed
    platforms')."""
    if platforms is None:
        from core.platforms import platform_settings

        platforms = platform_settings()
    for name, value in raw.items():
        if name not in _CORE_SECTIONS and name not in platforms:
            raise ConfigError(name, "unknown section")
        if not isinstance(value, dict):
            raise ConfigError(name, "must be a table ([" + name + "])")
    if "log_level" in raw.get("bot", {}):
        raise ConfigError("bot.log_level", 'moved to [log]: write level = "..." under [log]')
    hints = typing.get_type_hints(Config)
    core = {
        name: build_section(name, hints[name], raw.get(name, {}), env) for name in _CORE_SECTIONS
    }
    own = {
        name: build_section(name, settings, raw.get(name, {}), env)
        for name, settings in platforms.items()
    }
    config = Config(**core, platforms=own)
    gpts = _resolve_endpoints(config.gpts, raw.get("gpts", {}), os.environ if env is None else env)
    config = dataclasses.replace(config, gpts=gpts)
    _check_limits(config.limits)
    return config


def _resolve_endpoints(
    gpts: GptsConfig, raw: Mapping[str, Any], env: Mapping[str, str]
) -> GptsConfig:
    """Check `[[gpts.endpoints]]` as a whole and read each `api_key_env` into its `api_key`."""
    if gpts.endpoint_max_backoff_s < gpts.endpoint_backoff_s:
        raise ConfigError("gpts.endpoint_max_backoff_s", "must not be below endpoint_backoff_s")
    if not gpts.endpoints:
        return gpts
    variable = env_variables(GptsConfig)["base_url"]
    if "base_url" in raw or env.get(variable, "").strip():
        problem = "not used when [[gpts.endpoints]] are listed: give each endpoint its base_url"
        if "base_url" not in raw:
            problem += f" (set by {variable})"
        raise ConfigError("gpts.base_url", problem)
    named: dict[str, int] = {}
    endpoints = []
    for i, endpoint in enumerate(gpts.endpoints):
        key = f"gpts.endpoints[{i}]"
        if endpoint.name in named:
            problem = f"{endpoint.name!r} already names gpts.endpoints[{named[endpoint.name]}]"
            raise ConfigError(f"{key}.name", problem)
        if endpoint.name:
            named[endpoint.name] = i
        if endpoint.api_key_env:
            if endpoint.api_key:
                raise ConfigError(f"{key}.api_key_env", "set api_key or api_key_env, not both")
            value = env.get(endpoint.api_key_env, "").strip()
            if not value:
                problem = f"the environment variable {endpoint.api_key_env} is not set"
                raise ConfigError(f"{key}.api_key_env", problem)
            endpoint = dataclasses.replace(endpoint, api_key=value)
        endpoints.append(endpoint)
    return dataclasses.replace(gpts, endpoints=tuple(endpoints))


def _check_limits(limits: LimitsConfig) -> None:
    if not limits.key_prefix:
        raise ConfigError("limits.key_prefix", "must not be empty")
    if limits.backend == "redis" and importlib.util.find_spec("redis") is None:
        raise ConfigError("limits.backend", "\"redis\" needs: pip install 'gptsbot[redis]'")


def config_path(explicit: str | None, env: Mapping[str, str] | None = None) -> Path | None:
    """--config, then $GPTSBOT_CONFIG, then ./config.toml if it exists; None: defaults + env."""
    env = os.environ if env is None else env
    if explicit:
        return Path(explicit)
    if env.get(CONFIG_ENV):
        return Path(env[CONFIG_ENV])
    return DEFAULT_CONFIG_PATH if DEFAULT_CONFIG_PATH.exists() else None


def load_config(path: Path | None, env: Mapping[str, str] | None = None) -> Config:
    """The config in `path` (None: the defaults and the environment only), with a relative SQLite
    database path made absolute: next to the config file, or in the user's data folder."""
    env = os.environ if env is None else env
    if path is None:
        config = parse_config({}, env)
        folder = data_folder(env)
    else:
        try:
            with path.open("rb") as fh:
                raw = tomllib.load(fh)
        except FileNotFoundError as exc:
            raise ConfigError(str(path), "file not found") from exc
        except IsADirectoryError as exc:
            raise ConfigError(str(path), "is a folder, not a config file") from exc
        except OSError as exc:
            raise ConfigError(str(path), f"cannot be read: {exc.strerror}") from exc
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(str(path), f"not valid TOML: {exc}") from exc
        config = parse_config(raw, env)
        folder = path.absolute().parent
    storage = dataclasses.replace(config.storage, url=resolve_url(config.storage.url, folder))
    return dataclasses.replace(config, storage=storage)
