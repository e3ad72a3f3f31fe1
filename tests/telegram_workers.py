"""Two `gptsbot run` workers of one Telegram bot, as real processes, the way issue 13 deploys it:
webhook mode (the test posts each update to the worker it chooses, as a load balancer would), one
PostgreSQL database, one Redis for the rate budgets reached through a `TcpProxy` the test can cut,
against the fake Bot API (which sees, counts and limits the calls of both together) and the fake
GPTs endpoint (which records each answer's history).

    async with telegram_workers(tmp_path, pg_url, prefix) as w:
        asked = w.tg.user_message(chat, person, "hi")
        await w.deliver(asked, w.workers[0])
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

from bots.telegram_adapter.webhook import SECRET_HEADER
from fakes.gpts import FakeGpts
from fakes.rate_window import LiveLimit, max_in_window
from fakes.tcp_proxy import TcpProxy
from fakes.telegram import Call, FakeTelegram
from fakes.telegram.protocol import FLOOD_METHODS
from tests.gptsbot_process import Bot, environment, wait_for, write_config

REDIS_HOST, REDIS_PORT = "127.0.0.1", 6379
WEBHOOK_URL = "https://bot.example.org/telegram/updates"
SECRET = "two-workers-Secret_0123"
# What the bot paces with its bot-wide budget: messages, edits and the typing indicator.
PACED = FLOOD_METHODS | {"sendchataction"}
# The bot is told this many messages a second; the fake, like Telegram, refuses what goes over
# LIMIT in any second. The gap is the bot's margin for network jitter (29 against Telegram's 30).
RATE = 50.0
LIMIT = 55
# A grant is timed where the fake sees the call: two grants a slot apart in Redis may arrive this
# much closer (a busy machine wakes a process late), so a window this much shorter is checked.
JITTER_S = 0.1
UNREACHABLE = "is unreachable"
BACK = "is back; shared again"

Json = dict[str, Any]


@dataclass
class Worker:
    """One `gptsbot run` process and the port its webhook listens on."""

    name: str
    bot: Bot
    port: int

    def lines(self, words: str) -> list[str]:
        return [line for line in self.bot.log.splitlines() if words in line]

    def turns(self) -> int:
        """The turns this process answered (its per-turn INFO lines)."""
        return len(self.lines(" INFO core.turn_report: turn "))


@dataclass
class Workers:
    tg: FakeTelegram
    gpts: FakeGpts
    proxy: TcpProxy
    workers: list[Worker]
    session: aiohttp.ClientSession

    async def deliver(self, asked: Json, *workers: Worker) -> None:
        """POST the update that brought `asked` to each of `workers` (accepted: 200)."""
        update = self.tg.update(self.tg.update_id_of(asked))
        for worker in workers:
            url = f"http://127.0.0.1:{worker.port}/telegram/updates"
            headers = {SECRET_HEADER: SECRET}
            async with self.session.post(url, json=update, headers=headers) as response:
                assert response.status == 200, f"{worker.name} answered {response.status}"

    def paced_calls(self, chats: Iterable[int] | None = None, since: float = 0.0) -> list[Call]:
        """The calls the bot-wide budget paces (to `chats`, if given) from `since` on."""
        wanted = None if chats is None else set(chats)
        return [
            call
            for call in self.tg.calls
            if call.method.lower() in PACED
            and call.at >= since
            and (wanted is None or call.params.get("chat_id") in wanted)
        ]

    def refused(self) -> list[Call]:
        """Every call the fake answered 429 (over its limit, or while a chat was flooded)."""
        return [call for call in self.tg.calls if call.status == 429]


def peak(calls: Sequence[Call]) -> int:
    """The most of `calls` in any second (jitter allowed for, see JITTER_S)."""
    return max_in_window([call.at for call in calls], 1.0 - JITTER_S)


def worker_config(
    folder: Path, pg_url: str, prefix: str, tg: FakeTelegram, gpts: FakeGpts, redis: str
) -> Path:
    folder.mkdir()
    return write_config(
        folder,
        gpts.base_url,
        gpts={"max_retries": 0, "history_messages": 40},  # a scope's every turn goes upstream
        storage={"url": pg_url},
        bot={"shutdown_grace_s": 2.0},
        telegram={
            "base_url": tg.base_url,
            "mode": "webhook",
            "webhook_url": WEBHOOK_URL,
            "listen": "127.0.0.1:0",  # a free port, read from the log
            "edit_interval_s": 0.05,
            "messages_per_second": RATE,
        },
        limits={
            "backend": "redis",
            "redis_url": redis,
            "key_prefix": prefix,
            "expected_processes": 2,
            "redis_retry_s": 0.5,
        },
    )


PORT_LINE = re.compile(r"takes updates on port (\d+)")


async def start_worker(name: str, config: Path, tg: FakeTelegram) -> Worker:
    env = environment(config, TELEGRAM_BOT_TOKEN=tg.token, TELEGRAM_WEBHOOK_SECRET=SECRET)
    bot = await Bot.start("run", env=env)
    try:
        await wait_for(lambda: PORT_LINE.search(bot.log) or bot.process.returncode is not None)
    except AssertionError:
        raise AssertionError(f"{name} did not start:\n{bot.log}") from None
    found = PORT_LINE.search(bot.log)
    assert found is not None, f"{name} did not start:\n{bot.log}"
    return Worker(name, bot, int(found[1]))


@contextlib.asynccontextmanager
async def telegram_workers(tmp_path: Path, pg_url: str, prefix: str) -> AsyncIterator[Workers]:
    """Both workers running (webhooks listening); at the end each is stopped by SIGTERM and must
    exit cleanly, having logged no error and no secret."""
    async with (
        FakeTelegram() as tg,
        FakeGpts(chunk_delay_s=0.01) as gpts,
        TcpProxy(REDIS_HOST, REDIS_PORT) as proxy,
        aiohttp.ClientSession() as session,
    ):
        tg.bot_limit = LiveLimit(LIMIT, 1.0)
        redis = f"redis://{REDIS_HOST}:{proxy.port}/0"
        configs = {
            name: worker_config(tmp_path / name, pg_url, prefix, tg, gpts, redis)
            for name in ("a", "b")
        }
        starting = [start_worker(name, config, tg) for name, config in configs.items()]
        workers = list(await asyncio.gather(*starting))
        try:
            yield Workers(tg, gpts, proxy, workers, session)
        finally:
            codes = await asyncio.gather(*(worker.bot.terminate() for worker in workers))
        for worker, code in zip(workers, codes, strict=True):
            log = worker.bot.log
            assert code == 0, f"{worker.name} exited {code}:\n{log}"
            assert " ERROR " not in log and "Traceback" not in log, log
            assert tg.token not in log and SECRET not in log


def echo_history(questions: Sequence[str]) -> list[str]:
    """What the GPT is sent for the last of `questions` when each earlier one got its echo."""
    history = [text for question in questions[:-1] for text in (question, f"echo: {question}")]
    return [*history, questions[-1]]
