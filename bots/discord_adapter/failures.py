"""What Discord refused, as the core's errors: a 429 discord.py gave up on becomes
`PlatformRateLimited`, a refused bot token `PlatformRefused`, a deleted message `MessageGone`."""

from __future__ import annotations

from collections.abc import Awaitable
from typing import TypeVar

import discord

from core.platform import MessageGone, PlatformRateLimited, PlatformRefused

T = TypeVar("T")

UNKNOWN_MESSAGE = 10008
INVALID_WEBHOOK_TOKEN = 50027
DEFAULT_RETRY_AFTER_S = 1.0


def _retry_after(exc: discord.HTTPException) -> float:
    headers = exc.response.headers
    for name in ("X-RateLimit-Reset-After", "Retry-After"):
        try:
            return float(headers[name])
        except (KeyError, ValueError):
            continue
    return DEFAULT_RETRY_AFTER_S


def is_bot_refused(exc: discord.HTTPException) -> bool:
    """A 401 for the bot's token (an interaction's expired token answers 401 too, with its own
    code)."""
    return exc.status == 401 and exc.code != INVALID_WEBHOOK_TOKEN


async def translated(call: Awaitable[T], *, editing: bool = False) -> T:
    """Await a discord.py call; a 429 it gave up on becomes `PlatformRateLimited`, a refused bot
    token `PlatformRefused`, and when `editing`, a deleted message (404 Unknown Message)
    `MessageGone`."""
    try:
        return await call
    except discord.RateLimited as exc:  # longer than max_ratelimit_timeout: the core waits
        raise PlatformRateLimited(exc.retry_after) from exc
    except discord.NotFound as exc:
        if editing and exc.code == UNKNOWN_MESSAGE:
            raise MessageGone(str(exc.code)) from exc
        raise
    except discord.HTTPException as exc:
        if exc.status == 429:  # still limited after discord.py's own retries
            raise PlatformRateLimited(_retry_after(exc)) from exc
        if is_bot_refused(exc):
            raise PlatformRefused("Discord refused the bot token") from None
        raise
