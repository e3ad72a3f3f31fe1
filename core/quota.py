"""Quotas: the `[quota]` limits, checked before a turn goes upstream, and token estimates.

    turn → `Quotas.check` (skipped for owners and when every limit is 0)
         → one `Repository.quota_use` transaction: only the figures of the limits that are set
         → `over_limit` (pure) → `QuotaReached` (stored as `refused`, one line) or None

Windows, all in UTC: turns over the last 60 seconds (rolling: one more is allowed once the oldest
turn in the window is a minute old); tokens per calendar day (reset at 00:00 UTC). A turn is a
message that went to the GPT (not a refused one); its tokens are its answer's: the endpoint's
counts, else `estimate` (characters / 4 of what was sent and of the answer), stored marked as
estimated. A turn that starts under a limit may end above it: the next one is refused.

Cost: nothing when every limit is 0 (the default). Otherwise, per turn, one transaction with one
indexed query per limit set (see `storage.usage`): the person's turns of the last minute, the
person's turns of the day with their answers, the chat's answers of the day. Two turns of one
person in two chats at the same moment can both pass: the check is not a lock.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Final

from core.access import is_owner
from core.config import Config, QuotaConfig
from core.errors import QuotaReached
from core.gpts import Usage
from core.turns import Turn
from storage import QuotaUse, Repository, StorageBusy

logger = logging.getLogger(__name__)

MINUTE: Final = timedelta(seconds=60)
# A token is about four characters of English (fewer of Chinese): the estimate's ratio.
CHARS_PER_TOKEN: Final = 4


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class Windows:
    """Where the windows start around `now` (aware UTC)."""

    now: datetime
    minute_start: datetime  # the rolling minute
    day_start: datetime  # today 00:00 UTC
    next_day: datetime  # tomorrow 00:00 UTC: the daily limits reset
    month_start: datetime  # the 1st of this month, 00:00 UTC (/usage)

    @classmethod
    def around(cls, now: datetime) -> Windows:
        now = now.astimezone(UTC)
        day = now.replace(hour=0, minute=0, second=0, microsecond=0)
        return cls(now, now - MINUTE, day, day + timedelta(days=1), day.replace(day=1))


def over_limit(limits: QuotaConfig, use: QuotaUse, windows: Windows) -> QuotaReached | None:
    """The first limit `use` has reached (the minute's, then the person's day, then the chat's
    day), with when it resets; None when every limit still has room."""
    now = windows.now
    turns = limits.turns_per_user_per_minute
    if turns and use.turns >= turns:
        # Rolling: one more is allowed once the oldest turn of the window is a minute old.
        resets = (use.oldest_turn_at or now) + MINUTE
        return _reached("turns_per_user_per_minute", turns, max(resets, now), now)
    for name, limit, used in (
        ("tokens_per_user_per_day", limits.tokens_per_user_per_day, use.user_tokens),
        ("tokens_per_scope_per_day", limits.tokens_per_scope_per_day, use.scope_tokens),
    ):
        if limit and used >= limit:
            return _reached(name, limit, windows.next_day, now)
    return None


def _reached(limit: str, value: int, resets_at: datetime, now: datetime) -> QuotaReached:
    return QuotaReached(limit, value, resets_at, (resets_at - now).total_seconds())


def estimate(prompt_chars: int, answer: str) -> Usage:
    """Token counts for an answer the endpoint sent none for: characters / 4, rounded up, of
    everything sent upstream (`prompt_chars`) and of the answer."""
    prompt = math.ceil(prompt_chars / CHARS_PER_TOKEN)
    completion = math.ceil(len(answer) / CHARS_PER_TOKEN)
    return Usage(prompt, completion, prompt + completion)


def has_counts(usage: Usage | None) -> bool:
    """Whether the endpoint sent any token count."""
    return usage is not None and any(
        count is not None
        for count in (usage.prompt_tokens, usage.completion_tokens, usage.total_tokens)
    )


class Quotas:
    """The `[quota]` check of a turn. `now` (aware UTC) is injectable for tests."""

    def __init__(
        self, config: Config, repo: Repository, now: Callable[[], datetime] = utcnow
    ) -> None:
        self.config = config
        self.repo = repo
        self.now = now

    def is_exempt(self, turn: Turn) -> bool:
        """Owners have no quotas."""
        author = turn.author
        return author.is_owner or is_owner(self.config.access, turn.scope.platform, author.id)

    async def check(self, turn: Turn) -> QuotaReached | None:
        """The limit this turn would go over, or None. A database too busy to count lets the turn
        through (storing it will say the database is busy)."""
        limits = self.config.quota
        wanted = (
            limits.turns_per_user_per_minute,
            limits.tokens_per_user_per_day,
            limits.tokens_per_scope_per_day,
        )
        if not any(wanted) or self.is_exempt(turn):
            return None
        windows = Windows.around(self.now())
        turns, user_tokens, chat_tokens = wanted
        try:
            use = await self.repo.quota_use(
                turn.scope,
                turn.author.id,
                minute_since=windows.minute_start if turns else None,
                day_since=windows.day_start if user_tokens else None,
                chat_day_since=windows.day_start if chat_tokens else None,
            )
        except StorageBusy as exc:
            logger.warning("quotas in %s not checked: %s", turn.scope, exc)
            return None
        return over_limit(limits, use, windows)
