"""The fake Discord speaks the protocol the real discord.py client expects."""

from __future__ import annotations

import asyncio
import contextlib
import zlib
from collections.abc import AsyncIterator, Callable

import aiohttp
import pytest
import pytest_asyncio

from bots.discord_adapter.adapter import INTERACTION_TOKENS, TOKEN_LOGGERS
from core.redaction import Redact, filtered
from fakes.discord import MANAGE_CHANNELS, FakeDiscord
from tests.discord_fixtures import discord, point_discord_py_at

app_commands = discord.app_commands
__all__ = ["point_discord_py_at"]  # a fixture

TIMEOUT = 5.0


@pytest_asyncio.fixture
async def fake(
    point_discord_py_at: Callable[[FakeDiscord], None],
) -> AsyncIterator[FakeDiscord]:
    """A running fake Discord that plain discord.py clients are pointed at. Guilds and channels
    added before a client connects reach it in GUILD_CREATE."""
    async with FakeDiscord() as server:
        point_discord_py_at(server)
        # discord.py logs interaction tokens at DEBUG: redacted as the adapter does.
        with filtered(TOKEN_LOGGERS, Redact([server.token], INTERACTION_TOKENS)):
            yield server


def new_client() -> discord.Client:
    """A plain discord.py client with the message-content intent (point it at the fake first)."""
    intents = discord.Intents.default()
    intents.message_content = True
    return discord.Client(intents=intents, guild_ready_timeout=0.05)


@contextlib.asynccontextmanager
async def running(client: discord.Client, token: str) -> AsyncIterator[None]:
    """The client connected and ready (its guilds received); closed after."""
    ready = asyncio.Event()
    client.event(_named("on_ready", ready.set))
    task = asyncio.create_task(client.start(token))
    try:
        await asyncio.wait_for(ready.wait(), TIMEOUT)
        yield
    finally:
        await client.close()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(task, TIMEOUT)


@pytest.mark.asyncio
async def test_client_logs_in_connects_and_gets_ready(fake: FakeDiscord) -> None:
    guild_id = fake.add_guild()
    channel_id = fake.add_channel(guild_id, "general")
    thread_id = fake.add_thread(guild_id, channel_id, "talk")
    client = new_client()
    seen: list[discord.Message] = []
    got_message = asyncio.Event()

    @client.event
    async def on_message(message: discord.Message) -> None:
        seen.append(message)
        got_message.set()

    async with running(client, fake.token):
        routes = [c.route for c in fake.calls]
        assert routes[:2] == ["GET /users/@me", "GET /oauth2/applications/@me"]
        conn = fake.connections[0]
        assert conn.compress == "zlib-stream"
        assert conn.heartbeats >= 1
        assert fake.identifies[0]["token"] == fake.token
        assert fake.identifies[0]["intents"] & (1 << 15)
        assert client.user is not None and str(client.user.id) == fake.bot["id"]
        guild = client.get_guild(guild_id)
        assert guild is not None and guild.get_channel(channel_id) is not None
        thread = guild.get_thread(thread_id)
        assert thread is not None and thread.parent_id == channel_id

        user = fake.make_user("alice")
        fake.add_member(guild_id, user)
        await fake.user_says(thread_id, user, "hello", mention_bot=True)
        await asyncio.wait_for(got_message.wait(), TIMEOUT)
        message = seen[0]
        assert isinstance(message.channel, discord.Thread)
        assert client.user in message.mentions
        assert message.content.endswith("hello")

        sent = await message.channel.send(
            "hi @everyone", allowed_mentions=discord.AllowedMentions.none()
        )
        await sent.edit(content="hi again")
        stored = fake.messages[sent.id]
        assert stored.content == "hi again"
        assert stored.allowed_mentions == {"parse": []}
        assert [c.route for c in fake.calls[-2:]] == [
            "POST /channels/{channel_id}/messages",
            "PATCH /channels/{channel_id}/messages/{message_id}",
        ]


@pytest.mark.asyncio
async def test_zlib_frames_end_with_sync_flush_marker(fake: FakeDiscord) -> None:
    async with (
        aiohttp.ClientSession() as session,
        session.ws_connect(fake.gateway_url + "?v=10&encoding=json&compress=zlib-stream") as ws,
    ):
        frame = await ws.receive_bytes(timeout=TIMEOUT)
        assert frame.endswith(b"\x00\x00\xff\xff")
        hello = zlib.decompressobj().decompress(frame)
        assert b'"op": 10' in hello


@pytest.mark.asyncio
async def test_commands_interactions_and_webhooks(fake: FakeDiscord) -> None:
    guild_id = fake.add_guild()
    channel_id = fake.add_channel(guild_id)
    client = new_client()
    tree = app_commands.CommandTree(client)
    done = asyncio.Event()
    perms: list[discord.Permissions] = []

    @tree.command(name="ping", description="ping")
    async def ping(interaction: discord.Interaction, text: str) -> None:
        perms.append(interaction.permissions)
        await interaction.response.defer(thinking=True)
        await interaction.edit_original_response(content=f"pong {text}")
        followup = await interaction.followup.send("more", wait=True)
        await interaction.followup.edit_message(followup.id, content="more!")
        done.set()

    async with running(client, fake.token):
        await tree.sync()
        assert [c["name"] for c in fake.global_commands] == ["ping"]
        user = fake.make_user("bob")
        fake.add_member(guild_id, user)
        interaction = await fake.slash(
            channel_id,
            user,
            "ping",
            [{"name": "text", "type": 3, "value": "x"}],
            permissions=MANAGE_CHANNELS,
        )
        await asyncio.wait_for(done.wait(), TIMEOUT)
        assert perms[0].manage_channels and not perms[0].administrator
        assert interaction.callbacks[0]["type"] == 5
        assert interaction.original_id is not None
        assert fake.messages[interaction.original_id].content == "pong x"
        assert [fake.messages[i].content for i in interaction.followup_ids] == ["more!"]


@pytest.mark.asyncio
async def test_injected_429_is_retried_by_discord_py(fake: FakeDiscord) -> None:
    channel_id = fake.add_channel(fake.add_guild())
    async with running(client := new_client(), fake.token):
        channel = client.get_channel(channel_id)
        assert isinstance(channel, discord.TextChannel)
        fake.fail("POST", "/channels/{channel_id}/messages", times=2, retry_after=0.05)
        sent = await asyncio.wait_for(channel.send("after 429s"), TIMEOUT)
        posts = fake.calls_to("POST", "/channels/{channel_id}/messages")
        assert [c.status for c in posts] == [429, 429, 200]
        assert fake.messages[sent.id].content == "after 429s"
        assert posts[2].at - posts[0].at >= 0.09


@pytest.mark.asyncio
async def test_disallowed_intents_close_4014(fake: FakeDiscord) -> None:
    fake.allow_message_content = False
    fake.add_guild()
    client = new_client()
    with pytest.raises(discord.PrivilegedIntentsRequired):
        await asyncio.wait_for(client.start(fake.token), TIMEOUT)
    await client.close()
    assert fake.closed_codes == [4014]


def _named(name: str, func: object) -> object:
    async def handler(*args: object) -> None:
        func()  # type: ignore[operator]

    handler.__name__ = name
    return handler
