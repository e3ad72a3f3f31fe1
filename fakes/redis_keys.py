"""Deleting the Redis keys a run or a test wrote under a prefix of its own (shared by `tests/` and
`bench/`), so runs never see each other's budgets."""

from __future__ import annotations

from redis.asyncio import Redis

CONNECT_TIMEOUT_S = 2.0


async def forget_keys(url: str, pattern: str) -> None:
    """Delete the keys matching `pattern` (e.g. "prefix:*") in the Redis at `url`."""
    client = Redis.from_url(url, socket_connect_timeout=CONNECT_TIMEOUT_S)
    try:
        keys = [key async for key in client.scan_iter(match=pattern)]
        if keys:
            await client.delete(*keys)
    finally:
        await client.aclose()
