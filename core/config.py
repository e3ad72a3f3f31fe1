"""Configuration: TOML validated into frozen dataclasses at start; secrets (and a few keys a first
run needs, such as `gpts.base_url`) may come from the environment.

The core's sections are declared here; each platform declares its own section (a dataclass in its
`bots/<name>/` package, see `core.platforms`) and the same loader validates it. Every section
forbids unknown keys and checks types, so a typo fails at start with the key's name
(`ConfigError("gpts.idle_timeout", "unknown key")`) instead of being ignored at run time.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib.util
import os
import tomllib
import types
import typing
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar
from urllib.parse import urlsplit

from core.database import data_folder, resolve_url
from core.errors import BadGptName, ConfigError
from core.gpt_names import parse_gpt_id
from core.i18n import LanguageSetting

CONFIG_ENV = "GPTSBOT_CONFIG"
DEFAULT_CONFIG_PATH = Path("config.toml")

_T = TypeVar("_T")
_S = TypeVar("_S")

# --- declaring settings ------------------------------------------------------------------------
# A section is a frozen dataclass. Its fields' defaults are the documented defaults; these helpers
# attach to a field a check, an environment variable that overrides the file (a secret is such a
# key that is also kept out of repr and logs), or `verbatim` (kept as written, not trimmed), so
# that any section, the platforms' included, is validated by the same loader.
#
# String values are trimmed: a key or token pasted with a space or a newline around it works.

# What is wrong with a value (None: nothing). Run on set values only, after the type check.
Check = typing.Callable[[Any], str | None]


def _setting(
    default: Any,
    *,
    env: str | None = None,
    check: Check | None = None,
    is_secret: bool = False,
    is_verbatim: bool = False,
    is_shown: bool = True,
) -> Any:
    metadata: dict[str, object] = {"secret": is_secret, "verbatim": is_verbatim}
    if env is not None:
        metadata["env"] = env
    if check is not None:
        metadata["check"] = check
    return field(default=default, repr=is_shown and not is_secret, metadata=metadata)


def _holds(holds: typing.Callable[[Any], bool], problem: str) -> Check:
    """A check from a predicate and the problem it names (formatted with `{value}`)."""
    return lambda value: None if holds(value) else problem.format(value=value)


def _is_url(value: str) -> bool:
    parts = urlsplit(value)
    return parts.scheme in {"http", "https"} and bool(parts.netloc)


def secret(env: str) -> str:
    """A secret: never shown in repr, overridden by the environment variable `env`."""
    return typing.cast(str, _setting("", env=env, is_secret=True))


def from_env(env: str, default: _T, *, check: Check | None = None) -> _T:
    """A key that the environment variable `env` overrides (it wins over the file)."""
    return typing.cast(_T, _setting(default, env=env, check=check))


def url(default: str, *, env: str | None = None) -> str:
    """An http(s) URL (overridden by the environment variable `env`, if given)."""
    check = _holds(_is_url, "must be an http(s) URL, got {value!r}")
    return typing.cast(str, _setting(default, env=env, check=check))


def positive(default: _T) -> _T:
    """A number greater than 0."""
    check = _holds(lambda v: v > 0, "must be greater than 0")
    return typing.cast(_T, _setting(default, check=check))


def non_negative(default: _T) -> _T:
    """A number of 0 or more."""
    check = _holds(lambda v: v >= 0, "must not be negative")
    return typing.cast(_T, _setting(default, check=check))


def between(low: float, high: float, default: _T) -> _T:
    """A number from `low` to `high`, both included."""
    problem = f"must be from {low:g} to {high:g}, got {{value:g}}"
    return typing.cast(_T, _setting(default, check=_holds(lambda v: low <= v <= high, problem)))


def verbatim(default: _T) -> _T:
    """A string kept exactly as written: spaces around it mean something."""
    return typing.cast(_T, _setting(default, is_verbatim=True))


def redis_url(default: str) -> str:
    """A redis://, rediss:// or unix:// URL. It may carry a password, so it stays out of repr
    and its password is one of `Config.secrets()`."""
    check = _holds(
        lambda v: urlsplit(v).scheme in {"redis", "rediss", "unix"},
        "must be a redis://, rediss:// or unix:// URL",
    )
    return typing.cast(str, _setting(default, check=check, is_shown=False))


def _gpt_name_problem(value: str) -> str | None:
    try:
        parse_gpt_id(value)
    except BadGptName as exc:
        return str(exc)
    return None


def env_variables(section: type[Any]) -> dict[str, str]:
    """The section's keys that an environment variable overrides, and the variable of each."""
    return {f.name: f.metadata["env"] for f in dataclasses.fields(section) if "env" in f.metadata}


def secret_variables(section: type[Any]) -> dict[str, str]:
    """The section's secret keys and the environment variable of each."""
    return {
        f.name: f.metadata["env"] for f in dataclasses.fields(section) if f.metadata.get("secret")
    }


@dataclass(frozen=True, slots=True)
class GptsConfig:
    base_url: str = url("https://www.anyapi.vip/v1", env="GPTS_BASE_URL")
    api_key: str = secret("GPTS_API_KEY")
    default_gpt: str | None = from_env("GPTS_DEFAULT_GPT", None, check=_gpt_name_problem)
    model_template: str = "gpt-4-gizmo-{id}"
    stream: bool = True
    connect_timeout_s: float = positive(10.0)
    # Relays send no headers until the GPT's first token; Cloudflare fronts cut at ~100 s (524).
    first_chunk_timeout_s: float = positive(150.0)
    idle_timeout_s: float = positive(60.0)
    total_timeout_s: float = positive(600.0)
    # The most a turn may hold its chat, retries included: the next turn there waits for it.
    turn_timeout_s: float = positive(300.0)
    max_retries: int = non_negative(2)
    retry_backoff_s: float = non_negative(1.0)
    history_messages: int = positive(20)
    history_chars: int = positive(12_000)
    system_prompt: str | None = None
    temperature: float | None = between(0, 2, None)


@dataclass(frozen=True, slots=True)
class StorageConfig:
    url: str = "sqlite+aiosqlite:///gptsbot.db"


@dataclass(frozen=True, slots=True)
class BotConfig:
    # Appended to intermediate edits only, so readers see the answer is still coming.
    streaming_indicator: str = verbatim(" ▌")
    # The language of the bot's own lines: "auto" follows each person's app language.
    language: LanguageSetting = "auto"
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"


@dataclass(frozen=True, slots=True)
class AccessConfig:
    # Platform user ids written "telegram:123" / "discord:456": admins in every chat.
    owners: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class LimitsConfig:
    """Where the platforms' rate budgets live: this process ("memory") or Redis, shared by
    every process of the bot (see `core.pacing.make_budgets`)."""

    backend: Literal["memory", "redis"] = "memory"
    redis_url: str = redis_url("redis://127.0.0.1:6379/0")
    key_prefix: str = "gptsbot"
    # While Redis is unreachable each process keeps this share of every budget (1/n).
    expected_processes: int = positive(2)


@dataclass(frozen=True, slots=True)
class Config:
    gpts: GptsConfig = field(default_factory=GptsConfig)
    storage: StorageConfig = field(default_factory=StorageConfig)
    bot: BotConfig = field(default_factory=BotConfig)
    access: AccessConfig = field(default_factory=AccessConfig)
    limits: LimitsConfig = field(default_factory=LimitsConfig)
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
        sections = [self.gpts, self.storage, self.bot, self.access, *self.platforms.values()]
        values = [
            getattr(section, key)
            for section in sections
            for key in secret_variables(type(section))
            if getattr(section, key)
        ]
        redis_password = urlsplit(self.limits.redis_url).password
        return [*values, redis_password] if redis_password else values


_CORE_SECTIONS = {f.name for f in dataclasses.fields(Config)} - {"platforms"}


def _check_value(key: str, value: Any, annotation: Any, *, trim: bool = True) -> Any:
    """Return `value` if it fits `annotation` (ints widen to floats, strings are trimmed unless
    `trim` is false), else raise naming `key`."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(annotation)
        if value is None and type(None) in options:
            return None
        (inner,) = [a for a in options if a is not type(None)]
        return _check_value(key, value, inner, trim=trim)
    if origin is Literal:
        choices = typing.get_args(annotation)
        if value not in choices:
            raise ConfigError(key, f"must be one of {', '.join(map(repr, choices))}")
        return value
    if origin is tuple:
        item = typing.get_args(annotation)[0]
        if not isinstance(value, list):
            raise ConfigError(key, "must be a list")
        return tuple(_check_value(f"{key}[{i}]", v, item, trim=trim) for i, v in enumerate(value))
    if annotation is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if annotation is int and isinstance(value, bool):
        raise ConfigError(key, "must be an integer")
    if not isinstance(value, annotation):
        raise ConfigError(key, f"must be {annotation.__name__}, got {type(value).__name__}")
    if annotation is str and trim:
        return value.strip()
    return value


def build_section(
    name: str, cls: type[_S], raw: Mapping[str, Any], env: Mapping[str, str] | None = None
) -> _S:
    """Validate one `[name]` table into `cls`: unknown keys, types and each field's check fail
    naming the key (and the environment variable, if the value came from one); a key's
    environment variable wins over the file."""
    env = os.environ if env is None else env
    raw = dict(raw)
    known = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    for key in raw:
        if key not in known:
            raise ConfigError(f"{name}.{key}", "unknown key")
    from_variable: dict[str, str] = {}
    for key, variable in env_variables(cls).items():
        if env.get(variable, "").strip():
            raw[key] = env[variable]
            from_variable[key] = variable
    hints = typing.get_type_hints(cls)
    values = {}
    for key, value in raw.items():
        trim = not known[key].metadata.get("verbatim", False)
        with _naming(from_variable.get(key)):
            values[key] = _check_value(f"{name}.{key}", value, hints[key], trim=trim)
    section = cls(**values)
    for key, f in known.items():
        check = f.metadata.get("check")
        value = getattr(section, key)
        problem = None if check is None or value is None else check(value)
        if problem is not None:
            with _naming(from_variable.get(key)):
                raise ConfigError(f"{name}.{key}", problem)
    return section


@contextlib.contextmanager
def _naming(variable: str | None) -> Iterator[None]:
    """A ConfigError about a value that came from the environment names the variable too."""
    try:
        yield
    except ConfigError as exc:
        if variable is None:
            raise
        raise ConfigError(exc.key, f"{exc.problem} (set by {variable})") from None


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
    hints = typing.get_type_hints(Config)
    core = {
        name: build_section(name, hints[name], raw.get(name, {}), env) for name in _CORE_SECTIONS
    }
    own = {
        name: build_section(name, settings, raw.get(name, {}), env)
        for name, settings in platforms.items()
    }
    config = Config(**core, platforms=own)
    _check_gpts(config.gpts)
    _check_limits(config.limits)
    for owner in config.access.owners:
        platform, _, user_id = owner.partition(":")
        if not platform or not user_id:
            raise ConfigError("access.owners", f"{owner!r} is not platform:user_id")
    return config


def _check_gpts(gpts: GptsConfig) -> None:
    template = gpts.model_template
    if "{id}" not in template:
        raise ConfigError("gpts.model_template", "must contain {id}")
    try:
        template.format(id="g-x")
    except (KeyError, IndexError, ValueError) as exc:
        raise ConfigError("gpts.model_template", "only {id} may be used") from exc


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
