"""One process of a bot, for tests/test_shared_budgets.py: takes calls of a Redis-shared
bot-wide budget as fast as it allows for a while, then prints the times it got them (JSON).

    python tests/budget_worker.py REDIS_URL KEY_PREFIX RATE START_AT DURATION_S

START_AT is a time.monotonic() value (one clock for every process on Linux), so that the
processes begin together however long each took to start.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from core.config import LimitsConfig
from core.shared_pacing import RedisBudgets

CALLERS = 4  # answers streaming at once in this process


async def main(url: str, prefix: str, rate: float, start_at: float, duration_s: float) -> None:
    limits = LimitsConfig(backend="redis", redis_url=url, key_prefix=prefix)
    budgets = RedisBudgets(limits)
    budget = budgets.bot_wide("worker", rate)
    granted: list[float] = []

    async def caller() -> None:
        while time.monotonic() < start_at + duration_s:
            await budget.acquire()
            granted.append(time.monotonic())

    try:
        await asyncio.sleep(start_at - time.monotonic())
        await asyncio.gather(*(caller() for _ in range(CALLERS)))
    finally:
        await budgets.aclose()
    print(json.dumps(granted))


if __name__ == "__main__":
    url, prefix, rate, start_at, duration_s = sys.argv[1:]
    asyncio.run(main(url, prefix, float(rate), float(start_at), float(duration_s)))
