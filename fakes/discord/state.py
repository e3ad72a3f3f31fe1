"""What the fake Discord holds (guilds, channels, members, messages, interactions) and how a
test builds it, plus the waiting every part of the fake shares."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Callable, Sequence
from typing import Any

from fakes import issued
from fakes.discord.protocol import (
    API_PREFIX,
    DISCORD_EPOCH_MS,
    DM,
    EPHEMERAL_FLAG,
    GUILD_TEXT,
    INTERACTION_TOKEN_TTL_S,
    MEMBER_PERMISSIONS,
    PUBLIC_THREAD,
    Call,
    Failure,
    FakeInteraction,
    FakeMessage,
    GatewayConnection,
    Router,
    iso,
)
from fakes.discord.uploads import attachment_payload
from fakes.local_server import LocalServer


class DiscordState(LocalServer):
    def __init__(
        self,
        *,
        token: str = "fake-bot-token",
        allow_message_content: bool = True,
        heartbeat_interval_ms: int = 41_250,
        ratelimit_limit: int = 50,
        shards: int = 1,
    ) -> None:
        self.token = token
        issued.note(token)
        self.revoked = False  # see Gateway.revoke_token
        self.allow_message_content = allow_message_content
        self.heartbeat_interval_ms = heartbeat_interval_ms
        self.ratelimit_limit = ratelimit_limit
        self.recommended_shards = shards  # GET /gateway/bot's `shards`
        # Discord's deadlines; tests may shorten them.
        self.callback_deadline_s = 3.0
        self.interaction_ttl_s = float(INTERACTION_TOKEN_TTL_S)
        self._ids = itertools.count(1)
        self.app_id = self.snowflake()
        self.bot = self.make_user("gptsbot", bot=True, user_id=self.app_id)
        self.owner = self.make_user("owner")
        self.calls: list[Call] = []
        self.messages: dict[int, FakeMessage] = {}
        self._created: dict[int, dict[str, Any]] = {}  # each user message's MESSAGE_CREATE
        self.interactions: dict[int, FakeInteraction] = {}
        self.global_commands: list[dict[str, Any]] = []
        self.guild_commands: dict[int, list[dict[str, Any]]] = {}
        self.guilds: dict[int, dict[str, Any]] = {}
        self.channels: dict[int, dict[str, Any]] = {}  # every channel and thread, by id
        self.dm_channels: dict[int, dict[str, Any]] = {}  # user id -> DM channel
        self.connections: list[GatewayConnection] = []
        self.identifies: list[dict[str, Any]] = []
        self._session_shards: dict[str, tuple[int, int]] = {}  # session id -> its shard
        self.closed_codes: list[int] = []
        self._failures: list[Failure] = []
        self._seq = 0
        self._changed = asyncio.Condition()
        self._router = Router()
        self._add_routes()

    def _add_routes(self) -> None:
        """FakeDiscord registers the REST handlers of rest.py and interactions.py here."""

    # -- building the world -------------------------------------------------------------------

    def snowflake(self, *, shard: tuple[int, int] | None = None) -> int:
        """A new id; `shard` = (shard_id, shard_count): one whose guild belongs to that shard
        (`(id >> 22) % shard_count == shard_id`, its timestamp nudged a few ms ahead)."""
        ms = int(time.time() * 1000) - DISCORD_EPOCH_MS
        if shard is not None:
            shard_id, shard_count = shard
            ms += (shard_id - ms) % shard_count
        return (ms << 22) | (next(self._ids) & 0x3FFFFF)

    def make_user(
        self, name: str, *, bot: bool = False, user_id: int | None = None
    ) -> dict[str, Any]:
        return {
            "id": str(user_id or self.snowflake()),
            "username": name,
            "global_name": name,
            "discriminator": "0",
            "avatar": None,
            "bot": bot,
            "public_flags": 0,
        }

    def add_guild(
        self,
        name: str = "Test Guild",
        *,
        preferred_locale: str = "en-US",
        shard: tuple[int, int] | None = None,
    ) -> int:
        """A guild; `shard` = (shard_id, shard_count) picks an id in that shard."""
        guild_id = self.snowflake(shard=shard)
        everyone = {
            "id": str(guild_id),
            "name": "@everyone",
            "permissions": str(MEMBER_PERMISSIONS),
            "position": 0,
            "color": 0,
            "hoist": False,
            "managed": False,
            "mentionable": False,
            "flags": 0,
        }
        self.guilds[guild_id] = {
            "id": str(guild_id),
            "name": name,
            "owner_id": self.owner["id"],
            "unavailable": False,
            "member_count": 0,
            "large": False,
            "roles": [everyone],
            "channels": [],
            "threads": [],
            "members": [],
            "emojis": [],
            "stickers": [],
            "features": [],
            "voice_states": [],
            "presences": [],
            "stage_instances": [],
            "guild_scheduled_events": [],
            "soundboard_sounds": [],
            "joined_at": iso(),
            "preferred_locale": preferred_locale,
            "premium_tier": 0,
            "system_channel_flags": 0,
            "verification_level": 0,
            "default_message_notifications": 0,
            "explicit_content_filter": 0,
            "mfa_level": 0,
            "nsfw_level": 0,
        }
        self.add_member(guild_id, self.bot, permissions=MEMBER_PERMISSIONS)
        return guild_id

    def add_channel(self, guild_id: int, name: str = "general") -> int:
        guild = self.guilds[guild_id]
        channel_id = self.snowflake()
        channel = {
            "id": str(channel_id),
            "type": GUILD_TEXT,
            "guild_id": str(guild_id),
            "name": name,
            "position": len(guild["channels"]),
            "permission_overwrites": [],
            "nsfw": False,
            "parent_id": None,
            "topic": None,
            "last_message_id": None,
            "rate_limit_per_user": 0,
        }
        guild["channels"].append(channel)
        self.channels[channel_id] = channel
        return channel_id

    def add_thread(self, guild_id: int, parent_id: int, name: str = "thread") -> int:
        thread_id = self.snowflake()
        thread = {
            "id": str(thread_id),
            "type": PUBLIC_THREAD,
            "guild_id": str(guild_id),
            "parent_id": str(parent_id),
            "owner_id": self.owner["id"],
            "name": name,
            "last_message_id": None,
            "rate_limit_per_user": 0,
            "message_count": 0,
            "member_count": 1,
            "flags": 0,
            "thread_metadata": {
                "archived": False,
                "auto_archive_duration": 1440,
                "archive_timestamp": iso(),
                "locked": False,
                "create_timestamp": iso(),
            },
        }
        self.guilds[guild_id]["threads"].append(thread)
        self.channels[thread_id] = thread
        return thread_id

    def add_role(self, guild_id: int, name: str) -> int:
        """A role of the guild (arrives in GUILD_CREATE: add it before the client connects)."""
        guild = self.guilds[guild_id]
        role_id = self.snowflake()
        everyone = guild["roles"][0]
        guild["roles"].append(
            {**everyone, "id": str(role_id), "name": name, "position": len(guild["roles"])}
        )
        return role_id

    def add_member(
        self,
        guild_id: int,
        user: dict[str, Any],
        *,
        permissions: int = MEMBER_PERMISSIONS,
        roles: Sequence[int] = (),
    ) -> dict[str, Any]:
        """`permissions`: the member's resolved permissions, sent in interactions. `roles`: ids
        from `add_role`; they come with the member in messages and interactions."""
        member = {
            "user": user,
            "roles": [str(role) for role in roles],
            "joined_at": iso(),
            "deaf": False,
            "mute": False,
            "flags": 0,
            "pending": False,
            "nick": None,
            "avatar": None,
            "permissions": str(permissions),
        }
        guild = self.guilds[guild_id]
        guild["members"].append(member)
        guild["member_count"] = len(guild["members"])
        return member

    def member(self, guild_id: int, user_id: str) -> dict[str, Any] | None:
        for member in self.guilds[guild_id]["members"]:
            if member["user"]["id"] == user_id:
                return dict(member)
        return None

    def dm_channel(self, user: dict[str, Any]) -> int:
        user_id = int(user["id"])
        if user_id not in self.dm_channels:
            channel_id = self.snowflake()
            channel = {
                "id": str(channel_id),
                "type": DM,
                "recipients": [user],
                "last_message_id": None,
                "flags": 0,
            }
            self.dm_channels[user_id] = channel
            self.channels[channel_id] = channel
        return int(self.dm_channels[user_id]["id"])

    @property
    def api_base(self) -> str:
        return f"http://127.0.0.1:{self.port}{API_PREFIX}"

    @property
    def gateway_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/gateway"

    # -- waiting ------------------------------------------------------------------------------

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    async def wait_for(self, predicate: Callable[[], Any], within_s: float = 5.0) -> Any:
        """Wait until `predicate()` is truthy (checked after every call and gateway event)."""
        async with asyncio.timeout(within_s), self._changed:
            while not (result := predicate()):
                await self._changed.wait()
            return result

    def channel_messages(self, channel_id: int) -> list[FakeMessage]:
        return [m for m in self.messages.values() if m.channel_id == channel_id]

    def bot_messages(self, channel_id: int) -> list[FakeMessage]:
        """The bot's messages everyone in the channel sees (not deleted, not ephemeral)."""
        return [
            m
            for m in self.channel_messages(channel_id)
            if m.author["id"] == self.bot["id"] and not m.deleted and not m.flags & EPHEMERAL_FLAG
        ]

    def message_payload(self, message: FakeMessage) -> dict[str, Any]:
        data: dict[str, Any] = {
            "id": str(message.id),
            "channel_id": str(message.channel_id),
            "author": message.author,
            "content": message.content,
            "timestamp": iso(),
            "edited_timestamp": None,
            "tts": False,
            "mention_everyone": False,
            "mentions": [],
            "mention_roles": [],
            "attachments": [
                attachment_payload(upload, message.channel_id, message.id + 1 + index)
                for index, upload in enumerate(message.uploads)
            ],
            "embeds": [],
            "components": message.components,
            "pinned": False,
            "type": 19 if message.reference_id else 0,
            "flags": message.flags,
        }
        if message.guild_id is not None:
            data["guild_id"] = str(message.guild_id)
        if message.webhook_id is not None:
            data["webhook_id"] = str(message.webhook_id)
            data["application_id"] = str(self.app_id)
        if message.reference_id is not None:
            data["message_reference"] = {
                "type": 0,
                "message_id": str(message.reference_id),
                "channel_id": str(message.channel_id),
            }
            if message.guild_id is not None:
                data["message_reference"]["guild_id"] = str(message.guild_id)
        return data

    def interaction_by_token(self, token: str) -> FakeInteraction | None:
        return next((i for i in self.interactions.values() if i.token == token), None)

    def delete_message(self, message_id: int) -> None:
        """Someone deleted the message (the bot is not told; its next edit gets 404)."""
        self.messages[message_id].deleted = True
