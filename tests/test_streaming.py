"""The streaming reply and the splitter, on virtual time with a platform that records calls."""

from __future__ import annotations

import asyncio
import itertools
import logging
import random
from typing import Any

import pytest

from core.pacing import RateBudget
from core.platform import PlatformRefused, utf16_units
from core.splitting import open_fence, split_message, split_pages
from core.streaming import StreamingReply, typing_until_first_message
from fakes.clock import FakeClock
from fakes.recording import RecordingChannel, rate_limited

INTERVAL = 1.0


def paced_reply(
    *, interval: float = INTERVAL, indicator: str = "", **channel_options: Any
) -> tuple[FakeClock, RecordingChannel, StreamingReply]:
    """A reply paced on virtual time, into a channel that records its calls."""
    clock = FakeClock()
    channel = RecordingChannel(clock, **channel_options)
    reply = StreamingReply(channel, edit_interval_s=interval, clock=clock, indicator=indicator)
    return clock, channel, reply


async def finish(clock: FakeClock, *replies: StreamingReply, error_line: str | None = None) -> None:
    """Finish the replies, advancing virtual time until they are all done."""
    finished = asyncio.ensure_future(asyncio.gather(*(r.finish(error_line) for r in replies)))
    await clock.run_until(finished)


async def stream(reply: StreamingReply, clock: FakeClock, chunks: list[str], gap: float) -> None:
    for chunk in chunks:
        reply.append(chunk)
        await clock.advance(gap)


def words(count: int, seed: int = 1) -> list[str]:
    rng = random.Random(seed)
    return [
        rng.choice(["alpha ", "beta ", "gamma\n", "δέλτα ", "😀 ", "\n\n"]) for _ in range(count)
    ]


@pytest.mark.asyncio
async def test_edits_are_paced_per_message_and_end_with_the_full_text() -> None:
    clock, channel, reply = paced_reply(indicator=" ▌")
    chunks = words(200)
    await stream(reply, clock, chunks, gap=0.05)  # 10 s of streaming
    await finish(clock, reply)

    duration = 200 * 0.05
    assert len(channel.calls) <= duration / INTERVAL + 2
    assert channel.calls[0].kind == "send" and channel.calls[0].at == 0.0  # shown at once
    times = [call.at for call in channel.calls]
    assert all(b - a >= INTERVAL for a, b in itertools.pairwise(times))
    texts = [call.text for call in channel.calls]
    assert all(a != b for a, b in itertools.pairwise(texts))
    assert channel.visible() == ["".join(chunks)]
    assert channel.calls[-1].final and not any(call.final for call in channel.calls[:-1])
    assert all(call.text.endswith(" ▌") for call in channel.calls[:-1])


@pytest.mark.asyncio
async def test_an_edit_shows_the_text_that_arrived_while_it_waited_its_turn() -> None:
    clock, channel, reply = paced_reply()
    reply.append("a")
    await clock.advance(0.1)  # "a" is sent at once; the next edit is due at 1.0
    reply.append("b")
    await clock.advance(0.5)
    reply.append("c")  # arrives while the edit waits for its turn
    await clock.advance(0.5)
    assert [(call.kind, call.text, call.at) for call in channel.calls] == [
        ("send", "a", 0.0),
        ("edit", "abc", 1.0),
    ]


@pytest.mark.asyncio
async def test_while_an_edit_waits_its_turn_the_reply_says_when_it_reads_the_text() -> None:
    clock, channel, reply = paced_reply()
    assert reply.shown_in() is None
    reply.append("a")
    await clock.advance(0.1)
    assert reply.shown_in() is None  # sent; nothing new to show
    reply.append("b")
    await clock.advance(0.2)
    assert reply.shown_in() == pytest.approx(0.7)  # the edit is due at 1.0
    await clock.advance(0.7)
    assert channel.visible() == ["ab"] and reply.shown_in() is None


@pytest.mark.asyncio
async def test_a_waiting_line_is_replaced_in_place_by_the_answer() -> None:
    clock = FakeClock()
    channel = RecordingChannel(clock)
    reply = StreamingReply(channel, edit_interval_s=INTERVAL, clock=clock)
    reply.show_waiting("⏳ waiting")
    await clock.advance(5)
    assert channel.visible() == ["⏳ waiting"] and reply.first_sent.is_set()
    reply.end_waiting()  # no indicator to show instead: the line stays until text arrives
    await clock.advance(5)
    reply.append("The answer")
    finished = asyncio.ensure_future(reply.finish())
    await clock.run_until(finished)
    assert channel.visible() == ["The answer"]
    assert [(call.kind, call.text) for call in channel.calls] == [
        ("send", "⏳ waiting"),
        ("edit", "The answer"),
        ("edit", "The answer"),  # the final one
    ]


@pytest.mark.asyncio
async def test_a_wait_over_before_its_line_was_sent_costs_no_call() -> None:
    clock = FakeClock()
    channel = RecordingChannel(clock)
    reply = StreamingReply(channel, edit_interval_s=INTERVAL, clock=clock, indicator=" ▌")
    reply.show_waiting("⏳ waiting")
    reply.end_waiting()
    await clock.advance(5)
    assert channel.calls == [] and not reply.is_waiting
    reply.append("Hi")
    finished = asyncio.ensure_future(reply.finish())
    await clock.run_until(finished)
    assert [call.text for call in channel.calls] == ["Hi ▌", "Hi"]


@pytest.mark.asyncio
async def test_long_answer_continues_in_new_messages_with_every_character_in_order() -> None:
    clock, channel, reply = paced_reply(max_chars=300)
    code = "```python\n" + "".join(f"print({i})\n" for i in range(120)) + "```\n"
    chunks = [*words(150), code, *words(60, seed=2)]
    await stream(reply, clock, chunks, gap=0.1)
    await finish(clock, reply)

    answer = "".join(chunks)
    pages = split_message(answer, 300)
    assert channel.visible() == pages
    assert len(pages) > 3
    assert all(open_fence(page) == "" for page in pages)  # every message renders its code
    rebuilt = "".join(p.render(answer)[len(p.prefix) : len(p.render(answer)) - len(p.suffix)]
                      for p in split_pages(answer, 300))  # fmt: skip
    assert rebuilt == answer


@pytest.mark.asyncio
async def test_a_deleted_message_gets_the_rest_as_a_new_message() -> None:
    clock, channel, reply = paced_reply()
    reply.append("first part ")
    await clock.advance(0.1)
    channel.deleted.add("1")
    reply.append("second part")
    await finish(clock, reply)
    assert channel.visible() == ["first part second part"]
    assert [ref.message_id for ref in reply.messages] == ["2"]


@pytest.mark.asyncio
async def test_platform_rate_limit_is_waited_out_and_slows_that_message() -> None:
    clock, channel, reply = paced_reply(faults=[rate_limited(5.0)])
    await stream(reply, clock, ["a"] * 40, gap=0.25)  # 10 s
    await finish(clock, reply)
    assert channel.visible() == ["a" * 40]
    edits = [call.at for call in channel.calls if call.kind == "edit"]
    # The refused edit was retried 5 s later; after it, this message edits at twice the interval.
    assert edits[0] >= 1.0 + 5.0
    assert all(b - a >= 2 * INTERVAL for a, b in itertools.pairwise(edits))


@pytest.mark.asyncio
async def test_a_refused_bot_ends_the_showing_quietly_and_finish_raises_it(
    caplog: pytest.LogCaptureFixture,
) -> None:
    refused = PlatformRefused("token revoked")
    clock, channel, reply = paced_reply(faults=[refused, refused])
    await stream(reply, clock, ["a"] * 8, gap=0.5)  # the first edit is refused
    edits = len(channel.calls)
    await stream(reply, clock, ["b"] * 8, gap=0.5)
    assert len(channel.calls) == edits and channel.faults == [refused]  # none tried since
    finished = asyncio.ensure_future(reply.finish())
    await clock.run_until(finished)
    with pytest.raises(PlatformRefused):
        finished.result()
    assert [r for r in caplog.records if r.levelno >= logging.WARNING] == []


@pytest.mark.asyncio
async def test_an_error_line_follows_what_arrived() -> None:
    clock, channel, reply = paced_reply()
    reply.append("Half an ans")
    await finish(clock, reply, error_line="⚠️ cut off")
    assert channel.visible() == ["Half an ans\n\n⚠️ cut off"]


@pytest.mark.asyncio
async def test_shared_budget_is_never_exceeded_and_served_in_turn() -> None:
    clock = FakeClock()
    budget = RateBudget(5, 1.0, clock)  # 5 calls a second for the whole bot
    channel = RecordingChannel(clock)
    replies = [
        StreamingReply(channel, edit_interval_s=0.5, budgets=[budget], clock=clock)
        for _ in range(20)
    ]
    for _ in range(100):  # 10 s of 20 answers streaming at once
        for reply in replies:
            reply.append("x")
        await clock.advance(0.1)
    await finish(clock, *replies)

    times = sorted(call.at for call in channel.calls)
    assert all(later - times[i] >= 1.0 for i, later in enumerate(times[5:]))  # ≤ 5 in any 1 s
    assert channel.visible() == ["x" * 100] * 20
    # While text arrived (10 s), the budget was used: 5 a second.
    assert sum(1 for t in times if t < 10.0) >= 0.9 * 5 * 10
    per_reply = [sum(1 for c in channel.calls if c.message_id == str(i + 1)) for i in range(20)]
    assert max(per_reply) - min(per_reply) <= 1  # fair shares


def test_split_counts_utf16_units_and_never_cuts_a_character() -> None:
    text = "😀" * 3000  # 6000 UTF-16 units
    pages = split_message(text, 4096, utf16_units)
    assert "".join(pages) == text
    assert all(utf16_units(page) <= 4096 for page in pages)


def test_split_prefers_paragraphs_then_lines_then_words() -> None:
    paragraph = "word " * 30 + "\n\n"
    pages = split_message(paragraph * 10, 400)
    assert all(page.endswith("\n\n") for page in pages[:-1])
    assert split_message("a" * 250, 100) == ["a" * 100, "a" * 100, "a" * 50]  # one long word


@pytest.mark.asyncio
async def test_the_final_edit_waits_out_a_rate_limit_that_came_just_before_it() -> None:
    clock, channel, reply = paced_reply(faults=[rate_limited(5.0)])
    reply.append("a")
    await clock.advance(0.1)
    reply.append("b")
    await clock.advance(1.0)  # the edit at t=1.0 is refused for 5 s
    await finish(clock, reply)
    assert channel.visible() == ["ab"]
    assert channel.calls[-1].at >= 6.0


@pytest.mark.asyncio
async def test_the_indicator_never_pushes_a_message_past_the_limit() -> None:
    # The channel asserts that every text fits.
    clock, channel, reply = paced_reply(interval=0.1, indicator=" ▌", max_chars=50)
    await stream(reply, clock, ["x" * 7] * 30, gap=0.2)
    await finish(clock, reply)
    assert "".join(channel.visible()) == "x" * 210


@pytest.mark.asyncio
async def test_try_acquire_takes_only_a_free_call() -> None:
    clock = FakeClock()
    budget = RateBudget(2, 1.0, clock)
    assert await budget.try_acquire() and await budget.try_acquire()
    assert not await budget.try_acquire()  # the window is full
    clock.now = 1.0
    assert await budget.try_acquire()


@pytest.mark.asyncio
async def test_next_slot_is_when_the_oldest_grant_leaves_a_full_window() -> None:
    clock = FakeClock()
    budget = RateBudget(2, 1.0, clock)
    assert budget.next_slot_at() <= clock.now  # room now
    assert await budget.try_acquire()
    clock.now = 0.25
    assert await budget.try_acquire()
    assert budget.next_slot_at() == 1.0  # full: the grant at 0.0 leaves the window at 1.0
    clock.now = 1.0
    assert await budget.try_acquire()
    assert budget.next_slot_at() == 1.25


@pytest.mark.asyncio
async def test_typing_shows_until_the_first_message_and_yields_to_answers() -> None:
    clock, _, reply = paced_reply(interval=0)
    budget = RateBudget(1, 10.0, clock)
    typed: list[float] = []

    async def show_typing() -> None:
        typed.append(clock.now)

    async with typing_until_first_message(reply, show_typing, budget, every_s=0.01):
        await asyncio.sleep(0.05)  # real time: the indicator refreshes every 10 ms
        assert typed == [0.0]  # once: the budget had one free call in its window
        reply.append("Hi")
        await asyncio.wait_for(reply.first_sent.wait(), 1)
        count = len(typed)
        await asyncio.sleep(0.03)
        assert len(typed) == count  # stopped once the answer showed
        await reply.finish()


# --- what people see: markup cleaned (core.answer_markup) --------------------------------------


@pytest.mark.asyncio
async def test_shown_text_is_cleaned_while_the_raw_text_stays_for_storage() -> None:
    clock, channel, reply = paced_reply(indicator=" ▌")
    raw = (
        'Foxes【4:0†source】 run [[1]](https://a.example "A") fast.\n'
        "[f.csv](sandbox:/mnt/data/f.csv)"
    )
    await stream(reply, clock, [raw[i : i + 3] for i in range(0, len(raw), 3)], gap=0.4)
    await finish(clock, reply)

    assert reply.text == raw
    assert len(channel.calls) >= 5  # streamed: many states seen
    for call in channel.calls:
        assert not any(mark in call.text for mark in ("【", "†", "[[", "sandbox:")), call.text
    assert channel.visible() == [
        "Foxes run [1] fast.\nf.csv (file in the GPT's sandbox, not downloadable here)\n\n"
        "Sources:\n[1] A: https://a.example"
    ]


@pytest.mark.asyncio
async def test_a_resumed_answer_is_shown_cleaned() -> None:
    clock, channel, reply = paced_reply()
    ref = await channel.send("Foxes【4:0", final=False)
    reply.resume([ref], "Foxes【4:0†source】 run [[1]](https://a.example)")
    await finish(clock, reply, error_line="cut")
    assert channel.visible() == ["Foxes run [1]\n\nSources:\n[1] https://a.example\n\ncut"]
