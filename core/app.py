"""Wiring: config → storage → GPTs client → conversation service, and the platform adapters."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass

from sqlalchemy.exc import DBAPIError

from core import database, metrics
from core.config import Config, secret_variables
from core.conversation import ConversationService
from core.errors import DatabaseUnusable
from core.gpts import GptsClient
from core.interrupted import interrupted_answers
from core.platform import Adapter, PlatformRefused, SettlesInterrupted
from core.platforms import Platform, installed_platforms
from storage import InterruptedAnswer
from storage.repository import Repository

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class App:
    config: Config
    repo: Repository
    client: GptsClient
    service: ConversationService


@contextlib.asynccontextmanager
async def open_app(config: Config) -> AsyncIterator[App]:
    """Open the database (migrated to the newest schema) and the GPTs client; close both after.
    A database that cannot be opened raises DatabaseUnusable naming it."""
    storage = config.storage
    url = storage.url
    location = database.describe(url)
    database.check_usable(url)
    repo = await Repository.open(
        url, busy_timeout_s=storage.busy_timeout_s, lock_retry_s=storage.lock_retry_s
    )
    repo.observe_call = metrics.DB_SECONDS.observe
    try:
        try:
            await repo.upgrade()  # the first connection
        except (DBAPIError, OSError) as exc:
            reason = str(getattr(exc, "orig", None) or exc)
            raise DatabaseUnusable(location, reason) from exc
        logger.info("database: %s", location)
        stray = database.stray_database(url)
        if stray is not None:
            logger.warning(
                "%s is not used: the database is %s (move the file there to keep its history)",
                stray,
                location,
            )
        async with GptsClient(config.gpts) as client:
            service = ConversationService(config, repo, client)
            async with service.images:  # the image downloads' connections, closed at the end
                yield App(config, repo, client, service)
    finally:
        await repo.close()


def load_adapters(
    config: Config, service: ConversationService, platforms: Sequence[Platform] | None = None
) -> list[Adapter]:
    """An adapter for every installed platform that is configured (has its token)."""
    adapters = []
    for platform in installed_platforms() if platforms is None else platforms:
        if platform.create_adapter is not None:
            adapter = platform.create_adapter(config, service)
            if adapter is not None:
                adapters.append(adapter)
    return adapters


def token_variables(platforms: Sequence[Platform] | None = None) -> list[str]:
    """The environment variables that switch a platform on (the secret of its `token` key; its
    other secrets, e.g. a webhook's, don't), for the message `gptsbot run` gives when none is
    set."""
    return [
        variable
        for platform in (installed_platforms() if platforms is None else platforms)
        if platform.create_adapter is not None and platform.settings is not None
        for key, variable in secret_variables(platform.settings).items()
        if key == "token"
    ]


def has_a_platform_token(config: Config, platforms: Sequence[Platform] | None = None) -> bool:
    """Whether any platform `gptsbot run` can start has its token set (checked before the
    database is opened, so a run that cannot start leaves nothing behind)."""
    return any(
        getattr(config.platform(platform.name, platform.settings), "token", "")
        for platform in (installed_platforms() if platforms is None else platforms)
        if platform.create_adapter is not None and platform.settings is not None
    )


# An adapter that fails (network down, platform outage) is restarted after a pause that doubles
# up to the maximum, and starts again from the first pause after a long enough healthy run.
FIRST_RESTART_DELAY_S = 2.0
MAX_RESTART_DELAY_S = 120.0
HEALTHY_RUN_S = 300.0


async def interrupted_by_platform(
    repo: Repository, adapters: Sequence[Adapter]
) -> dict[str, list[InterruptedAnswer]]:
    """At start: the answers each adapter's platform had streaming when a process died, now
    marked interrupted (see `core.interrupted`)."""
    return {adapter.name: await interrupted_answers(repo, adapter.name) for adapter in adapters}


async def _settle_when_ready(
    adapter: SettlesInterrupted, answers: Sequence[InterruptedAnswer]
) -> None:
    await adapter.ready.wait()
    try:
        await adapter.settle_interrupted(answers)
    except Exception as exc:
        logger.warning("settling interrupted answers failed: %s", type(exc).__name__)


async def run_adapters(
    adapters: list[Adapter],
    stop: asyncio.Event,
    *,
    secrets: Sequence[str] = (),
    first_restart_delay_s: float = FIRST_RESTART_DELAY_S,
    interrupted: Mapping[str, Sequence[InterruptedAnswer]] | None = None,
) -> list[PlatformRefused]:
    """Run every adapter in this event loop until `stop` is set or none is left running. An
    adapter that fails is logged in one line (never a secret) and restarted; one the platform
    refuses (`PlatformRefused`) stops alone, the others go on. Returns the refusals.
    `interrupted`: each platform's interrupted answers, settled once its adapter is ready."""
    refusals: list[PlatformRefused] = []
    running = [adapter.name for adapter in adapters]

    async def stop_all() -> None:
        await stop.wait()
        raise _Stopping

    async def supervise(adapter: Adapter) -> None:
        loop = asyncio.get_running_loop()
        delay = first_restart_delay_s
        while True:
            started = loop.time()
            try:
                await adapter.run()
                return
            except PlatformRefused as refusal:
                refusals.append(refusal)
                running.remove(adapter.name)
                if running:  # else `gptsbot run` ends and says it
                    logger.error("%s (%s still running)", refusal, ", ".join(running))
                return
            except Exception as exc:
                if loop.time() - started > HEALTHY_RUN_S:
                    delay = first_restart_delay_s
                reason = _without(secrets, f"{type(exc).__name__}: {exc}")
                logger.error("%s stopped (%s); restarting in %.0f s", adapter.name, reason, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, MAX_RESTART_DELAY_S)

    try:
        async with asyncio.TaskGroup() as group:
            stopper = group.create_task(stop_all())
            supervisors, settlers = [], []
            for adapter in adapters:
                supervisors.append(group.create_task(supervise(adapter), name=adapter.name))
                answers = (interrupted or {}).get(adapter.name)
                if answers and isinstance(adapter, SettlesInterrupted):
                    settlers.append(group.create_task(_settle_when_ready(adapter, answers)))
            if supervisors:
                await asyncio.wait(supervisors)  # every adapter refused (or returned)
            # An adapter that never got ready has nothing to settle with.
            for task in [stopper, *settlers]:
                task.cancel()
    except* _Stopping:
        logger.info("stopped")
    return refusals


def _without(secrets: Sequence[str], text: str) -> str:
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return text


class _Stopping(Exception):
    """Cancels the task group on SIGINT/SIGTERM: the adapters see a cancellation and shut down."""


def stop_on_signals(stop: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
