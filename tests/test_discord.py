"""End to end: the real discord.py client inside the Discord adapter, connected to the fake Discord,
with the real core (SQLite under tmp_path; PostgreSQL too, with GPTSBOT_TEST_PG_URL set, where a
test takes `db_url`) and the fake GPTs endpoint upstream."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import itertools
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from tests.discord_fixtures import discord  # discord.py imported with its audioop warning silenced

# isort: split
from bots.discord_adapter.adapter import DiscordAdapter
from bots.discord_adapter.settings import create_adapter
from bots.discord_adapter.text import quote_prompt
from core import commands, i18n
from core.app import App, open_app
from core.config import Config, parse_config
from core.conversation import ConversationService
from core.i18n import APOLOGY
from core.platform import PlatformRefused
from core.turns import Scope
from fakes.discord import (
    ADMINISTRATOR,
    AUTOCOMPLETE,
    EPHEMERAL_FLAG,
    MANAGE_CHANNELS,
    MEMBER_PERMISSIONS,
    FakeDiscord,
    FakeMessage,
)
from fakes.gpts import Fail, FakeGpts, Gate, Reply
from fakes.rate_window import max_in_window

TIMEOUT = 10.0
API_KEY = "sk-discord-tests"
INTERVAL = 0.05
INDICATOR = " ▌"
DEFAULT_GPT = "g-Default01"
GPT_A = "g-B3hgivKK9"
GPT_B = "g-Zz9Yy8Xx7"
POST_MESSAGE = "/channels/{channel_id}/messages"
EDIT_MESSAGE = "/channels/{channel_id}/messages/{message_id}"
EDIT_HOOK = "/webhooks/{application_id}/{token}/messages/{message_id}"
# Grant times are exact; arrival times at the fake carry a few ms of scheduling jitter, so rates
# are checked over windows this much shorter than the budget's.
JITTER_FACTOR = 0.95
MESSAGE_ROUTES = {f"POST {POST_MESSAGE}", f"PATCH {EDIT_MESSAGE}", f"PATCH {EDIT_HOOK}"}


@dataclass(frozen=True)
class Ids:
    """What a world holds, for an `[access]` that names it (users as strings, the rest ints)."""

    guild: int
    channel: int
    thread: int
    member: str
    manager: str
    admin: str
    trusted: int = 0


@dataclass
class World:
    fake: FakeDiscord
    gpts: FakeGpts
    app: App
    adapter: DiscordAdapter
    guild_id: int
    channels: list[int]
    thread_id: int
    member: dict[str, Any]  # may not bind
    manager: dict[str, Any]  # Manage Channels, and the role `trusted`
    admin: dict[str, Any]  # Administrator only
    task: asyncio.Task[None]  # adapter.run()
    trusted: int  # a role of the guild
    config: Config

    @property
    def channel_id(self) -> int:
        return self.channels[0]

    async def restart(self) -> None:
        """Stop the adapter and its app, then start new ones over the same database (a new
        process, as far as the bot can tell), connected to the same fake Discord."""
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(self.task, TIMEOUT)
        assert self.adapter.unexpected == []
        service = ConversationService(self.config, self.app.repo, self.app.client)
        service.reraise_unexpected = True
        self.app = dataclasses.replace(self.app, service=service)
        self.adapter = DiscordAdapter(self.config, service, guild_ready_timeout=0.05)
        self.adapter.reraise_unexpected = True
        self.task = asyncio.create_task(self.adapter.run())
        await asyncio.wait_for(self.adapter.ready.wait(), TIMEOUT)

    async def answered(self, channel_id: int, text: str, count: int = 1) -> list[FakeMessage]:
        """Wait until the bot's messages in the channel read `text` (joined) and stay final."""

        def done() -> list[FakeMessage] | None:
            messages = self.fake.bot_messages(channel_id)
            joined = "".join(m.content for m in messages)
            return messages if len(messages) == count and joined == text else None

        return await self.fake.wait_for(done, TIMEOUT)

    async def in_dm(self, text: str, answer: str) -> FakeMessage:
        """The member writes `text` to the bot in a DM; the bot's one message there, once it
        reads `answer`."""
        dm = self.fake.dm_channel(self.member)
        await self.fake.user_says(dm, self.member, text)
        (message,) = await self.answered(dm, answer)
        return message


def message_calls(fake: FakeDiscord, channel_id: int | None = None) -> list[Any]:
    calls = [c for c in fake.calls if c.route in MESSAGE_ROUTES and c.status < 400]
    if channel_id is None:
        return calls
    hooks = {
        i.token for i in fake.interactions.values() if i.payload["channel_id"] == str(channel_id)
    }
    return [c for c in calls if c.channel_id == str(channel_id) or c.params.get("token") in hooks]


@contextlib.asynccontextmanager
async def world(
    tmp_path: Path,
    gpts: FakeGpts,
    *,
    channels: int = 1,
    discord_config: dict[str, Any] | None = None,
    allow_message_content: bool = True,
    allow_only_own_guild: bool = False,
    guild_locale: str = "en-US",
    bot_config: dict[str, Any] | None = None,
    access: dict[str, Any] | Callable[[Ids], dict[str, Any]] | None = None,
    quota: dict[str, Any] | None = None,
    db_url: str | None = None,
    **adapter_options: Any,
) -> AsyncIterator[World]:
    """A fake Discord with a guild, its channels and members, and the adapter connected to it.
    `access`: the `[access]` table, or a function of the ids of what the world holds; the
    database is an SQLite file under tmp_path unless `db_url` names another."""
    fake = FakeDiscord(allow_message_content=allow_message_content)
    guild_id = fake.add_guild(preferred_locale=guild_locale)
    channel_ids = [fake.add_channel(guild_id, f"c{i}") for i in range(channels)]
    thread_id = fake.add_thread(guild_id, channel_ids[0], "thread")
    member = fake.make_user("mia")
    manager = fake.make_user("max")
    admin = fake.make_user("ada")
    trusted = fake.add_role(guild_id, "trusted")
    fake.add_member(guild_id, member)
    fake.add_member(
        guild_id, manager, permissions=MEMBER_PERMISSIONS | MANAGE_CHANNELS, roles=[trusted]
    )
    fake.add_member(guild_id, admin, permissions=ADMINISTRATOR)
    if callable(access):
        ids = Ids(guild_id, channel_ids[0], thread_id, member["id"], manager["id"], admin["id"])
        access = access(dataclasses.replace(ids, trusted=trusted))
    async with fake:
        config = parse_config(
            {
                "gpts": {"base_url": gpts.base_url, "api_key": API_KEY, "default_gpt": DEFAULT_GPT},
                "storage": {"url": db_url or f"sqlite+aiosqlite:///{tmp_path / 'bot.db'}"},
                # A short shutdown grace: leaving the block may cancel the adapter mid-answer.
                "bot": {
                    "streaming_indicator": INDICATOR,
                    "shutdown_grace_s": 0.2,
                    "allow_private_image_hosts": True,  # the image host is on 127.0.0.1
                    **(bot_config or {}),
                },
                "discord": {
                    "token": fake.token,
                    "api_base": fake.api_base,
                    "edit_interval_s": INTERVAL,
                    "requests_per_second": 1000,
                    "channel_edits_per_5s": 1000,
                    **(discord_config or {}),
                },
                "access": {
                    **(access or {}),
                    **({"allow": {"discord_guilds": [guild_id]}} if allow_only_own_guild else {}),
                },
                "quota": quota or {},
            },
            env={},
        )
        async with open_app(config) as app:
            app.service.reraise_unexpected = True
            adapter = DiscordAdapter(
                config, app.service, guild_ready_timeout=0.05, **adapter_options
            )
            adapter.reraise_unexpected = True
            task = asyncio.create_task(adapter.run())
            w = World(
                fake,
                gpts,
                app,
                adapter,
                guild_id,
                channel_ids,
                thread_id,
                member,
                manager,
                admin,
                task,
                trusted,
                config,
            )
            try:
                await asyncio.wait_for(adapter.ready.wait(), TIMEOUT)
                yield w
            finally:
                w.task.cancel()
                # PlatformRefused: a test that refused the token has seen it already.
                with contextlib.suppress(asyncio.CancelledError, PlatformRefused):
                    await asyncio.wait_for(w.task, TIMEOUT)
    assert w.adapter.unexpected == []


@pytest_asyncio.fixture
async def w(tmp_path: Path, fake_gpts: FakeGpts) -> AsyncIterator[World]:
    """The default `world`, for a test that needs no other (`w.gpts` is `fake_gpts`)."""
    async with world(tmp_path, fake_gpts) as default:
        yield default


def option(name: str, value: str, **extra: Any) -> dict[str, Any]:
    return {"name": name, "type": 3, "value": value, **extra}


def original_text(w: World, interaction_id: int) -> str:
    original = w.fake.interactions[interaction_id].original_id
    return w.fake.messages[original].content if original else ""


async def wait_original(w: World, interaction: Any, text: str) -> FakeMessage:
    def done() -> FakeMessage | None:
        original = interaction.original_id
        message = w.fake.messages.get(original) if original else None
        return message if message is not None and message.content == text else None

    return await w.fake.wait_for(done, TIMEOUT)


# -- commands ---------------------------------------------------------------------------------


def test_no_token_no_adapter() -> None:
    config = parse_config({}, env={})
    assert create_adapter(config, service=None) is None  # type: ignore[arg-type]


@pytest.mark.asyncio
async def test_commands_are_synced_with_names_options_and_permissions(
    tmp_path: Path, fake_gpts: FakeGpts
) -> None:
    async with world(tmp_path, fake_gpts) as w:
        synced = {c["name"]: c for c in w.fake.global_commands}
        assert set(synced) == {"help", "chat", "gpt", "reset", "usage", "retry"}
        chat = synced["chat"]
        assert [(o["name"], o["type"], o["required"]) for o in chat["options"]] == [
            ("prompt", 3, True),
            ("file", 11, False),  # an attachment
        ]
        assert chat["default_member_permissions"] is None
        assert synced["reset"]["options"] == []
        gpt = synced["gpt"]
        assert gpt["default_member_permissions"] == str(MANAGE_CHANNELS)
        subcommands = {o["name"]: o for o in gpt["options"]}
        assert set(subcommands) == {"bind", "unbind", "info"}
        assert all(o["type"] == 1 for o in subcommands.values())
        (bind_option,) = subcommands["bind"]["options"]
        assert bind_option["name"] == "gpt" and bind_option["type"] == 3
        assert bind_option["required"] is True and bind_option["autocomplete"] is True
        # Everyday commands reach user installs too (servers, bot DMs, group DMs); bindings stay
        # with the server install (servers and DMs with the bot).
        for name in ("help", "chat", "reset"):
            assert synced[name]["integration_types"] == [0, 1]
            assert synced[name]["contexts"] == [0, 1, 2]
        assert gpt["integration_types"] == [0] and gpt["contexts"] == [0, 1]


@pytest.mark.asyncio
async def test_a_guild_only_install_keeps_every_command_in_servers(
    tmp_path: Path, fake_gpts: FakeGpts
) -> None:
    async with world(tmp_path, fake_gpts, discord_config={"install": "guild"}) as w:
        for command in w.fake.global_commands:
            assert command["integration_types"] == [0]
            assert command["contexts"] == [0, 1]


@pytest.mark.asyncio
async def test_a_user_install_answers_chat_in_a_server_without_the_bot(
    tmp_path: Path, fake_gpts: FakeGpts
) -> None:
    async with world(tmp_path, fake_gpts) as w:
        elsewhere = w.fake.add_channel(w.fake.add_guild("Not the bot's server"))
        chat = await w.fake.slash(
            elsewhere, w.member, "chat", [option("prompt", "hi")], user_install=True
        )
        await wait_original(w, chat, quote_prompt("hi") + "echo: mia: hi")
        assert fake_gpts.requests[-1].messages[-1]["content"] == "mia: hi"


@pytest.mark.asyncio
async def test_dev_guild_gets_the_commands(tmp_path: Path, fake_gpts: FakeGpts) -> None:
    async with world(tmp_path, fake_gpts, discord_config={"dev_guild_id": 4242}) as w:
        synced = {c["name"] for c in w.fake.guild_commands[4242]}
        assert synced == {"help", "chat", "reset", "gpt", "usage", "retry"}
        assert w.fake.global_commands == []


SAMPLE_ARGUMENTS = {"prompt": "hello", "gpt": GPT_A}


@pytest.mark.asyncio
async def test_every_registry_command_is_reachable_and_admin_ones_refused_to_members(
    tmp_path: Path, fake_gpts: FakeGpts
) -> None:
    async with world(tmp_path, fake_gpts) as w:
        found = _descriptions(w.fake.global_commands)
        for command in commands.REGISTRY:
            description, localized = found[command.name]
            assert description == command.description.en
            assert localized == {"zh-CN": command.description.zh, "zh-TW": command.description.zh}

        async def run(user: dict[str, Any], command: commands.Command) -> dict[str, Any]:
            options = [option(a.name, SAMPLE_ARGUMENTS[a.name]) for a in command.arguments]
            call = await w.fake.slash(w.channel_id, user, command.name, options)
            await w.fake.wait_for(lambda: call.callbacks, TIMEOUT)
            return call.callbacks[0]  # type: ignore[no-any-return]

        for command in commands.REGISTRY:
            if command.permission is not commands.Permission.ANYONE:
                refused = await run(w.member, command)
                assert refused["data"]["content"] == i18n.NOT_ADMIN("en", usage=f"/{command.name}")
            answered = await run(w.manager, command)
            content = (answered.get("data") or {}).get("content") or ""  # /chat defers
            assert not content.startswith(("Usage", "⛔")), command.name
            if command.name == "help":
                listed = [line.split(" — ")[0] for line in content.splitlines()]
                assert [line for line in listed if line.startswith("/")] == [
                    c.usage("en") for c in commands.REGISTRY
                ]
        await w.fake.wait_for(lambda: fake_gpts.requests, TIMEOUT)
        assert fake_gpts.requests[0].messages[-1]["content"] == "max: hello"  # /chat asked


# -- /chat ------------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_chat_defers_then_streams_into_the_original_response(
    tmp_path: Path, fake_gpts: FakeGpts, gate: Gate, db_url: str
) -> None:
    async with world(tmp_path, fake_gpts, db_url=db_url) as w:
        interaction = await w.fake.slash(
            w.channel_id, w.member, "chat", [option("prompt", "Tell me *everything*")]
        )
        await w.fake.wait_for(lambda: interaction.callbacks, TIMEOUT)
        assert interaction.callbacks[0]["type"] == 5  # deferred at once, before upstream
        header = quote_prompt("Tell me *everything*")
        assert header == "> Tell me \\*everything\\*\n"
        parts = ["Hello", ", world", ". It", " streams", " in place."]
        for part in parts:
            gate.send(part)
            await asyncio.sleep(INTERVAL / 2)
        gate.finish()
        answer = "".join(parts)
        original = await wait_original(w, interaction, header + answer)
        await asyncio.sleep(3 * INTERVAL)  # nothing more arrives after the final edit
        edits = w.fake.calls_to("PATCH", EDIT_HOOK)
        assert all(c.params["message_id"] == "@original" for c in edits)
        assert edits[-1].json["content"] == header + answer
        assert all(c.json["allowed_mentions"] == {"parse": []} for c in edits)
        times = [at for at, _ in original.history]
        assert len(times) >= 3
        gaps = [b - a for a, b in itertools.pairwise(times[1:])]
        assert all(gap >= INTERVAL * 0.95 for gap in gaps), gaps
        texts = [text for _, text in original.history[1:]]
        assert all(a != b for a, b in itertools.pairwise(texts))
        assert all(t.startswith(header) for t in texts)
        assert all(t.endswith(INDICATOR) for t in texts[:-1])
        (request,) = fake_gpts.requests
        assert request.model == f"gpt-4-gizmo-{DEFAULT_GPT}"
        assert request.messages[-1]["content"] == "mia: Tell me *everything*"
        assert w.fake.interactions[interaction.id].followup_ids == []


@pytest.mark.asyncio
async def test_chat_past_the_token_window_continues_as_channel_messages(
    tmp_path: Path, fake_gpts: FakeGpts, gate: Gate
) -> None:
    async with world(tmp_path, fake_gpts, interaction_window_s=0.3) as w:
        interaction = await w.fake.slash(w.channel_id, w.member, "chat", [option("prompt", "q")])
        header = quote_prompt("q")
        gate.send("a" * 1500 + "\n")
        await wait_original(w, interaction, header + "a" * 1500 + "\n" + INDICATOR)
        await asyncio.sleep(0.4)  # the token is past the adapter's window now
        gate.send("b" * 1000 + " end")
        gate.finish()
        answer = "a" * 1500 + "\n" + "b" * 1000 + " end"
        messages = await w.answered(w.channel_id, header + answer, count=2)
        assert messages[0].id == interaction.original_id
        assert messages[1].webhook_id is None  # an ordinary channel message, not a follow-up
        assert interaction.followup_ids == []
        late = [c for c in w.fake.calls if c.at > interaction.created_at + 0.3]
        assert not any(c.route.startswith("PATCH /webhooks") for c in late[1:])


# -- binding ----------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_bind_needs_manage_channels_or_administrator(
    tmp_path: Path, fake_gpts: FakeGpts
) -> None:
    async with world(tmp_path, fake_gpts, channels=2) as w:
        scope = Scope("discord", str(w.channel_id))
        refused = await w.fake.slash(
            w.channel_id,
            w.member,
            "gpt bind",
            [option("gpt", GPT_A)],
            permissions=MEMBER_PERMISSIONS,
        )
        await w.fake.wait_for(lambda: refused.callbacks, TIMEOUT)
        callback = refused.callbacks[0]
        assert callback["type"] == 4
        assert callback["data"]["flags"] & EPHEMERAL_FLAG
        assert callback["data"]["content"] == i18n.NOT_ADMIN("en", usage="/gpt bind")
        info = await w.app.service.binding(scope)
        assert info is not None and info.is_default  # nothing changed

        bound = await w.fake.slash(w.channel_id, w.manager, "gpt bind", [option("gpt", GPT_A)])
        await w.fake.wait_for(lambda: bound.callbacks, TIMEOUT)
        assert not (bound.callbacks[0]["data"].get("flags") or 0) & EPHEMERAL_FLAG
        assert GPT_A in bound.callbacks[0]["data"]["content"]
        link = f"https://chatgpt.com/g/{GPT_B}-some-slug"
        by_admin = await w.fake.slash(w.channels[1], w.admin, "gpt bind", [option("gpt", link)])
        await w.fake.wait_for(lambda: by_admin.callbacks, TIMEOUT)
        assert GPT_B in by_admin.callbacks[0]["data"]["content"]

        fake_gpts.enqueue(Reply("from A"), Reply("from B"))
        first = await w.fake.slash(w.channel_id, w.member, "chat", [option("prompt", "hi")])
        await wait_original(w, first, quote_prompt("hi") + "from A")
        second = await w.fake.slash(w.channels[1], w.member, "chat", [option("prompt", "hi")])
        await wait_original(w, second, quote_prompt("hi") + "from B")
        assert [r.model for r in fake_gpts.requests] == [
            f"gpt-4-gizmo-{GPT_A}",
            f"gpt-4-gizmo-{GPT_B}",
        ]

        bad = await w.fake.slash(w.channel_id, w.manager, "gpt bind", [option("gpt", "nope")])
        await w.fake.wait_for(lambda: bad.callbacks, TIMEOUT)
        assert bad.callbacks[0]["data"]["flags"] & EPHEMERAL_FLAG
        assert "is not a GPT" in bad.callbacks[0]["data"]["content"]

        info_call = await w.fake.slash(w.thread_id, w.member, "gpt info")
        await w.fake.wait_for(lambda: info_call.callbacks, TIMEOUT)
        data = info_call.callbacks[0]["data"]
        assert data["flags"] & EPHEMERAL_FLAG
        assert GPT_A in data["content"] and "Inherited" in data["content"]

        choices = await w.fake.slash(
            w.channel_id,
            w.manager,
            "gpt bind",
            [option("gpt", "g-", focused=True)],
            interaction_type=AUTOCOMPLETE,
        )
        await w.fake.wait_for(lambda: choices.callbacks, TIMEOUT)
        assert choices.callbacks[0]["type"] == 8
        offered = {c["value"] for c in choices.callbacks[0]["data"]["choices"]}
        assert offered == {GPT_A, GPT_B}

        refused_unbind = await w.fake.slash(w.channel_id, w.member, "gpt unbind")
        await w.fake.wait_for(lambda: refused_unbind.callbacks, TIMEOUT)
        assert refused_unbind.callbacks[0]["data"]["flags"] & EPHEMERAL_FLAG
        unbind = await w.fake.slash(w.channel_id, w.manager, "gpt unbind")
        await w.fake.wait_for(lambda: unbind.callbacks, TIMEOUT)
        info = await w.app.service.binding(scope)
        assert info is not None and info.is_default


# -- mentions, replies, threads, DMs ----------------------------------------------------------


@pytest.mark.asyncio
async def test_mention_and_reply_to_bot_get_replies_edited_in_place(
    tmp_path: Path, fake_gpts: FakeGpts, db_url: str
) -> None:
    gate = Gate()
    fake_gpts.enqueue(gate, Reply("second answer", chunk_chars=3))
    async with world(tmp_path, fake_gpts, db_url=db_url) as w:
        asked = await w.fake.user_says(w.channel_id, w.member, "what is up?", mention_bot=True)
        gate.send("Not")
        await w.fake.wait_for(lambda: w.fake.bot_messages(w.channel_id), TIMEOUT)
        gate.send(" much.")
        gate.finish()
        (answer,) = await w.answered(w.channel_id, "Not much.")
        assert answer.reference_id == asked.id
        assert len(answer.history) >= 2  # sent once, then edited in place
        assert fake_gpts.requests[0].messages[-1]["content"] == "mia: what is up?"
        assert len(w.fake.calls_to("POST", "/channels/{channel_id}/typing")) >= 1

        # A reply to the bot's message, without an @mention, is a turn too.
        followup = await w.fake.user_says(
            w.channel_id, w.member, "and then?", reply_to=answer.id, reply_mentions=False
        )
        messages = await w.answered(w.channel_id, "Not much.second answer", count=2)
        assert messages[1].reference_id == followup.id
        history = fake_gpts.requests[1].messages
        assert [m["role"] for m in history[-3:]] == ["user", "assistant", "user"]
        assert history[-1]["content"] == "mia: and then?"

        # Neither a plain message nor a bot's message is a turn.
        await w.fake.user_says(w.channel_id, w.member, "just chatting")
        await asyncio.sleep(0.2)
        assert len(fake_gpts.requests) == 2


@pytest.mark.asyncio
async def test_thread_inherits_the_channel_binding_and_is_its_own_conversation(
    tmp_path: Path, fake_gpts: FakeGpts, db_url: str
) -> None:
    fake_gpts.enqueue(Reply("in thread"))
    async with world(tmp_path, fake_gpts, db_url=db_url) as w:
        bound = await w.fake.slash(w.channel_id, w.manager, "gpt bind", [option("gpt", GPT_A)])
        await w.fake.wait_for(lambda: bound.callbacks, TIMEOUT)
        await w.fake.user_says(w.thread_id, w.member, "hello thread", mention_bot=True)
        await w.answered(w.thread_id, "in thread")
        (request,) = fake_gpts.requests
        assert request.model == f"gpt-4-gizmo-{GPT_A}"
        thread_scope = Scope("discord", str(w.channel_id), str(w.thread_id))
        info = await w.app.service.binding(thread_scope)
        assert info is not None and info.inherited and info.gpt_id == GPT_A

        # A thread the client has not seen yet (no THREAD_CREATE) is looked up once.
        fake_gpts.enqueue(Reply("in a new thread"))
        new_thread = w.fake.add_thread(w.guild_id, w.channel_id, "new")
        await w.fake.user_says(new_thread, w.member, "and here?", mention_bot=True)
        await w.answered(new_thread, "in a new thread")
        assert fake_gpts.requests[-1].model == f"gpt-4-gizmo-{GPT_A}"
        assert [
            c.params["channel_id"] for c in w.fake.calls_to("GET", "/channels/{channel_id}")
        ] == [str(new_thread)]
        # Each thread is its own conversation: the second one did not see the first.
        assert "hello thread" not in str(fake_gpts.requests[-1].messages)


@pytest.mark.asyncio
async def test_reset_starts_a_new_conversation(tmp_path: Path, fake_gpts: FakeGpts) -> None:
    fake_gpts.enqueue(Reply("one"), Reply("two"))
    async with world(tmp_path, fake_gpts) as w:
        await w.fake.user_says(w.channel_id, w.member, "remember me", mention_bot=True)
        await w.answered(w.channel_id, "one")
        reset = await w.fake.slash(w.channel_id, w.member, "reset")
        await w.fake.wait_for(lambda: reset.callbacks, TIMEOUT)
        notice = reset.callbacks[0]["data"]["content"]
        # Shown to the channel: everyone's context changed.
        assert notice == i18n.RESET_DONE("en")
        await w.fake.user_says(w.channel_id, w.member, "who am I?", mention_bot=True)
        await w.answered(w.channel_id, f"one{notice}two", count=3)
        assert [m["content"] for m in fake_gpts.requests[-1].messages] == ["mia: who am I?"]


@pytest.mark.asyncio
async def test_cancelling_mid_answer_shuts_down_cleanly(
    tmp_path: Path, fake_gpts: FakeGpts, gate: Gate
) -> None:
    saved = discord.http.Route.BASE
    async with world(tmp_path, fake_gpts) as w:
        assert w.fake.api_base == discord.http.Route.BASE
        await w.fake.user_says(w.channel_id, w.member, "long story", mention_bot=True)
        gate.send("Once upon")
        await w.fake.wait_for(lambda: w.fake.bot_messages(w.channel_id), TIMEOUT)
        # Leaving the block cancels adapter.run() while the answer is still streaming.
    assert w.adapter.client is not None and w.adapter.client.is_closed()
    assert saved == discord.http.Route.BASE


@pytest.mark.asyncio
async def test_dm_every_message_is_a_turn(tmp_path: Path, fake_gpts: FakeGpts) -> None:
    fake_gpts.enqueue(Reply("private answer"))
    async with world(tmp_path, fake_gpts) as w:
        answer = await w.in_dm("just between us", "private answer")
        dm = answer.channel_id
        (request,) = fake_gpts.requests
        assert request.messages[-1]["content"] == "just between us"  # no speaker name in a DM
        assert answer.reference_id is not None

        fake_gpts.enqueue(Reply("bound in DM"))
        bind = await w.fake.slash(dm, w.member, "gpt bind", [option("gpt", GPT_B)])
        await w.fake.wait_for(lambda: bind.callbacks, TIMEOUT)
        assert GPT_B in bind.callbacks[0]["data"]["content"]
        chat = await w.fake.slash(dm, w.member, "chat", [option("prompt", "again")])
        await wait_original(w, chat, quote_prompt("again") + "bound in DM")
        assert fake_gpts.requests[-1].model == f"gpt-4-gizmo-{GPT_B}"


@pytest.mark.asyncio
async def test_allowed_guilds_refuse_other_guilds(tmp_path: Path, fake_gpts: FakeGpts) -> None:
    async with world(tmp_path, fake_gpts, access={"allow": {"discord_guilds": [1]}}) as w:
        asked = await w.fake.user_says(w.channel_id, w.member, "hello?", mention_bot=True)
        dm = w.fake.dm_channel(w.member)
        await w.fake.user_says(dm, w.member, "psst")
        chat = await w.fake.slash(w.channel_id, w.member, "chat", [option("prompt", "hi")])
        await w.fake.wait_for(lambda: chat.callbacks, TIMEOUT)
        assert chat.callbacks[0]["data"]["flags"] & EPHEMERAL_FLAG
        assert chat.callbacks[0]["data"]["content"] == i18n.ACCESS_NOT_HERE("en")
        (refusal,) = await w.answered(w.channel_id, i18n.ACCESS_NOT_HERE("en"))
        assert refusal.reference_id == asked.id
        await w.answered(dm, i18n.ACCESS_NOT_YOU("en"))  # not a member of an allowed guild
        await asyncio.sleep(0.2)
        assert fake_gpts.requests == []


@pytest.mark.asyncio
async def test_allowed_guilds_answer_dms_of_their_members_only(
    tmp_path: Path, fake_gpts: FakeGpts
) -> None:
    fake_gpts.enqueue(Reply("member answer"))
    async with world(tmp_path, fake_gpts, allow_only_own_guild=True) as w:
        stranger = w.fake.make_user("eve")
        await w.fake.user_says(w.fake.dm_channel(stranger), stranger, "psst")
        await w.in_dm("hi from a member", "member answer")
        assert len(fake_gpts.requests) == 1
        checked = w.fake.calls_to("GET", "/guilds/{guild_id}/members/{user_id}")
        assert {c.params["user_id"] for c in checked} == {stranger["id"], w.member["id"]}


# -- long answers, limits, safety -------------------------------------------------------------


@pytest.mark.asyncio
async def test_long_answer_arrives_as_three_messages_despite_a_429_on_edits(
    tmp_path: Path, fake_gpts: FakeGpts
) -> None:
    words = [f"word{i:04d} " for i in range(500)]  # 4,500 characters
    text = "".join(words).rstrip()
    assert len(text) == 4499
    fake_gpts.enqueue(Reply(text, chunk_chars=300, chunk_delay_s=0.01))
    async with world(tmp_path, fake_gpts) as w:
        w.fake.fail("PATCH", EDIT_MESSAGE, times=2, retry_after=0.05)
        await w.fake.user_says(w.channel_id, w.member, "long please", mention_bot=True)
        messages = await w.answered(w.channel_id, text, count=3)
        assert all(len(m.content) <= 2000 for m in messages)
        statuses = [c.status for c in w.fake.calls_to("PATCH", EDIT_MESSAGE)]
        assert statuses.count(429) == 2 and statuses[-1] == 200


@pytest.mark.asyncio
async def test_long_chat_answer_continues_in_follow_ups_despite_a_429_on_edits(
    tmp_path: Path, fake_gpts: FakeGpts
) -> None:
    text = "".join(f"word{i:04d} " for i in range(500)).rstrip()
    fake_gpts.enqueue(Reply(text, chunk_chars=300, chunk_delay_s=0.01))
    async with world(tmp_path, fake_gpts) as w:
        w.fake.fail("PATCH", EDIT_HOOK, times=2, retry_after=0.05)
        chat = await w.fake.slash(w.channel_id, w.member, "chat", [option("prompt", "long")])
        header = quote_prompt("long")
        messages = await w.answered(w.channel_id, header + text, count=3)
        assert messages[0].id == chat.original_id
        assert [m.id for m in messages[1:]] == chat.followup_ids
        assert all(len(m.content) <= 2000 for m in messages)
        statuses = [c.status for c in w.fake.calls_to("PATCH", EDIT_HOOK)]
        assert statuses.count(429) == 2 and statuses[-1] == 200


@pytest.mark.asyncio
async def test_everyone_in_an_answer_pings_no_one(tmp_path: Path, fake_gpts: FakeGpts) -> None:
    answer = "Hey @everyone and @here, ask <@123456789012345678> or <@&987654321098765432>!"
    fake_gpts.enqueue(Reply(answer, chunk_chars=10))
    async with world(tmp_path, fake_gpts) as w:
        await w.fake.user_says(w.channel_id, w.member, "ping them", mention_bot=True)
        await w.answered(w.channel_id, answer)
        calls = message_calls(w.fake, w.channel_id)
        assert calls
        assert all(c.json["allowed_mentions"] == {"parse": []} for c in calls)


@pytest.mark.asyncio
async def test_deleted_answer_gets_the_rest_as_a_new_message(
    tmp_path: Path, fake_gpts: FakeGpts, gate: Gate
) -> None:
    async with world(tmp_path, fake_gpts) as w:
        await w.fake.user_says(w.channel_id, w.member, "go", mention_bot=True)
        gate.send("first part")
        (first,) = await w.fake.wait_for(lambda: w.fake.bot_messages(w.channel_id), TIMEOUT)
        w.fake.delete_message(first.id)
        gate.send(", second part")
        gate.finish()
        (rest,) = await w.answered(w.channel_id, "first part, second part")
        assert rest.id != first.id


@pytest.mark.asyncio
@pytest.mark.parametrize(("guild_locale", "language"), [("en-US", "en"), ("zh-CN", "zh")])
async def test_unexpected_failure_is_logged_once_and_answered_with_an_apology(
    tmp_path: Path,
    fake_gpts: FakeGpts,
    caplog: pytest.LogCaptureFixture,
    guild_locale: str,
    language: i18n.Language,
) -> None:
    fake_gpts.enqueue(Reply("never shown", chunk_chars=100))
    async with world(tmp_path, fake_gpts, guild_locale=guild_locale) as w:
        w.adapter.reraise_unexpected = False
        forbidden = {"message": "Missing Permissions", "code": 50013}
        w.fake.fail("POST", POST_MESSAGE, times=1, status=403, body=forbidden)
        with caplog.at_level(logging.ERROR, logger="bots.discord_adapter"):
            await w.fake.user_says(w.channel_id, w.member, "hi", mention_bot=True)
            (apology,) = await w.answered(w.channel_id, APOLOGY(language))
        errors = [r for r in caplog.records if r.name.startswith("bots.discord_adapter")]
        assert len(errors) == 1 and errors[0].exc_info is not None
        assert "Traceback" not in apology.content
        assert len(w.adapter.unexpected) == 1
        w.adapter.unexpected.clear()


# -- sharing Discord's limits -----------------------------------------------------------------


@pytest.mark.asyncio
async def test_two_answers_in_one_channel_share_its_edit_budget(
    tmp_path: Path, fake_gpts: FakeGpts
) -> None:
    # Discord's 5 edits per 5 s per channel, with time scaled down 10x: 5 per 0.5 s.
    window = 0.5
    texts = [" ".join(f"{name}{i}" for i in range(40)) for name in ("ann", "bob")]
    for text in texts:
        fake_gpts.enqueue(Reply(text, chunk_chars=8, chunk_delay_s=0.02))
    async with world(
        tmp_path,
        fake_gpts,
        discord_config={"channel_edits_per_5s": 5},
        channel_window_s=window,
    ) as w:
        await w.fake.user_says(w.channel_id, w.member, "one", mention_bot=True)
        await w.fake.user_says(w.channel_id, w.manager, "two", mention_bot=True)

        def both_done() -> bool:
            contents = sorted(m.content for m in w.fake.bot_messages(w.channel_id))
            return contents == sorted(texts)

        await w.fake.wait_for(both_done, TIMEOUT)
        times = [c.at for c in message_calls(w.fake, w.channel_id)]
        assert len(times) > 5  # enough calls that an unpaced bot would have broken the limit
        assert max_in_window(times, window * JITTER_FACTOR) <= 5


@pytest.mark.asyncio
async def test_hundred_answers_in_hundred_channels_stay_under_the_global_rate(
    tmp_path: Path, fake_gpts: FakeGpts
) -> None:
    # Discord's ~50 requests per second, with time scaled down 4x: 200 per second, i.e. at
    # most 50 in any 0.25 s.
    rate, window = 200, 0.25
    fake_gpts.chunk_delay_s = 0.01  # each answer echoes its question, 4 characters a chunk
    async with world(
        tmp_path, fake_gpts, channels=100, discord_config={"requests_per_second": rate}
    ) as w:
        questions = {c: f"question {i} " + "lorem ipsum " * 5 for i, c in enumerate(w.channels)}
        answers = {c: f"echo: mia: {q.strip()}" for c, q in questions.items()}
        started = len(w.fake.calls)
        for channel_id in w.channels:
            await w.fake.user_says(channel_id, w.member, questions[channel_id], mention_bot=True)

        def all_done() -> bool:
            return all(
                [m.content for m in w.fake.bot_messages(c)] == [answers[c]] for c in w.channels
            )

        await w.fake.wait_for(all_done, 20.0)
        calls = w.fake.calls[started:]
        assert all(c.status < 400 for c in calls)
        # At least a message per channel: unpaced, 100 arrive at once, far over 50 per 0.25 s.
        assert len(calls) >= len(w.channels)
        times = [c.at for c in calls]
        assert max_in_window(times, window * JITTER_FACTOR) <= rate * window
        assert max_in_window(times, 1.0 * JITTER_FACTOR) <= rate


# -- intents ----------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_without_message_content_intent_commands_and_mentions_still_work(
    tmp_path: Path, fake_gpts: FakeGpts, caplog: pytest.LogCaptureFixture
) -> None:
    fake_gpts.enqueue(Reply("via command"), Reply("via mention"))
    with caplog.at_level(logging.INFO, logger="bots.discord_adapter"):
        async with world(tmp_path, fake_gpts, allow_message_content=False) as w:
            assert w.fake.closed_codes == [4014]
            assert not w.adapter.message_content
            assert not w.fake.identifies[-1]["intents"] & (1 << 15)
            chat = await w.fake.slash(w.channel_id, w.member, "chat", [option("prompt", "hi")])
            await wait_original(w, chat, quote_prompt("hi") + "via command")
            await w.fake.user_says(w.channel_id, w.member, "hello", mention_bot=True)
            await w.answered(w.channel_id, quote_prompt("hi") + "via command" + "via mention", 2)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("message-content intent" in m and "ignored" in m for m in warnings)


# -- language ---------------------------------------------------------------------------------

UNAUTHORIZED = Fail(401, {"error": {"message": "Incorrect API key provided", "code": None}})


def _descriptions(commands: list[dict[str, Any]]) -> dict[str, tuple[str, dict[str, str]]]:
    """Every description the sync sent, by path ("chat", "chat prompt", "gpt bind gpt", ...)."""
    found: dict[str, tuple[str, dict[str, str]]] = {}

    def walk(path: str, item: dict[str, Any]) -> None:
        found[path] = (item["description"], item.get("description_localizations") or {})
        assert not item.get("name_localizations")  # names stay as the sentences cite them
        for child in item.get("options") or []:
            walk(f"{path} {child['name']}", child)

    for command in commands:
        walk(command["name"], command)
    return found


@pytest.mark.asyncio
@pytest.mark.parametrize("setting", ["auto", "en", "zh"])
async def test_command_descriptions_are_chinese_for_chinese_clients(
    tmp_path: Path, fake_gpts: FakeGpts, setting: str
) -> None:
    async with world(tmp_path, fake_gpts, bot_config={"language": setting}) as w:
        found = _descriptions(w.fake.global_commands)
    assert set(found) == {
        "help",
        "chat",
        "chat prompt",
        "chat file",
        "reset",
        "gpt",
        "gpt bind",
        "gpt bind gpt",
        "gpt unbind",
        "gpt info",
        "usage",
        "retry",
    }
    chat, localized = found["chat"]
    chat_command, bind = commands.find("chat"), commands.find("gpt bind")
    assert chat_command is not None and bind is not None
    description = chat_command.description
    if setting == "auto":
        assert chat == description.en
        assert localized == {"zh-CN": description.zh, "zh-TW": description.zh}
        assert found["gpt bind gpt"][1]["zh-CN"] == bind.arguments[0].description.zh
        assert found["chat prompt"][1]["zh-CN"] == chat_command.arguments[0].description.zh
        assert chat_command.attachment is not None
        assert found["chat file"][1]["zh-CN"] == chat_command.attachment.description.zh
        assert all(set(loc) == {"zh-CN", "zh-TW"} for _, loc in found.values())
        assert all(desc.isascii() for desc, _ in found.values())
    else:  # a fixed language: the descriptions are written in it, for every client
        assert chat == description(setting)  # type: ignore[arg-type]
        assert all(loc == {} for _, loc in found.values())


@pytest.mark.asyncio
async def test_chinese_client_gets_chinese_command_answers(
    tmp_path: Path, fake_gpts: FakeGpts
) -> None:
    fake_gpts.enqueue(UNAUTHORIZED)
    async with world(tmp_path, fake_gpts) as w:  # an English-speaking guild

        async def zh(channel_id: int, user: dict[str, Any], command: str, *args: Any) -> str:
            call = await w.fake.slash(channel_id, user, command, *args, locale="zh-CN")
            await w.fake.wait_for(lambda: call.callbacks, TIMEOUT)
            return str(call.callbacks[0]["data"]["content"])

        info = await zh(w.channel_id, w.member, "gpt info")
        assert "g-Default01" in info and info.endswith("这是机器人的默认 GPT（这里没有绑定）。")
        refused = await zh(w.channel_id, w.member, "gpt bind", [option("gpt", GPT_A)])
        assert refused == i18n.NOT_ADMIN("zh", usage="/gpt bind")
        bad = await zh(w.channel_id, w.manager, "gpt bind", [option("gpt", "nope")])
        usage = i18n.USAGE("zh", usage="/gpt bind <GPT 链接或 id>")
        assert bad == f"{i18n.BAD_GPT_NAME('zh', text='nope')}\n{usage}"
        bound = await zh(w.channel_id, w.manager, "gpt bind", [option("gpt", GPT_A)])
        assert bound == i18n.BOUND(
            "zh", name="max", gpt_id=GPT_A, url=f"https://chatgpt.com/g/{GPT_A}"
        )
        in_thread = await zh(w.thread_id, w.member, "gpt info")
        assert in_thread.startswith(f"🤖 GPT: {GPT_A}")
        assert "沿用上级频道或群组由 max 于 " in in_thread and in_thread.endswith("设置的绑定。")
        assert await zh(w.channel_id, w.member, "reset") == i18n.RESET_DONE("zh")

        # Each person reads their own client's language: an English client in the same
        # channel still gets English.
        english = await w.fake.slash(w.channel_id, w.member, "gpt info")
        await w.fake.wait_for(lambda: english.callbacks, TIMEOUT)
        english_info = english.callbacks[0]["data"]["content"]
        assert english_info.startswith(f"🤖 GPT: {GPT_A}") and "Bound by max on " in english_info

        # The core writes its error line in the turn's language: here after a 401 upstream.
        chat = await w.fake.slash(
            w.channel_id, w.member, "chat", [option("prompt", "你好")], locale="zh-CN"
        )
        await wait_original(w, chat, quote_prompt("你好") + i18n.AUTH_FAILED("zh"))

        unbound = await zh(w.channel_id, w.manager, "gpt unbind")
        assert unbound.startswith("✅ max 已解除绑定。") and "默认 GPT" in unbound
        nothing = await zh(w.channel_id, w.manager, "gpt unbind")
        assert nothing == i18n.NOTHING_BOUND("zh")


@pytest.mark.asyncio
async def test_chinese_guild_answers_mentions_in_chinese_and_dms_in_english(
    tmp_path: Path, fake_gpts: FakeGpts
) -> None:
    fake_gpts.enqueue(UNAUTHORIZED, UNAUTHORIZED)
    async with world(tmp_path, fake_gpts, guild_locale="zh-CN") as w:
        # A message has no author locale: the guild's preferred locale decides.
        await w.fake.user_says(w.channel_id, w.member, "你好", mention_bot=True)
        await w.answered(w.channel_id, i18n.AUTH_FAILED("zh"))
        # A DM has no guild and no locale: English.
        await w.in_dm("hello", i18n.AUTH_FAILED("en"))


@pytest.mark.asyncio
async def test_configured_english_wins_over_a_chinese_client_and_guild(
    tmp_path: Path, fake_gpts: FakeGpts
) -> None:
    fake_gpts.enqueue(UNAUTHORIZED, UNAUTHORIZED)
    async with world(tmp_path, fake_gpts, guild_locale="zh-CN", bot_config={"language": "en"}) as w:
        refused = await w.fake.slash(
            w.channel_id, w.member, "gpt bind", [option("gpt", GPT_A)], locale="zh-CN"
        )
        await w.fake.wait_for(lambda: refused.callbacks, TIMEOUT)
        assert refused.callbacks[0]["data"]["content"] == i18n.NOT_ADMIN("en", usage="/gpt bind")
        chat = await w.fake.slash(
            w.channel_id, w.member, "chat", [option("prompt", "你好")], locale="zh-CN"
        )
        await wait_original(w, chat, quote_prompt("你好") + i18n.AUTH_FAILED("en"))
        await w.fake.user_says(w.channel_id, w.member, "你好", mention_bot=True)
        await w.answered(w.channel_id, quote_prompt("你好") + i18n.AUTH_FAILED("en") * 2, count=2)


@pytest.mark.asyncio
async def test_configured_chinese_answers_a_dm_in_chinese(
    tmp_path: Path, fake_gpts: FakeGpts
) -> None:
    fake_gpts.enqueue(UNAUTHORIZED)
    async with world(tmp_path, fake_gpts, bot_config={"language": "zh"}) as w:
        await w.in_dm("hello", i18n.AUTH_FAILED("zh"))


@pytest.mark.asyncio
async def test_a_refused_token_stops_the_adapter_without_showing_the_token(
    tmp_path: Path, fake_gpts: FakeGpts
) -> None:
    wrong = "MTIz.not-the-token.xyz"
    async with FakeDiscord() as fake:
        config = parse_config(
            {
                "gpts": {"base_url": fake_gpts.base_url, "api_key": API_KEY},
                "storage": {"url": f"sqlite+aiosqlite:///{tmp_path / 'bot.db'}"},
                "discord": {"token": wrong, "api_base": fake.api_base},
            },
            env={},
        )
        async with open_app(config) as app:
            adapter = DiscordAdapter(config, app.service, guild_ready_timeout=0.05)
            with pytest.raises(PlatformRefused) as refused:
                await asyncio.wait_for(adapter.run(), TIMEOUT)
    assert "DISCORD_BOT_TOKEN" in str(refused.value)
    assert wrong not in str(refused.value) and refused.value.__cause__ is None


# -- a token refused while running --------------------------------------------------------------

REFUSED = "Discord refused the bot token: check DISCORD_BOT_TOKEN"


async def refusal(w: World) -> PlatformRefused:
    """The PlatformRefused the adapter stops with (once it stops)."""
    with pytest.raises(PlatformRefused) as refused:
        await asyncio.wait_for(asyncio.shield(w.task), TIMEOUT)
    return refused.value


@pytest.fixture
def problems(caplog: pytest.LogCaptureFixture) -> Callable[[], list[str]]:
    """What was logged at WARNING or above, everything being logged (DEBUG) meanwhile."""
    caplog.set_level(logging.DEBUG)
    return lambda: [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]


@pytest.mark.asyncio
async def test_a_token_reset_while_connected_stops_the_adapter(
    tmp_path: Path, fake_gpts: FakeGpts, problems: Callable[[], list[str]]
) -> None:
    async with world(tmp_path, fake_gpts) as w:
        await w.fake.revoke_token()  # the gateway closes with 4004
        refused = await refusal(w)
        assert str(refused) == REFUSED and refused.__cause__ is None
        # Stopped, not reconnecting or restarting.
        assert len(w.fake.identifies) == 1 and w.fake.closed_codes == [4004]
        assert w.adapter.client is not None and w.adapter.client.is_closed()
    assert problems() == []


@pytest.mark.asyncio
async def test_a_token_reset_mid_answer_stops_the_adapter_quietly(
    tmp_path: Path, fake_gpts: FakeGpts, gate: Gate, problems: Callable[[], list[str]]
) -> None:
    async with world(tmp_path, fake_gpts) as w:
        await w.fake.user_says(w.channel_id, w.member, "a story?", mention_bot=True)
        gate.send("Once upon")
        await w.answered(w.channel_id, "Once upon" + INDICATOR)
        await w.fake.revoke_token()  # the gateway closes with 4004, edits answer 401
        gate.send(" a time")
        gate.finish()
        assert str(await refusal(w)) == REFUSED
    assert problems() == []


@pytest.mark.asyncio
async def test_a_rest_call_refusing_the_token_stops_the_adapter(
    tmp_path: Path, fake_gpts: FakeGpts, problems: Callable[[], list[str]]
) -> None:
    async with world(tmp_path, fake_gpts) as w:
        unauthorized = {"message": "401: Unauthorized", "code": 0}
        w.fake.fail("POST", POST_MESSAGE, status=401, body=unauthorized)
        await w.fake.user_says(w.channel_id, w.member, "hello?", mention_bot=True)
        assert str(await refusal(w)) == REFUSED
        assert w.adapter.client is not None and w.adapter.client.is_closed()
    assert w.adapter.unexpected == []
    assert problems() == []
