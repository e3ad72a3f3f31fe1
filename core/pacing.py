"""Shared request budgets: at most `max_calls` grants in any `period_s` window, in arrival order.

A streaming reply asks every budget that covers it (its channel's, then the bot's) before each
send or edit. Waiters queue in arrival order and a reply waits for at most one grant at a time,
so when hundreds of answers stream at once each gets its turn in rotation; while it waits, its
text keeps growing and the edit it finally makes carries all of it.

Adapters ask `make_budgets(config.limits, clock)` for their budgets (`bot_wide`, `keyed`) and
never learn where they live: in this process (`RateBudget`, `KeyedBudgets`) or in Redis, shared
by every process of the bot (`core.shared_pacing`).
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Generic, Protocol, TypeVar

from core import metrics
from core.platform import Clock, SystemClock

if TYPE_CHECKING:
    from core.config import LimitsConfig


class Budget(Protocol):
    """A rate budget: grants calls in arrival order, never more than its limit allows."""

    async def acquire(self) -> None:
        """Wait for this caller's turn and a free call; take it."""
        ...

    async def try_acquire(self) -> bool:
        """Take a call if one is free now and nobody waits for one; never wait for it."""
        ...


class KeyedBudget(Protocol):
    """One budget per key (a chat, a channel), made on first use."""

    def __getitem__(self, key: str) -> Budget: ...


class Budgets(Protocol):
    """Makes a platform's budgets; `make_budgets` picks the backend."""

    def bot_wide(self, name: str, rate: float) -> Budget:
        """`rate` calls a second for the whole bot (`name`: the platform), spread evenly."""
        ...

    def keyed(self, name: str, max_calls: int, period_s: float) -> KeyedBudget:
        """`max_calls` in any `period_s` per key (`name` says what a key is: "telegram:group")."""
        ...

    async def aclose(self) -> None:
        """Release connections (nothing to do in memory)."""
        ...


class RateBudget:
    def __init__(
        self,
        max_calls: int,
        period_s: float,
        clock: Clock | None = None,
        *,
        platform: str | None = None,
    ) -> None:
        """`platform`: a platform's bot-wide budget, whose waits `gptsbot_budget_wait_seconds`
        reports."""
        if max_calls < 1 or period_s <= 0:
            raise ValueError("a budget needs max_calls >= 1 and period_s > 0")
        self._waits = metrics.BUDGET_WAIT.labels(platform) if platform else None
        self.max_calls = max_calls
        self.period_s = period_s
        self._clock = clock or SystemClock()
        self._grants: deque[float] = deque(maxlen=max_calls)
        self._queue = asyncio.Lock()  # asyncio.Lock wakes waiters in FIFO order

    @classmethod
    def per_second(
        cls, rate: float, clock: Clock | None = None, *, platform: str | None = None
    ) -> RateBudget:
        """`rate` calls a second, granted evenly rather than in one burst per second."""
        return cls(1, 1.0 / rate, clock, platform=platform)

    def next_slot_at(self) -> float:
        """When the window next has room for a call, on the budget's clock (while it is not full,
        the start of time: now). Callers queued in `acquire` are not counted."""
        if len(self._grants) < self.max_calls:
            return float("-inf")
        return self._grants[0] + self.period_s

    def idle_since(self, now: float) -> bool:
        """True when nobody waits and no grant is recent enough to constrain the next one."""
        recent = self._grants and self._grants[-1] + self.period_s > now
        return not self._queue.locked() and not recent

    async def try_acquire(self) -> bool:
        """Take a call now if one is free and nobody is waiting; never wait (for calls that
        are only worth making when they cost nobody a turn, like a typing indicator)."""
        if self._queue.locked():
            return False
        now = self._clock.monotonic()
        if len(self._grants) == self.max_calls and self._grants[0] + self.period_s > now:
            return False
        self._grants.append(now)
        return True

    async def acquire(self) -> None:
        asked = self._clock.monotonic()
        async with self._queue:
            if len(self._grants) == self.max_calls:
                delay = self._grants[0] + self.period_s - self._clock.monotonic()
                if delay > 0:
                    await self._clock.sleep(delay)
            granted = self._clock.monotonic()
            self._grants.append(granted)
        if self._waits is not None:
            self._waits.observe(granted - asked)


# Past this many keys, a keyed budget drops the idle ones when it makes a new one.
MAX_KEYED = 1024


class _Idles(Protocol):
    def idle_since(self, now: float) -> bool: ...


_B = TypeVar("_B", bound=_Idles)


class BudgetsByKey(Generic[_B]):
    """One budget per key (e.g. per channel), made by `make(key)` on first use and dropped when
    idle."""

    def __init__(self, make: Callable[[str], _B], clock: Clock) -> None:
        self._make = make
        self._clock = clock
        self._budgets: dict[str, _B] = {}

    def __getitem__(self, key: str) -> _B:
        budget = self._budgets.get(key)
        if budget is None:
            self._forget_idle()
            budget = self._budgets[key] = self._make(key)
        return budget

    def __len__(self) -> int:
        return len(self._budgets)

    def _forget_idle(self) -> None:
        # A budget whose last grant is older than its window constrains nothing: drop it.
        if len(self._budgets) < MAX_KEYED:
            return
        now = self._clock.monotonic()
        for key, budget in list(self._budgets.items()):
            if budget.idle_since(now):
                del self._budgets[key]


class KeyedBudgets(BudgetsByKey[RateBudget]):
    """One `RateBudget` of this process per key."""

    def __init__(self, max_calls: int, period_s: float, clock: Clock | None = None) -> None:
        clock = clock or SystemClock()
        super().__init__(lambda _key: RateBudget(max_calls, period_s, clock), clock)


class MemoryBudgets:
    """Budgets of this process alone (`[limits] backend = "memory"`)."""

    def __init__(self, clock: Clock | None = None) -> None:
        self._clock = clock or SystemClock()

    def bot_wide(self, name: str, rate: float) -> RateBudget:
        return RateBudget.per_second(rate, self._clock, platform=name)

    def keyed(self, name: str, max_calls: int, period_s: float) -> KeyedBudgets:
        return KeyedBudgets(max_calls, period_s, self._clock)

    async def aclose(self) -> None:
        pass


def make_budgets(limits: LimitsConfig, clock: Clock | None = None) -> Budgets:
    """The budgets `[limits]` asks for: this process's, or Redis's shared by every process."""
    if limits.backend == "memory":
        return MemoryBudgets(clock)
    from core.shared_pacing import RedisBudgets  # imports redis, which only this backend needs

    return RedisBudgets(limits, clock)
