"""Rate budgets shared through Redis (core.shared_pacing), against the real Redis on
127.0.0.1:6379: the script's rule, two budget objects and two processes sharing one limit,
fairness between them, and the fallback when Redis goes away and comes back.

Each test gets a key prefix of its own and deletes its keys; without Redis they are skipped.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import random
import socket
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from redis.asyncio import Redis

from bots.telegram_adapter.adapter import TelegramAdapter
from core.app import open_app
from core.config import Config, LimitsConfig, parse_config
from core.shared_pacing import (
    RESERVE_SCRIPT,
    RedisBudgets,
    SharedBudget,
    client_name,
    fallback_share,
    masked,
)
from fakes.clock import FakeClock
from fakes.gpts import FakeGpts
from fakes.rate_window import max_in_window
from fakes.redis_keys import forget_keys
from fakes.tcp_proxy import TcpProxy
from fakes.telegram import FakeTelegram

REDIS_HOST, REDIS_PORT = "127.0.0.1", 6379
REDIS_URL = f"redis://{REDIS_HOST}:{REDIS_PORT}/0"
# Grants are timed where the caller gets them, once its event loop wakes it (tens of ms late on a
# busy machine): two grants a window apart in Redis may be seen this much closer. The window rule
# itself is checked exactly, on the script with given times.
JITTER_S = 0.04
WORKER = Path(__file__).with_name("budget_worker.py")
PROBE_EVERY_S = LimitsConfig().redis_retry_s  # how often an unreachable Redis is tried again


def _redis_problem() -> str | None:
    try:
        with socket.create_connection((REDIS_HOST, REDIS_PORT), timeout=1) as conn:
            conn.sendall(b"PING\r\n")
            if not conn.recv(16).startswith(b"+PONG"):
                return "it does not answer PING"
    except OSError as exc:
        return str(exc)
    return None


@pytest.fixture(scope="module")
def redis_up() -> None:
    problem = _redis_problem()
    if problem is not None:
        pytest.skip(f"Redis is not reachable at {REDIS_HOST}:{REDIS_PORT} ({problem})")


@pytest_asyncio.fixture
async def prefix(redis_up: None) -> AsyncIterator[str]:
    """A key prefix for this test alone; its keys are deleted afterwards."""
    name = f"gptsbot-test-{uuid.uuid4().hex[:12]}"
    yield name
    await forget_keys(REDIS_URL, f"{name}:*")


def limits(prefix: str, url: str = REDIS_URL, processes: int = 2) -> LimitsConfig:
    return LimitsConfig("redis", url, prefix, processes)


class SteppingClock:
    """Virtual time that moves only when someone sleeps: exact grant times for one caller at
    a time, whatever the real round trips to Redis take."""

    def __init__(self) -> None:
        self.now = 1000.0

    def monotonic(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.now += max(seconds, 0.0)
        await asyncio.sleep(0)


async def grant_times(
    acquire: Callable[[], Awaitable[None]], clock: SteppingClock, n: int
) -> list[float]:
    times = []
    for _ in range(n):
        await acquire()
        times.append(round(clock.now, 6))
    return times


# --- the script's rule ---------------------------------------------------------------------


@pytest.mark.asyncio
async def test_the_script_reserves_the_earliest_slot_of_a_sliding_window(prefix: str) -> None:
    client = Redis.from_url(REDIS_URL)
    script = client.register_script(RESERVE_SCRIPT)
    key = f"{prefix}:budget:rule"

    async def reserve(now_us: int, max_calls: int = 3, only_now: bool = False) -> int:
        return int(await script(keys=[key], args=[max_calls, 1_000_000, int(only_now), now_us]))

    try:
        # 3 a second: a burst of 3, then each waits for the grant 3 places before it to age out.
        assert [await reserve(0) for _ in range(7)] == [0, 0, 0] + [1_000_000] * 3 + [2_000_000]
        assert await reserve(1_500_000, only_now=True) == -1  # none free now: nothing taken
        assert await reserve(3_000_000, only_now=True) == 0
        # A clock that steps back still gets slots after the newest one, in order.
        assert await reserve(2_900_000) == 100_000
        assert 0 < await client.pttl(key) <= 1_100 + 1  # gone a window after its newest slot

        # Against the rule written out: slot_i = max(arrival_i, slot_i-1, slot_i-n + period).
        rng = random.Random(7)
        arrivals = sorted(rng.randrange(10_000_000, 14_000_000) for _ in range(200))
        key = f"{prefix}:budget:random"
        slots = [now + await reserve(now, max_calls=5) for now in arrivals]
        expected: list[int] = []
        for i, now in enumerate(arrivals):
            earliest = max([now, *expected[-1:]])
            if i >= 5:
                earliest = max(earliest, expected[i - 5] + 1_000_000)
            expected.append(earliest)
        assert slots == expected
        assert max_in_window(slots, 1_000_000) == 5
    finally:
        await client.aclose()


def test_the_fallback_is_a_per_process_share() -> None:
    clock = FakeClock()
    share = fallback_share(5, 5.0, 2, clock)  # Discord's 5 per 5 s per channel
    assert (share.max_calls, share.period_s) == (2, 5.0)
    share = fallback_share(20, 60.0, 3, clock)  # Telegram's 20 a minute per group
    assert (share.max_calls, share.period_s) == (6, 60.0)
    share = fallback_share(1, 1 / 30, 2, clock)  # 30 a second for the whole bot
    assert share.max_calls == 1 and share.period_s == pytest.approx(1 / 15)


def test_the_url_password_is_masked() -> None:
    assert masked("redis://default:hunter2@redis.internal:6379/0") == (
        "redis://default:***@redis.internal:6379/0"
    )
    assert masked("rediss://:hunter2@redis.internal/1") == "rediss://:***@redis.internal/1"
    assert masked(REDIS_URL) == REDIS_URL


# --- two processes' budgets sharing one key --------------------------------------------------


async def saturate(budgets: list[SharedBudget], callers: int, seconds: float) -> list[list[float]]:
    """Every budget (a process) runs `callers` answers that take calls as fast as they may;
    the times each budget granted, per caller."""
    deadline = time.monotonic() + seconds
    times: list[list[float]] = [[] for _ in range(len(budgets) * callers)]

    async def caller(budget: SharedBudget, mine: list[float]) -> None:
        while time.monotonic() < deadline:
            await budget.acquire()
            mine.append(time.monotonic())

    await asyncio.gather(
        *(
            caller(budget, times[i * callers + j])
            for i, budget in enumerate(budgets)
            for j in range(callers)
        )
    )
    return times


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("make", "max_calls", "window_s"),
    [
        (lambda b: b.bot_wide("telegram", 40), 40, 1.0),  # 40 a second for the whole bot
        (lambda b: b.keyed("discord:channel", 5, 0.25)["42"], 5, 0.25),  # 5 per 0.25 s
    ],
    ids=["bot-wide", "per-chat"],
)
async def test_two_processes_share_the_limit_fairly(
    prefix: str, make: Callable[[RedisBudgets], SharedBudget], max_calls: int, window_s: float
) -> None:
    processes = [RedisBudgets(limits(prefix)), RedisBudgets(limits(prefix))]  # two connections
    try:
        budgets = [make(process) for process in processes]
        assert budgets[0].key == budgets[1].key
        seconds = 1.5
        per_caller = await saturate(budgets, callers=3, seconds=seconds)
    finally:
        for process in processes:
            await process.aclose()
    times = [t for caller in per_caller for t in caller]
    assert max_in_window(times, window_s - JITTER_S) <= max_calls  # together, never over
    assert len(times) >= 0.8 * max_calls * seconds / window_s  # and the budget is used
    for process in range(2):
        mine = per_caller[process * 3 : process * 3 + 3]
        assert sum(map(len, mine)) >= 0.35 * len(times)  # neither process starves
        counts = sorted(map(len, mine))
        assert counts[-1] - counts[0] <= 1  # in a process, answers take turns


@pytest.mark.asyncio
async def test_two_real_processes_hold_the_combined_limit(prefix: str) -> None:
    rate, seconds = 50, 1.0
    start_at = time.monotonic() + 2.0  # both have started and connected by then
    workers = [
        await asyncio.create_subprocess_exec(
            sys.executable,
            str(WORKER),
            REDIS_URL,
            prefix,
            str(rate),
            str(start_at),
            str(seconds),
            stdout=asyncio.subprocess.PIPE,
        )
        for _ in range(2)
    ]
    outputs = [await worker.communicate() for worker in workers]
    assert [worker.returncode for worker in workers] == [0, 0]
    granted = [json.loads(stdout) for stdout, _ in outputs]
    times = granted[0] + granted[1]
    assert max_in_window(times, 1.0 - JITTER_S) <= rate
    assert len(times) >= 0.8 * rate * seconds
    assert min(map(len, granted)) >= 0.35 * len(times)


# --- Redis away and back --------------------------------------------------------------------


def gaps(times: list[float]) -> list[float]:
    return [round(later - earlier, 6) for earlier, later in itertools.pairwise(times)]


def lines(caplog: pytest.LogCaptureFixture, words: str) -> list[str]:
    return [r.getMessage() for r in caplog.records if words in r.getMessage()]


@pytest.mark.asyncio
async def test_without_redis_a_process_keeps_its_share_then_shares_again(
    prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "core.shared_pacing")
    clock = SteppingClock()
    async with TcpProxy(REDIS_HOST, REDIS_PORT) as proxy:
        url = f"redis://default:hunter2@127.0.0.1:{proxy.port}/0"
        budgets = RedisBudgets(limits(prefix, url, processes=2), clock, server_time=False)
        try:
            budget = budgets.bot_wide("telegram", 10)  # a call per 0.1 s for every process
            shared = await grant_times(budget.acquire, clock, 5)
            assert gaps(shared) == [0.1] * 4
            assert not caplog.records

            proxy.refuse()  # Redis goes away mid-run: the open connection is cut
            down_at = clock.now
            alone = await grant_times(budget.acquire, clock, 40)
            assert gaps(alone) == [0.2] * 39  # half the budget: one of 2 processes
            assert alone[0] - shared[-1] >= 0.1  # the share knew the last grants: no burst
            [warning] = lines(caplog, "unreachable")
            assert "default:***@127.0.0.1" in warning and "1/2" in warning
            # Tried again at most every PROBE_EVERY_S (the first try included).
            assert 1 <= proxy.refused <= 1 + (clock.now - down_at) // PROBE_EVERY_S

            proxy.forward()
            back_at = clock.now
            after = await grant_times(budget.acquire, clock, 60)
            assert len(lines(caplog, "is back")) == 1
            returned = next(i for i, gap in enumerate(gaps([alone[-1], *after])) if gap == 0.1)
            assert after[returned] - back_at <= PROBE_EVERY_S + 0.2
            assert set(gaps(after[returned:])) == {0.1}  # shared again, at the full rate
        finally:
            await budgets.aclose()
    assert len(lines(caplog, "unreachable")) == 1
    assert not any("hunter2" in record.getMessage() for record in caplog.records)


@pytest.mark.asyncio
async def test_a_redis_that_never_answers_costs_one_line_and_half_the_budget(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]  # nothing listens here once it is closed
    caplog.set_level(logging.INFO, "core.shared_pacing")
    clock = SteppingClock()
    url = f"redis://:hunter2@127.0.0.1:{port}/0"
    budgets = RedisBudgets(limits("gptsbot-test-closed", url, processes=4), clock)
    try:
        chats = budgets.keyed("discord:channel", 5, 5.0)
        times = await grant_times(chats["7"].acquire, clock, 12)
        assert max_in_window(times, 5.0) == 1  # 5 per 5 s over 4 processes: 1 per 5 s
        assert not await chats["7"].try_acquire()  # the share is spent
        clock.now += 5.0
        assert await chats["7"].try_acquire()
    finally:
        await budgets.aclose()
    [warning] = [r for r in caplog.records if r.name == "core.shared_pacing"]
    assert warning.levelname == "WARNING" and "hunter2" not in warning.getMessage()
    assert "redis://:***@127.0.0.1" in warning.getMessage()


@pytest.mark.asyncio
async def test_try_acquire_takes_a_call_only_if_no_process_holds_it(prefix: str) -> None:
    clock = SteppingClock()
    processes = [RedisBudgets(limits(prefix), clock, server_time=False) for _ in range(2)]
    try:
        first, second = (p.keyed("telegram:group", 2, 60.0)["-100"] for p in processes)
        assert await first.try_acquire() and await second.try_acquire()
        assert not await first.try_acquire() and not await second.try_acquire()
        clock.now += 60.0
        assert await second.try_acquire()
    finally:
        for process in processes:
            await process.aclose()


# --- an adapter on the Redis backend ---------------------------------------------------------


def redis_config(prefix: str, tmp_path: Path, tg: FakeTelegram, fake_gpts: FakeGpts) -> Config:
    return parse_config(
        {
            "gpts": {"base_url": fake_gpts.base_url, "api_key": "k", "default_gpt": "g-Default01"},
            "storage": {"url": f"sqlite+aiosqlite:///{tmp_path / 'bot.db'}"},
            "telegram": {"token": tg.token, "base_url": tg.base_url, "group_edit_interval_s": 0.1},
            "limits": {"backend": "redis", "key_prefix": prefix},
        },
        env={},
    )


@contextlib.asynccontextmanager
async def running(adapter: TelegramAdapter) -> AsyncIterator[None]:
    """One run of the adapter, as `gptsbot run`'s supervisor starts (and restarts) it."""
    task = asyncio.create_task(adapter.run())
    try:
        await asyncio.wait_for(adapter.ready.wait(), 10)
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def answered_in_group(tg: FakeTelegram, text: str) -> dict[str, Any]:
    group, ann = tg.group(-1001, "Team"), tg.user(10, "Ann")
    asked = tg.user_message(group, ann, f"@{tg.username} {text}")
    await tg.wait_until(
        lambda: any(m.get("text") == f"echo: Ann: {text}" for m in tg.bot_messages(-1001)), 10
    )
    return asked


async def connections_named(name: str) -> int:
    """The connections Redis has open with this client name (CLIENT LIST)."""
    client = Redis.from_url(REDIS_URL)
    try:
        return sum(1 for c in await client.client_list() if c.get("name") == name)
    finally:
        await client.aclose()


@pytest.mark.asyncio
async def test_the_telegram_adapter_paces_a_group_through_redis(
    prefix: str,
    tmp_path: Path,
    tg: FakeTelegram,
    fake_gpts: FakeGpts,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, "core.shared_pacing")
    config = redis_config(prefix, tmp_path, tg, fake_gpts)
    async with open_app(config) as app, running(TelegramAdapter(config, app.service)):
        asked = await answered_in_group(tg, "hello")
    assert asked["message_id"]
    assert not [r for r in caplog.records if r.name == "core.shared_pacing"]  # Redis answered
    client = Redis.from_url(REDIS_URL)
    try:  # the group's budget lives in Redis (for a minute after its last call)
        assert await client.llen(f"{prefix}:budget:telegram:group:-1001") >= 1
    finally:
        await client.aclose()


@pytest.mark.asyncio
async def test_a_stopped_adapter_leaves_no_redis_connection_and_a_restarted_one_reuses_it(
    prefix: str, tmp_path: Path, tg: FakeTelegram, fake_gpts: FakeGpts
) -> None:
    config = redis_config(prefix, tmp_path, tg, fake_gpts)
    name = client_name(prefix)  # this process's
    async with open_app(config) as app:
        adapter = TelegramAdapter(config, app.service)
        for run in range(3):  # the supervisor restarts the same adapter, budgets and all
            async with running(adapter):
                await answered_in_group(tg, f"run {run}")
                assert await connections_named(name) >= 1  # its budgets' pool
            assert await connections_named(name) == 0
