"""The conversation service end to end: a real database (an SQLite file, and PostgreSQL with
GPTSBOT_TEST_PG_URL set: `db_url`), real HTTP to the fake GPTs endpoint."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import pytest
import pytest_asyncio

from core import commands
from core.app import App, open_app
from core.config import parse_config
from core.conversation import REFUSED_KEPT_CHARS, AnswerOutcome
from core.errors import BadGptName
from core.streaming import StreamingReply
from core.turns import Author, Scope, Turn
from fakes.clock import FakeClock
from fakes.gpts import Fail, FakeGpts, Gate, Hang, Reply
from fakes.recording import RecordingChannel
from tests.helpers import alternating

ALICE = Author("1", "Alice")
BOB = Author("2", "Bob")
ADMIN = Author("9", "Admin", is_admin=True)
DM = Scope("test", "dm-alice")
GROUP = Scope("test", "group")
THREAD = Scope("test", "group", "thread-7")
GPT = "g-B3hgivKK9"
API_KEY = "sk-test-secret-key-123456"


def make_config(fake: FakeGpts, db_url: str, **gpts: Any) -> Any:
    return parse_config(
        {
            "gpts": {
                "base_url": fake.base_url,
                "default_gpt": GPT,
                "retry_backoff_s": 0.01,
                "max_retries": 1,
                **gpts,
            },
            "storage": {"url": db_url},
        },
        {"GPTS_API_KEY": API_KEY},
    )


@dataclass
class Bot:
    app: App
    fake: FakeGpts

    async def say(
        self, text: str, *, scope: Scope = DM, author: Author = ALICE
    ) -> RecordingChannel:
        channel = RecordingChannel(FakeClock())
        reply = StreamingReply(channel, edit_interval_s=0)
        turn = Turn(scope, author, text, is_private=scope == DM, message_id="m1")
        await self.app.service.answer(turn, reply)
        return channel


@asynccontextmanager
async def bot_on(fake: FakeGpts, db_url: str, **gpts: Any) -> AsyncIterator[Bot]:
    """The app on the database at `db_url`, its [gpts] table changed by `gpts`, to talk to."""
    async with open_app(make_config(fake, db_url, **gpts)) as app:
        yield Bot(app, fake)


@pytest_asyncio.fixture
async def bot(fake_gpts: FakeGpts, db_url: str) -> AsyncIterator[Bot]:
    async with bot_on(fake_gpts, db_url) as bot:
        bot.app.service.reraise_unexpected = True
        yield bot


async def stored(app: App, scope: Scope) -> list[tuple[str, str, str]]:
    conversation = await app.repo.current_conversation(scope)
    records = await app.repo.history(conversation, limit=1000)
    return [(r.role, r.content, r.status) for r in records]


@pytest.mark.asyncio
async def test_a_turn_streams_and_stores_both_messages(bot: Bot) -> None:
    bot.fake.enqueue(Reply("Hello, Alice!", chunk_chars=3, usage={"prompt_tokens": 5,
                                                                  "completion_tokens": 4,
                                                                  "total_tokens": 9}))  # fmt: skip
    channel = await bot.say("hi")
    assert channel.visible() == ["Hello, Alice!"]
    request = bot.fake.requests[0]
    assert request.model == f"gpt-4-gizmo-{GPT}"
    assert request.headers["Authorization"] == f"Bearer {API_KEY}"
    assert request.messages == [{"role": "user", "content": "hi"}]
    assert await stored(bot.app, DM) == [
        ("user", "hi", "complete"),
        ("assistant", "Hello, Alice!", "complete"),
    ]


@pytest.mark.asyncio
@pytest.mark.parametrize(("edit_interval_s", "read_interval_s"), [(0.0, 0.0), (3.0, 1.0)])
async def test_the_stream_is_read_no_more_often_than_the_reply_shows_it(
    fake_gpts: FakeGpts,
    db_url: str,
    monkeypatch: pytest.MonkeyPatch,
    edit_interval_s: float,
    read_interval_s: float,
) -> None:
    """The terminal shows each piece as it comes; a chat message changes once a second at most
    (or less often), so reading its stream more often would only cost CPU."""
    async with bot_on(fake_gpts, db_url, read_interval_s=1.0) as bot:
        client = bot.app.service.client
        asked: list[float | None] = []
        stream_chat = client.stream_chat

        def recording(*args: Any, **kwargs: Any) -> Any:
            asked.append(kwargs.get("read_interval_s"))
            return stream_chat(*args, **kwargs)

        monkeypatch.setattr(client, "stream_chat", recording)
        channel = RecordingChannel(FakeClock())
        reply = StreamingReply(channel, edit_interval_s=edit_interval_s)
        await bot.app.service.answer(Turn(DM, ALICE, "hi", is_private=True), reply)
    assert asked == [read_interval_s]
    assert channel.visible() == ["echo: hi"]


@pytest.mark.asyncio
async def test_nul_characters_are_stored_as_replacement_characters(bot: Bot) -> None:
    """PostgreSQL's text takes no NUL: a relay's "\\u0000" or a NUL typed into the terminal
    would lose the turn there. Both are kept as U+FFFD, on every database."""
    bot.fake.enqueue(Reply("an\x00swer", chunk_chars=3))
    channel = await bot.say("ques\x00tion")
    assert channel.visible() == ["an\ufffdswer"]
    assert await stored(bot.app, DM) == [
        ("user", "ques\ufffdtion", "complete"),
        ("assistant", "an\ufffdswer", "complete"),
    ]


@pytest.mark.asyncio
async def test_history_goes_upstream_within_both_bounds(fake_gpts: FakeGpts, db_url: str) -> None:
    async with bot_on(fake_gpts, db_url, history_messages=4, history_chars=60) as bot:
        for i in range(4):
            await bot.say(f"question {i}")  # answered "echo: question {i}"
        await bot.say("x" * 30)
    last = fake_gpts.requests[-1].messages
    # 4 messages fit the count, but only the newest that fit 60 characters with the new one.
    assert last == alternating("question 3", "echo: question 3", "x" * 30)


@pytest.mark.asyncio
async def test_shared_chats_tell_the_gpt_who_speaks(bot: Bot) -> None:
    await bot.say("I like tea", scope=GROUP, author=ALICE)
    await bot.say("And I coffee", scope=GROUP, author=BOB)
    assert bot.fake.requests[-1].messages == alternating(
        "Alice: I like tea", "echo: Alice: I like tea", "Bob: And I coffee"
    )


@pytest.mark.asyncio
async def test_upstream_failure_keeps_the_user_message_and_says_what_happened(bot: Bot) -> None:
    bot.fake.enqueue(Fail(401, {"error": {"message": f"bad key {API_KEY}", "type": "auth"}}))
    channel = await bot.say("are you there?")
    assert channel.visible() == [
        "⚠️ The GPTs endpoint refused the API key. The bot's operator needs to check it."
    ]
    assert await stored(bot.app, DM) == [
        ("user", "are you there?", "complete"),
        ("assistant", "", "error"),
    ]
    channel = await bot.say("again")  # the next turn still works
    assert channel.visible() == ["echo: again"]
    # The unanswered message stays stored but is never sent upstream: history is pairs.
    assert bot.fake.requests[-1].messages == [{"role": "user", "content": "again"}]


@pytest.mark.asyncio
async def test_a_stream_dropped_mid_answer_keeps_what_arrived(bot: Bot) -> None:
    bot.fake.enqueue(Reply("The first half and the second half", chunk_chars=4, drop_after=3))
    channel = await bot.say("tell me")
    (shown,) = channel.visible()
    assert shown.startswith("The first ha\n\n")
    assert shown.endswith("⚠️ The answer was cut off by the GPTs endpoint. Try again.")
    assert len(bot.fake.requests) == 1  # never retried once text was shown
    assert (await stored(bot.app, DM))[-1] == ("assistant", "The first ha", "partial")


@pytest.mark.asyncio
async def test_a_stream_ending_without_finish_or_done_is_stored_as_cut(bot: Bot) -> None:
    # A clean end of the body and a closed connection, but neither end marker: a cut answer.
    bot.fake.enqueue(Reply("The first half and the second half", chunk_chars=4, close_after=3))
    channel = await bot.say("tell me", scope=GROUP)
    assert channel.visible() == [
        "The first ha\n\n⚠️ The answer was cut off by the GPTs endpoint. Try again."
    ]
    assert (await stored(bot.app, GROUP))[-1] == ("assistant", "The first ha", "partial")
    assert len(bot.fake.requests) == 1
    # [DONE] without a finish_reason still ends a complete answer.
    bot.fake.enqueue(Reply("All of it.", finish_reason=None))
    assert (await bot.say("again", scope=GROUP)).visible() == ["All of it."]
    assert (await stored(bot.app, GROUP))[-1] == ("assistant", "All of it.", "complete")


@pytest.mark.asyncio
async def test_reset_empties_the_history_sent_upstream(bot: Bot) -> None:
    await bot.say("remember 42")
    await bot.app.service.reset(DM)
    await bot.say("what number?")
    assert bot.fake.requests[-1].messages == [{"role": "user", "content": "what number?"}]


@pytest.mark.asyncio
async def test_bindings_fall_back_from_thread_to_parent_to_default(bot: Bot) -> None:
    service = bot.app.service
    assert (await service.binding(THREAD)).gpt_id == GPT  # type: ignore[union-attr]
    parent_gpt = "g-0123456789abcdef0123456789abcdef"
    await service.bind(GROUP, f"https://chatgpt.com/g/{parent_gpt}-x", ADMIN)
    info = await service.binding(THREAD)
    assert info is not None and info.gpt_id == parent_gpt and info.inherited
    assert info.bound_by_name == "Admin" and info.bound_at is not None
    await service.bind(THREAD, "gpt-4-gizmo-g-AAAAAAAAA", ADMIN)
    await bot.say("hello", scope=THREAD)
    assert bot.fake.requests[-1].model == "gpt-4-gizmo-g-AAAAAAAAA"
    assert await service.unbind(THREAD)
    await bot.say("hello", scope=THREAD)
    assert bot.fake.requests[-1].model == f"gpt-4-gizmo-{parent_gpt}"


@pytest.mark.asyncio
async def test_bad_names_change_nothing(bot: Bot) -> None:
    service = bot.app.service
    with pytest.raises(BadGptName):
        await service.bind(GROUP, "https://example.com/g/g-AAAAAAAAA", ADMIN)
    assert (await service.binding(GROUP)).is_default  # type: ignore[union-attr]


@pytest.mark.asyncio
async def test_no_binding_and_no_default_says_how_to_bind(fake_gpts: FakeGpts, db_url: str) -> None:
    async with bot_on(fake_gpts, db_url, default_gpt=None) as bot:
        channel = await bot.say("hello")
        assert channel.visible() == [
            "⚠️ No GPT answers here yet. An admin can bind one with /gpt bind <GPT link or id>."
        ]
        assert (await stored(bot.app, DM))[0] == ("user", "hello", "complete")
    assert fake_gpts.requests == []


@pytest.mark.asyncio
async def test_turns_in_one_scope_run_in_order_and_other_scopes_in_parallel(bot: Bot) -> None:
    first, other = Gate(), Gate()
    bot.fake.enqueue(first, other)
    one = asyncio.create_task(bot.say("first", scope=DM))
    await bot.fake.wait_requests(1)
    two = asyncio.create_task(bot.say("second", scope=DM))
    three = asyncio.create_task(bot.say("elsewhere", scope=GROUP))
    await bot.fake.wait_requests(2)  # the other scope is not held up by the open turn
    assert bot.fake.requests[1].messages[-1]["content"] == "Alice: elsewhere"
    other.send("ok")
    other.finish()
    await three
    assert not two.done()
    first.send("done")
    first.finish()
    await one
    await two
    # The second turn waited, so it saw the first one's answer in its history.
    assert bot.fake.requests[2].messages[-3:] == alternating("first", "done", "second")


async def until(condition: Callable[[], bool], within_s: float = 5.0) -> None:
    """Poll what a fake channel shows (it has no event to wait on) until `condition` holds."""
    async with asyncio.timeout(within_s):
        while not condition():  # noqa: ASYNC110
            await asyncio.sleep(0.01)


def start_turn(
    bot: Bot, text: str, scope: Scope = DM, indicator: str = ""
) -> tuple[RecordingChannel, asyncio.Task[AnswerOutcome]]:
    channel = RecordingChannel(FakeClock())
    reply = StreamingReply(channel, edit_interval_s=0, indicator=indicator)
    turn = Turn(scope, ALICE, text, is_private=scope == DM)
    return channel, asyncio.create_task(bot.app.service.answer(turn, reply))


WAITING = "⏳ Waiting for the answer above…"


@pytest.mark.asyncio
async def test_a_queued_turn_shows_it_is_waiting_until_its_turn_starts(bot: Bot) -> None:
    first, second = Gate(), Gate()
    bot.fake.enqueue(first, second)
    one, one_task = start_turn(bot, "first")
    await bot.fake.wait_requests(1)
    first.send("Working on it")
    await until(lambda: one.visible() == ["Working on it"])
    two, two_task = start_turn(bot, "second", indicator=" ▌")
    await until(lambda: two.visible() == [WAITING])
    assert len(bot.fake.requests) == 1  # it waits for the scope, not for the GPT
    first.finish()
    await one_task
    # Its turn started: the waiting line gives way to the streaming indicator, then the answer.
    await until(lambda: two.visible() == ["▌"])
    await bot.fake.wait_requests(2)
    second.send("Second answer")
    await until(lambda: two.visible() == ["Second answer ▌"])
    second.finish()
    assert (await two_task).status == "complete"
    assert two.visible() == ["Second answer"]
    assert [call.kind for call in two.calls] == ["send", "edit", "edit", "edit"]
    # The first turn never waited: not one call more than its answer needed.
    assert all("⏳" not in call.text for call in one.calls)


@pytest.mark.asyncio
async def test_a_turn_without_a_wait_makes_no_waiting_call(bot: Bot) -> None:
    bot.fake.enqueue(Reply("Hi!", chunk_chars=10))
    channel = await bot.say("hello")
    assert [(call.kind, call.text, call.final) for call in channel.calls] == [("send", "Hi!", True)]


@pytest.mark.asyncio
async def test_reading_commands_answer_at_once_while_a_turn_streams(bot: Bot) -> None:
    gate = Gate()
    bot.fake.enqueue(gate)
    _, task = start_turn(bot, "long one", scope=GROUP)
    await bot.fake.wait_requests(1)
    runner = commands.Commands(bot.app.service)
    context = commands.Context(GROUP, BOB, False, "en", group_id="guild", bot_mention="@bot")
    for name in ("help", "gpt info"):
        command = commands.find(name)
        assert command is not None
        reply = await asyncio.wait_for(runner.run(context, command), 1.0)
        assert isinstance(reply, commands.Reply) and GPT in reply.text
    assert not task.done()
    gate.finish()
    await task


@pytest.mark.asyncio
async def test_shutdown_while_queued_replaces_the_waiting_line(bot: Bot) -> None:
    gate = Gate()
    bot.fake.enqueue(gate)
    _, first = start_turn(bot, "first")
    await bot.fake.wait_requests(1)
    queued, second = start_turn(bot, "second")
    await until(lambda: queued.visible() == [WAITING])
    second.cancel()
    with pytest.raises(asyncio.CancelledError):
        await second
    assert queued.visible() == [
        "⚠️ The bot is restarting; this answer stopped here. Ask again in a moment."
    ]
    gate.finish()
    await first


@pytest.mark.asyncio
async def test_a_hung_turn_is_capped_and_shows_what_arrived(
    fake_gpts: FakeGpts, gate: Gate, db_url: str
) -> None:
    async with bot_on(fake_gpts, db_url, turn_timeout_s=0.5, idle_timeout_s=30.0) as bot:
        channel, task = start_turn(bot, "tell me everything")
        await fake_gpts.wait_requests(1)
        gate.send("The start")
        outcome = await asyncio.wait_for(task, 5)
        assert outcome.status == "partial"
        assert channel.visible() == [
            "The start\n\n⚠️ The answer took longer than 0.5 s and was stopped. Try again."
        ]
        assert (await stored(bot.app, DM))[-1] == ("assistant", "The start", "partial")
        # The scope is free again: the next turn is answered.
        assert (await bot.say("still there?")).visible() == ["echo: still there?"]


@pytest.mark.asyncio
async def test_the_turn_cap_includes_retries(fake_gpts: FakeGpts, db_url: str) -> None:
    config = make_config(
        fake_gpts,
        db_url,
        turn_timeout_s=0.6,
        first_chunk_timeout_s=0.25,
        max_retries=10,
    )
    async with open_app(config) as app:
        fake_gpts.enqueue(*[Hang()] * 10)
        channel = RecordingChannel(FakeClock())
        turn = Turn(DM, ALICE, "你好", is_private=True, language="zh")
        loop = asyncio.get_running_loop()
        started = loop.time()
        outcome = await app.service.answer(turn, StreamingReply(channel, edit_interval_s=0))
        assert loop.time() - started < 2.0
        assert outcome.status == "error"
        assert 2 <= len(fake_gpts.requests) <= 3  # retried, but not ten times
        assert channel.visible() == ["⚠️ 回答超过 0.6 秒，已停止，请重试。"]
        assert (await stored(app, DM))[-1] == ("assistant", "", "error")


@pytest.mark.asyncio
async def test_shutdown_mid_answer_shows_and_stores_what_arrived(bot: Bot) -> None:
    gate = Gate()
    bot.fake.enqueue(gate)
    channel = RecordingChannel(FakeClock())
    reply = StreamingReply(channel, edit_interval_s=0)
    turn = Turn(DM, ALICE, "long story please", is_private=True)
    task = asyncio.create_task(bot.app.service.answer(turn, reply))
    gate.send("Once upon a time")
    await asyncio.wait_for(reply.first_sent.wait(), 5)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert channel.visible() == [
        "Once upon a time\n\n⚠️ The bot is restarting; this answer stopped here. "
        "Ask again in a moment."
    ]
    assert (await stored(bot.app, DM))[-1] == ("assistant", "Once upon a time", "stopped")


@pytest.mark.asyncio
async def test_the_error_line_is_in_the_askers_language(bot: Bot) -> None:
    bot.fake.enqueue(Fail(429, {"error": "slow down"}, headers={"Retry-After": "120"}))
    channel = RecordingChannel(FakeClock())
    reply = StreamingReply(channel, edit_interval_s=0)
    turn = Turn(DM, ALICE, "你好", is_private=True, language="zh")
    await bot.app.service.answer(turn, reply)
    assert channel.visible() == ["⚠️ GPTs 接口限流中，请 120 秒后再试。"]


@pytest.mark.asyncio
async def test_empty_and_enormous_messages_get_a_clear_answer_and_are_kept(
    fake_gpts: FakeGpts, db_url: str
) -> None:
    async with bot_on(fake_gpts, db_url, history_chars=1000) as bot:
        assert (await bot.say("   ")).visible() == [
            "⚠️ Your message is empty: write something for the GPT."
        ]
        enormous = "字" * 5001
        assert (await bot.say(enormous)).visible() == [
            "⚠️ Your message is too long for the GPT (5001 characters; at most 1000). "
            "Shorten it or send it in parts."
        ]
        assert fake_gpts.requests == []
        # Kept as refused (the enormous one cut, with its real length), never sent upstream.
        conversation = await bot.app.repo.current_conversation(DM)
        records = await bot.app.repo.history(conversation, limit=10)
        assert [(r.role, r.content, r.status, r.full_length) for r in records] == [
            ("user", "   ", "refused", None),
            ("user", enormous[:REFUSED_KEPT_CHARS], "refused", 5001),
        ]
