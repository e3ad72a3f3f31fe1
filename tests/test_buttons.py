"""Stop and Retry, written once in the core: the buttons a reply carries, a press through
`Commands.press`, the upstream connection a Stop closes, and what a Retry stores and sends on.
Real SQLite file, real HTTP to the fake GPTs endpoint; a recording channel stands in for a
platform (the adapters' own tests press real buttons through the real client libraries)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import pytest_asyncio

from core import commands, i18n
from core.app import App, open_app
from core.buttons import Button, parse_press, retry_button, stop_button
from core.commands import Context, Reply, Retry
from core.config import parse_config
from core.conversation import AnswerOutcome
from core.history import CUT_MARK
from core.streaming import StreamingReply
from core.turns import Author, Scope, Turn
from fakes.clock import FakeClock
from fakes.gpts import Fail, FakeGpts, Gate
from fakes.gpts import Reply as GptReply
from fakes.recording import RecordingChannel
from tests.helpers import alternating

ANN = Author("1", "Ann")
BOB = Author("2", "Bob")
ADMIN = Author("9", "Admin", is_admin=True)
GROUP = Scope("test", "group")
WAIT_S = 5.0
STOPPED = i18n.STOPPED("en")


@dataclass
class Bot:
    app: App
    fake: FakeGpts
    runner: commands.Commands

    def ask(
        self, text: str, author: Author = ANN
    ) -> tuple[RecordingChannel, asyncio.Task[AnswerOutcome]]:
        """Start a turn in GROUP; the channel shows it, the task ends with it."""
        channel = RecordingChannel(FakeClock())
        reply = StreamingReply(channel, edit_interval_s=0)
        turn = Turn(GROUP, author, text, is_private=False, message_id=f"m-{text}")
        return channel, asyncio.create_task(self.app.service.answer(turn, reply))

    async def press(self, data: str, author: Author) -> Reply | Retry:
        context = Context(GROUP, author, is_private=False, language="en")
        return await self.runner.press(context, data)

    async def retried(self, retry: Retry) -> RecordingChannel:
        channel = RecordingChannel(FakeClock())
        reply = StreamingReply(channel, edit_interval_s=0)
        await self.app.service.retry(retry.answer_id, retry.turn, reply)
        return channel

    async def stored(self) -> list[tuple[str, str, str]]:
        conversation = await self.app.repo.current_conversation(GROUP)
        records = await self.app.repo.history(conversation, limit=100)
        return [(r.role, r.content, r.status) for r in records]


@pytest_asyncio.fixture
async def bot(fake_gpts: FakeGpts, tmp_path: Path) -> AsyncIterator[Bot]:
    config = parse_config(
        {
            "gpts": {
                "base_url": fake_gpts.base_url,
                "default_gpt": "g-B3hgivKK9",
                "max_retries": 0,
            },
            "storage": {"url": f"sqlite+aiosqlite:///{tmp_path / 'bot.db'}"},
            "access": {"owners": ["test:42"]},
        },
        {},
    )
    async with open_app(config) as app:
        app.service.reraise_unexpected = True
        yield Bot(app, fake_gpts, commands.Commands(app.service))


async def shown(channel: RecordingChannel, text: str) -> None:
    """Wait until the channel's last call shows `text`."""
    async with asyncio.timeout(WAIT_S):
        await channel.wait_until(lambda: bool(channel.calls) and channel.calls[-1].text == text)


def answer_id_of(channel: RecordingChannel) -> int:
    (button,) = channel.calls[-1].buttons
    pressed = parse_press(button.data)
    assert pressed is not None
    return pressed.answer_id


def test_button_data_is_read_back_and_fits_both_platforms() -> None:
    big = 2**63 - 1
    for button in (stop_button(big), retry_button(big)):
        assert len(button.data.encode()) <= 64  # Telegram's callback data; Discord allows 100
        pressed = parse_press(button.data)
        assert pressed is not None and (pressed.action, pressed.answer_id) == (button.action, big)
    for foreign in (None, "", "stop", "stop:", "stop:x", "pause:3", "stop:٣", "retry:" + "9" * 70):
        assert parse_press(foreign) is None
    assert Button("stop", i18n.STOP_BUTTON, "7").data == "stop:7"


@pytest.mark.asyncio
async def test_stop_closes_the_upstream_connection_and_keeps_the_text(bot: Bot, gate: Gate) -> None:
    channel, answering = bot.ask("tell me a long story")
    gate.send("Once upon a time")
    await shown(channel, "Once upon a time")
    streaming = channel.calls[-1]
    assert not streaming.final and [b.action for b in streaming.buttons] == ["stop"]
    answer_id = answer_id_of(channel)

    assert await bot.press(f"stop:{answer_id}", ANN) == Reply("", private=True)
    request = bot.fake.requests[-1]
    await asyncio.wait_for(request.disconnected.wait(), WAIT_S)
    outcome = await asyncio.wait_for(answering, WAIT_S)

    assert outcome.status == "stopped"
    last = channel.calls[-1]
    assert last.final and last.buttons == ()  # the final edit takes the Stop button away
    assert channel.visible() == [f"Once upon a time\n\n{STOPPED}"]
    assert (await bot.stored())[-1] == ("assistant", "Once upon a time", "stopped")
    assert await bot.press(f"stop:{answer_id}", ANN) == Reply(i18n.ANSWER_ENDED("en"), private=True)
    # The next turn sends the stopped answer on, marked as cut.
    _, answering = bot.ask("go on")
    await answering
    assert bot.fake.requests[-1].messages[-2:] == [
        {"role": "assistant", "content": "Once upon a time" + CUT_MARK},
        {"role": "user", "content": "Ann: go on"},
    ]


@pytest.mark.asyncio
async def test_only_the_asker_or_an_admin_may_stop(bot: Bot, gate: Gate) -> None:
    channel, answering = bot.ask("count to three")
    gate.send("one")
    await shown(channel, "one")
    answer_id = answer_id_of(channel)

    refused = await bot.press(f"stop:{answer_id}", BOB)
    assert refused == Reply(i18n.NOT_YOURS_TO_STOP("en"), private=True)
    gate.send(" two")
    gate.finish()
    assert (await answering).status == "complete"  # the stream went on
    assert not bot.fake.requests[-1].disconnected.is_set()
    assert channel.visible() == ["one two"]
    assert [b.action for b in channel.calls[-1].buttons] == ["retry"]

    gate = Gate()
    bot.fake.enqueue(gate)
    channel, answering = bot.ask("again")
    gate.send("partial")
    await shown(channel, "partial")
    assert await bot.press(f"stop:{answer_id_of(channel)}", ADMIN) == Reply("", private=True)
    assert (await answering).status == "stopped"


@pytest.mark.asyncio
async def test_retry_asks_again_and_history_keeps_only_the_new_answer(bot: Bot) -> None:
    bot.fake.enqueue(GptReply("first try"))
    channel, answering = bot.ask("pick a number")
    await answering
    first_id = answer_id_of(channel)
    assert channel.calls[-1].final

    assert await bot.press(f"retry:{first_id}", BOB) == Reply(
        i18n.NOT_YOURS_TO_RETRY("en"), private=True
    )
    retry = await bot.press(f"retry:{first_id}", ANN)
    assert isinstance(retry, Retry) and retry.answer_id == first_id
    assert retry.turn.text == "pick a number" and retry.turn.author.id == ANN.id
    assert retry.question_message_ids == ("m-pick a number",)
    bot.fake.enqueue(GptReply("second try"))
    retried = await bot.retried(retry)

    assert retried.visible() == ["second try"]  # a new message
    assert [b.action for b in retried.calls[-1].buttons] == ["retry"]
    assert bot.fake.requests[-1].messages == [{"role": "user", "content": "Ann: pick a number"}]
    assert await bot.stored() == [
        ("user", "pick a number", "complete"),
        ("assistant", "first try", "superseded"),
        ("assistant", "second try", "complete"),
    ]
    # Pressed again, the old button says so; the new one works.
    assert await bot.press(f"retry:{first_id}", ANN) == Reply(i18n.CANNOT_RETRY("en"), private=True)
    _, answering = bot.ask("and now?")
    await answering
    assert bot.fake.requests[-1].messages == alternating(
        "Ann: pick a number", "second try", "Ann: and now?"
    )


@pytest.mark.asyncio
async def test_retry_of_an_error_and_of_an_older_answer(bot: Bot) -> None:
    bot.fake.enqueue(GptReply("about cats"))
    first, answering = bot.ask("cats?")
    await answering
    bot.fake.enqueue(Fail(500))
    failed, answering = bot.ask("dogs?")
    assert (await answering).status == "error"
    assert [b.action for b in failed.calls[-1].buttons] == ["retry"]  # on the error line too

    retry = await bot.press(f"retry:{answer_id_of(failed)}", ADMIN)  # an admin may retry
    assert isinstance(retry, Retry)
    await bot.retried(retry)
    assert bot.fake.requests[-1].messages == alternating("Ann: cats?", "about cats", "Ann: dogs?")
    # An older answer is asked again with the history that came before its question.
    retry = await bot.press(f"retry:{answer_id_of(first)}", ANN)
    assert isinstance(retry, Retry)
    bot.fake.enqueue(GptReply("cats, again"))
    await bot.retried(retry)
    assert bot.fake.requests[-1].messages == [{"role": "user", "content": "Ann: cats?"}]
    _, answering = bot.ask("so?")
    await answering
    assert bot.fake.requests[-1].messages == alternating(
        "Ann: cats?", "cats, again", "Ann: dogs?", "echo: Ann: dogs?", "Ann: so?"
    )


@pytest.mark.asyncio
async def test_a_retry_after_reset_or_a_second_time_is_refused_in_its_message(bot: Bot) -> None:
    channel, answering = bot.ask("hello")
    await answering
    retry = await bot.press(f"retry:{answer_id_of(channel)}", ANN)
    assert isinstance(retry, Retry)
    await bot.retried(retry)
    # The same Retry run twice (two presses that both passed the check): the second says so.
    again = await bot.retried(retry)
    assert again.visible() == [i18n.CANNOT_RETRY("en")]
    assert len(bot.fake.requests) == 2

    channel, answering = bot.ask("hi again")
    await answering
    await bot.app.service.reset(GROUP)
    refused = await bot.press(f"retry:{answer_id_of(channel)}", ANN)
    assert refused == Reply(i18n.CANNOT_RETRY("en"), private=True)
    elsewhere = Context(Scope("test", "other"), ANN, is_private=False, language="en")
    assert await bot.runner.press(elsewhere, f"retry:{answer_id_of(channel)}") == refused
    assert await bot.press("retry:999999", ANN) == refused
    assert await bot.press("nonsense", ANN) == refused


@pytest.mark.asyncio
async def test_the_retry_command_asks_the_latest_question_again(bot: Bot) -> None:
    context = Context(GROUP, ANN, is_private=False, language="en")
    retry_command = commands.find("retry")
    assert retry_command is not None
    nothing = await bot.runner.run(context, retry_command)
    assert nothing == Reply(i18n.NOTHING_TO_RETRY("en"), private=True)

    _, answering = bot.ask("first")
    await answering
    _, answering = bot.ask("second")
    await answering
    retry = await bot.runner.run(context, retry_command)
    assert isinstance(retry, Retry) and retry.turn.text == "second"
    await bot.retried(retry)
    again = await bot.runner.run(context, retry_command)  # the newest answer is the retried one
    assert isinstance(again, Retry) and again.turn.text == "second"
    bob = Context(GROUP, BOB, is_private=False, language="en")
    assert await bot.runner.run(bob, retry_command) == Reply(
        i18n.NOT_YOURS_TO_RETRY("en"), private=True
    )


@pytest.mark.asyncio
async def test_buttons_ride_on_the_calls_the_reply_makes_anyway() -> None:
    """The same stream with and without buttons makes the same calls at the same times: the
    Stop button rides on the sends and edits, the Retry button on the final edit."""

    async def run(buttons: bool) -> list[tuple[float, str, str, bool]]:
        clock = FakeClock()
        channel = RecordingChannel(clock, max_chars=60)
        reply = StreamingReply(channel, edit_interval_s=1.0, clock=clock, indicator=" ▌")
        if buttons:
            reply.set_buttons((stop_button(7),))
        for index in range(40):
            reply.append(f"word{index} ")
            await clock.advance(0.1)
        finished = asyncio.ensure_future(reply.finish(None, (retry_button(7),) if buttons else ()))
        await clock.run_until(finished)
        if buttons:
            # Stop under the message being written; Retry on the last one's final edit; none on
            # a message that has become final before it.
            *earlier, last = channel.calls
            for call in earlier:
                assert [b.action for b in call.buttons] == ([] if call.final else ["stop"]), call
            assert last.final and [b.action for b in last.buttons] == ["retry"]
        return [(call.at, call.kind, call.text, call.final) for call in channel.calls]

    with_buttons, without = await run(True), await run(False)
    assert with_buttons == without
    assert len({call[2] for call in with_buttons}) > 3  # streamed over several messages
