"""Shared pieces of the Discord tests: discord.py imported quietly, and its REST base and gateway
URL pointed at a `FakeDiscord` for the duration of a test."""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator

import pytest
import yarl

with warnings.catch_warnings():
    # discord.py imports `audioop` (deprecated in 3.11, voice only); with filterwarnings=error
    # that import would fail the collection.
    warnings.simplefilter("ignore", DeprecationWarning)
    import discord
    import discord.gateway
    import discord.http

from fakes.discord import FakeDiscord

__all__ = ["discord", "point_discord_py_at"]


@pytest.fixture
def point_discord_py_at() -> Iterator[Callable[[FakeDiscord], None]]:
    """Point a plain discord.py client at the fake; the class attributes are restored after."""
    saved = discord.http.Route.BASE, discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY

    def point(fake: FakeDiscord) -> None:
        discord.http.Route.BASE = fake.api_base
        discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(fake.gateway_url)

    yield point
    discord.http.Route.BASE, discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = saved
