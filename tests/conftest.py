"""Shared fixtures."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest_asyncio

from fakes.gpts import FakeGpts


@pytest_asyncio.fixture
async def fake_gpts() -> AsyncIterator[FakeGpts]:
    """A local GPTs endpoint on a free port; `fake_gpts.base_url` goes into GptsConfig."""
    async with FakeGpts() as fake:
        yield fake
