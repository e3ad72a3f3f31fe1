"""Failover over real HTTP: two local GPTs endpoints (two FakeGpts), an injected random source and
clock. A turn that fails on the first endpoint before any text is answered by the second, once;
the first is skipped for its back-off and then tried again; a cut after text is never failed over.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from core.config import EndpointConfig, GptsConfig, parse_config
from core.conversation import ConversationService
from core.errors import GptNotFound, StreamInterrupted, UpstreamError
from core.gpts import ChatMessage, Delta, GptsClient
from core.streaming import StreamingReply
from core.turns import Author, Scope, Turn
from fakes.clock import FakeClock
from fakes.gpts import Fail, FakeGpts, Gate, Hang, Reply
from fakes.recording import RecordingChannel
from storage import Repository

KEY_A = "sk-endpoint-A-SECRET-0123456789"
KEY_B = "sk-endpoint-B-SECRET-9876543210"
GPT = "g-B3hgivKK9"
ASK: list[ChatMessage] = [{"role": "user", "content": "Hi"}]
BACKOFF_S = 15.0


class FirstPick(random.Random):
    """Draws the lowest value: the weighted choice takes the first healthy endpoint with room,
    and retry waits get no jitter."""

    def random(self) -> float:
        return 0.0


@pytest_asyncio.fixture
async def first() -> AsyncIterator[FakeGpts]:
    async with FakeGpts() as fake:
        yield fake


@pytest_asyncio.fixture
async def second() -> AsyncIterator[FakeGpts]:
    async with FakeGpts() as fake:
        yield fake


def two_endpoints(
    first: FakeGpts,
    second: FakeGpts,
    *,
    a: dict[str, Any] | None = None,
    b: dict[str, Any] | None = None,
    **gpts: Any,
) -> GptsConfig:
    """Endpoint "a" (first) and "b" (second, which wants the bare GPT id as its model); `a` and
    `b` add keys to their tables."""
    endpoints = (
        EndpointConfig(first.base_url, KEY_A, name="a", **(a or {})),
        EndpointConfig(second.base_url, KEY_B, name="b", model_template="{id}", **(b or {})),
    )
    settings: dict[str, Any] = {
        "endpoints": endpoints,
        "retry_backoff_s": 0.01,
        "first_chunk_timeout_s": 2.0,
        "idle_timeout_s": 2.0,
        "total_timeout_s": 10.0,
        "endpoint_backoff_s": BACKOFF_S,
    }
    return GptsConfig(**(settings | gpts))


async def answer(client: GptsClient, deltas: list[Delta] | None = None) -> str:
    deltas = [] if deltas is None else deltas
    async for delta in client.stream_chat(GPT, ASK):
        deltas.append(delta)
    return "".join(d.text for d in deltas)


@pytest.mark.asyncio
@pytest.mark.parametrize(
    "failure",
    ["refused", Fail(503), Hang(), Reply(error_after=0), Fail(429), Fail(401)],
    ids=["connection-refused", "503", "first-chunk-timeout", "error-before-text", "429", "401"],
)
async def test_a_failure_before_any_text_moves_the_turn_to_the_second_endpoint(
    first: FakeGpts, second: FakeGpts, failure: Any, caplog: pytest.LogCaptureFixture
) -> None:
    config = two_endpoints(first, second, first_chunk_timeout_s=0.3, max_retries=0)
    if failure == "refused":
        await first.stop()  # nothing listens on its port any more
    else:
        first.enqueue(failure)
    second.enqueue(Reply("The answer from B.", chunk_chars=3))
    async with GptsClient(config, rng=FirstPick(), clock=FakeClock().monotonic) as client:
        assert await answer(client) == "The answer from B."
        a, b = client.endpoints
        assert (a.failures, b.failures) == (1, 0)
    assert len(first.requests) == (0 if failure == "refused" else 1)
    (request,) = second.requests  # once
    assert request.model == GPT  # b's own model_template
    assert request.headers["Authorization"] == f"Bearer {KEY_B}"
    assert "GPTs endpoint a is unhealthy" in caplog.text


@pytest.mark.asyncio
async def test_an_unhealthy_endpoint_is_skipped_for_its_backoff_then_tried_again(
    first: FakeGpts, second: FakeGpts, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)  # in the test: the fixture's level covers only its setup
    clock = FakeClock()
    config = two_endpoints(first, second, max_retries=0)
    async with GptsClient(config, rng=FirstPick(), clock=clock.monotonic) as client:
        first.enqueue(Fail(503))
        assert await answer(client) == "echo: Hi"  # from b
        counts = [(len(first.requests), len(second.requests))]
        await clock.advance(BACKOFF_S - 1)
        await answer(client)  # a is still set aside: straight to b
        counts.append((len(first.requests), len(second.requests)))
        await clock.advance(2)
        first.enqueue(Fail(503))
        await answer(client)  # a is tried again, fails again: set aside twice as long
        counts.append((len(first.requests), len(second.requests)))
        await clock.advance(2 * BACKOFF_S - 1)
        await answer(client)
        counts.append((len(first.requests), len(second.requests)))
        await clock.advance(2)
        await answer(client)  # a answers: healthy again
        counts.append((len(first.requests), len(second.requests)))
        assert client.endpoints[0].failures == 0
    assert counts == [(1, 1), (1, 2), (2, 3), (2, 4), (3, 4)]
    assert caplog.text.count("GPTs endpoint a is unhealthy") == 1
    assert "GPTs endpoint a failed again (HTTP 503" not in caplog.text  # the body's message
    assert "GPTs endpoint a failed again (The server had an error" in caplog.text
    assert caplog.text.count("GPTs endpoint a recovered") == 1


@pytest.mark.asyncio
async def test_with_every_endpoint_set_aside_the_one_back_soonest_is_tried(
    first: FakeGpts, second: FakeGpts
) -> None:
    clock = FakeClock()
    config = two_endpoints(first, second, max_retries=0)
    async with GptsClient(config, rng=FirstPick(), clock=clock.monotonic) as client:
        first.enqueue(Fail(503))
        await answer(client)  # a fails (back at 15), b answers
        await clock.advance(5)
        second.enqueue(Fail(502))
        first.enqueue(Fail(503))
        # b fails (back at 20) and the turn goes on to a though a is set aside: a fails again
        # (back at 5 + 30 = 35). Every endpoint was tried and no retry is allowed.
        with pytest.raises(UpstreamError) as caught:
            await answer(client)
        assert caught.value.status == 503
        assert (len(first.requests), len(second.requests)) == (2, 2)
        await clock.advance(1)
        assert await answer(client) == "echo: Hi"  # both set aside: b is back first
        assert (len(first.requests), len(second.requests)) == (2, 3)


@pytest.mark.asyncio
async def test_after_every_endpoint_was_tried_retries_wait_and_skip_a_refusing_one(
    first: FakeGpts, second: FakeGpts
) -> None:
    first.enqueue(Fail(401))  # a refused key: retrying there would change nothing
    second.enqueue(Fail(503), Reply("second try on b"))
    config = two_endpoints(first, second, max_retries=1)
    async with GptsClient(config, rng=FirstPick(), clock=FakeClock().monotonic) as client:
        assert await answer(client) == "second try on b"
    assert (len(first.requests), len(second.requests)) == (1, 2)


@pytest.mark.asyncio
async def test_a_cut_after_text_is_not_failed_over(first: FakeGpts, second: FakeGpts) -> None:
    first.enqueue(Reply("Hello there, world", chunk_chars=4, drop_after=2))
    config = two_endpoints(first, second)
    async with GptsClient(config, rng=FirstPick(), clock=FakeClock().monotonic) as client:
        deltas: list[Delta] = []
        with pytest.raises(StreamInterrupted):
            await answer(client, deltas)
        assert client.endpoints[0].failures == 0  # it answered: not a health problem
    assert "".join(d.text for d in deltas) == "Hello th"
    assert (len(first.requests), len(second.requests)) == (1, 0)  # one request in total


@pytest.mark.asyncio
@pytest.mark.parametrize(
    "failure",
    [Fail(404, {"error": {"message": "no such GPT", "code": "model_not_found"}}), Fail(400)],
    ids=["gpt-not-found", "bad-request"],
)
async def test_a_missing_gpt_or_a_bad_request_is_not_failed_over(
    first: FakeGpts, second: FakeGpts, failure: Fail
) -> None:
    first.enqueue(failure)
    config = two_endpoints(first, second)
    async with GptsClient(config, rng=FirstPick(), clock=FakeClock().monotonic) as client:
        with pytest.raises(UpstreamError) as caught:
            await answer(client)
        assert client.endpoints[0].failures == 0
    assert isinstance(caught.value, GptNotFound) is (failure.status == 404)
    assert (len(first.requests), len(second.requests)) == (1, 0)


@pytest.mark.asyncio
async def test_a_full_endpoint_is_skipped_and_when_all_are_full_the_turn_waits(
    first: FakeGpts, second: FakeGpts
) -> None:
    gate_a, gate_b = Gate(), Gate()
    first.enqueue(gate_a)
    second.enqueue(gate_b)
    one_at_a_time = {"max_concurrent": 1}
    config = two_endpoints(first, second, a=one_at_a_time, b=one_at_a_time)
    client = GptsClient(config, rng=FirstPick(), clock=FakeClock().monotonic)
    # A failed check cancels the turns still open.
    async with client, asyncio.TaskGroup() as turns:
        one = turns.create_task(answer(client))
        await first.wait_requests(1)
        two = turns.create_task(answer(client))  # a is full: b, though a would be drawn
        await second.wait_requests(1)
        three = turns.create_task(answer(client))  # both full: waits for a slot
        await asyncio.sleep(0.2)
        assert (len(first.requests), len(second.requests)) == (1, 1) and not three.done()
        gate_a.send("one")
        gate_a.finish()
        assert await one == "one"
        assert await three == "echo: Hi"  # a's slot
        gate_b.send("two")
        gate_b.finish()
        assert await two == "two"
    assert (len(first.requests), len(second.requests)) == (2, 1)


# --- the whole turn: what the person sees and what is stored ---------------------------------

DM = Scope("test", "dm-alice")


async def one_turn(
    first: FakeGpts, second: FakeGpts, tmp_path: Path
) -> tuple[RecordingChannel, list[tuple[str, str, str]]]:
    """One turn through the conversation service with endpoints a (first) and b (second)."""
    raw = {
        "gpts": {
            "default_gpt": GPT,
            "retry_backoff_s": 0.01,
            "first_chunk_timeout_s": 0.3,
            "endpoints": [
                {"base_url": first.base_url, "api_key_env": "KEY_A", "name": "a"},
                {"base_url": second.base_url, "api_key_env": "KEY_B", "name": "b"},
            ],
        },
        "storage": {"url": f"sqlite+aiosqlite:///{tmp_path / 'failover.db'}"},
    }
    config = parse_config(raw, {"KEY_A": KEY_A, "KEY_B": KEY_B})
    repo = await Repository.open(config.storage.url)
    try:
        await repo.upgrade()
        async with GptsClient(config.gpts, rng=FirstPick(), clock=FakeClock().monotonic) as client:
            service = ConversationService(config, repo, client)
            service.reraise_unexpected = True
            channel = RecordingChannel(FakeClock())
            turn = Turn(DM, Author("1", "Alice"), "hi", is_private=True, message_id="m1")
            await service.answer(turn, StreamingReply(channel, edit_interval_s=0))
        conversation = await repo.current_conversation(DM)
        records = await repo.history(conversation, limit=10)
    finally:
        await repo.close()
    return channel, [(r.role, r.content, r.status) for r in records]


@pytest.mark.asyncio
@pytest.mark.parametrize(
    "failure",
    ["refused", Fail(503), Hang(), Reply(error_after=0)],
    ids=["connection-refused", "503", "first-chunk-timeout", "error-before-text"],
)
async def test_the_turn_shows_and_stores_exactly_the_second_endpoints_answer(
    first: FakeGpts, second: FakeGpts, tmp_path: Path, failure: Any
) -> None:
    if failure == "refused":
        await first.stop()
    else:
        first.enqueue(failure)
    second.enqueue(Reply("The whole answer, from b.", chunk_chars=5))
    channel, stored = await one_turn(first, second, tmp_path)
    assert channel.visible() == ["The whole answer, from b."]
    assert stored == [
        ("user", "hi", "complete"),
        ("assistant", "The whole answer, from b.", "complete"),
    ]
    assert len(second.requests) == 1


@pytest.mark.asyncio
async def test_a_turn_cut_after_text_ends_with_that_text_and_a_short_line(
    first: FakeGpts, second: FakeGpts, tmp_path: Path
) -> None:
    first.enqueue(Reply("The first half and the second half", chunk_chars=4, drop_after=3))
    channel, stored = await one_turn(first, second, tmp_path)
    assert channel.visible() == [
        "The first ha\n\n⚠️ The answer was cut off by the GPTs endpoint. Try again."
    ]
    assert stored[-1] == ("assistant", "The first ha", "partial")
    assert (len(first.requests), len(second.requests)) == (1, 0)
