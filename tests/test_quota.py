"""Quotas (core.quota): the windows and limits with injected times, the estimate, and the service
refusing a turn over a limit (stored as refused, nothing upstream) on a real SQLite file, and
/usage's figures and who sees what (core.usage through the command registry)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from core import commands, i18n
from core.app import App, open_app
from core.config import QuotaConfig, parse_config
from core.errors import QuotaReached, user_message
from core.gpts import Usage
from core.quota import Windows, estimate, over_limit
from core.streaming import StreamingReply
from core.tables import Table, aligned
from core.turns import Author, Scope, Turn
from fakes.clock import FakeClock
from fakes.gpts import FakeGpts, Reply
from fakes.recording import RecordingChannel
from storage import QuotaUse

GROUP = Scope("test", "group")
TOPIC = Scope("test", "group", "topic")
DM = Scope("test", "dm-ann")
NOON = datetime(2025, 12, 31, 12, 0, 30, tzinfo=UTC)
ANN = Author("1", "Ann")
BOB = Author("2", "Bob")
ADMIN = Author("9", "Ada", is_admin=True)
OWNER = Author("42", "Olga")  # the bot's owner, in [access] owners


def test_windows_are_utc_day_month_and_the_last_minute() -> None:
    local = NOON.astimezone(timezone_plus(8))  # 20:00:30 in UTC+8, the same instant
    windows = Windows.around(local)
    assert windows.now == NOON
    assert windows.minute_start == NOON - timedelta(seconds=60)
    assert windows.day_start == datetime(2025, 12, 31, tzinfo=UTC)
    assert windows.next_day == datetime(2026, 1, 1, tzinfo=UTC)
    assert windows.month_start == datetime(2025, 12, 1, tzinfo=UTC)


def timezone_plus(hours: int) -> Any:
    from datetime import timezone

    return timezone(timedelta(hours=hours))


def test_the_minute_is_rolling_and_resets_when_its_oldest_turn_is_a_minute_old() -> None:
    limits = QuotaConfig(turns_per_user_per_minute=3)
    windows = Windows.around(NOON)
    assert over_limit(limits, QuotaUse(turns=2), windows) is None
    oldest = NOON - timedelta(seconds=45)
    reached = over_limit(limits, QuotaUse(turns=3, oldest_turn_at=oldest), windows)
    assert isinstance(reached, QuotaReached)
    assert reached.limit == "turns_per_user_per_minute" and reached.value == 3
    assert reached.resets_at == oldest + timedelta(seconds=60)
    assert reached.wait_s == 15
    assert user_message(reached, "en") == (
        "⏳ You reached your limit of messages per minute (3). Try again in 15 s (12:00:45 UTC)."
    )
    assert user_message(reached, "zh") == (
        "⏳ 你已达到每分钟的消息上限（3 条），请 15 秒后再试（UTC 12:00:45）。"
    )
    # 0 means unlimited, whatever was used.
    assert over_limit(QuotaConfig(), QuotaUse(turns=10**6, user_tokens=10**9), windows) is None


def test_daily_tokens_reset_at_utc_midnight_for_the_person_and_the_chat() -> None:
    limits = QuotaConfig(tokens_per_user_per_day=1000, tokens_per_scope_per_day=5000)
    windows = Windows.around(NOON)
    assert over_limit(limits, QuotaUse(user_tokens=999, scope_tokens=4999), windows) is None
    mine = over_limit(limits, QuotaUse(user_tokens=1000), windows)
    assert isinstance(mine, QuotaReached) and mine.limit == "tokens_per_user_per_day"
    assert mine.resets_at == datetime(2026, 1, 1, tzinfo=UTC)
    assert user_message(mine, "en") == (
        "⏳ You reached your limit of 1,000 tokens a day. It resets at 00:00 UTC, in 12 h 0 min."
    )
    chat = over_limit(limits, QuotaUse(user_tokens=10, scope_tokens=7000), windows)
    assert isinstance(chat, QuotaReached) and chat.limit == "tokens_per_scope_per_day"
    assert "This chat reached its limit of 5,000 tokens a day" in user_message(chat, "en")
    late = over_limit(limits, QuotaUse(user_tokens=1000), Windows.around(NOON.replace(hour=23)))
    assert late is not None and "in 1 h 0 min" in user_message(late, "en")


def test_estimate_is_characters_over_four_rounded_up() -> None:
    assert estimate(9, "abcd") == Usage(3, 1, 4)
    assert estimate(0, "") == Usage(0, 0, 0)


def test_tables_align_columns_by_display_width() -> None:
    table = Table(("", "A", "Bbbb"), (("你", "1", "22"), ("xyz", "333", "4")))
    assert aligned(table).splitlines() == [
        "       A  Bbbb",
        "你     1    22",
        "xyz  333     4",
    ]


# --- the service and /usage on a real database ----------------------------------------------


@contextlib.asynccontextmanager
async def running(fake_gpts: FakeGpts, tmp_path: Path, **quota: int) -> AsyncIterator[App]:
    config = parse_config(
        {
            "gpts": {"base_url": fake_gpts.base_url, "default_gpt": "g-B3hgivKK9"},
            "storage": {"url": f"sqlite+aiosqlite:///{tmp_path / 'bot.db'}"},
            "access": {"owners": ["test:42"]},
            "quota": quota,
        },
        {},
    )
    async with open_app(config) as app:
        app.service.reraise_unexpected = True
        yield app


@pytest_asyncio.fixture
async def app(fake_gpts: FakeGpts, tmp_path: Path) -> AsyncIterator[App]:
    async with running(fake_gpts, tmp_path) as app:
        yield app


async def say(app: App, author: Author, text: str, scope: Scope = GROUP) -> list[str]:
    channel = RecordingChannel(FakeClock())
    turn = Turn(scope, author, text, is_private=scope == DM, message_id="m")
    await app.service.answer(turn, StreamingReply(channel, edit_interval_s=0))
    return channel.visible()


async def stored(app: App, scope: Scope) -> list[tuple[str, str, str]]:
    records = await app.repo.history(await app.repo.current_conversation(scope), limit=100)
    return [(r.role, r.content, r.status) for r in records]


@pytest.mark.asyncio
async def test_a_turn_over_the_minute_is_refused_stored_and_not_sent(
    fake_gpts: FakeGpts, tmp_path: Path
) -> None:
    async with running(fake_gpts, tmp_path, turns_per_user_per_minute=2) as app:
        assert await say(app, ANN, "one") == ["echo: Ann: one"]
        assert await say(app, ANN, "two") == ["echo: Ann: two"]
        (line,) = await say(app, ANN, "three")
        assert line.startswith(
            "⏳ You reached your limit of messages per minute (2). Try again in "
        )
        assert len(fake_gpts.requests) == 2
        assert (await stored(app, GROUP))[-1] == ("user", "three", "refused")
        # Someone else, and the owner, still get answers; the owner is never limited.
        assert await say(app, BOB, "hi") == ["echo: Bob: hi"]
        for i in range(3):
            assert await say(app, OWNER, f"o{i}") == [f"echo: Olga: o{i}"]
        # A minute later (the service's clock moved on) Ann may write again.
        app.service.quotas.now = lambda: datetime.now(UTC) + timedelta(seconds=61)
        assert await say(app, ANN, "four") == ["echo: Ann: four"]


@pytest.mark.asyncio
async def test_daily_tokens_count_the_endpoints_figures_or_an_estimate(
    fake_gpts: FakeGpts, tmp_path: Path
) -> None:
    async with running(fake_gpts, tmp_path, tokens_per_user_per_day=40) as app:
        usage = {"prompt_tokens": 10, "completion_tokens": 20, "total_tokens": 30}
        fake_gpts.enqueue(Reply("counted", usage=usage))
        assert await say(app, ANN, "first") == ["counted"]
        # No counts from the endpoint: an estimate, of what was sent and what was answered.
        assert await say(app, ANN, "second") == ["echo: Ann: second"]
        (line,) = await say(app, ANN, "third")
        assert "limit of 40 tokens a day" in line and "00:00 UTC" in line
        assert len(fake_gpts.requests) == 2
        report = await app.repo.usage(
            GROUP,
            ANN.id,
            day_since=Windows.around(datetime.now(UTC)).day_start,
            month_since=Windows.around(datetime.now(UTC)).month_start,
        )
        assert report.own.turns_today == 2 and report.own.estimated
        # Sent: the history ("Ann: first", "counted") and "Ann: second", 28 characters, 7 tokens;
        # answered: "echo: Ann: second", 17 characters, 5 tokens.
        assert report.own.tokens_today == 30 + 7 + 5


async def usage(app: App, author: Author, scope: Scope = GROUP) -> commands.Reply:
    context = commands.Context(scope, author, scope == DM, "en", group_id="g")
    command = commands.find("usage")
    assert command is not None and command.needs_admin_check
    reply = await commands.Commands(app.service).run(context, command, {})
    assert isinstance(reply, commands.Reply) and reply.confidential and reply.private
    return reply


def rows(reply: commands.Reply) -> dict[str, tuple[str, ...]]:
    assert reply.table is not None
    return {row[0]: row[1:] for row in reply.table.rows}


@pytest.mark.asyncio
async def test_usage_shows_members_their_own_admins_the_chat_owners_the_bot(
    app: App, fake_gpts: FakeGpts
) -> None:
    usage_of = {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 1000}
    fake_gpts.enqueue(*[Reply("x", usage=usage_of) for _ in range(5)])
    await say(app, ANN, "a")
    await say(app, ANN, "b", TOPIC)  # a topic of the same chat
    await say(app, BOB, "c")
    await say(app, ANN, "d", DM)
    await say(app, OWNER, "e", Scope("test", "elsewhere"))

    member = await usage(app, BOB)
    assert rows(member) == {"You": ("1", "1,000", "1", "1,000")}
    assert member.text.startswith("📊 Usage today (") and "estimated" not in member.text
    assert member.table is not None and member.table.columns[1:] == (
        "Turns today",
        "Tokens today",
        "Turns this month",
        "Tokens this month",
    )
    admin = await usage(app, ADMIN)
    assert rows(admin) == {
        "You": ("0", "0", "0", "0"),
        "This chat": ("3", "3,000", "3", "3,000"),
        "· Ann": ("2", "2,000", "2", "2,000"),
        "· Bob": ("1", "1,000", "1", "1,000"),
    }
    # In a DM there is no chat to show; everyone is "admin" there, and sees only themselves.
    assert rows(await usage(app, Author("1", "Ann", is_admin=True), DM)) == {
        "You": ("3", "3,000", "3", "3,000")
    }
    owner = await usage(app, OWNER)
    assert list(rows(owner)) == ["You", "This chat", "· Ann", "· Bob", "Whole bot"]
    assert rows(owner)["Whole bot"] == ("5", "5,000", "5", "5,000")
    assert rows(owner)["You"] == ("1", "1,000", "1", "1,000")
    chinese = await usage(app, ANN)
    assert chinese.table is not None


@pytest.mark.asyncio
async def test_usage_marks_estimated_tokens(app: App) -> None:
    await say(app, ANN, "hello there")  # the echo endpoint sends no counts
    reply = await usage(app, ANN)
    assert rows(reply)["You"][1].startswith("~")
    assert i18n.USAGE_ESTIMATED("en") in reply.text
