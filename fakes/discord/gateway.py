"""The fake Discord's gateway: HELLO, heartbeat ACK, IDENTIFY -> READY -> GUILD_CREATE, and the
events of what users do (messages, slash commands, button presses)."""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Iterable
from typing import Any

from aiohttp import WSMsgType, web

from fakes import issued
from fakes.discord.protocol import (
    APPLICATION_COMMAND,
    BUTTON,
    CLOSE_AUTHENTICATION_FAILED,
    CLOSE_DISALLOWED_INTENTS,
    MEMBER_PERMISSIONS,
    MESSAGE_COMPONENT,
    MESSAGE_CONTENT_INTENT,
    OP_DISPATCH,
    OP_HEARTBEAT,
    OP_HEARTBEAT_ACK,
    OP_HELLO,
    OP_IDENTIFY,
    OP_RESUME,
    FakeInteraction,
    FakeMessage,
    GatewayConnection,
)
from fakes.discord.state import DiscordState


class Gateway(DiscordState):
    async def wait_ready(self, within_s: float = 5.0) -> GatewayConnection:
        conn: GatewayConnection = await self.wait_for(
            lambda: next((c for c in self.connections if c.ready and not c.ws.closed), None),
            within_s,
        )
        return conn

    # -- gateway ------------------------------------------------------------------------------

    async def _gateway(self, request: web.Request) -> web.StreamResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        compress = request.query.get("compress")
        conn = GatewayConnection(ws, compress)
        self.connections.append(conn)
        await conn.send(
            {"op": OP_HELLO, "d": {"heartbeat_interval": self.heartbeat_interval_ms}, "s": None}
        )
        try:
            async for msg in ws:
                if msg.type is not WSMsgType.TEXT:
                    continue
                payload = json.loads(msg.data)
                await self._on_gateway(conn, payload)
                await self._notify()
        finally:
            conn.ready = False
            await self._notify()
        return ws

    async def _on_gateway(self, conn: GatewayConnection, payload: dict[str, Any]) -> None:
        op, data = payload.get("op"), payload.get("d")
        if op == OP_HEARTBEAT:
            conn.heartbeats += 1
            await conn.send({"op": OP_HEARTBEAT_ACK, "d": None, "s": None})
        elif op == OP_IDENTIFY:
            assert isinstance(data, dict)
            self.identifies.append(data)
            conn.identify = data
            shard = data.get("shard") or [0, 1]
            conn.shard = (int(shard[0]), int(shard[1]))
            issued.note(data.get("token"))
            if data.get("token") != self.token or self.revoked:
                await self._close(conn, CLOSE_AUTHENTICATION_FAILED, b"Authentication failed.")
                return
            conn.intents = int(data.get("intents", 0))
            if conn.intents & MESSAGE_CONTENT_INTENT and not self.allow_message_content:
                await self._close(conn, CLOSE_DISALLOWED_INTENTS, b"Disallowed intent(s).")
                return
            await self._send_ready(conn)
        elif op == OP_RESUME:
            assert isinstance(data, dict)
            issued.note(data.get("token"))
            if data.get("token") != self.token or self.revoked:
                await self._close(conn, CLOSE_AUTHENTICATION_FAILED, b"Authentication failed.")
                return
            conn.shard = self._session_shards.get(str(data.get("session_id")), (0, 1))
            await self._send_dispatch(conn, "RESUMED", {})
            conn.ready = True

    async def revoke_token(self) -> None:
        """The bot's token stops working, as after "Reset Token" in the Developer Portal: open
        gateway connections close with 4004 (authentication failed), so does every IDENTIFY or
        RESUME after, and REST calls with the token answer 401."""
        self.revoked = True
        for conn in [c for c in self.connections if not c.ws.closed]:
            await self._close(conn, CLOSE_AUTHENTICATION_FAILED, b"Authentication failed.")
        await self._notify()

    async def _close(self, conn: GatewayConnection, code: int, reason: bytes) -> None:
        self.closed_codes.append(code)  # the code the fake closed with
        await conn.ws.close(code=code, message=reason)

    async def _send_ready(self, conn: GatewayConnection) -> None:
        """READY and a GUILD_CREATE for each guild of the connection's shard."""
        guilds = [g for g in self.guilds.values() if conn.has_guild(int(g["id"]))]
        session_id = secrets.token_hex(16)
        self._session_shards[session_id] = conn.shard  # a RESUME names the session only
        ready = {
            "v": 10,
            "user": self.bot,
            "guilds": [{"id": g["id"], "unavailable": True} for g in guilds],
            "session_id": session_id,
            "resume_gateway_url": self.gateway_url,
            "application": {"id": str(self.app_id), "flags": 0},
            "shard": list(conn.shard),
            "private_channels": [],
            "relationships": [],
            "user_settings": {},
        }
        await self._send_dispatch(conn, "READY", ready)
        for guild in guilds:
            await self._send_dispatch(conn, "GUILD_CREATE", guild)
        conn.ready = True

    async def _send_dispatch(self, conn: GatewayConnection, event: str, data: Any) -> None:
        self._seq += 1
        await conn.send({"op": OP_DISPATCH, "t": event, "s": self._seq, "d": data})

    def ready_connections(self, guild_id: int | None = None) -> list[GatewayConnection]:
        """The ready connections of the guild's shard (a DM's: shard 0)."""
        return [
            c for c in self.connections if c.ready and not c.ws.closed and c.has_guild(guild_id)
        ]

    async def dispatch(self, event: str, data: Any, guild_id: int | None = None) -> None:
        """Send a gateway event of a guild (None: a DM) to every ready connection of its shard,
        as Discord does."""
        conns = self.ready_connections(guild_id)
        if not conns:
            raise AssertionError(f"no gateway connection of guild {guild_id}'s shard is ready")
        for conn in conns:
            await self._send_dispatch(conn, event, data)

    async def user_says(
        self,
        channel_id: int,
        author: dict[str, Any],
        content: str,
        *,
        mention_bot: bool = False,
        reply_to: int | None = None,
        reply_mentions: bool = True,
        attachments: list[dict[str, Any]] | None = None,
    ) -> FakeMessage:
        """A user posts a message; MESSAGE_CREATE goes out as Discord would send it (content
        blanked for a guild message that does not mention the bot when the client did not get
        the message-content intent). `attachments`: from `attachment(...)`."""
        channel = self.channels[channel_id]
        guild_id = int(channel["guild_id"]) if "guild_id" in channel else None
        if mention_bot:
            content = f"<@{self.bot['id']}> {content}"
        message = FakeMessage(
            self.snowflake(), channel_id, author, content, guild_id=guild_id, reference_id=reply_to
        )
        message.history.append((time.monotonic(), content))
        self.messages[message.id] = message
        data = self.message_payload(message)
        data["attachments"] = attachments or []
        mentions = [self.bot] if mention_bot else []
        if reply_to is not None:
            replied = self.messages[reply_to]
            data["referenced_message"] = self.message_payload(replied)
            if reply_mentions and replied.author not in mentions:
                mentions.append(replied.author)
        data["mentions"] = mentions
        if guild_id is not None:
            member = self.member(guild_id, author["id"])
            if member is not None:
                member.pop("user")
                member.pop("permissions")
                data["member"] = member
        for conn in self.ready_connections(guild_id):
            sent = dict(data)
            has_content = conn.intents is None or conn.intents & MESSAGE_CONTENT_INTENT
            if guild_id is not None and not has_content and self.bot not in mentions:
                sent["content"] = ""
            await self._send_dispatch(conn, "MESSAGE_CREATE", sent)
        self._created[message.id] = data
        return message

    async def replay(self, message: FakeMessage) -> None:
        """Send a user message's MESSAGE_CREATE again (as a gateway replays events after a
        resume), to every ready connection."""
        await self.dispatch("MESSAGE_CREATE", self._created[message.id], message.guild_id)

    def command_id(self, name: str, guild_id: int | None = None) -> str:
        for command in [*self.guild_commands.get(guild_id or 0, []), *self.global_commands]:
            if command["name"] == name:
                return str(command["id"])
        raise AssertionError(f"command {name!r} was not synced")

    async def slash(
        self,
        channel_id: int,
        user: dict[str, Any],
        command: str,
        options: Iterable[dict[str, Any]] = (),
        *,
        permissions: int | None = None,
        interaction_type: int = APPLICATION_COMMAND,
        locale: str = "en-US",
        user_install: bool = False,
        attachments: Iterable[dict[str, Any]] = (),
    ) -> FakeInteraction:
        """A user runs a slash command. `command` may be "gpt bind" (a subcommand); `options`
        are Discord option dicts ({"name", "type", "value"}). In a guild the member's resolved
        `permissions` travel with the interaction (default: the member's). `locale` is the
        language of the user's Discord client; `guild_locale` is the guild's preferred one.
        `user_install`: run through the user's own install of the app. `attachments`: the
        files of attachment options (`attachment(...)`; the option's value is the file's id),
        sent in `resolved` as Discord does."""
        channel = self.channels[channel_id]
        guild_id = int(channel["guild_id"]) if "guild_id" in channel else None
        name, *sub = command.split()
        command_data: dict[str, Any] = {
            "id": self.command_id(name, guild_id),
            "name": name,
            "type": 1,
            "options": list(options),
        }
        if sub:
            command_data["options"] = [
                {"name": sub[0], "type": 1, "options": command_data["options"]}
            ]
        files = {str(file["id"]): file for file in attachments}
        if files:
            command_data["resolved"] = {"attachments": files}
        if guild_id in self.guild_commands:
            command_data["guild_id"] = str(guild_id)
        return await self._interact(
            channel_id,
            user,
            interaction_type,
            command_data,
            permissions=permissions,
            locale=locale,
            user_install=user_install,
        )

    async def press(
        self,
        message: FakeMessage,
        user: dict[str, Any],
        custom_id: str | None = None,
        *,
        permissions: int | None = None,
        locale: str = "en-US",
    ) -> FakeInteraction:
        """`user` presses the button `custom_id` (by default the first) under `message`, as it
        is now: a MESSAGE_COMPONENT interaction carrying the message."""
        current = self.messages[message.id]
        buttons = [b for row in current.components for b in row.get("components", [])]
        if custom_id is None:
            assert buttons, "the message has no button to press"
            custom_id = str(buttons[0]["custom_id"])
        data = {"custom_id": custom_id, "component_type": BUTTON}
        return await self._interact(
            current.channel_id,
            user,
            MESSAGE_COMPONENT,
            data,
            permissions=permissions,
            locale=locale,
            message=self.message_payload(current),
        )

    async def _interact(
        self,
        channel_id: int,
        user: dict[str, Any],
        interaction_type: int,
        data: dict[str, Any],
        *,
        permissions: int | None,
        locale: str,
        user_install: bool = False,
        message: dict[str, Any] | None = None,
    ) -> FakeInteraction:
        channel = self.channels[channel_id]
        guild_id = int(channel["guild_id"]) if "guild_id" in channel else None
        interaction_id = self.snowflake()
        token = "itoken-" + secrets.token_urlsafe(24)
        issued.note(token)
        payload: dict[str, Any] = {
            "id": str(interaction_id),
            "application_id": str(self.app_id),
            "type": interaction_type,
            "data": data,
            "token": token,
            "version": 1,
            "channel_id": str(channel_id),
            "channel": channel,
            "locale": locale,
            "entitlements": [],
            "attachment_size_limit": 10 * 1024 * 1024,
            "app_permissions": str(MEMBER_PERMISSIONS),
        }
        if guild_id is not None:
            member = self.member(guild_id, user["id"])
            if member is None:
                member = self.add_member(guild_id, user)
            if permissions is not None:
                member["permissions"] = str(permissions)
            payload.update(
                guild_id=str(guild_id),
                guild_locale=self.guilds[guild_id]["preferred_locale"],
                member=member,
                context=0,
                authorizing_integration_owners={"0": str(guild_id)},
            )
        else:
            payload.update(user=user, context=1, authorizing_integration_owners={"0": "0"})
        if user_install:  # the user's own install of the app, not the server's
            payload["authorizing_integration_owners"] = {"1": str(user["id"])}
        if message is not None:
            payload["message"] = message
        interaction = FakeInteraction(interaction_id, token, payload, time.monotonic())
        self.interactions[interaction_id] = interaction
        await self.dispatch("INTERACTION_CREATE", payload, guild_id)
        return interaction
