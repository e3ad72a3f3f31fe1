"""Another process holds SQLite's write lock past the busy timeout: writes are tried again for a
bounded time, nothing is lost silently, and no log line carries what a user wrote."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, closing, contextmanager
from pathlib import Path

import pytest

from core.app import App, open_app
from core.config import Config, parse_config
from core.conversation import AnswerOutcome
from core.i18n import ANSWER_NOT_SAVED, STORAGE_BUSY
from core.streaming import StreamingReply
from core.turns import Author, Scope, Turn
from fakes.clock import FakeClock
from fakes.gpts import FakeGpts, Gate
from fakes.recording import RecordingChannel
from storage import NewMessage, Repository, ScopeKey, StorageBusy
from tests.gptsbot_process import Bot, TelegramChat, environment, wait_for, write_config

SECRET = "my-secret-question-7431"
DM = Scope("test", "dm")
ALICE = Author("1", "Alice")


@contextmanager
def write_lock(db: Path) -> Iterator[sqlite3.Connection]:
    """Another connection holding the database's write lock until the block ends."""
    with closing(sqlite3.connect(db, isolation_level=None)) as connection:
        connection.execute("BEGIN IMMEDIATE")
        try:
            yield connection
        finally:
            connection.execute("ROLLBACK")


@pytest.fixture
def logs(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    """The test's log from INFO up; once the test is over, no line of it may carry SECRET."""
    caplog.set_level(logging.INFO)
    yield caplog
    assert SECRET not in caplog.text


def config_for(fake: FakeGpts, db: Path, lock_retry_s: float) -> Config:
    return parse_config(
        {
            "gpts": {"base_url": fake.base_url, "default_gpt": "g-B3hgivKK9", "max_retries": 0},
            "storage": {
                "url": f"sqlite+aiosqlite:///{db}",
                "busy_timeout_s": 0.05,
                "lock_retry_s": lock_retry_s,
                "save_interval_s": 0.05,
            },
        },
        {"GPTS_API_KEY": "k"},
    )


def start_answer(app: App, text: str) -> tuple[RecordingChannel, asyncio.Task[AnswerOutcome]]:
    """Alice asks `text` in her DM; the answer runs as a task and shows in the channel."""
    channel = RecordingChannel(FakeClock())
    turn = Turn(DM, ALICE, text, is_private=True)
    reply = StreamingReply(channel, edit_interval_s=0)
    return channel, asyncio.create_task(app.service.answer(turn, reply))


@asynccontextmanager
async def answering(
    fake_gpts: FakeGpts, gate: Gate, db: Path, lock_retry_s: float
) -> AsyncIterator[tuple[App, RecordingChannel, asyncio.Task[AnswerOutcome]]]:
    """The bot on `db` answering Alice's "question": SECRET has arrived, the rest is `gate`'s."""
    async with open_app(config_for(fake_gpts, db, lock_retry_s)) as app:
        channel, answer = start_answer(app, "question")
        gate.send(SECRET)
        yield app, channel, answer


@pytest.mark.asyncio
async def test_a_write_waits_out_a_lock_held_past_the_busy_timeout(
    db: Path, logs: pytest.LogCaptureFixture
) -> None:
    url = f"sqlite+aiosqlite:///{db}"
    async with await Repository.open(url, busy_timeout_s=0.05, lock_retry_s=10) as repo:
        await repo.upgrade()
        conversation = await repo.current_conversation(ScopeKey("test", "c"))
        with write_lock(db):
            write = asyncio.create_task(repo.add_message(conversation, NewMessage("user", SECRET)))
            await asyncio.sleep(0.5)  # ten busy timeouts
            assert not write.done()
        await asyncio.wait_for(write, 5)
        [stored] = await repo.history(conversation, limit=5)
        assert stored.content == SECRET
    assert "the database is locked by another connection" in logs.text


@pytest.mark.asyncio
async def test_a_lock_held_too_long_raises_storage_busy_without_the_text(db: Path) -> None:
    url = f"sqlite+aiosqlite:///{db}"
    async with await Repository.open(url, busy_timeout_s=0.05, lock_retry_s=0.3) as repo:
        await repo.upgrade()
        conversation = await repo.current_conversation(ScopeKey("test", "c"))
        with write_lock(db), pytest.raises(StorageBusy) as raised:
            await repo.add_message(conversation, NewMessage("user", SECRET))
        assert await repo.history(conversation, limit=5) == []
    # The SQL error under it names the statement, never its values (hide_parameters).
    cause = raised.value.__cause__
    assert cause is not None and "parameters hidden" in str(cause)
    assert SECRET not in str(raised.value) + str(cause)


@pytest.mark.asyncio
async def test_a_turn_locked_out_says_so_in_one_line_and_the_next_works(
    fake_gpts: FakeGpts, db: Path, logs: pytest.LogCaptureFixture
) -> None:
    async with open_app(config_for(fake_gpts, db, lock_retry_s=0.3)) as app:
        with write_lock(db):
            channel, answer = start_answer(app, SECRET)
            outcome = await answer
        assert channel.visible() == [STORAGE_BUSY("en")]
        assert isinstance(outcome.error, StorageBusy)
        assert fake_gpts.requests == []  # nothing asked that could not be stored
        later, answer = start_answer(app, "again")
        await answer
        assert later.visible() == ["echo: again"]
    assert "a message in test:dm was not stored: the database stayed locked" in logs.text


@pytest.mark.asyncio
async def test_an_answer_finished_under_a_lock_is_stored_when_it_lifts(
    fake_gpts: FakeGpts, gate: Gate, db: Path, logs: pytest.LogCaptureFixture
) -> None:
    async with answering(fake_gpts, gate, db, lock_retry_s=10) as (app, channel, answer):
        await fake_gpts.wait_requests(1)
        with write_lock(db):
            gate.finish()
            await asyncio.sleep(0.5)
            assert not answer.done()  # shown, and waiting to be stored
            assert channel.visible() == [SECRET]
        outcome = await asyncio.wait_for(answer, 5)
        assert outcome.status == "complete"
        conversation = await app.repo.current_conversation(DM)
        stored = await app.repo.history(conversation, limit=5)
        assert [(r.content, r.status) for r in stored] == [
            ("question", "complete"),
            (SECRET, "complete"),
        ]


@pytest.mark.asyncio
async def test_an_answer_that_cannot_be_stored_says_so_and_keeps_its_last_save(
    fake_gpts: FakeGpts, gate: Gate, db: Path, logs: pytest.LogCaptureFixture
) -> None:
    async with answering(fake_gpts, gate, db, lock_retry_s=0.3) as (app, channel, answer):
        conversation = await app.repo.current_conversation(DM)
        for _ in range(100):  # saved while streaming (save_interval_s 0.05)
            stored = await app.repo.history(conversation, limit=5)
            if stored[-1].content == SECRET:
                break
            await asyncio.sleep(0.05)
        with write_lock(db):
            gate.send(" and the end")
            gate.finish()
            await asyncio.wait_for(answer, 5)
        assert channel.visible() == [f"{SECRET} and the end", ANSWER_NOT_SAVED("en")]
        stored = await app.repo.history(conversation, limit=5)
        assert (stored[-1].content, stored[-1].status) == (SECRET, "streaming")
    assert "not stored in full: the database stayed locked" in logs.text


@pytest.mark.asyncio
async def test_two_writers_wait_out_a_lock_and_lose_nothing(
    fake_gpts: FakeGpts, db: Path, tmp_path: Path
) -> None:
    """`run` (Telegram) and `chat` write to one database while a third connection holds its write
    lock for many busy timeouts: both turns are stored once it lifts, nothing crashes, and no log
    line carries a message."""
    asked_on_telegram, asked_in_chat = "telegram-secret-5521", "terminal-secret-8830"
    async with TelegramChat() as telegram:
        storage = {"busy_timeout_s": 0.1, "lock_retry_s": 30.0}
        env = telegram.environment(tmp_path, fake_gpts.base_url, storage=storage)
        run = await telegram.start_run(env, db)
        with write_lock(db):
            await telegram.ask(asked_on_telegram)
            chat = await Bot.start("chat", env=env, database=db, stdin=True)
            await chat.say(asked_in_chat)
            await wait_for(lambda: "the database is locked" in run.log + chat.log)
            await asyncio.sleep(1.0)  # ten busy timeouts
            assert fake_gpts.requests == []  # nothing goes upstream before it is stored
        await chat.wait_output(f"echo: {asked_in_chat}")
        assert await chat.wait() == 0
        answer = f"echo: {asked_on_telegram}"
        await telegram.wait_shown(lambda shown: shown == [answer])
        assert await run.terminate() == 0
    stored = sorted(run.stored())
    assert stored == sorted(
        [
            ("user", asked_on_telegram, "complete"),
            ("assistant", answer, "complete"),
            ("user", asked_in_chat, "complete"),
            ("assistant", f"echo: {asked_in_chat}", "complete"),
        ]
    )
    logs = run.err.decode() + chat.err.decode()
    assert "the database is locked by another connection" in logs
    assert asked_on_telegram not in logs and asked_in_chat not in logs
    assert "Traceback" not in logs


@pytest.mark.asyncio
async def test_chat_locked_out_says_one_line_and_goes_on(
    fake_gpts: FakeGpts, db: Path, tmp_path: Path
) -> None:
    config = write_config(
        tmp_path, fake_gpts.base_url, storage={"busy_timeout_s": 0.05, "lock_retry_s": 0.3}
    )
    chat = await Bot.start("chat", env=environment(config), database=db, stdin=True)
    await chat.say("/gpt info")  # the database exists and is migrated once this answers
    await wait_for(lambda: "GPT: " in chat.err.decode())
    with write_lock(db):
        await chat.say(SECRET)
        await chat.wait_output(STORAGE_BUSY("en"))
        await chat.say("/reset")
        await wait_for(lambda: chat.err.decode().count(STORAGE_BUSY("en")) == 1)
    await chat.say("again")
    await chat.wait_output("echo: again")
    assert await chat.wait() == 0
    assert chat.out.decode() == f"{STORAGE_BUSY('en')}\necho: again\n"
    assert SECRET not in chat.err.decode() and "Traceback" not in chat.err.decode()
