"""The GPTs client over real HTTP against FakeGpts: answers, faults, timeouts, retries."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
import pytest

from core.config import GptsConfig
from core.errors import (
    AuthError,
    GptNotFound,
    RateLimited,
    StreamInterrupted,
    UpstreamError,
    UpstreamTimeout,
)
from core.gpts import ChatMessage, Delta, GptsClient, Usage
from core.gpts.error_mapping import RETRY_JITTER
from core.gpts.stream_reading import READ_AHEAD_S, Gathering, sleep_unread
from fakes.clock import FakeClock
from fakes.gpts import CLOUDFLARE_524, Fail, FakeGpts, Gate, Hang, RawSse, Reply

API_KEY = "sk-test-SECRET-0123456789abcdef"
GPT = "g-B3hgivKK9"
MODEL = f"gpt-4-gizmo-{GPT}"
HISTORY: list[ChatMessage] = [
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": "Hi"},
    {"role": "assistant", "content": "Hello!"},
    {"role": "user", "content": "What is 2+2?"},
]
FIXTURES = Path(__file__).parent / "fixtures" / "sse"

E = TypeVar("E", bound=UpstreamError)


@pytest.fixture(autouse=True)
def no_key_in_logs(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    caplog.set_level(logging.DEBUG)
    yield
    assert API_KEY not in caplog.text


def make_config(fake: FakeGpts, **overrides: Any) -> GptsConfig:
    settings: dict[str, Any] = {
        "base_url": fake.base_url,
        "api_key": API_KEY,
        "retry_backoff_s": 0.01,
        "first_chunk_timeout_s": 2.0,
        "idle_timeout_s": 2.0,
        "total_timeout_s": 5.0,
        "read_interval_s": 0,  # every chunk as it comes: the tests step answers piece by piece
    }
    return GptsConfig(**(settings | overrides))


async def collect(
    fake: FakeGpts, deltas: list[Delta] | None = None, **overrides: Any
) -> list[Delta]:
    """All deltas of one answer; pass `deltas` to keep the ones before an exception."""
    deltas = [] if deltas is None else deltas
    async with GptsClient(make_config(fake, **overrides)) as client:
        async for delta in client.stream_chat(GPT, HISTORY):
            deltas.append(delta)
    return deltas


def text_of(deltas: list[Delta]) -> str:
    return "".join(d.text for d in deltas)


def assert_no_key(exc: BaseException) -> None:
    assert API_KEY not in str(exc) and API_KEY not in repr(exc)


async def fail_after_text(
    fake: FakeGpts, reply: Reply, error: type[E], **overrides: Any
) -> tuple[E, str]:
    """Serve `reply`, which breaks after some text: the `error` raised and the text kept.

    Once text may have reached a user the request is not retried, and the error has no key.
    """
    fake.enqueue(reply)
    deltas: list[Delta] = []
    with pytest.raises(error) as caught:
        await collect(fake, deltas, **overrides)
    assert len(fake.requests) == 1
    assert_no_key(caught.value)
    return caught.value, text_of(deltas)


@pytest.mark.asyncio
async def test_streamed_answer_and_the_request_it_sends(fake_gpts: FakeGpts) -> None:
    usage = {"prompt_tokens": 12, "completion_tokens": 3, "total_tokens": 15}
    fake_gpts.enqueue(Reply("Four, of course.", chunk_chars=4, usage=usage))
    deltas = await collect(fake_gpts)
    assert "".join(d.text for d in deltas) == "Four, of course."
    assert deltas[-2:] == [Delta(finish_reason="stop"), Delta(usage=Usage(12, 3, 15))]
    (request,) = fake_gpts.requests
    assert request.model == MODEL
    assert request.headers["Authorization"] == f"Bearer {API_KEY}"
    assert request.messages == HISTORY
    assert request.json == {"model": MODEL, "messages": HISTORY, "stream": True}


@pytest.mark.asyncio
async def test_temperature_is_sent_only_when_configured(fake_gpts: FakeGpts) -> None:
    await collect(fake_gpts, temperature=0.3)
    assert fake_gpts.requests[0].json["temperature"] == 0.3


@pytest.mark.asyncio
async def test_non_streaming_answer_is_one_delta(fake_gpts: FakeGpts) -> None:
    usage = {"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7}
    fake_gpts.enqueue(Reply("All of it.", usage=usage))
    deltas = await collect(fake_gpts, stream=False)
    assert deltas == [Delta("All of it.", "stop", Usage(5, 2, 7))]
    assert fake_gpts.requests[0].json["stream"] is False


@pytest.mark.asyncio
async def test_non_streaming_mode_merges_a_stream_the_relay_sent_anyway(
    fake_gpts: FakeGpts,
) -> None:
    fake_gpts.enqueue(RawSse.from_file(FIXTURES / "openai-refusal.sse"))
    deltas = await collect(fake_gpts, stream=False)
    assert deltas == [Delta("I'm sorry, I can't help with that.", "stop", Usage(79, 11, 90))]


@pytest.mark.asyncio
async def test_default_answer_echoes_the_last_user_message(fake_gpts: FakeGpts) -> None:
    assert text_of(await collect(fake_gpts)) == "echo: What is 2+2?"


@pytest.mark.asyncio
async def test_raw_fixture_body_served_in_small_pieces(fake_gpts: FakeGpts) -> None:
    fake_gpts.enqueue(RawSse.from_file(FIXTURES / "azure-style-crlf-quirks.sse", chunk_bytes=7))
    deltas = await collect(fake_gpts)
    assert text_of(deltas) == "Hello world"
    assert deltas[-1] == Delta(usage=Usage(15, 2, 17))


@pytest.mark.asyncio
async def test_gated_answer_is_stepped_by_the_test(fake_gpts: FakeGpts) -> None:
    gate = Gate()
    fake_gpts.enqueue(gate)
    async with GptsClient(make_config(fake_gpts)) as client:
        answer = client.stream_chat(GPT, HISTORY)
        gate.send("Hel")
        assert await anext(answer) == Delta("Hel")
        await fake_gpts.wait_requests(1)
        gate.send("lo")
        assert await anext(answer) == Delta("lo")
        gate.finish()
        assert await anext(answer) == Delta(finish_reason="stop")
        with pytest.raises(StopAsyncIteration):
            await anext(answer)


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("configured_s", "asked_s"),
    [(0.0, None), (0.25, None), (1.0, 0.0)],  # last: a reply shown as each piece comes
)
async def test_once_text_flows_what_arrives_within_the_read_interval_comes_in_one_read(
    fake_gpts: FakeGpts, configured_s: float, asked_s: float | None
) -> None:
    interval_s = configured_s if asked_s is None else asked_s
    gate = Gate()
    fake_gpts.enqueue(gate)
    clock = FakeClock()
    config = make_config(fake_gpts, read_interval_s=configured_s)
    async with GptsClient(config, sleep=clock.sleep) as client:
        answer = client.stream_chat(GPT, HISTORY, read_interval_s=asked_s)
        gate.send("a")
        assert await anext(answer) == Delta("a")
        following = asyncio.create_task(anext(answer))
        for piece in "bcd":
            gate.send(piece)
        await gate.wait_written(4)
        if interval_s:
            await asyncio.sleep(0.05)  # time enough to read "b", were the stream being read
            assert not following.done()
            await clock.advance(interval_s)
            # "b", "c" and "d" came in one read after the wait, and go up as one Delta.
            assert await asyncio.wait_for(following, 5) == Delta("bcd")
        else:
            deltas = [await asyncio.wait_for(following, 5)]
            while "".join(d.text for d in deltas) != "bcd":
                deltas.append(await asyncio.wait_for(anext(answer), 5))
        gate.finish()
        rest = asyncio.create_task(collect_rest(answer))
        await clock.advance(interval_s)
        # The finish is not joined to text: it keeps a Delta of its own.
        assert [d.finish_reason for d in await asyncio.wait_for(rest, 5)] == ["stop"]


async def collect_rest(answer: AsyncIterator[Delta]) -> list[Delta]:
    return [delta async for delta in answer]


@pytest.mark.asyncio
async def test_gathered_reads_wake_on_the_ticks_of_the_read_interval(fake_gpts: FakeGpts) -> None:
    """Every wait between reads ends on a multiple of the interval on the loop's clock, the same
    instants for every stream: one loop wake-up reads them all."""
    interval_s = 0.25
    gate = Gate()
    fake_gpts.enqueue(gate)
    loop = asyncio.get_running_loop()
    clock = FakeClock()
    wake_ups: list[float] = []

    async def sleep(seconds: float) -> None:
        wake_ups.append((loop.time() + seconds) / interval_s)
        await clock.sleep(seconds)

    config = make_config(fake_gpts, read_interval_s=interval_s)
    async with GptsClient(config, sleep=sleep) as client:
        answer = client.stream_chat(GPT, HISTORY)
        gate.send("a")
        assert await anext(answer) == Delta("a")
        following = asyncio.create_task(anext(answer))
        gate.send("b")
        await gate.wait_written(2)
        await clock.advance(interval_s)
        assert await asyncio.wait_for(following, 5) == Delta("b")
        await answer.aclose()
    assert wake_ups
    assert all(abs(tick - round(tick)) < 1e-6 for tick in wake_ups), wake_ups


def test_a_read_comes_just_before_the_reply_shows_the_text_else_on_the_tick() -> None:
    def gathering(shown_in: float | None) -> Gathering:
        return Gathering(1.0, lambda: shown_in)

    now = 10.25  # the next tick is in 0.75 s
    assert gathering(None).wait_s(now) == pytest.approx(0.75)
    assert gathering(0.5).wait_s(now) == pytest.approx(0.5 - READ_AHEAD_S)
    assert gathering(0.9).wait_s(now) == pytest.approx(0.75)  # the tick comes first
    # Too late to read ahead: the reply shows what the last read brought.
    assert gathering(READ_AHEAD_S / 2).wait_s(now) == pytest.approx(0.75)


@pytest.mark.asyncio
async def test_the_caller_about_to_show_the_text_gets_a_read_just_before(
    fake_gpts: FakeGpts,
) -> None:
    gate = Gate()
    fake_gpts.enqueue(gate)
    clock = FakeClock()
    waits: list[float] = []

    async def sleep(seconds: float) -> None:
        waits.append(seconds)
        await clock.sleep(seconds)

    interval_s = 3600.0
    loop = asyncio.get_running_loop()
    said: list[float] = []

    def shown_in() -> float:
        said.append((interval_s - loop.time() % interval_s) / 2)  # halfway to the next tick
        return said[-1]

    async with GptsClient(make_config(fake_gpts), sleep=sleep) as client:
        answer = client.stream_chat(GPT, HISTORY, read_interval_s=interval_s, shown_in=shown_in)
        gate.send("a")
        assert await anext(answer) == Delta("a")
        following = asyncio.create_task(anext(answer))
        gate.send("b")
        await gate.wait_written(2)
        await clock.advance(said[0] - READ_AHEAD_S)
        assert await asyncio.wait_for(following, 5) == Delta("b")
        await answer.aclose()
    assert waits == [pytest.approx(said[0] - READ_AHEAD_S)]


@contextlib.asynccontextmanager
async def first_piece_read(
    fake_gpts: FakeGpts, gate: Gate
) -> AsyncIterator[aiohttp.ClientResponse]:
    """A raw aiohttp response to `gate`'s answer, its first piece ("a") already read."""
    fake_gpts.enqueue(gate)
    gate.send("a")  # the headers come with the first piece
    async with (
        aiohttp.ClientSession() as session,
        session.post(f"{fake_gpts.base_url}/chat/completions", json={"stream": True}) as response,
    ):
        assert b'"content": "a"' in await response.content.readany()
        yield response


@pytest.mark.asyncio
async def test_while_reads_gather_the_socket_is_not_read(fake_gpts: FakeGpts) -> None:
    """What arrives during the wait stays in the kernel, to come in one receive after it."""
    gate = Gate()
    async with first_piece_read(fake_gpts, gate) as response:
        unread_during_the_wait = None

        async def sleep(seconds: float) -> None:
            nonlocal unread_during_the_wait
            gate.send("b")
            await gate.wait_written(2)
            await asyncio.sleep(0.05)  # time enough to read "b", were the socket being read
            unread_during_the_wait = response.content.read_nowait()

        await sleep_unread(response, sleep, 0.25)
        assert unread_during_the_wait == b""
        assert b'"content": "b"' in await asyncio.wait_for(response.content.readany(), 5)


@pytest.mark.asyncio
async def test_a_socket_aiohttp_stopped_reading_stays_stopped(fake_gpts: FakeGpts) -> None:
    async with first_piece_read(fake_gpts, Gate()) as response:
        assert response.connection is not None and response.connection.transport is not None
        transport = response.connection.transport
        transport.pause_reading()  # as aiohttp does when its buffer is full
        await sleep_unread(response, asyncio.sleep, 0.0)
        assert not transport.is_reading()
        transport.resume_reading()


@pytest.mark.asyncio
async def test_401_is_an_auth_error_without_the_key(fake_gpts: FakeGpts) -> None:
    message = f"Incorrect API key provided: {API_KEY}. You can find your API key at ..."
    fake_gpts.enqueue(Fail(401, {"error": {"message": message, "type": "invalid_request_error"}}))
    with pytest.raises(AuthError) as caught:
        await collect(fake_gpts)
    assert caught.value.status == 401
    assert caught.value.message.startswith("Incorrect API key provided: ***")
    assert_no_key(caught.value)
    assert len(fake_gpts.requests) == 1  # not retried


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("status", "error"),
    [
        (404, {"message": "The model does not exist", "code": "model_not_found"}),
        (400, {"message": "The model does not exist", "type": "model_not_found"}),
        (503, {"message": "The model does not exist", "code": "model_not_found"}),
    ],
)
async def test_model_not_found_is_gpt_not_found(
    fake_gpts: FakeGpts, status: int, error: dict[str, str]
) -> None:
    fake_gpts.enqueue(Fail(status, {"error": error}))
    with pytest.raises(GptNotFound, match="The model does not exist"):
        await collect(fake_gpts)
    assert len(fake_gpts.requests) == 1


class HighestDraw(random.Random):
    """A random source whose every draw is the top of its range: the longest jitter."""

    def random(self) -> float:
        return 0.999


@pytest.mark.asyncio
async def test_429_waits_retry_after_plus_jitter_then_succeeds(fake_gpts: FakeGpts) -> None:
    fake_gpts.enqueue(
        Fail(429, {"error": "slow down"}, headers={"Retry-After": "0.2"}), Reply("ok")
    )
    async with GptsClient(make_config(fake_gpts), rng=HighestDraw()) as client:
        deltas = [delta async for delta in client.stream_chat(GPT, HISTORY)]
    assert text_of(deltas) == "ok"
    first, second = fake_gpts.requests
    # The injected source drew the jitter: the wait is Retry-After stretched by almost all of it.
    assert second.time - first.time >= 0.2 * (1 + RETRY_JITTER * 0.999)


@pytest.mark.asyncio
async def test_429_with_a_long_retry_after_is_not_waited_out(fake_gpts: FakeGpts) -> None:
    fake_gpts.enqueue(Fail(429, {"error": "slow down"}, headers={"Retry-After": "120"}))
    with pytest.raises(RateLimited) as caught:
        await collect(fake_gpts)
    assert caught.value.retry_after == 120
    assert len(fake_gpts.requests) == 1


@pytest.mark.asyncio
@pytest.mark.parametrize(
    "failure",
    [Fail(500), Fail(502, "Bad Gateway"), Fail(524, CLOUDFLARE_524), Fail(408), Hang()],
    ids=["500", "502", "524", "408", "first-chunk-timeout"],
)
async def test_retryable_failure_then_success(fake_gpts: FakeGpts, failure: Fail | Hang) -> None:
    fake_gpts.enqueue(failure, Reply("recovered"))
    deltas = await collect(fake_gpts, first_chunk_timeout_s=0.2)
    assert text_of(deltas) == "recovered"
    assert len(fake_gpts.requests) == 2


@pytest.mark.asyncio
async def test_500_forever_fails_after_all_retries(fake_gpts: FakeGpts) -> None:
    fake_gpts.enqueue(*[Fail(500)] * 5)
    with pytest.raises(UpstreamError) as caught:
        await collect(fake_gpts, max_retries=2)
    assert type(caught.value) is UpstreamError and caught.value.status == 500
    assert caught.value.message.startswith("The server had an error")
    assert len(fake_gpts.requests) == 3


@pytest.mark.asyncio
async def test_cloudflare_524_page_becomes_a_short_message(fake_gpts: FakeGpts) -> None:
    fake_gpts.enqueue(Fail(524, CLOUDFLARE_524))
    with pytest.raises(UpstreamError) as caught:
        await collect(fake_gpts, max_retries=0)
    assert caught.value.status == 524
    assert caught.value.message == "HTTP 524: api.example.com | 524: A timeout occurred"


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"error": "plain text error"}, "plain text error"),
        ({"detail": "detail as text"}, "detail as text"),
        ({"detail": {"message": "detail as object"}}, "detail as object"),
    ],
)
async def test_other_4xx_error_shapes_are_not_retried(
    fake_gpts: FakeGpts, body: dict[str, Any], message: str
) -> None:
    fake_gpts.enqueue(Fail(400, body))
    with pytest.raises(UpstreamError) as caught:
        await collect(fake_gpts)
    assert caught.value.message == message and caught.value.status == 400
    assert len(fake_gpts.requests) == 1


@pytest.mark.asyncio
async def test_hang_is_a_first_chunk_timeout(fake_gpts: FakeGpts) -> None:
    fake_gpts.enqueue(Hang())
    loop = asyncio.get_running_loop()
    started = loop.time()
    with pytest.raises(UpstreamTimeout) as caught:
        await collect(fake_gpts, first_chunk_timeout_s=0.2, max_retries=0)
    assert caught.value.phase == "first chunk" and caught.value.seconds == 0.2
    assert loop.time() - started < 1.0


@pytest.mark.asyncio
async def test_first_chunk_timeout_is_retried_only_within_the_total(fake_gpts: FakeGpts) -> None:
    fake_gpts.enqueue(Hang(), Hang(), Hang())
    with pytest.raises(UpstreamTimeout) as caught:
        await collect(fake_gpts, first_chunk_timeout_s=0.2, total_timeout_s=0.3, max_retries=2)
    assert caught.value.phase == "total"
    assert len(fake_gpts.requests) == 2


@pytest.mark.asyncio
async def test_idle_timeout_after_text_is_not_retried(fake_gpts: FakeGpts) -> None:
    reply = Reply("abcdef", chunk_chars=2, chunk_delay_s=1.0)
    error, kept = await fail_after_text(fake_gpts, reply, UpstreamTimeout, idle_timeout_s=0.2)
    assert error.phase == "idle"
    assert kept == "ab"


@pytest.mark.asyncio
async def test_drop_mid_stream_is_interrupted_and_not_retried(fake_gpts: FakeGpts) -> None:
    reply = Reply("Hello world, how are you?", chunk_chars=4, drop_after=2)
    error, kept = await fail_after_text(fake_gpts, reply, StreamInterrupted)
    assert kept == "Hello wo"
    assert isinstance(error.__cause__, aiohttp.ClientError)


@pytest.mark.asyncio
async def test_drop_before_any_text_is_retried(fake_gpts: FakeGpts) -> None:
    fake_gpts.enqueue(Reply("lost", drop_after=0), Reply("second try"))
    assert text_of(await collect(fake_gpts)) == "second try"
    assert len(fake_gpts.requests) == 2


@pytest.mark.asyncio
async def test_malformed_line_is_skipped(
    fake_gpts: FakeGpts, caplog: pytest.LogCaptureFixture
) -> None:
    fake_gpts.enqueue(Reply("abcdefgh", chunk_chars=2, malformed_after=2))
    deltas = await collect(fake_gpts)
    assert text_of(deltas) == "abcdefgh" and deltas[-1].finish_reason == "stop"
    assert "malformed SSE data line" in caplog.text


@pytest.mark.asyncio
async def test_error_object_mid_stream_interrupts_after_text(fake_gpts: FakeGpts) -> None:
    reply = Reply("Partial answer here", chunk_chars=8, error_after=1)
    error, kept = await fail_after_text(fake_gpts, reply, StreamInterrupted)
    assert "The server had an error" in str(error)
    assert kept == "Partial "


@pytest.mark.asyncio
async def test_error_object_before_text_is_retried_then_mapped(fake_gpts: FakeGpts) -> None:
    not_found = {"message": "no such GPT", "code": "model_not_found"}
    fake_gpts.enqueue(Reply(error_after=0), Reply(error_after=0, error=not_found))
    with pytest.raises(GptNotFound, match="no such GPT"):
        await collect(fake_gpts)
    assert len(fake_gpts.requests) == 2


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("finish_reason", "done"), [("stop", False), (None, True)], ids=["no-done", "no-finish"]
)
async def test_a_stream_with_either_end_marker_is_complete(
    fake_gpts: FakeGpts, finish_reason: str | None, done: bool
) -> None:
    # Relays send [DONE] without a finish_reason, or a finish_reason and then just close.
    fake_gpts.enqueue(Reply("complete", done=done, finish_reason=finish_reason))
    deltas = await collect(fake_gpts)
    assert text_of(deltas) == "complete"
    finish_reasons = [d.finish_reason for d in deltas if d.finish_reason]
    assert finish_reasons == ([finish_reason] if finish_reason else [])


@pytest.mark.asyncio
@pytest.mark.parametrize(
    "reply",
    [
        Reply("The first half and the second half", chunk_chars=4, close_after=3),
        Reply("The first ha", chunk_chars=4, finish_reason=None, done=False),
    ],
    ids=["connection-closed", "body-ended"],
)
async def test_a_stream_ending_with_neither_marker_is_cut(
    fake_gpts: FakeGpts, reply: Reply
) -> None:
    error, kept = await fail_after_text(fake_gpts, reply, StreamInterrupted)
    assert kept == "The first ha"
    assert "cut" in error.message
    assert error.__cause__ is None  # a clean end of the body, not a broken connection


@pytest.mark.asyncio
async def test_unreachable_endpoint_is_an_upstream_error(fake_gpts: FakeGpts) -> None:
    config = make_config(fake_gpts, max_retries=1)
    await fake_gpts.stop()
    with pytest.raises(UpstreamError, match="cannot reach the GPTs endpoint") as caught:
        async with GptsClient(config) as client:
            async for _ in client.stream_chat(GPT, HISTORY):
                pass
    assert isinstance(caught.value.__cause__, aiohttp.ClientError)
    assert_no_key(caught.value)


@pytest.mark.asyncio
async def test_a_given_session_is_shared_and_left_open(fake_gpts: FakeGpts) -> None:
    async with aiohttp.ClientSession() as session:
        client = GptsClient(make_config(fake_gpts), session=session)
        assert API_KEY not in repr(client)
        async with client:
            assert text_of([d async for d in client.stream_chat(GPT, HISTORY)]).startswith("echo")
        assert not session.closed


@pytest.mark.asyncio
async def test_idle_timeout_counts_only_the_reads_not_the_consumer(fake_gpts: FakeGpts) -> None:
    """A consumer that holds each Delta longer than the idle timeout does not trip it."""
    fake_gpts.enqueue(Reply("abcdef", chunk_chars=2, chunk_delay_s=0.05))
    async with GptsClient(make_config(fake_gpts, idle_timeout_s=0.15)) as client:
        text = ""
        async for delta in client.stream_chat(GPT, HISTORY):
            text += delta.text
            await asyncio.sleep(0.3)
    assert text == "abcdef"


@pytest.mark.asyncio
async def test_idle_timeout_still_fires_after_reads_that_arrived_in_time(
    fake_gpts: FakeGpts,
) -> None:
    gate = Gate()
    fake_gpts.enqueue(gate)
    async with GptsClient(make_config(fake_gpts, idle_timeout_s=0.3)) as client:
        answer = client.stream_chat(GPT, HISTORY)
        for piece in ("a", "b", "c"):
            gate.send(piece)
            assert await anext(answer) == Delta(piece)
            await asyncio.sleep(0.2)  # the last deadline was set before this pause
        with pytest.raises(UpstreamTimeout) as caught:
            await anext(answer)
    assert caught.value.phase == "idle"


@pytest.mark.asyncio
async def test_an_outer_cancel_or_timeout_during_a_read_is_not_an_upstream_timeout(
    fake_gpts: FakeGpts,
) -> None:
    gate, second_gate = Gate(), Gate()
    fake_gpts.enqueue(gate, second_gate)
    async with GptsClient(make_config(fake_gpts, idle_timeout_s=0.2)) as client:
        answer = client.stream_chat(GPT, HISTORY)
        gate.send("a")
        assert await anext(answer) == Delta("a")
        with pytest.raises(TimeoutError) as caught:  # the caller's own, shorter timeout
            async with asyncio.timeout(0.05):
                await anext(answer)
        assert type(caught.value) is TimeoutError
        await answer.aclose()
        second = client.stream_chat(GPT, HISTORY)
        second_gate.send("b")
        assert await anext(second) == Delta("b")
        reader = asyncio.create_task(anext(second))
        await asyncio.sleep(0.1)
        reader.cancel()
        with pytest.raises(asyncio.CancelledError):
            await reader
        assert reader.cancelled()
        await asyncio.sleep(0.2)  # past the idle deadline: nothing fires into this task
        await second.aclose()
