"""Issue 13's "beyond one process", shown with two real `gptsbot run` workers of one Telegram bot
on one PostgreSQL and one Redis (tests/telegram_workers.py): every turn answered once and in its
chat's order whichever worker gets it, the bot-wide limit held by the two together, and Redis
going away mid-run and coming back. PostgreSQL (GPTSBOT_TEST_PG_URL) and Redis on 127.0.0.1:6379
are needed; without either these tests are skipped, saying which is missing."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from redis.asyncio import Redis

from core import i18n
from fakes.rate_window import max_in_window
from tests.databases import rows
from tests.gptsbot_process import WAIT_S, wait_for
from tests.telegram_workers import (
    BACK,
    LIMIT,
    RATE,
    REDIS_HOST,
    REDIS_PORT,
    UNREACHABLE,
    Json,
    Worker,
    Workers,
    echo_history,
    peak,
    telegram_workers,
)
from tests.test_shared_budgets import prefix, redis_up  # noqa: F401 (fixtures, found by name)

SCOPES = 20
ALREADY_ANSWERED = i18n.ALREADY_ANSWERED("en")


@dataclass
class Chat:
    """A person's private chat with the bot (a scope), and what they asked there."""

    n: int
    person: Json
    chat: Json
    asked: list[str] = field(default_factory=list)


def chats(w: Workers) -> list[Chat]:
    found = []
    for n in range(SCOPES):
        person = w.tg.user(7000 + n, f"P{n}")
        found.append(Chat(n, person, w.tg.private_chat(person)))
    return found


def ids(some: list[Chat]) -> list[int]:
    return [chat.chat["id"] for chat in some]


async def ask(w: Workers, chat: Chat, text: str, *workers: Worker) -> None:
    """The person writes `text`, its update is posted to `workers` (to both at once, when two),
    and it reaches the GPT: the turn holds its scope (or is done), so the next turn of the chat
    comes after it."""
    chat.asked.append(text)
    asked = w.tg.user_message(chat.chat, chat.person, text)
    await asyncio.gather(*(w.deliver(asked, worker) for worker in workers))
    await w.gpts.wait_request(lambda request: request.messages[-1]["content"] == text, WAIT_S)


async def converse(w: Workers, chat: Chat, turns: int, phase: str, worker: Worker) -> None:
    for t in range(turns):
        await ask(w, chat, f"{phase} s{chat.n} t{t}", worker)


def finished(w: Workers, chat: Chat, twice: int = 0) -> bool:
    """The chat shows exactly one complete answer per question. An update posted to both workers
    while its chat was busy showed a waiting line in both; the one that lost the race for it
    now says it was answered already (at most one such line per update posted twice)."""
    shown = [m.get("text") for m in w.tg.bot_messages(chat.chat["id"])]
    answers = sorted(text for text in shown if text.startswith("echo: "))
    others = [text for text in shown if not text.startswith("echo: ")]
    return (
        answers == sorted(f"echo: {question}" for question in chat.asked)
        and len(others) <= twice
        and all(text == ALREADY_ANSWERED for text in others)
    )


async def all_answered(w: Workers, every: list[Chat], twice: int = 0) -> None:
    await w.tg.wait_until(lambda: all(finished(w, chat, twice) for chat in every), WAIT_S)


@pytest.mark.asyncio
async def test_two_workers_answer_each_turn_once_in_order_within_the_bot_limit(
    tmp_path: Path,
    pg_url: str,
    prefix: str,  # noqa: F811
) -> None:
    turns = 10
    async with telegram_workers(tmp_path, pg_url, prefix) as w:
        a, b = w.workers
        every = chats(w)
        started = time.monotonic()

        async def talk(chat: Chat) -> None:
            for t in range(turns):
                if t == chat.n % turns:  # one turn of each chat reaches both workers
                    await ask(w, chat, f"s{chat.n} t{t}", a, b)
                else:  # the others alternate
                    await ask(w, chat, f"s{chat.n} t{t}", (a, b)[(chat.n + t) % 2])

        await asyncio.gather(*(talk(chat) for chat in every))
        await all_answered(w, every, twice=1)
        took = time.monotonic() - started
        calls = w.paced_calls()

    # Each turn reached the GPT once, with every earlier turn of its chat and its answer.
    questions = {f"s{chat.n} t{t}": chat.asked[: t + 1] for chat in every for t in range(turns)}
    asked = [request.messages[-1]["content"] for request in w.gpts.requests]
    assert sorted(asked) == sorted(questions)
    for request in w.gpts.requests:
        history = echo_history(questions[request.messages[-1]["content"]])
        assert [message["content"] for message in request.messages] == history
    assert a.turns() + b.turns() == SCOPES * turns and min(a.turns(), b.turns()) > 0
    stored = await rows(pg_url, "SELECT role, status, count(*) FROM messages GROUP BY 1, 2")
    assert sorted(stored) == [("assistant", "complete", 200), ("user", "complete", 200)]
    # Together the workers kept to the bot-wide rate; the fake, which limits like Telegram, had
    # nothing to refuse.
    print(
        f"\n{SCOPES * turns} turns in {took:.1f} s (worker a {a.turns()}, b {b.turns()}); "
        f"{len(calls)} paced calls, at most {peak(calls)} in 0.9 s and "
        f"{max_in_window([c.at for c in calls], 1.0)} in 1 s (rate {RATE:.0f}/s, fake's limit "
        f"{LIMIT}/s); 429s: {len(w.refused())}"
    )
    assert peak(calls) <= RATE
    assert w.refused() == []


async def newest_grant_us(key_prefix: str) -> int:
    """When (Redis's clock, µs) the newest call of the bot-wide Telegram budget was granted."""
    client = Redis.from_url(f"redis://{REDIS_HOST}:{REDIS_PORT}/0")
    try:
        return int(await client.lindex(f"{key_prefix}:budget:telegram", -1) or 0)
    finally:
        await client.aclose()


async def redis_now_us() -> int:
    client = Redis.from_url(f"redis://{REDIS_HOST}:{REDIS_PORT}/0")
    try:
        seconds, micros = await client.time()
        return seconds * 1_000_000 + micros
    finally:
        await client.aclose()


@pytest.mark.asyncio
async def test_redis_cut_mid_run_each_worker_keeps_its_share_then_shares_again(
    tmp_path: Path,
    pg_url: str,
    prefix: str,  # noqa: F811
) -> None:
    async with telegram_workers(tmp_path, pg_url, prefix) as w:
        a, b = w.workers
        every = chats(w)
        halves = {a.name: every[: SCOPES // 2], b.name: every[SCOPES // 2 :]}

        # Each worker gets the turns of its half of the chats; Redis goes away after the first
        # round, answers streaming.
        async def cut_when_under_way() -> float:
            await w.gpts.wait_requests(SCOPES, WAIT_S)
            w.proxy.refuse()
            return w.tg.clock()

        cutting = asyncio.create_task(cut_when_under_way())
        await asyncio.gather(
            *(
                converse(w, chat, 4, "cut", worker)
                for worker in (a, b)
                for chat in halves[worker.name]
            )
        )
        cut_at = await cutting
        await all_answered(w, every)
        away = {
            worker.name: peak(w.paced_calls(ids(halves[worker.name]), since=cut_at))
            for worker in (a, b)
        }
        together = peak(w.paced_calls(since=cut_at))
        for worker in (a, b):
            assert len(worker.lines(UNREACHABLE)) == 1, worker.bot.log
            assert away[worker.name] <= RATE / 2, f"{worker.name}: {away} a second"
        assert together <= RATE
        assert w.refused() == []

        # Redis is back: each worker finds it again with its next call.
        w.proxy.forward()
        back_at_us = await redis_now_us()
        for round_ in range(int(WAIT_S)):  # a round takes a fraction of a second or more
            await asyncio.gather(
                *(ask(w, chat, f"back s{chat.n} r{round_}", worker)
                  for worker in (a, b) for chat in halves[worker.name][:2])
            )  # fmt: skip
            if all(worker.lines(BACK) for worker in (a, b)):
                break
        await wait_for(lambda: all(worker.lines(BACK) for worker in (a, b)))
        assert [len(worker.lines(BACK)) for worker in (a, b)] == [1, 1]

        # Shared again: one worker busy alone may take the whole budget, not just its share.
        since = w.tg.clock()
        await asyncio.gather(*(converse(w, chat, 2, "shared", a) for chat in every))
        await all_answered(w, every)
        shared = w.paced_calls(since=since)
        assert await newest_grant_us(prefix) > back_at_us  # granted by Redis again

    print(
        f"\nRedis away: at most {away['a']} and {away['b']} calls in 0.9 s, {together} together;"
        f" back: worker a alone {peak(shared)} (rate {RATE:.0f}/s); 429s: {len(w.refused())}"
    )
    assert RATE / 2 < peak(shared) <= RATE
    assert w.refused() == []
