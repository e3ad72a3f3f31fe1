"""Several processes on one PostgreSQL database: two services (each its own Repository, so its
own connections, as two processes have) answer one scope never at once and in order, and a
starting process leaves alone the answers another one is streaming. PostgreSQL only (`pg_url`)."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from core.app import App, open_app
from core.config import parse_config
from core.conversation import AnswerOutcome
from core.interrupted import interrupted_answers
from core.streaming import StreamingReply
from core.turns import Author, Scope, Turn
from fakes.clock import FakeClock
from fakes.gpts import FakeGpts, Gate
from fakes.recording import RecordingChannel
from storage import NewMessage, Repository
from tests.databases import rows, scalar
from tests.gptsbot_process import WAIT_S, Bot, environment, write_config

GROUP = Scope("test", "group")
ALICE = Author("1", "Alice")
WAITING = "⏳ Waiting for the answer above…"
WAITERS = "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"


def make_config(fake: FakeGpts, url: str) -> Any:
    return parse_config(
        {
            "gpts": {
                "base_url": fake.base_url,
                "default_gpt": "g-B3hgivKK9",
                "max_retries": 0,
                "history_messages": 40,  # every exchange of these tests goes upstream
            },
            "storage": {"url": url},
        },
        {"GPTS_API_KEY": "sk-two-processes"},
    )


@contextlib.asynccontextmanager
async def two_services(fake: FakeGpts, url: str) -> AsyncIterator[tuple[App, App]]:
    config = make_config(fake, url)
    async with open_app(config) as one, open_app(config) as two:
        for app in (one, two):
            app.service.reraise_unexpected = True
        yield one, two


def ask(
    app: App, text: str, scope: Scope = GROUP
) -> tuple[RecordingChannel, asyncio.Task[AnswerOutcome]]:
    channel = RecordingChannel(FakeClock())
    reply = StreamingReply(channel, edit_interval_s=0)
    turn = Turn(scope, ALICE, text, is_private=False)
    return channel, asyncio.create_task(app.service.answer(turn, reply))


async def until(condition: Callable[[], Awaitable[bool]], within_s: float = 10.0) -> None:
    async with asyncio.timeout(within_s):
        while not await condition():  # noqa: ASYNC110 (a database and a fake channel to poll)
            await asyncio.sleep(0.01)


def waiting_in_postgresql(url: str, count: int) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        return bool(await scalar(url, WAITERS) == count)

    return check


def asked(fake: FakeGpts) -> list[str]:
    """The question of each request, in the order they arrived."""
    return [request.messages[-1]["content"] for request in fake.requests]


@pytest.mark.asyncio
async def test_two_processes_answer_one_scope_in_order_never_at_once(
    fake_gpts: FakeGpts, pg_url: str
) -> None:
    gates = [Gate() for _ in range(4)]
    fake_gpts.enqueue(*gates)
    async with two_services(fake_gpts, pg_url) as (one, two):
        turns = []
        for n, app in enumerate((one, two, one, two)):
            channel, task = ask(app, f"q{n}")
            turns.append((channel, task))
            if n == 0:
                await fake_gpts.wait_requests(1)
                continue

            async def waits(channel: RecordingChannel = channel) -> bool:
                return channel.visible() == [WAITING]

            await until(waits)  # a turn of the other process holds the scope: it says so
        # q1 waits in PostgreSQL; q2 and q3 behind q0 and q1 in their own processes.
        await until(waiting_in_postgresql(pg_url, 1))
        assert len(fake_gpts.requests) == 1

        for n, gate in enumerate(gates):
            await fake_gpts.wait_requests(n + 1)
            await asyncio.sleep(0.05)
            assert len(fake_gpts.requests) == n + 1  # the next one waits for this answer
            gate.send(f"a{n}")
            gate.finish()
            assert (await turns[n][1]).status == "complete"
            assert turns[n][0].visible() == [f"a{n}"]

    assert fake_gpts.overlaps == []
    assert asked(fake_gpts) == ["Alice: q0", "Alice: q1", "Alice: q2", "Alice: q3"]
    # Each process saw every answer before its turn, whichever process gave it.
    assert [m["content"] for m in fake_gpts.requests[3].messages] == [
        "Alice: q0", "a0", "Alice: q1", "a1", "Alice: q2", "a2", "Alice: q3",
    ]  # fmt: skip


@pytest.mark.asyncio
async def test_many_turns_from_two_processes_run_one_at_a_time_each_seeing_the_last(
    fake_gpts: FakeGpts, pg_url: str
) -> None:
    fake_gpts.chunk_delay_s = 0.005  # echo answers streamed in a few pieces
    async with two_services(fake_gpts, pg_url) as (one, two):
        tasks = [ask(app, f"q{n}")[1] for n, app in zip(range(16), itertools.cycle((one, two)))]
        outcomes = await asyncio.gather(*tasks)

    assert [outcome.status for outcome in outcomes] == ["complete"] * 16
    assert fake_gpts.overlaps == []
    # Whatever order they ran in, each request carries every exchange answered before it.
    questions = asked(fake_gpts)
    assert sorted(questions) == sorted(f"Alice: q{n}" for n in range(16))
    for n, request in enumerate(fake_gpts.requests):
        earlier = itertools.chain(*([q, "echo: " + q] for q in questions[:n]))
        assert [m["content"] for m in request.messages] == [*earlier, questions[n]]


@pytest.mark.asyncio
async def test_a_start_leaves_alone_what_another_process_is_streaming(
    fake_gpts: FakeGpts, gate: Gate, pg_url: str
) -> None:
    config = make_config(fake_gpts, pg_url)
    async with open_app(config) as live:
        _, task = ask(live, "a long story")
        await fake_gpts.wait_requests(1)
        gate.send("Once upon")
        async with open_app(config) as starting:
            # A process starting now sweeps answers left streaming, but this one is live.
            assert await interrupted_answers(starting.repo, "test") == []
            # One that a dead process left (its scope held by no one) is settled.
            dead = await starting.repo.start_turn(
                Scope("test", "other"),
                NewMessage("user", "lost"),
                history_limit=0,
                answer=NewMessage("assistant", "half", status="streaming"),
            )
            settled = await interrupted_answers(starting.repo, "test")
            assert [(a.id, a.content, a.question) for a in settled] == [
                (dead.answer_id, "half", "lost")
            ]
            gate.finish()
            assert (await task).status == "complete"
    statuses = await scalar(
        pg_url, "SELECT string_agg(status, ',' ORDER BY id) FROM messages WHERE role = 'assistant'"
    )
    assert statuses == "complete,interrupted"


@pytest.mark.asyncio
async def test_a_scope_held_by_a_process_that_dies_is_free_again(
    fake_gpts: FakeGpts, pg_url: str
) -> None:
    async with open_app(make_config(fake_gpts, pg_url)) as survivor:
        dying = await Repository.open(pg_url)
        held = dying.hold_scope(GROUP)
        await held.__aenter__()
        _, task = ask(survivor, "anyone?")
        await until(waiting_in_postgresql(pg_url, 1))
        assert not fake_gpts.requests
        # The dying process's connection goes (as when it is killed): the server drops its lock.
        await scalar(
            pg_url,
            "SELECT count(pg_terminate_backend(pid)) FROM pg_locks"
            " WHERE locktype = 'advisory' AND granted",
        )
        assert (await task).status == "complete"
        await held.__aexit__(None, None, None)  # its unlock finds the connection gone: logged
        await dying.close()


@pytest.mark.asyncio
async def test_kill_9_mid_answer_frees_the_scope_for_the_next_process(
    fake_gpts: FakeGpts, pg_url: str, tmp_path: Path
) -> None:
    gate = Gate()
    fake_gpts.enqueue(gate)
    storage = {"url": pg_url, "save_interval_s": 0.2}
    config = write_config(tmp_path, fake_gpts.base_url, storage=storage)
    env = environment(config)
    held = "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted"
    first = await Bot.start("chat", env=env, stdin=True)
    await first.say("tell me a story")
    await fake_gpts.wait_requests(1, within_s=WAIT_S)
    gate.send("Once upon a time")
    await first.wait_output("Once upon a time")
    assert await scalar(pg_url, held) == 1  # the terminal's scope, for the whole answer
    await first.kill()
    await until(lambda: _equals(scalar(pg_url, held), 0))  # dropped with its connection

    second = await Bot.start("chat", env=env, stdin=True)
    await second.say("go on")
    await second.wait_output("echo: go on")
    assert await second.wait() == 0
    stored = await rows(pg_url, "SELECT role, content, status FROM messages ORDER BY id")
    assert stored == [
        ("user", "tell me a story", "complete"),
        ("assistant", "Once upon a time", "interrupted"),
        ("user", "go on", "complete"),
        ("assistant", "echo: go on", "complete"),
    ]


async def _equals(value: Awaitable[Any], expected: Any) -> bool:
    return bool(await value == expected)


@pytest.mark.asyncio
async def test_processes_starting_at_once_on_an_empty_database_migrate_it_once(
    pg_url: str, tmp_path: Path
) -> None:
    env = environment(write_config(tmp_path, "http://127.0.0.1:9/v1", storage={"url": pg_url}))
    # Each would create the schema unless another is at it already: one does, the others wait.
    upgrades = [await Bot.start("db", "upgrade", env=env) for _ in range(3)]
    codes = await asyncio.gather(*(upgrade.wait() for upgrade in upgrades))
    assert codes == [0, 0, 0], [upgrade.log for upgrade in upgrades]
    assert await scalar(pg_url, "SELECT count(*) FROM alembic_version") == 1
