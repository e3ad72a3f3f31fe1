"""Scope locks on few connections: a process holds the scopes of all its running turns on one
PostgreSQL connection, and only a turn waiting behind another process costs one of its own
(`storage.scope_locks`). PostgreSQL only (`pg_url`)."""

from __future__ import annotations

import asyncio
import logging

import pytest

from core.app import open_app
from core.turns import Scope
from fakes.gpts import FakeGpts, Gate
from tests.databases import rows, scalar
from tests.test_scope_order import (
    WAITING,
    ask,
    asked,
    make_config,
    two_services,
    until,
    waiting_in_postgresql,
)

TURNS = 150
# Connections to the test's database, besides the one asking.
CONNECTIONS = (
    "SELECT count(*) FROM pg_stat_activity"
    " WHERE datname = current_database() AND pid <> pg_backend_pid()"
)
# Advisory locks granted in the test's database, and on how many connections.
HELD = (
    "SELECT count(*), count(DISTINCT pid) FROM pg_locks WHERE locktype = 'advisory' AND granted"
    " AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
)


async def held(url: str) -> tuple[int, int]:
    [(locks, connections)] = await rows(url, HELD)
    return locks, connections


@pytest.mark.asyncio
async def test_150_turns_at_once_hold_their_scopes_on_a_handful_of_connections(
    fake_gpts: FakeGpts, pg_url: str
) -> None:
    gates = [Gate() for _ in range(TURNS)]
    fake_gpts.enqueue(*gates)
    async with open_app(make_config(fake_gpts, pg_url)) as app:
        tasks = [ask(app, f"q{n}", Scope("test", f"chat{n}"))[1] for n in range(TURNS)]
        await fake_gpts.wait_requests(TURNS)  # every turn holds its scope, streaming
        assert await held(pg_url) == (TURNS, 1)  # all on one connection
        # That one, and what the repository's own pool keeps open.
        assert await scalar(pg_url, CONNECTIONS) <= 6
        for gate in gates:
            gate.send("done")
            gate.finish()
        outcomes = await asyncio.gather(*tasks)
        assert await held(pg_url) == (0, 0)
    assert [outcome.status for outcome in outcomes] == ["complete"] * TURNS


@pytest.mark.asyncio
async def test_a_scope_held_by_another_process_still_waits_on_a_connection_of_its_own_and_in_order(
    fake_gpts: FakeGpts, pg_url: str
) -> None:
    gates = [Gate() for _ in range(12)]
    fake_gpts.enqueue(*gates)
    group = Scope("test", "group")
    async with two_services(fake_gpts, pg_url) as (one, two):
        # The first process answers the group and ten other chats at once.
        first = ask(one, "q0", group)[1]
        others = [ask(one, f"other {n}", Scope("test", f"chat{n}"))[1] for n in range(10)]
        await fake_gpts.wait_requests(11)
        connections = await scalar(pg_url, CONNECTIONS)
        channel, second = ask(two, "q1", group)

        async def waits() -> bool:
            return channel.visible() == [WAITING]

        await until(waits)
        await until(waiting_in_postgresql(pg_url, 1))
        # The waiting turn took a connection of its own (and its process its holder), no more.
        assert await scalar(pg_url, CONNECTIONS) <= connections + 2
        assert len(fake_gpts.requests) == 11
        for gate in gates[:11]:
            gate.send("a0")
            gate.finish()
        assert (await first).status == "complete"
        await fake_gpts.wait_requests(12)
        gates[11].send("a1")
        gates[11].finish()
        assert (await second).status == "complete"
        await asyncio.gather(*others)
    in_group = [q for q in asked(fake_gpts) if q.startswith("Alice: q")]
    assert in_group == ["Alice: q0", "Alice: q1"]
    # The second process's turn saw the first one's answer.
    seen = [m["content"] for m in fake_gpts.requests[11].messages]
    assert seen == ["Alice: q0", "a0", "Alice: q1"]


@pytest.mark.asyncio
async def test_a_lost_lock_connection_is_logged_once_and_new_turns_lock_on_a_new_one(
    fake_gpts: FakeGpts, pg_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    gates = [Gate() for _ in range(3)]
    fake_gpts.enqueue(*gates)
    async with open_app(make_config(fake_gpts, pg_url)) as app:
        running = [ask(app, f"q{n}", Scope("test", f"chat{n}"))[1] for n in range(2)]
        await fake_gpts.wait_requests(2)
        assert await held(pg_url) == (2, 1)
        # The server drops the connection holding both (a restart, a network cut would too).
        await scalar(
            pg_url,
            "SELECT count(pg_terminate_backend(pid)) FROM pg_locks WHERE locktype = 'advisory'",
        )
        await until(lambda: _held_is(pg_url, (0, 0)))
        with caplog.at_level(logging.WARNING, logger="storage.scope_locks"):
            for gate in gates[:2]:
                gate.send("done")
                gate.finish()
            assert [(await task).status for task in running] == ["complete", "complete"]
            later = ask(app, "q9", Scope("test", "chat9"))[1]
            await fake_gpts.wait_requests(3)
            assert await held(pg_url) == (1, 1)  # on a new connection
            gates[2].send("done")
            gates[2].finish()
            assert (await later).status == "complete"
    lost = [r for r in caplog.records if "connection was lost" in r.getMessage()]
    assert len(lost) == 1, caplog.text


async def _held_is(url: str, expected: tuple[int, int]) -> bool:
    return await held(url) == expected
