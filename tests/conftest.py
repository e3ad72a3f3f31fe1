"""Shared fixtures."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest_asyncio

from fakes.gpts import FakeGpts
from fakes.telegram import FakeTelegram


@pytest_asyncio.fixture
async def fake_gpts() -> AsyncIterator[FakeGpts]:
    """A local GPTs endpoint on a free port; `fake_gpts.base_url` goes into GptsConfig."""
    async with FakeGpts() as fake:
        yield fake


@pytest_asyncio.fixture
async def tg() -> AsyncIterator[FakeTelegram]:
    """A local Telegram Bot API on a free port: `tg.base_url` and `tg.token` go into the config."""
    async with FakeTelegram() as fake:
        yield fake
