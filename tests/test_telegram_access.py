"""End to end through python-telegram-bot against the fake Bot API: `[access]` refusals (nothing
stored, nothing upstream, one line), `[quota]` limits, and `/usage` (its figures, its `pre`
table, and who may see whose)."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from core import i18n
from fakes.gpts import FakeGpts, Reply
from fakes.telegram import FakeTelegram
from tests.test_telegram import WAIT_S, answer_to, make_config, running, wait_answer

Json = dict[str, Any]
SETTLE_S = 0.3  # long enough for the bot to have handled an update it answers with nothing
COUNTED = {"prompt_tokens": 40, "completion_tokens": 60, "total_tokens": 100}


def stored_by(tmp_path: Path, user: Json) -> list[tuple[str, str]]:
    with sqlite3.connect(tmp_path / "bot.db") as db:
        return db.execute(
            "SELECT content, status FROM messages WHERE author_id = ? ORDER BY id",
            (str(user["id"]),),
        ).fetchall()


async def replies(tg: FakeTelegram, asked: Json, count: int = 1) -> list[str]:
    """The bot's messages answering `asked`, once there are `count` (then a moment more)."""
    await tg.wait_until(lambda: len(answer_to(tg, asked)) >= count, WAIT_S)
    await asyncio.sleep(SETTLE_S)
    return [m["text"] for m in answer_to(tg, asked)]


async def nothing_for(tg: FakeTelegram, asked: Json) -> None:
    await asyncio.sleep(SETTLE_S)
    assert answer_to(tg, asked) == []


def mention(tg: FakeTelegram, text: str) -> str:
    return f"@{tg.username} {text}"


@pytest.mark.asyncio
async def test_a_blocked_person_is_told_once_an_hour_in_a_group_and_each_time_in_a_dm(
    tmp_path: Path, tg: FakeTelegram, fake_gpts: FakeGpts
) -> None:
    ann, bob = tg.user(10, "Ann"), tg.user(11, "Bob")
    group = tg.group(-1001, "Team")
    config = make_config(tmp_path, tg, fake_gpts, access={"block": {"users": ["telegram:11"]}})
    async with running(config):
        first = tg.user_message(group, bob, mention(tg, "hello?"))
        assert await replies(tg, first) == [i18n.ACCESS_NOT_YOU("en")]
        await nothing_for(tg, tg.user_message(group, bob, mention(tg, "hello??")))
        await nothing_for(tg, tg.user_message(group, bob, "/usage"))
        in_dm = tg.private_chat(bob)
        for text in ("psst", "/help"):
            assert await replies(tg, tg.user_message(in_dm, bob, text)) == [
                i18n.ACCESS_NOT_YOU("en")
            ]
        # Not addressed to the bot: no line at all.
        await nothing_for(tg, tg.user_message(group, bob, "just chatting"))
        await wait_answer(tg, tg.user_message(group, ann, mention(tg, "hi")), "echo: Ann: hi")
    assert [r.messages[-1]["content"] for r in fake_gpts.requests] == ["Ann: hi"]
    assert stored_by(tmp_path, bob) == []


@pytest.mark.asyncio
async def test_blocked_and_not_allowed_chats_are_refused_where_they_are(
    tmp_path: Path, tg: FakeTelegram, fake_gpts: FakeGpts
) -> None:
    ann, bob = tg.user(10, "Ann", language_code="zh-hans"), tg.user(11, "Bob")
    blocked, allowed, other = tg.group(-1001, "B"), tg.group(-1002, "A"), tg.group(-1003, "O")
    access = {"allow": {"telegram_chats": [-1001, -1002]}, "block": {"telegram_chats": [-1001]}}
    async with running(make_config(tmp_path, tg, fake_gpts, access=access)):
        in_blocked = tg.user_message(blocked, ann, mention(tg, "hi"))
        assert await replies(tg, in_blocked) == [i18n.ACCESS_NOT_HERE("zh")]
        # Told once an hour per person, whatever the group: Ann hears nothing more; Bob does.
        await nothing_for(tg, tg.user_message(other, ann, mention(tg, "hi")))
        in_other = tg.user_message(other, bob, mention(tg, "hi"))
        assert await replies(tg, in_other) == [i18n.ACCESS_NOT_HERE("en")]
        await wait_answer(tg, tg.user_message(allowed, ann, mention(tg, "ok")), "echo: Ann: ok")
    assert len(fake_gpts.requests) == 1
    assert stored_by(tmp_path, ann) == [("ok", "complete")]


@pytest.mark.asyncio
async def test_dms_off_and_dms_for_members_of_allowed_groups(
    tmp_path: Path, tg: FakeTelegram, fake_gpts: FakeGpts
) -> None:
    ann, eve, olga = tg.user(10, "Ann"), tg.user(66, "Eve"), tg.user(42, "Olga")
    group = tg.group(-1001, "Team")
    off = {"allow_dms": False, "owners": ["telegram:42"]}
    async with running(make_config(tmp_path / "off", tg, fake_gpts, access=off)):
        for text in ("one", "two"):
            asked = tg.user_message(tg.private_chat(ann), ann, text)
            assert await replies(tg, asked) == [i18n.ACCESS_NO_DMS("en")]
        await wait_answer(tg, tg.user_message(tg.private_chat(olga), olga, "me?"), "echo: me?")
        await wait_answer(tg, tg.user_message(group, ann, mention(tg, "g")), "echo: Ann: g")
    assert len(fake_gpts.requests) == 2

    tg.set_member(group, eve, "left")
    members_only = {"allow": {"telegram_chats": [-1001]}}
    async with running(make_config(tmp_path / "members", tg, fake_gpts, access=members_only)):
        refused = tg.user_message(tg.private_chat(eve), eve, "let me in")
        assert await replies(tg, refused) == [i18n.ACCESS_NOT_YOU("en")]
        await wait_answer(tg, tg.user_message(tg.private_chat(ann), ann, "a"), "echo: a")
        await wait_answer(tg, tg.user_message(tg.private_chat(ann), ann, "b"), "echo: b")
    checked = [(c.params["chat_id"], c.params["user_id"]) for c in tg.calls_to("getChatMember")]
    assert checked == [(-1001, 66), (-1001, 10)]  # once each: remembered for a while


@pytest.mark.asyncio
async def test_a_quota_refuses_with_its_reset_time_and_spares_owners(
    tmp_path: Path, tg: FakeTelegram, fake_gpts: FakeGpts
) -> None:
    ann, olga = tg.user(10, "Ann"), tg.user(42, "Olga")
    config = make_config(
        tmp_path,
        tg,
        fake_gpts,
        access={"owners": ["telegram:42"]},
        quota={"turns_per_user_per_minute": 1, "tokens_per_user_per_day": 1000},
    )
    async with running(config):
        dm = tg.private_chat(ann)
        await wait_answer(tg, tg.user_message(dm, ann, "first"), "echo: first")
        (line,) = await replies(tg, tg.user_message(dm, ann, "second"))
        assert line.startswith("⏳ You reached your limit of messages per minute (1). Try again")
        assert "UTC)" in line
        for text in ("o1", "o2", "o3"):
            owners = tg.private_chat(olga)
            await wait_answer(tg, tg.user_message(owners, olga, text), f"echo: {text}")
    assert [r.messages[-1]["content"] for r in fake_gpts.requests] == ["first", "o1", "o2", "o3"]
    assert stored_by(tmp_path, ann) == [("first", "complete"), ("second", "refused")]


@pytest.mark.asyncio
async def test_a_daily_token_quota_names_the_limit_and_midnight(
    tmp_path: Path, tg: FakeTelegram, fake_gpts: FakeGpts
) -> None:
    ann = tg.user(10, "Ann")
    fake_gpts.enqueue(Reply("counted", usage=COUNTED))
    quota = {"tokens_per_scope_per_day": 100}
    async with running(make_config(tmp_path, tg, fake_gpts, quota=quota)):
        group = tg.group(-1001, "Team")
        await wait_answer(tg, tg.user_message(group, ann, mention(tg, "a")), "counted")
        (line,) = await replies(tg, tg.user_message(group, ann, mention(tg, "b")))
    assert line.startswith("⏳ This chat reached its limit of 100 tokens a day. It resets at 00:00")
    assert len(fake_gpts.requests) == 1


def table_of(message: Json) -> dict[str, list[str]]:
    """The rows of the `pre` block in a message: label -> the four figures."""
    (pre,) = [e for e in message.get("entities", []) if e["type"] == "pre"]
    units = message["text"].encode("utf-16-le")
    start, end = 2 * pre["offset"], 2 * (pre["offset"] + pre["length"])
    lines = units[start:end].decode("utf-16-le").splitlines()
    rows = {}
    for line in lines[1:]:
        label, *figures = line.rsplit(maxsplit=4)
        rows[label] = figures
    return rows


@pytest.mark.asyncio
async def test_usage_figures_for_a_member_an_admin_and_an_owner(
    tmp_path: Path, tg: FakeTelegram, fake_gpts: FakeGpts
) -> None:
    ann, bob, eve, olga = (tg.user(10, "Ann"), tg.user(11, "Bob"), tg.user(66, "Eve"),
                           tg.user(42, "Olga"))  # fmt: skip
    group = tg.group(-1001, "Team")
    tg.set_member(group, ann, "administrator")
    fake_gpts.enqueue(*[Reply("ok", usage=COUNTED) for _ in range(4)])
    config = make_config(tmp_path, tg, fake_gpts, access={"owners": ["telegram:42"]})
    async with running(config):
        for who, text in ((ann, "a1"), (ann, "a2"), (bob, "b1")):
            await wait_answer(tg, tg.user_message(group, who, mention(tg, text)), "ok")
        ann_dm, bob_dm = tg.private_chat(ann), tg.private_chat(bob)
        await wait_answer(tg, tg.user_message(ann_dm, ann, "in private"), "ok")

        # A member asks in the group: their own figures, privately; the group sees none.
        asked = tg.user_message(group, bob, "/usage")
        assert await replies(tg, asked) == [i18n.USAGE_SENT_PRIVATELY("en")]
        (private,) = tg.bot_messages(bob_dm["id"])
        assert private["text"].startswith("📊 Usage today (")
        assert table_of(private) == {"You": ["1", "100", "1", "100"]}
        # Someone who never opened a chat with the bot is told how to get it.
        asked = tg.user_message(group, eve, "/usage")
        mention_bot = f"@{tg.username}"
        assert await replies(tg, asked) == [i18n.USAGE_NO_PRIVATE_CHAT("en", mention=mention_bot)]

        # The group's admin: the chat's figures and its people, privately too.
        asked = tg.user_message(group, ann, f"/usage@{tg.username}")
        assert await replies(tg, asked) == [i18n.USAGE_SENT_PRIVATELY("en")]
        admin_view = tg.bot_messages(ann_dm["id"])[-1]
        assert table_of(admin_view) == {
            "You": ["3", "300", "3", "300"],  # the DM too: all of Ann's turns on Telegram
            "This chat": ["3", "300", "3", "300"],
            "· Ann": ["2", "200", "2", "200"],
            "· Bob": ["1", "100", "1", "100"],
        }
        # In her private chat she sees only herself.
        asked = tg.user_message(ann_dm, ann, "/usage")
        await tg.wait_until(lambda: len(answer_to(tg, asked)) == 1, WAIT_S)
        (own,) = answer_to(tg, asked)
        assert table_of(own) == {"You": ["3", "300", "3", "300"]}

        # The owner: the whole bot.
        olga_dm = tg.private_chat(olga)
        asked = tg.user_message(olga_dm, olga, "/usage")
        await tg.wait_until(lambda: len(tg.bot_messages(olga_dm["id"])) == 1, WAIT_S)
        (owner_view,) = tg.bot_messages(olga_dm["id"])
        assert table_of(owner_view) == {
            "You": ["0", "0", "0", "0"],
            "Whole bot": ["4", "400", "4", "400"],
        }
    # Nothing but the two notices went to the group after the answers.
    texts = [m["text"] for m in tg.bot_messages(group["id"])]
    assert [t for t in texts if t != "ok"] == [
        i18n.USAGE_SENT_PRIVATELY("en"),
        i18n.USAGE_NO_PRIVATE_CHAT("en", mention=mention_bot),
        i18n.USAGE_SENT_PRIVATELY("en"),
    ]
    assert all("📊" not in text for text in texts)
