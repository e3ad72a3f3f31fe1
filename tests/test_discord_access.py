"""End to end through discord.py against the fake Discord: `[access]` refusals (nothing stored,
nothing upstream, one line), roles from the member in the message or interaction, `[quota]`
limits, and `/usage` as an ephemeral embed (its figures, and who may see whose)."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.discord_fixtures import discord  # noqa: F401  (discord.py imported quietly first)

# isort: split
from bots.discord_adapter.text import quote_prompt
from core import i18n
from fakes.discord import EPHEMERAL_FLAG
from fakes.gpts import FakeGpts, Reply
from tests.test_discord import TIMEOUT, Ids, World, option, wait_original, world

NOT_YOU = i18n.ACCESS_NOT_YOU("en")
NOT_HERE = i18n.ACCESS_NOT_HERE("en")
NO_DMS = i18n.ACCESS_NO_DMS("en")
SETTLE_S = 0.3
COUNTED = {"prompt_tokens": 40, "completion_tokens": 60, "total_tokens": 100}


def stored_by(tmp_path: Path, user: dict[str, Any]) -> list[tuple[str, str]]:
    with sqlite3.connect(tmp_path / "bot.db") as db:
        return db.execute(
            "SELECT content, status FROM messages WHERE author_id = ? ORDER BY id", (user["id"],)
        ).fetchall()


async def slash(
    w: World, channel_id: int, user: dict[str, Any], name: str, prompt: str | None = None
) -> dict[str, Any]:
    """Run a slash command; its first callback's data (the answer, or the deferral)."""
    options = [option("prompt", prompt)] if prompt is not None else []
    call = await w.fake.slash(channel_id, user, name, options)
    await w.fake.wait_for(lambda: call.callbacks, TIMEOUT)
    return call.callbacks[0].get("data") or {}


def listing(kind: str, key: str, id_name: str) -> Callable[[Ids], dict[str, Any]]:
    """An `[access]` rule listing one of the world's ids: `listing("block", "discord_guilds",
    "guild")` blocks the world's guild."""
    return lambda ids: {kind: {key: [getattr(ids, id_name)]}}


def admin_owns(ids: Ids) -> dict[str, Any]:
    """`[access]` naming the world's admin an owner of the bot."""
    return {"owners": [f"discord:{ids.admin}"]}


def refused_privately(data: dict[str, Any], line: str) -> bool:
    return data.get("content") == line and bool(data["flags"] & EPHEMERAL_FLAG)


async def contents(w: World, channel_id: int, count: int) -> list[str]:
    """The bot's messages in the channel once there are `count` (and a moment later)."""
    await w.fake.wait_for(lambda: len(w.fake.bot_messages(channel_id)) >= count, TIMEOUT)
    await asyncio.sleep(SETTLE_S)
    return [m.content for m in w.fake.bot_messages(channel_id)]


@pytest.mark.asyncio
async def test_a_blocked_member_gets_one_line_and_nothing_is_stored_or_sent(
    tmp_path: Path, fake_gpts: FakeGpts
) -> None:
    def access(ids: Ids) -> dict[str, Any]:
        return {"block": {"users": [f"discord:{ids.member}"]}}

    async with world(tmp_path, fake_gpts, access=access) as w:
        asked = await w.fake.user_says(w.channel_id, w.member, "hi", mention_bot=True)
        assert await contents(w, w.channel_id, 1) == [NOT_YOU]
        assert w.fake.bot_messages(w.channel_id)[0].reference_id == asked.id
        await w.fake.user_says(w.channel_id, w.member, "hi again", mention_bot=True)
        # Slash commands are answered only to the asker: always told.
        assert refused_privately(await slash(w, w.channel_id, w.member, "chat", "x"), NOT_YOU)
        assert refused_privately(await slash(w, w.channel_id, w.member, "usage"), NOT_YOU)
        dm = w.fake.dm_channel(w.member)
        for text in ("psst", "psst!"):
            await w.fake.user_says(dm, w.member, text)
        assert await contents(w, dm, 2) == [NOT_YOU, NOT_YOU]
        await w.fake.user_says(w.channel_id, w.manager, "hello", mention_bot=True)
        await w.answered(w.channel_id, NOT_YOU + "echo: max: hello", count=2)
        await asyncio.sleep(SETTLE_S)
        assert len(w.fake.bot_messages(w.channel_id)) == 2  # no second line in the hour
    assert [r.messages[-1]["content"] for r in fake_gpts.requests] == ["max: hello"]
    assert stored_by(tmp_path, w.member) == []


@pytest.mark.asyncio
async def test_blocked_channels_cover_their_threads_and_blocked_guilds_keep_dms(
    tmp_path: Path, fake_gpts: FakeGpts
) -> None:
    async with world(
        tmp_path / "channel",
        fake_gpts,
        channels=2,
        access=listing("block", "discord_channels", "channel"),
    ) as w:
        await w.fake.user_says(w.thread_id, w.manager, "in the thread", mention_bot=True)
        assert await contents(w, w.thread_id, 1) == [NOT_HERE]
        await w.fake.user_says(w.channels[1], w.member, "elsewhere", mention_bot=True)
        await w.answered(w.channels[1], "echo: mia: elsewhere")

    async with world(
        tmp_path / "guild", fake_gpts, access=listing("block", "discord_guilds", "guild")
    ) as w:
        assert refused_privately(await slash(w, w.channel_id, w.member, "help"), NOT_HERE)
        await w.fake.user_says(w.channel_id, w.member, "hi", mention_bot=True)
        assert await contents(w, w.channel_id, 1) == [NOT_HERE]
        await w.in_dm("in private", "echo: in private")  # a DM is in no guild
    assert len(fake_gpts.requests) == 2


@pytest.mark.asyncio
async def test_roles_come_from_the_member_in_the_message_and_the_interaction(
    tmp_path: Path, fake_gpts: FakeGpts
) -> None:
    async with world(
        tmp_path / "allow", fake_gpts, access=listing("allow", "discord_roles", "trusted")
    ) as w:
        await w.fake.user_says(w.channel_id, w.member, "me too?", mention_bot=True)
        assert await contents(w, w.channel_id, 1) == [NOT_YOU]
        assert refused_privately(await slash(w, w.channel_id, w.member, "chat", "x"), NOT_YOU)
        chat = await w.fake.slash(w.channel_id, w.manager, "chat", [option("prompt", "hi")])
        await wait_original(w, chat, quote_prompt("hi") + "echo: max: hi")
        await w.fake.user_says(w.channel_id, w.manager, "and this", mention_bot=True)
        await w.answered(w.channel_id, NOT_YOU + quote_prompt("hi") + "echo: max: hi"
                         + "echo: max: and this", count=3)  # fmt: skip
        await w.in_dm("roles are a server's", "echo: roles are a server's")

    async with world(
        tmp_path / "block", fake_gpts, access=listing("block", "discord_roles", "trusted")
    ) as w:
        assert refused_privately(await slash(w, w.channel_id, w.manager, "chat", "x"), NOT_YOU)
        chat = await w.fake.slash(w.channel_id, w.member, "chat", [option("prompt", "ok")])
        await wait_original(w, chat, quote_prompt("ok") + "echo: mia: ok")
    assert [r.messages[-1]["content"] for r in fake_gpts.requests] == [
        "max: hi",
        "max: and this",
        "roles are a server's",
        "mia: ok",
    ]


@pytest.mark.asyncio
async def test_dms_off_refuse_every_dm_but_the_owners(tmp_path: Path, fake_gpts: FakeGpts) -> None:
    def access(ids: Ids) -> dict[str, Any]:
        return {"allow_dms": False, "owners": [f"discord:{ids.admin}"]}

    async with world(tmp_path, fake_gpts, access=access) as w:
        dm = w.fake.dm_channel(w.member)
        for text in ("one", "two"):
            await w.fake.user_says(dm, w.member, text)
        assert await contents(w, dm, 2) == [NO_DMS, NO_DMS]
        assert refused_privately(await slash(w, dm, w.member, "chat", "x"), NO_DMS)
        owners = w.fake.dm_channel(w.admin)
        await w.fake.user_says(owners, w.admin, "mine")
        await w.answered(owners, "echo: mine")
        await w.fake.user_says(w.channel_id, w.member, "here", mention_bot=True)
        await w.answered(w.channel_id, "echo: mia: here")
    assert stored_by(tmp_path, w.member) == [("here", "complete")]


@pytest.mark.asyncio
async def test_a_quota_answers_with_its_reset_and_spares_owners(
    tmp_path: Path, fake_gpts: FakeGpts
) -> None:
    quota = {"turns_per_user_per_minute": 1}
    async with world(tmp_path, fake_gpts, access=admin_owns, quota=quota) as w:
        await w.fake.user_says(w.channel_id, w.member, "one", mention_bot=True)
        await w.answered(w.channel_id, "echo: mia: one")
        await w.fake.user_says(w.channel_id, w.member, "two", mention_bot=True)
        texts = await contents(w, w.channel_id, 2)
        assert texts[1].startswith("⏳ You reached your limit of messages per minute (1).")
        for text in ("a", "b"):
            await w.fake.user_says(w.channel_id, w.admin, text, mention_bot=True)
        await contents(w, w.channel_id, 4)
    assert [r.messages[-1]["content"] for r in fake_gpts.requests] == [
        "mia: one",
        "ada: a",
        "ada: b",
    ]
    assert stored_by(tmp_path, w.member) == [("one", "complete"), ("two", "refused")]


def fields(data: dict[str, Any]) -> dict[str, dict[str, str]]:
    """An embed's fields: row -> column -> figure."""
    (embed,) = data["embeds"]
    assert embed["description"].startswith("📊 Usage today (")
    rows = {}
    for field in embed["fields"]:
        pairs = (line.split(": ", 1) for line in field["value"].splitlines())
        rows[field["name"]] = {column: value.strip("*") for column, value in pairs}
    return rows


def figures(turns_today: int, tokens_today: int, turns: int, tokens: int) -> dict[str, str]:
    return {
        "Turns today": f"{turns_today:,}",
        "Tokens today": f"{tokens_today:,}",
        "Turns this month": f"{turns:,}",
        "Tokens this month": f"{tokens:,}",
    }


@pytest.mark.asyncio
async def test_usage_is_an_ephemeral_embed_that_shows_each_person_what_they_may_see(
    tmp_path: Path, fake_gpts: FakeGpts
) -> None:
    fake_gpts.enqueue(*[Reply("ok", usage=COUNTED) for _ in range(4)])
    async with world(tmp_path, fake_gpts, access=admin_owns) as w:
        await w.fake.user_says(w.channel_id, w.member, "m1", mention_bot=True)
        await w.answered(w.channel_id, "ok")
        for count, text in ((2, "x1"), (3, "x2")):
            await w.fake.user_says(w.channel_id, w.manager, text, mention_bot=True)
            await w.answered(w.channel_id, "ok" * count, count=count)
        await w.in_dm("m2", "ok")

        member = await slash(w, w.channel_id, w.member, "usage")
        assert member["flags"] & EPHEMERAL_FLAG
        assert fields(member) == {"You": figures(2, 200, 2, 200)}  # the DM too; no one else

        manager = await slash(w, w.channel_id, w.manager, "usage")
        assert manager["flags"] & EPHEMERAL_FLAG
        assert fields(manager) == {
            "You": figures(2, 200, 2, 200),
            "This chat": figures(3, 300, 3, 300),
            "· max": figures(2, 200, 2, 200),
            "· mia": figures(1, 100, 1, 100),
        }
        # In a thread of the channel the chat is the same (threads count with their channel).
        in_thread = await slash(w, w.thread_id, w.manager, "usage")
        assert fields(in_thread)["This chat"] == figures(3, 300, 3, 300)

        owner = await slash(w, w.channel_id, w.admin, "usage")
        assert list(fields(owner)) == ["You", "This chat", "· max", "· mia", "Whole bot"]
        assert fields(owner)["Whole bot"] == figures(4, 400, 4, 400)
        # In a DM the owner sees their own and the whole bot's.
        owners_dm = await slash(w, w.fake.dm_channel(w.admin), w.admin, "usage")
        assert list(fields(owners_dm)) == ["You", "Whole bot"]
    assert all("📊" not in m.content for m in w.fake.bot_messages(w.channel_id))
