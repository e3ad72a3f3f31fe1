"""CPU per streamed Telegram call through the adapter's own stack: `python -m bench.telegram_calls`.

N answers at once, each a streamed send (with Stop) and a final edit (Markdown rendered, with
Retry), through `MessageChannel` → python-telegram-bot's ExtBot with the adapter's RateLimiter →
`AiohttpRequest`, against the fake Bot API in a process of its own (its CPU is not counted). The
rate limits are off, so a round's process CPU is what its calls cost; on a shared machine the
fastest of several rounds is the figure to compare.

    python -m bench.telegram_calls --n 100 --rounds 9
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from telegram.ext import ExtBot

from bots.telegram_adapter.channels import MessageChannel, RateLimiter, Target
from bots.telegram_adapter.request import AiohttpRequest
from core.buttons import retry_button, stop_button
from core.cli import run_loop
from fakes.telegram import FakeTelegram

ROOT = Path(__file__).resolve().parent.parent
FIRST_CHAT = 10_000
ANSWER = "Here is **the answer**, with `code` and a [link](https://example.com). " * 16


async def serve(chats: int) -> None:
    """The fake Bot API with `chats` private chats, until stdin closes."""
    async with FakeTelegram() as fake:
        for i in range(chats):
            fake.private_chat(fake.user(FIRST_CHAT + i, f"User{i}"))
        print(f"READY {fake.base_url} {fake.token}", flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)


@contextlib.contextmanager
def fake_bot_api(chats: int) -> Iterator[tuple[str, str]]:
    """The fake Bot API in a child process: its base URL and token."""
    command = [sys.executable, "-m", "bench.telegram_calls", "--serve", str(chats)]
    process = subprocess.Popen(
        command, cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert process.stdin is not None and process.stdout is not None
    try:
        ready, base_url, token = process.stdout.readline().split()
        assert ready == "READY"
        yield base_url, token
    finally:
        process.stdin.close()
        process.wait(timeout=10)
        process.stdout.close()


async def one_round(bot: ExtBot[Any], n: int) -> float:
    """Seconds of CPU for n answers' send and final edit."""

    async def answer(i: int) -> None:
        channel = MessageChannel(bot, Target(FIRST_CHAT + i, None, None, is_private=True))
        sent = await channel.send(ANSWER[:300], final=False, buttons=[stop_button(i)])
        await channel.edit(sent, ANSWER, final=True, buttons=[retry_button(i)])

    started = time.process_time()
    await asyncio.gather(*(answer(i) for i in range(n)))
    return time.process_time() - started


async def measure(n: int, rounds: int, base_url: str, token: str) -> list[float]:
    """µs of CPU per call, for each round."""
    bot: ExtBot[Any] = ExtBot(
        token,
        base_url=base_url,
        request=AiohttpRequest(connection_pool_size=64),
        rate_limiter=RateLimiter(overall_max_rate=0, group_max_rate=0, max_retries=0),
    )
    async with bot:
        await one_round(bot, min(n, 10))  # warm up: connections, caches
        return [await one_round(bot, n) * 1e6 / (2 * n) for _ in range(rounds)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=100, help="answers at once")
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--serve", type=int, help=argparse.SUPPRESS)  # the fake's own process
    args = parser.parse_args()
    if args.serve is not None:
        asyncio.run(serve(args.serve))
        return
    with fake_bot_api(args.n) as (base_url, token):
        per_call = run_loop(measure(args.n, args.rounds, base_url, token))
    best, median = min(per_call), sorted(per_call)[len(per_call) // 2]
    print(
        json.dumps(
            {"n": args.n, "best_us_per_call": round(best), "median_us_per_call": round(median)}
        )
    )


if __name__ == "__main__":
    main()
