"""Wiring: config → storage → GPTs client → conversation service, and the platform adapters."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import AsyncIterator
from dataclasses import dataclass
from importlib import import_module

from core.config import Config
from core.conversation import ConversationService
from core.gpts_client import GptsClient
from core.platform import Adapter
from storage.repository import Repository

logger = logging.getLogger(__name__)

# The platform adapters, named rather than imported so that the core never depends on `bots`.
# Each module's `create_adapter(config, service)` returns None when its token is unset.
ADAPTERS = ("bots.telegram_adapter", "bots.discord_adapter")
TOKEN_VARIABLES = "TELEGRAM_BOT_TOKEN / DISCORD_BOT_TOKEN"


@dataclass(frozen=True, slots=True)
class App:
    config: Config
    repo: Repository
    client: GptsClient
    service: ConversationService


@contextlib.asynccontextmanager
async def open_app(config: Config) -> AsyncIterator[App]:
    """Open the database (migrated to the newest schema) and the GPTs client; close both after."""
    repo = await Repository.open(config.storage.url)
    try:
        await repo.upgrade()
        async with GptsClient(config.gpts) as client:
            yield App(config, repo, client, ConversationService(config, repo, client))
    finally:
        await repo.close()


def has_platform_token(config: Config) -> bool:
    return bool(config.telegram.token or config.discord.token)


def load_adapters(config: Config, service: ConversationService) -> list[Adapter]:
    """Every installed adapter whose platform has a token configured."""
    adapters = []
    for module in ADAPTERS:
        adapter = import_module(module).create_adapter(config, service)
        if adapter is not None:
            adapters.append(adapter)
    return adapters


async def run_adapters(adapters: list[Adapter], stop: asyncio.Event) -> None:
    """Run every adapter in this event loop until `stop` is set or one of them fails."""

    async def stop_all() -> None:
        await stop.wait()
        raise _Stopping

    try:
        async with asyncio.TaskGroup() as group:
            for adapter in adapters:
                group.create_task(adapter.run(), name=adapter.name)
            group.create_task(stop_all())
    except* _Stopping:
        logger.info("stopped")


class _Stopping(Exception):
    """Cancels the task group on SIGINT/SIGTERM: the adapters see a cancellation and shut down."""


def stop_on_signals(stop: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
