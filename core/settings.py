"""Declaring settings and the generic loader: a section is a frozen dataclass whose fields carry
their checks, and `build_section` validates one TOML table into it, naming the key of any error.

`core.config` declares the core's sections with these helpers; each platform declares its own
(`bots/<name>/settings.py`). A field typed `tuple[SomeSection, ...]` is a list of nested tables
(`[[gpts.endpoints]]`): each table is validated like a section, its errors named by position
(`gpts.endpoints[1].base_url`). A field typed as a section is one nested table (`[access.allow]`),
validated the same way (`access.allow.users`). A section may list keys it no longer takes in
`MOVED_KEYS` (key -> where it went): setting one fails naming the new place.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import types
import typing
from collections.abc import Iterator, Mapping
from dataclasses import field
from typing import Any, Final, Literal, TypeVar
from urllib.parse import urlsplit

from core.errors import ConfigError

_T = TypeVar("_T")
_S = TypeVar("_S")

# The class attribute (a mapping of old key -> where it moved) that a section may declare.
MOVED_KEYS: Final = "MOVED_KEYS"

# --- declaring settings ------------------------------------------------------------------------
# A section is a frozen dataclass. Its fields' defaults are the documented defaults; these helpers
# attach to a field a check, an environment variable that overrides the file (a secret is such a
# key that is also kept out of repr and logs), `verbatim` (kept as written, not trimmed), or that
# the table must set it, so that any section, the platforms' included, is validated by the same
# loader.
#
# String values are trimmed: a key or token pasted with a space or a newline around it works.

# What is wrong with a value (None: nothing). Run on set values only, after the type check.
Check = typing.Callable[[Any], str | None]


def setting(
    default: Any,
    *,
    env: str | None = None,
    check: Check | None = None,
    is_secret: bool = False,
    is_verbatim: bool = False,
    is_required: bool = False,
    is_shown: bool = True,
) -> Any:
    metadata: dict[str, object] = {
        "secret": is_secret,
        "verbatim": is_verbatim,
        "required": is_required,
    }
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


def secret(env: str | None = None) -> str:
    """A secret: never shown in repr, overridden by the environment variable `env` (if given;
    a nested table's secret has none, as one variable would set it in every table)."""
    return typing.cast(str, setting("", env=env, is_secret=True))


def from_env(env: str, default: _T, *, check: Check | None = None) -> _T:
    """A key that the environment variable `env` overrides (it wins over the file)."""
    return typing.cast(_T, setting(default, env=env, check=check))


def url(default: str, *, env: str | None = None, required: bool = False) -> str:
    """An http(s) URL (overridden by the environment variable `env`, if given). `required`: the
    table must set it (the default is never used)."""
    check = _holds(_is_url, "must be an http(s) URL, got {value!r}")
    return typing.cast(str, setting(default, env=env, check=check, is_required=required))


def positive(default: _T) -> _T:
    """A number greater than 0."""
    check = _holds(lambda v: v > 0, "must be greater than 0")
    return typing.cast(_T, setting(default, check=check))


def non_negative(default: _T) -> _T:
    """A number of 0 or more."""
    check = _holds(lambda v: v is None or v >= 0, "must not be negative")
    return typing.cast(_T, setting(default, check=check))


def between(low: float, high: float, default: _T) -> _T:
    """A number from `low` to `high`, both included."""
    problem = f"must be from {low:g} to {high:g}, got {{value:g}}"
    return typing.cast(_T, setting(default, check=_holds(lambda v: low <= v <= high, problem)))


def verbatim(default: _T) -> _T:
    """A string kept exactly as written: spaces around it mean something."""
    return typing.cast(_T, setting(default, is_verbatim=True))


def env_variables(section: type[Any]) -> dict[str, str]:
    """The section's keys that an environment variable overrides, and the variable of each."""
    return {f.name: f.metadata["env"] for f in dataclasses.fields(section) if "env" in f.metadata}


def secret_variables(section: type[Any]) -> dict[str, str]:
    """The section's secret keys and the environment variable of each."""
    return {
        f.name: f.metadata["env"]
        for f in dataclasses.fields(section)
        if f.metadata.get("secret") and "env" in f.metadata
    }


def secret_values(section: Any) -> Iterator[str]:
    """The secrets set in `section` and in the tables nested in it."""
    for f in dataclasses.fields(section):
        value = getattr(section, f.name)
        if f.metadata.get("secret") and value:
            yield value
        elif dataclasses.is_dataclass(value) and not isinstance(value, type):
            yield from secret_values(value)
        elif isinstance(value, tuple):
            for item in value:
                if dataclasses.is_dataclass(item):
                    yield from secret_values(item)


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
    if isinstance(annotation, type) and dataclasses.is_dataclass(annotation):
        if not isinstance(value, dict):
            raise ConfigError(key, f"must be a table ([{key}])")
        # Like a list of tables, a nested table takes no environment overrides.
        return build_section(key, annotation, value, {})
    if origin is tuple:
        item = typing.get_args(annotation)[0]
        if isinstance(item, type) and dataclasses.is_dataclass(item):
            return _check_tables(key, value, item)
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


def _check_tables(key: str, value: Any, table: type[Any]) -> tuple[Any, ...]:
    """A list of nested tables (`[[gpts.endpoints]]`), each validated like a section. They take
    no environment overrides: one variable would set the same key in every table."""
    if not isinstance(value, list):
        raise ConfigError(key, f"must be a list of tables ([[{key}]])")
    tables = []
    for i, item in enumerate(value):
        if not isinstance(item, dict):
            raise ConfigError(f"{key}[{i}]", f"must be a table ([[{key}]])")
        tables.append(build_section(f"{key}[{i}]", table, item, {}))
    return tuple(tables)


def build_section(
    name: str, cls: type[_S], raw: Mapping[str, Any], env: Mapping[str, str] | None = None
) -> _S:
    """Validate one `[name]` table into `cls`: unknown keys, types and each field's check fail
    naming the key (and the environment variable, if the value came from one); a key's
    environment variable wins over the file."""
    env = os.environ if env is None else env
    raw = dict(raw)
    known = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    moved: Mapping[str, str] = getattr(cls, MOVED_KEYS, {})
    for key in raw:
        if key in moved:
            raise ConfigError(f"{name}.{key}", f"has moved: {moved[key]}")
        if key not in known:
            raise ConfigError(f"{name}.{key}", "unknown key")
    for key, f in known.items():
        if f.metadata.get("required") and key not in raw:
            raise ConfigError(f"{name}.{key}", "missing: it has no default")
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


def redis_url(default: str) -> str:
    """A redis://, rediss:// or unix:// URL. It may carry a password, so it stays out of repr
    and its password is one of `Config.secrets()`."""
    check = _holds(
        lambda v: urlsplit(v).scheme in {"redis", "rediss", "unix"},
        "must be a redis://, rediss:// or unix:// URL",
    )
    return typing.cast(str, setting(default, check=check, is_shown=False))
