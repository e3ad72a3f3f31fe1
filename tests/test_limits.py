"""[limits]: the section's checks, its password kept out of sight, and the budgets it makes."""

from __future__ import annotations

import importlib.util
import time

import pytest

from core.config import LimitsConfig, parse_config
from core.errors import ConfigError
from core.pacing import KeyedBudgets, MemoryBudgets, RateBudget, make_budgets
from core.platform import SystemClock
from core.shared_pacing import RedisBudgets, SharedBudget
from fakes.clock import FakeClock


def test_defaults_keep_the_budgets_in_this_process() -> None:
    limits = parse_config({}, {}).limits
    assert limits == LimitsConfig("memory", "redis://127.0.0.1:6379/0", "gptsbot", 2)


@pytest.mark.parametrize(
    ("raw", "key"),
    [
        ({"backend": "etcd"}, "limits.backend"),
        ({"redis_url": "http://127.0.0.1:6379"}, "limits.redis_url"),
        ({"key_prefix": " "}, "limits.key_prefix"),
        ({"expected_processes": 0}, "limits.expected_processes"),
        ({"expected_processes": 1.5}, "limits.expected_processes"),
        ({"redis": "redis://x"}, "limits.redis"),
    ],
)
def test_a_bad_limits_value_names_its_key(raw: dict[str, object], key: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config({"limits": raw}, {})
    assert caught.value.key == key


def test_the_redis_password_stays_out_of_repr_and_is_a_secret() -> None:
    url = "rediss://bot:s3cret-pass@redis.internal:6380/2"
    config = parse_config({"limits": {"backend": "redis", "redis_url": url}}, {})
    assert config.limits.redis_url == url
    assert "s3cret-pass" not in repr(config)
    assert config.secrets() == ["s3cret-pass"]  # masked wherever secrets are
    assert parse_config({}, {}).secrets() == []


def test_the_redis_backend_without_its_package_is_a_config_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name: None if name == "redis" else find_spec(name)
    )
    with pytest.raises(ConfigError, match=r"limits\.backend: .*gptsbot\[redis\]"):
        parse_config({"limits": {"backend": "redis"}}, {})
    parse_config({}, {})  # the memory backend needs nothing


def test_the_memory_backend_is_the_in_process_budgets() -> None:
    clock = FakeClock()
    budgets = make_budgets(LimitsConfig(), clock)
    assert isinstance(budgets, MemoryBudgets)
    overall = budgets.bot_wide("telegram", 29.0)
    assert isinstance(overall, RateBudget)
    assert (overall.max_calls, overall.period_s) == (1, 1 / 29.0)
    per_group = budgets.keyed("telegram:group", 20, 60.0)
    assert isinstance(per_group, KeyedBudgets)
    assert (per_group["-100"].max_calls, per_group["-100"].period_s) == (20, 60.0)


@pytest.mark.asyncio
async def test_the_redis_backend_names_a_key_per_platform_and_chat() -> None:
    limits = LimitsConfig("redis", "redis://127.0.0.1:6379/0", "bot7", 3)
    budgets = make_budgets(limits, FakeClock())
    try:
        assert isinstance(budgets, RedisBudgets)
        overall = budgets.bot_wide("discord", 48.0)
        assert (overall.key, overall.max_calls, overall.period_s) == (
            "bot7:budget:discord",
            1,
            1 / 48.0,
        )
        channel = budgets.keyed("discord:channel", 5, 5.0)["123"]
        assert isinstance(channel, SharedBudget)
        assert channel.key == "bot7:budget:discord:channel:123"
    finally:
        await budgets.aclose()  # nothing was asked: no connection was opened


@pytest.mark.asyncio
async def test_the_system_clock_never_wakes_before_its_deadline() -> None:
    # The budgets sleep on it until a call's slot. uvloop (the bot's loop, and the tests') counts
    # timers in whole milliseconds: these waits' fractions of one are what it rounds away.
    clock = SystemClock()
    for n in range(40):
        seconds = 0.001 + n * 0.00013
        deadline = time.monotonic() + seconds
        await clock.sleep(seconds)
        assert time.monotonic() >= deadline
