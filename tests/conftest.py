"""Shared fixtures."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest
import pytest_asyncio
import uvloop

from bots.telegram_adapter.adapter import TOKEN_LOGGERS, TOKEN_PATTERNS
from core.redaction import Redact, filtered
from fakes.gpts import FakeGpts, Gate
from fakes.images import FakeImageHost
from fakes.telegram import FakeTelegram

# Every test's log records are checked for the secrets the fakes issued (secret_scan.py);
# pytester runs a test session inside a test, to prove that check fails when it should;
# databases.py gives the tests SQLite and, with GPTSBOT_TEST_PG_URL, PostgreSQL.
pytest_plugins = ["tests.secret_scan", "pytester", "tests.databases"]


def pytest_asyncio_loop_factories(
    config: pytest.Config, item: pytest.Item
) -> dict[str, Callable[[], asyncio.AbstractEventLoop]]:
    """The tests run on the loop the bot runs on (core.cli.run_loop)."""
    return {"uvloop": uvloop.new_event_loop}


@pytest_asyncio.fixture
async def fake_gpts() -> AsyncIterator[FakeGpts]:
    """A local GPTs endpoint on a free port; `fake_gpts.base_url` goes into GptsConfig."""
    async with FakeGpts() as fake:
        yield fake


@pytest.fixture
def db(tmp_path: Path) -> Path:
    """The test's SQLite file; `tests.gptsbot_process.write_config` puts the database there too."""
    return tmp_path / "bot.db"


@pytest.fixture
def gate(fake_gpts: FakeGpts) -> Gate:
    """The next answer of `fake_gpts`, released piece by piece by the test."""
    gate = Gate()
    fake_gpts.enqueue(gate)
    return gate


@pytest_asyncio.fixture
async def tg() -> AsyncIterator[FakeTelegram]:
    """A local Telegram Bot API on a free port: `tg.base_url` and `tg.token` go into the config."""
    async with FakeTelegram() as fake:
        yield fake


@pytest.fixture
def bot_api_redacted(tg: FakeTelegram) -> Iterator[None]:
    """For tests that use PTB's `Bot` directly: it logs Bot API URLs, token included, so its
    loggers get the filter the adapter installs."""
    with filtered(TOKEN_LOGGERS, Redact([tg.token], TOKEN_PATTERNS)):
        yield


@pytest_asyncio.fixture
async def host() -> AsyncIterator[FakeImageHost]:
    """A local image host (fakes/images.py): `host.url("/png/cat")` serves an image."""
    async with FakeImageHost() as server:
        yield server
