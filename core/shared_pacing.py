"""Rate budgets shared by every process of the bot, kept in Redis (`[limits] backend = "redis"`).

A budget is a short Redis list: the times of its newest `max_calls` grants. One Lua script
(`RESERVE_SCRIPT`, atomic, one round trip per grant) hands each caller the earliest slot that
keeps at most `max_calls` grants in any `period_s` window — the same rule as `RateBudget` — and
records it; the caller sleeps until its slot on the injected clock and makes its call. Slots go
in the order callers reach Redis, and the clock is Redis's own (`TIME`), the one every process
shares.

Fairness: in front of Redis each budget keeps a FIFO queue in this process (an `asyncio.Lock`,
as `RateBudget` does), and only its head asks Redis, again only once its slot has come. So a
process holds at most one slot of a budget at a time: when several processes want more than the
budget gives, they take turns, and inside a process answers take turns in arrival order.

When Redis cannot be reached, each budget falls back to a share of its limit kept in this
process (`fallback_share`: the limit divided by `expected_processes`), with one WARNING line
(the URL's password masked); Redis is tried again by the first call at least
`[limits] redis_retry_s` later (on the injected clock), and its return is logged once too.
Neither side of a switch starts from nothing: the share also counts the calls Redis granted, and
once Redis is back a call must fit the share too until the calls made without Redis have left
its window.

The connection is named `<key_prefix>:<host>:<pid>` (Redis's CLIENT LIST shows which process
holds it). `aclose()` closes it; the budgets stay usable (the next call connects again), so an
adapter closes them whenever it stops and a restarted one goes on with the same budgets.
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import socket
from urllib.parse import urlsplit, urlunsplit

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from core import metrics
from core.config import LimitsConfig
from core.pacing import BudgetsByKey, RateBudget
from core.platform import Clock, SystemClock

logger = logging.getLogger(__name__)

# A Redis that does not answer within these is unreachable: the budgets fall back at once rather
# than hold every answer (redis-py's own retries are off for the same reason).
CONNECT_TIMEOUT_S = 1.0
COMMAND_TIMEOUT_S = 1.0
MICROSECONDS = 1_000_000

# KEYS[1]: the budget's grant times in µs, oldest first (at most max_calls of them).
# ARGV: max_calls, period in µs, "1" to take only a call free now (else reserve the next free
# slot), the time in µs ("": the server's clock, which every process shares).
# Returns the µs until the caller's slot (0: now), or -1 when "only now" found none free.
RESERVE_SCRIPT = """
local max_calls = tonumber(ARGV[1])
local period = tonumber(ARGV[2])
local now
if ARGV[4] == '' then
  local time = redis.call('TIME')
  now = tonumber(time[1]) * 1000000 + tonumber(time[2])
else
  now = tonumber(ARGV[4])
end
local at = now
local newest = redis.call('LINDEX', KEYS[1], -1)
if newest and tonumber(newest) > at then
  at = tonumber(newest)  -- slots stay in order (even if the clock steps back)
end
if redis.call('LLEN', KEYS[1]) >= max_calls then
  local frees_at = tonumber(redis.call('LINDEX', KEYS[1], -max_calls)) + period
  if frees_at > at then
    at = frees_at
  end
end
if ARGV[3] == '1' and at > now then
  return -1
end
redis.call('RPUSH', KEYS[1], string.format('%.0f', at))
redis.call('LTRIM', KEYS[1], -max_calls, -1)
redis.call('PEXPIRE', KEYS[1], math.ceil((at - now + period) / 1000) + 1)
return at - now
"""


def masked(url: str) -> str:
    """`url` with its password (if any) shown as ***, for logs."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=f"{parts.username or ''}:***@{host}"))


def client_name(key_prefix: str) -> str:
    """The name this process gives its Redis connection: which bot, which host, which process
    (CLIENT SETNAME takes no spaces)."""
    return "".join(c for c in f"{key_prefix}:{socket.gethostname()}:{os.getpid()}" if c > " ")


def fallback_share(max_calls: int, period_s: float, processes: int, clock: Clock) -> RateBudget:
    """This process's share of a budget while Redis is away: 1/`processes` of it, as whole calls
    per window when the limit allows (5 per 5 s over 2 processes: 2 per 5 s), else the same
    average spread out (1 per 1/29 s over 2: 1 per 2/29 s)."""
    if max_calls >= processes:
        return RateBudget(max_calls // processes, period_s, clock)
    return RateBudget(1, period_s * processes / max_calls, clock)


class _Link:
    """The Redis connection behind a set of budgets, and whether Redis answers."""

    def __init__(self, limits: LimitsConfig, clock: Clock, *, server_time: bool) -> None:
        self.processes = limits.expected_processes
        self._retry_s = limits.redis_retry_s
        self.prefix = f"{limits.key_prefix}:budget"
        self._shown_url = masked(limits.redis_url)
        self._password = urlsplit(limits.redis_url).password
        self._clock = clock
        self._server_time = server_time
        self._client = Redis.from_url(
            limits.redis_url,
            socket_connect_timeout=CONNECT_TIMEOUT_S,
            socket_timeout=COMMAND_TIMEOUT_S,
            retry=Retry(NoBackoff(), 0),
            client_name=client_name(limits.key_prefix),
        )
        self._script = self._client.register_script(RESERVE_SCRIPT)
        self._down = False
        self._probe_at = 0.0

    async def reserve(
        self, key: str, max_calls: int, period_us: int, *, only_now: bool
    ) -> float | None:
        """Seconds until the caller's slot (math.inf: none free now, with `only_now`); None when
        Redis is not to be asked: unreachable, and not yet time to try it again."""
        if self._down:
            now = self._clock.monotonic()
            if now < self._probe_at:
                return None
            self._probe_at = now + self._retry_s  # the other calls keep to the fallback meanwhile
        at = "" if self._server_time else str(round(self._clock.monotonic() * MICROSECONDS))
        try:
            wait_us = await self._script(keys=[key], args=[max_calls, period_us, int(only_now), at])
        except (RedisError, OSError) as exc:
            self._went_down(exc)
            return None
        if self._down:
            self._down = False
            logger.info("rate budgets: Redis at %s is back; shared again", self._shown_url)
        wait_us = int(wait_us)
        return math.inf if wait_us < 0 else wait_us / MICROSECONDS

    def _went_down(self, exc: BaseException) -> None:
        if self._down:
            return
        self._down = True
        self._probe_at = self._clock.monotonic() + self._retry_s
        reason = str(exc) or type(exc).__name__
        if self._password:
            reason = reason.replace(self._password, "***")
        logger.warning(
            "rate budgets: Redis at %s is unreachable (%s); meanwhile each process keeps 1/%d "
            "of every budget",
            self._shown_url,
            reason,
            self.processes,
        )

    async def aclose(self) -> None:
        await self._client.aclose()


class SharedBudget:
    """At most `max_calls` grants in any `period_s` window under one Redis key, for every
    process together (see the module's docstring)."""

    def __init__(
        self,
        link: _Link,
        key: str,
        max_calls: int,
        period_s: float,
        clock: Clock,
        *,
        platform: str | None = None,
    ) -> None:
        if max_calls < 1 or period_s <= 0:
            raise ValueError("a budget needs max_calls >= 1 and period_s > 0")
        self.key = key
        self.max_calls = int(max_calls)  # not an IntEnum (PTB's FloodLimit): Redis gets its name
        self.period_s = period_s
        # Whole µs, rounded up: a rounded-down period would let one call too many into a window.
        self._period_us = math.ceil(round(period_s * MICROSECONDS, 3))
        self._link = link
        self._clock = clock
        self._fallback = fallback_share(max_calls, period_s, link.processes, clock)
        # A platform's bot-wide budget: its waits are `gptsbot_budget_wait_seconds`.
        self._waits = metrics.BUDGET_WAIT.labels(platform) if platform else None
        self._queue = asyncio.Lock()  # FIFO: only the head of this process's queue asks Redis
        self._granted_at = -math.inf
        self._alone_until = -math.inf  # see acquire

    async def acquire(self) -> None:
        asked = self._clock.monotonic()
        async with self._queue:
            # Redis never saw the calls made on the fallback: until they leave this process's
            # window, a call must fit its share too.
            charged = self._clock.monotonic() < self._alone_until
            if charged:
                await self._fallback.acquire()
            wait = await self._link.reserve(
                self.key, self.max_calls, self._period_us, only_now=False
            )
            if wait is None:
                if not charged:
                    await self._fallback.acquire()
                self._alone_until = self._clock.monotonic() + self._fallback.period_s
            else:
                if wait > 0:
                    await self._clock.sleep(wait)
                if not charged:
                    # The share counts what Redis granted, so a switch to it starts from there.
                    await self._fallback.try_acquire()
            self._granted_at = self._clock.monotonic()
        if self._waits is not None:
            self._waits.observe(self._granted_at - asked)

    async def try_acquire(self) -> bool:
        if self._queue.locked():
            return False
        async with self._queue:
            now = self._clock.monotonic()
            wait = None
            if now >= self._alone_until:
                wait = await self._link.reserve(
                    self.key, self.max_calls, self._period_us, only_now=True
                )
            if wait is None:
                granted = await self._fallback.try_acquire()
                if granted:
                    self._alone_until = now + self._fallback.period_s
            elif wait == 0:
                granted = True
                await self._fallback.try_acquire()
            else:
                granted = False
            if granted:
                self._granted_at = now
            return granted

    def idle_since(self, now: float) -> bool:
        """Nobody here waits, and this process's last grant constrains no later one."""
        return not self._queue.locked() and self._granted_at + self.period_s <= now


class RedisBudgets:
    """Budgets shared through the Redis at `limits.redis_url`, under `limits.key_prefix`.

    `server_time=False` makes the script use the injected clock's time instead of Redis's: for
    tests in virtual time only (processes do not share a monotonic clock)."""

    def __init__(
        self, limits: LimitsConfig, clock: Clock | None = None, *, server_time: bool = True
    ) -> None:
        self._clock = clock or SystemClock()
        self._link = _Link(limits, self._clock, server_time=server_time)

    def bot_wide(self, name: str, rate: float) -> SharedBudget:
        key = f"{self._link.prefix}:{name}"
        return SharedBudget(self._link, key, 1, 1.0 / rate, self._clock, platform=name)

    def keyed(self, name: str, max_calls: int, period_s: float) -> BudgetsByKey[SharedBudget]:
        prefix = f"{self._link.prefix}:{name}"

        def make(key: str) -> SharedBudget:
            # Dropped when idle like the memory ones: their state stays in Redis, nothing is lost.
            return SharedBudget(self._link, f"{prefix}:{key}", max_calls, period_s, self._clock)

        return BudgetsByKey(make, self._clock)

    async def aclose(self) -> None:
        await self._link.aclose()
