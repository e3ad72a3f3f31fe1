"""Stop and Retry on Discord, end to end: the real discord.py client in the adapter, connected to
the fake Discord, which keeps the button components under the answer and sends presses back as
component interactions; the real core answers from a SQLite file, the fake GPTs endpoint streams
upstream."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from tests.discord_fixtures import discord  # noqa: F401  (discord.py imported quietly first)

# isort: split
from bots.discord_adapter.text import quote_prompt
from core import i18n
from core.history import CUT_MARK
from core.turns import Scope
from fakes.discord import EPHEMERAL_FLAG, MANAGE_CHANNELS, MEMBER_PERMISSIONS, FakeMessage
from fakes.gpts import Fail, FakeGpts, Gate, Reply
from tests.helpers import alternating
from tests.test_discord import INDICATOR, TIMEOUT, World, option, wait_original, world

STOPPED = i18n.STOPPED("en")
DEFERRED_CHANNEL_MESSAGE, DEFERRED_UPDATE_MESSAGE, CHANNEL_MESSAGE = 5, 6, 4


def buttons(message: FakeMessage) -> list[tuple[str, str]]:
    """The buttons under a message as (label, custom id), as the fake holds them."""
    return [(b["label"], b["custom_id"]) for row in message.components for b in row["components"]]


async def showing(w: World, channel_id: int, start: str) -> FakeMessage:
    """The bot's message in the channel whose text starts with `start`."""

    def found() -> FakeMessage | None:
        shown = [m for m in w.fake.bot_messages(channel_id) if m.content.startswith(start)]
        return shown[-1] if shown else None

    message: FakeMessage = await w.fake.wait_for(found, TIMEOUT)
    return message


async def acknowledged(w: World, press: Any) -> dict[str, Any]:
    """The callback the bot answered a press with."""
    callbacks: list[dict[str, Any]] = await w.fake.wait_for(lambda: press.callbacks, TIMEOUT)
    return callbacks[0]


async def statuses(w: World, scope: Scope) -> list[tuple[str, str]]:
    conversation = await w.app.repo.current_conversation(scope)
    return [(r.content, r.status) for r in await w.app.repo.history(conversation, limit=50)]


@pytest.mark.asyncio
async def test_stop_closes_the_upstream_connection_and_keeps_the_text(
    tmp_path: Path, fake_gpts: FakeGpts
) -> None:
    async with world(tmp_path, fake_gpts) as w:
        gate = Gate()
        fake_gpts.enqueue(gate)
        await w.fake.user_says(w.channel_id, w.member, "tell me a story", mention_bot=True)
        gate.send("Once upon a time")
        streaming = await showing(w, w.channel_id, "Once upon a time")
        [(label, custom_id)] = buttons(streaming)
        assert label == i18n.STOP_BUTTON("en") and custom_id.startswith("stop:")

        press = await w.fake.press(streaming, w.member)
        assert (await acknowledged(w, press))["type"] == DEFERRED_UPDATE_MESSAGE  # no message
        await asyncio.wait_for(fake_gpts.requests[-1].disconnected.wait(), TIMEOUT)
        (final,) = await w.answered(w.channel_id, f"Once upon a time\n\n{STOPPED}")
        assert final.components == []  # the final edit took the button away, and put no Retry
        scope = Scope("discord", str(w.channel_id))
        assert (await statuses(w, scope))[-1] == ("Once upon a time", "stopped")

        late = await w.fake.press(streaming, w.member, custom_id)  # a stale client's press
        assert (await acknowledged(w, late))["data"]["content"] == i18n.ANSWER_ENDED("en")
        await w.fake.user_says(w.channel_id, w.member, "go on", mention_bot=True)
        await showing(w, w.channel_id, "echo: mia: go on")
        assert fake_gpts.requests[-1].messages[-3:] == alternating(
            "mia: tell me a story", "Once upon a time" + CUT_MARK, "mia: go on"
        )


@pytest.mark.asyncio
async def test_a_member_who_did_not_ask_is_refused_privately_and_the_stream_goes_on(
    tmp_path: Path, fake_gpts: FakeGpts, gate: Gate
) -> None:
    async with world(tmp_path, fake_gpts) as w:
        other = w.fake.make_user("nia")
        w.fake.add_member(w.guild_id, other, permissions=MEMBER_PERMISSIONS)
        await w.fake.user_says(w.channel_id, w.member, "count", mention_bot=True)
        gate.send("one")
        streaming = await showing(w, w.channel_id, "one")
        press = await w.fake.press(streaming, other)
        refusal = await acknowledged(w, press)
        assert refusal["type"] == CHANNEL_MESSAGE and refusal["data"]["flags"] & EPHEMERAL_FLAG
        assert refusal["data"]["content"] == i18n.NOT_YOURS_TO_STOP("en")
        gate.send(" two")
        gate.finish()
        (final,) = await w.answered(w.channel_id, "one two")
        assert not fake_gpts.requests[-1].disconnected.is_set()
        [(label, custom_id)] = buttons(final)
        assert label == i18n.RETRY_BUTTON("en") and custom_id.startswith("retry:")

        press = await w.fake.press(final, other)
        assert (await acknowledged(w, press))["data"]["content"] == i18n.NOT_YOURS_TO_RETRY("en")
        # A member with Manage Channels is an admin here: they may retry it.
        fake_gpts.enqueue(Reply("one two three"))
        press = await w.fake.press(final, other, permissions=MEMBER_PERMISSIONS | MANAGE_CHANNELS)
        assert (await acknowledged(w, press))["type"] == DEFERRED_CHANNEL_MESSAGE
        retried = await wait_original(w, press, "one two three")
        assert [label for label, _ in buttons(retried)] == [i18n.RETRY_BUTTON("en")]


@pytest.mark.asyncio
async def test_retry_of_an_answer_and_of_an_error_line_asks_again_in_a_new_message(
    tmp_path: Path, fake_gpts: FakeGpts
) -> None:
    async with world(tmp_path, fake_gpts) as w:
        dm = w.fake.dm_channel(w.member)
        not_found = {"error": {"message": "model not found", "code": "model_not_found"}}
        fake_gpts.enqueue(Reply("Paris, I think"), Fail(404, not_found))
        first = await w.in_dm("capital of France?", "Paris, I think")
        press = await w.fake.press(first, w.member)
        failed = await wait_original(w, press, i18n.GPT_NOT_FOUND("en"))
        assert buttons(failed)[0][1].startswith("retry:")  # the error line has its Retry too
        fake_gpts.enqueue(Reply("Paris."))
        press = await w.fake.press(failed, w.member)
        await wait_original(w, press, "Paris.")
        assert w.fake.bot_messages(dm)[0].content == "Paris, I think"  # still shown
        assert [r.messages for r in fake_gpts.requests] == [
            [{"role": "user", "content": "capital of France?"}]
        ] * 3
        assert await statuses(w, Scope("discord", str(dm))) == [
            ("capital of France?", "complete"),
            ("Paris, I think", "superseded"),
            ("", "superseded"),
            ("Paris.", "complete"),
        ]
        await w.fake.user_says(dm, w.member, "and Italy?")
        await showing(w, dm, "echo: and Italy?")
        assert fake_gpts.requests[-1].messages == alternating(
            "capital of France?", "Paris.", "and Italy?"
        )


@pytest.mark.asyncio
async def test_a_chat_answer_and_the_retry_command_after_a_restart(
    tmp_path: Path, fake_gpts: FakeGpts
) -> None:
    async with world(tmp_path, fake_gpts) as w:
        chat = await w.fake.slash(w.channel_id, w.member, "chat", [option("prompt", "hi")])
        header = quote_prompt("hi")
        answer = await wait_original(w, chat, header + "echo: mia: hi")
        await w.restart()  # a new process over the same database: no memory of the answer
        fake_gpts.enqueue(Reply("hello again"))
        press = await w.fake.press(answer, w.member)
        # A /chat question has no message of its own: the new answer quotes it too.
        await wait_original(w, press, header + "hello again")
        assert fake_gpts.requests[-1].messages == [{"role": "user", "content": "mia: hi"}]
        press = await w.fake.press(answer, w.member)  # the old button, once more
        assert (await acknowledged(w, press))["data"]["content"] == i18n.CANNOT_RETRY("en")

        fake_gpts.enqueue(Reply("third time"))
        retry = await w.fake.slash(w.channel_id, w.member, "retry")
        await wait_original(w, retry, header + "third time")
        assert len(fake_gpts.requests) == 3
        statuses_now = [s for _, s in await statuses(w, Scope("discord", str(w.channel_id)))]
        assert statuses_now == ["complete", "superseded", "superseded", "complete"]


@pytest.mark.asyncio
async def test_buttons_ride_on_the_calls_the_answer_makes_anyway(
    tmp_path: Path, fake_gpts: FakeGpts
) -> None:
    """One send, one edit per change (each with Stop), one final edit (with Retry): exactly the
    calls the same stream makes without buttons, and never a call for a button alone."""
    async with world(tmp_path, fake_gpts) as w:
        gate = Gate()
        fake_gpts.enqueue(gate)
        await w.fake.user_says(w.channel_id, w.member, "count", mention_bot=True)
        pieces = ["one", " two", " three", " four"]
        shown = ""
        for piece in pieces:
            gate.send(piece)
            shown += piece
            await showing(w, w.channel_id, shown + INDICATOR)
        gate.finish()
        await w.answered(w.channel_id, shown)
        await asyncio.sleep(0.2)  # nothing else comes
        made = [
            c
            for c in w.fake.calls
            if c.channel_id == str(w.channel_id) and c.method in ("POST", "PATCH")
            and not c.route.endswith("/typing")
        ]  # fmt: skip
        assert [c.method for c in made] == ["POST"] + ["PATCH"] * len(pieces)
        actions = [[b["custom_id"].split(":")[0] for b in c.json["components"][0]["components"]]
                   for c in made]  # fmt: skip
        assert actions == [["stop"]] * len(pieces) + [["retry"]]
