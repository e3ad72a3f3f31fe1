"""Platforms register themselves: the core names none of them.

Each `bots/<name>/` package declares a `Platform` — its config section (a frozen dataclass that
`core.config` validates like the core's own; secrets declared with `config.secret(ENV_VARIABLE)`),
how to make its adapter for `gptsbot run`, and optionally subcommands of its own for the CLI —
and lists it in the `gptsbot.platforms` entry-point group of pyproject.toml. Adding a platform
touches its package, its tests, pyproject.toml, config.example.toml and the README.
"""

from __future__ import annotations

import argparse
import functools
from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from core.config import Config
    from core.conversation import ConversationService
    from core.platform import Adapter

ENTRY_POINT_GROUP = "gptsbot.platforms"

# Adds one `gptsbot <name>` subcommand: (name, help) -> its parser, whose `handler` default is an
# `async (config, args) -> exit code`.
AddCommand = Callable[[str, str], argparse.ArgumentParser]


@dataclass(frozen=True, slots=True)
class Platform:
    """What a platform package tells the core about itself.

    `create_adapter(config, service)` returns None when the platform is not configured (no
    token); `add_commands(add)` registers the platform's own `gptsbot` subcommands.
    """

    name: str
    settings: type[Any] | None = None
    create_adapter: Callable[[Config, ConversationService], Adapter | None] | None = None
    add_commands: Callable[[AddCommand], None] | None = None


@functools.cache
def installed_platforms() -> tuple[Platform, ...]:
    """Every platform installed with gptsbot, by name."""
    found = [entry.load() for entry in entry_points(group=ENTRY_POINT_GROUP)]
    for platform in found:
        if not isinstance(platform, Platform):
            raise TypeError(f"the {ENTRY_POINT_GROUP} entry point {platform!r} is not a Platform")
    return tuple(sorted(found, key=lambda platform: platform.name))


def platform_settings(platforms: tuple[Platform, ...] | None = None) -> dict[str, type[Any]]:
    """Each platform's config section name and settings class."""
    platforms = installed_platforms() if platforms is None else platforms
    return {p.name: p.settings for p in platforms if p.settings is not None}
