"""A local fake Discord that the real discord.py 2.7 client accepts: REST under `/api/v10` and a
gateway websocket (HELLO, heartbeat ACK, IDENTIFY -> READY -> GUILD_CREATE, then events the test
dispatches), zlib-stream compressed when the client asks for it.

Every REST call is recorded with the time the fake received it (`time.monotonic`), so tests can
check edit spacing, per-channel and bot-wide request rates, `allowed_mentions` and contents.
Chosen routes can be made to answer 429 (with the `Via` header and JSON `retry_after` discord.py
needs before it retries) or any other error.

Facts it follows are in /work/shared/PROTOCOL-NOTES.md: JSON answers carry exactly
`Content-Type: application/json`; interaction callbacks answer `{"interaction", "resource"}`;
zlib-stream uses one compression context per connection, each frame `Z_SYNC_FLUSH`ed.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import re
import secrets
import time
import zlib
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from aiohttp import WSMsgType, web

API_PREFIX = "/api/v10"
DISCORD_EPOCH_MS = 1_420_070_400_000

# Permission bits (https://discord.com/developers/docs/topics/permissions).
ADMINISTRATOR = 1 << 3
MANAGE_CHANNELS = 1 << 4
VIEW_CHANNEL = 1 << 10
SEND_MESSAGES = 1 << 11
READ_MESSAGE_HISTORY = 1 << 16
USE_APPLICATION_COMMANDS = 1 << 31
MEMBER_PERMISSIONS = VIEW_CHANNEL | SEND_MESSAGES | READ_MESSAGE_HISTORY | USE_APPLICATION_COMMANDS

MESSAGE_CONTENT_INTENT = 1 << 15
PRIVILEGED_INTENTS = (1 << 1) | (1 << 8) | MESSAGE_CONTENT_INTENT  # members, presences, content

# Gateway opcodes.
OP_DISPATCH, OP_HEARTBEAT, OP_IDENTIFY, OP_RESUME, OP_HELLO, OP_HEARTBEAT_ACK = 0, 1, 2, 6, 10, 11
CLOSE_AUTHENTICATION_FAILED = 4004
CLOSE_DISALLOWED_INTENTS = 4014

# Channel types.
GUILD_TEXT, DM, PUBLIC_THREAD = 0, 1, 11

# Interaction types and callback types.
APPLICATION_COMMAND, AUTOCOMPLETE = 2, 4
CHANNEL_MESSAGE, DEFERRED_CHANNEL_MESSAGE, AUTOCOMPLETE_RESULT = 4, 5, 8
EPHEMERAL_FLAG = 1 << 6
LOADING_FLAG = 1 << 7

INTERACTION_TOKEN_TTL_S = 15 * 60


def _iso(ts: float | None = None) -> str:
    return datetime.fromtimestamp(ts if ts is not None else time.time(), UTC).isoformat()


@dataclass
class Call:
    """One REST request as the fake received it."""

    at: float
    method: str
    path: str  # without the /api/v10 prefix
    route: str  # e.g. "PATCH /channels/{channel_id}/messages/{message_id}"
    params: dict[str, str]
    query: dict[str, str]
    json: Any
    headers: dict[str, str]
    status: int = 200

    @property
    def channel_id(self) -> str | None:
        return self.params.get("channel_id")


@dataclass
class FakeMessage:
    id: int
    channel_id: int
    author: dict[str, Any]
    content: str
    guild_id: int | None = None
    flags: int = 0
    reference_id: int | None = None
    allowed_mentions: Any = None
    webhook_id: int | None = None
    interaction_id: int | None = None
    deleted: bool = False
    # (fake time, content) of every create and edit, in order.
    history: list[tuple[float, str]] = field(default_factory=list)


@dataclass
class FakeInteraction:
    id: int
    token: str
    payload: dict[str, Any]
    created_at: float
    callbacks: list[dict[str, Any]] = field(default_factory=list)
    original_id: int | None = None
    followup_ids: list[int] = field(default_factory=list)


@dataclass
class Failure:
    method: str
    route: str  # template, e.g. "/channels/{channel_id}/messages/{message_id}"
    remaining: int
    status: int
    body: dict[str, Any]
    headers: dict[str, str]


class _Router:
    def __init__(self) -> None:
        self._routes: list[tuple[str, str, re.Pattern[str], Callable[..., Any]]] = []

    def add(self, method: str, template: str, handler: Callable[..., Any]) -> None:
        pattern = re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", template)
        self._routes.append((method, template, re.compile(f"^{pattern}$"), handler))

    def match(
        self, method: str, path: str
    ) -> tuple[str, dict[str, str], Callable[..., Any]] | None:
        for route_method, template, pattern, handler in self._routes:
            if route_method != method:
                continue
            found = pattern.match(path)
            if found:
                return template, found.groupdict(), handler
        return None


class _GatewayConnection:
    def __init__(self, ws: web.WebSocketResponse, compress: str | None) -> None:
        self.ws = ws
        self.compress = compress
        self.ready = False
        self.intents: int | None = None
        self.identify: dict[str, Any] | None = None
        self.heartbeats = 0
        self._zlib = zlib.compressobj() if compress == "zlib-stream" else None
        self._zstd: Any = None
        if compress == "zstd-stream":
            import zstandard  # only when the client asked for it (discord.py[speed])

            self._zstd = zstandard.ZstdCompressor().compressobj()
            self._zstd_flush = zstandard.COMPRESSOBJ_FLUSH_BLOCK

    async def send(self, payload: dict[str, Any]) -> None:
        data = json.dumps(payload).encode()
        if self._zlib is not None:
            frame = self._zlib.compress(data) + self._zlib.flush(zlib.Z_SYNC_FLUSH)
            await self.ws.send_bytes(frame)
        elif self._zstd is not None:
            await self.ws.send_bytes(self._zstd.compress(data) + self._zstd.flush(self._zstd_flush))
        else:
            await self.ws.send_str(data.decode())


class FakeDiscord:
    """The fake. Build guilds, channels and members before the client connects (they arrive in
    GUILD_CREATE), then `async with` (or `start`/`close`) and point the client at `api_base`."""

    def __init__(
        self,
        *,
        token: str = "fake-bot-token",
        allow_message_content: bool = True,
        heartbeat_interval_ms: int = 41_250,
        ratelimit_limit: int = 50,
    ) -> None:
        self.token = token
        self.allow_message_content = allow_message_content
        self.heartbeat_interval_ms = heartbeat_interval_ms
        self.ratelimit_limit = ratelimit_limit
        # Discord's deadlines; tests may shorten them.
        self.callback_deadline_s = 3.0
        self.interaction_ttl_s = float(INTERACTION_TOKEN_TTL_S)
        self._ids = itertools.count(1)
        self.app_id = self.snowflake()
        self.bot = self.make_user("gptsbot", bot=True, user_id=self.app_id)
        self.owner = self.make_user("owner")
        self.calls: list[Call] = []
        self.messages: dict[int, FakeMessage] = {}
        self.interactions: dict[int, FakeInteraction] = {}
        self.global_commands: list[dict[str, Any]] = []
        self.guild_commands: dict[int, list[dict[str, Any]]] = {}
        self.guilds: dict[int, dict[str, Any]] = {}
        self.channels: dict[int, dict[str, Any]] = {}  # every channel and thread, by id
        self.dm_channels: dict[int, dict[str, Any]] = {}  # user id -> DM channel
        self.connections: list[_GatewayConnection] = []
        self.identifies: list[dict[str, Any]] = []
        self.closed_codes: list[int] = []
        self._failures: list[Failure] = []
        self._seq = 0
        self._changed = asyncio.Condition()
        self._router = _Router()
        self._add_routes()
        self._runner: web.AppRunner | None = None
        self.port = 0

    # -- building the world -------------------------------------------------------------------

    def snowflake(self) -> int:
        ms = int(time.time() * 1000) - DISCORD_EPOCH_MS
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

    def add_guild(self, name: str = "Test Guild", *, preferred_locale: str = "en-US") -> int:
        guild_id = self.snowflake()
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
            "joined_at": _iso(),
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
                "archive_timestamp": _iso(),
                "locked": False,
                "create_timestamp": _iso(),
            },
        }
        self.guilds[guild_id]["threads"].append(thread)
        self.channels[thread_id] = thread
        return thread_id

    def add_member(
        self, guild_id: int, user: dict[str, Any], *, permissions: int = MEMBER_PERMISSIONS
    ) -> dict[str, Any]:
        """`permissions`: the member's resolved permissions, sent in interactions."""
        member = {
            "user": user,
            "roles": [],
            "joined_at": _iso(),
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

    # -- lifecycle ----------------------------------------------------------------------------

    @property
    def api_base(self) -> str:
        return f"http://127.0.0.1:{self.port}{API_PREFIX}"

    @property
    def gateway_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/gateway"

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/gateway", self._gateway)
        app.router.add_route("*", API_PREFIX + "/{tail:.*}", self._rest)
        app.on_shutdown.append(self._close_sockets)
        self._runner = web.AppRunner(app, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        server = site._server
        assert server is not None and server.sockets  # type: ignore[attr-defined]
        self.port = server.sockets[0].getsockname()[1]  # type: ignore[attr-defined]

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> FakeDiscord:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def _close_sockets(self, app: web.Application) -> None:
        for conn in list(self.connections):
            with contextlib.suppress(Exception):
                await conn.ws.close(code=1001)

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

    async def wait_ready(self, within_s: float = 5.0) -> _GatewayConnection:
        return await self.wait_for(
            lambda: next((c for c in self.connections if c.ready and not c.ws.closed), None),
            within_s,
        )

    # -- failures -----------------------------------------------------------------------------

    def fail(
        self,
        method: str,
        route: str,
        *,
        times: int = 1,
        status: int = 429,
        retry_after: float = 0.05,
        is_global: bool = False,
        body: dict[str, Any] | None = None,
    ) -> None:
        """The next `times` calls of `method route` (a template such as
        "/channels/{channel_id}/messages/{message_id}") answer `status`. A 429 carries the
        `Via` header and JSON `retry_after`, as Discord's do."""
        headers: dict[str, str] = {}
        if status == 429:
            body = body or {
                "message": "You are being rate limited.",
                "retry_after": retry_after,
                "global": is_global,
                "code": 0,
            }
            headers = {
                "Via": "1.1 google",
                "Retry-After": str(max(1, round(retry_after))),
                "X-RateLimit-Limit": str(self.ratelimit_limit),
                "X-RateLimit-Remaining": "0",
                "X-RateLimit-Reset-After": f"{retry_after:.3f}",
                "X-RateLimit-Reset": f"{time.time() + retry_after:.3f}",
                "X-RateLimit-Bucket": self._bucket(method, route),
                "X-RateLimit-Scope": "user",
            }
            if is_global:
                headers["X-RateLimit-Global"] = "true"
        self._failures.append(
            Failure(method, route, times, status, body or {"message": "error", "code": 0}, headers)
        )

    def _take_failure(self, method: str, route: str) -> Failure | None:
        for failure in self._failures:
            if failure.method == method and failure.route == route and failure.remaining > 0:
                failure.remaining -= 1
                return failure
        return None

    # -- recorded calls -----------------------------------------------------------------------

    def calls_to(self, method: str, route: str) -> list[Call]:
        return [c for c in self.calls if c.method == method and c.route == f"{method} {route}"]

    def channel_messages(self, channel_id: int) -> list[FakeMessage]:
        return [m for m in self.messages.values() if m.channel_id == channel_id]

    def bot_messages(self, channel_id: int) -> list[FakeMessage]:
        """The bot's messages everyone in the channel sees (not deleted, not ephemeral)."""
        return [
            m
            for m in self.channel_messages(channel_id)
            if m.author["id"] == self.bot["id"] and not m.deleted and not m.flags & EPHEMERAL_FLAG
        ]

    # -- gateway ------------------------------------------------------------------------------

    async def _gateway(self, request: web.Request) -> web.StreamResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        compress = request.query.get("compress")
        conn = _GatewayConnection(ws, compress)
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

    async def _on_gateway(self, conn: _GatewayConnection, payload: dict[str, Any]) -> None:
        op, data = payload.get("op"), payload.get("d")
        if op == OP_HEARTBEAT:
            conn.heartbeats += 1
            await conn.send({"op": OP_HEARTBEAT_ACK, "d": None, "s": None})
        elif op == OP_IDENTIFY:
            assert isinstance(data, dict)
            self.identifies.append(data)
            conn.identify = data
            if data.get("token") != self.token:
                await self._close(conn, CLOSE_AUTHENTICATION_FAILED, b"Authentication failed.")
                return
            conn.intents = int(data.get("intents", 0))
            if conn.intents & MESSAGE_CONTENT_INTENT and not self.allow_message_content:
                await self._close(conn, CLOSE_DISALLOWED_INTENTS, b"Disallowed intent(s).")
                return
            await self._send_ready(conn)
        elif op == OP_RESUME:
            await self._send_dispatch(conn, "RESUMED", {})
            conn.ready = True

    async def _close(self, conn: _GatewayConnection, code: int, reason: bytes) -> None:
        self.closed_codes.append(code)  # the code the fake closed with
        await conn.ws.close(code=code, message=reason)

    async def _send_ready(self, conn: _GatewayConnection) -> None:
        ready = {
            "v": 10,
            "user": self.bot,
            "guilds": [{"id": g["id"], "unavailable": True} for g in self.guilds.values()],
            "session_id": secrets.token_hex(16),
            "resume_gateway_url": self.gateway_url,
            "application": {"id": str(self.app_id), "flags": 0},
            "private_channels": [],
            "relationships": [],
            "user_settings": {},
        }
        await self._send_dispatch(conn, "READY", ready)
        for guild in self.guilds.values():
            await self._send_dispatch(conn, "GUILD_CREATE", guild)
        conn.ready = True

    async def _send_dispatch(self, conn: _GatewayConnection, event: str, data: Any) -> None:
        self._seq += 1
        await conn.send({"op": OP_DISPATCH, "t": event, "s": self._seq, "d": data})

    async def dispatch(self, event: str, data: Any) -> None:
        """Send a gateway event to every ready connection."""
        conns = [c for c in self.connections if c.ready and not c.ws.closed]
        if not conns:
            raise AssertionError("no gateway connection is ready")
        for conn in conns:
            await self._send_dispatch(conn, event, data)

    # -- what users do ------------------------------------------------------------------------

    def message_payload(self, message: FakeMessage) -> dict[str, Any]:
        data: dict[str, Any] = {
            "id": str(message.id),
            "channel_id": str(message.channel_id),
            "author": message.author,
            "content": message.content,
            "timestamp": _iso(),
            "edited_timestamp": None,
            "tts": False,
            "mention_everyone": False,
            "mentions": [],
            "mention_roles": [],
            "attachments": [],
            "embeds": [],
            "components": [],
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

    async def user_says(
        self,
        channel_id: int,
        author: dict[str, Any],
        content: str,
        *,
        mention_bot: bool = False,
        reply_to: int | None = None,
        reply_mentions: bool = True,
    ) -> FakeMessage:
        """A user posts a message; MESSAGE_CREATE goes out as Discord would send it (content
        blanked for a guild message that does not mention the bot when the client did not get
        the message-content intent)."""
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
        for conn in [c for c in self.connections if c.ready and not c.ws.closed]:
            sent = dict(data)
            has_content = conn.intents is None or conn.intents & MESSAGE_CONTENT_INTENT
            if guild_id is not None and not has_content and self.bot not in mentions:
                sent["content"] = ""
            await self._send_dispatch(conn, "MESSAGE_CREATE", sent)
        return message

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
    ) -> FakeInteraction:
        """A user runs a slash command. `command` may be "gpt bind" (a subcommand); `options`
        are Discord option dicts ({"name", "type", "value"}). In a guild the member's resolved
        `permissions` travel with the interaction (default: the member's). `locale` is the
        language of the user's Discord client; `guild_locale` is the guild's preferred one."""
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
        if guild_id in self.guild_commands:
            command_data["guild_id"] = str(guild_id)
        interaction_id = self.snowflake()
        token = "itoken-" + secrets.token_urlsafe(24)
        payload: dict[str, Any] = {
            "id": str(interaction_id),
            "application_id": str(self.app_id),
            "type": interaction_type,
            "data": command_data,
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
        interaction = FakeInteraction(interaction_id, token, payload, time.monotonic())
        self.interactions[interaction_id] = interaction
        await self.dispatch("INTERACTION_CREATE", payload)
        return interaction

    def interaction_by_token(self, token: str) -> FakeInteraction | None:
        return next((i for i in self.interactions.values() if i.token == token), None)

    # -- REST ---------------------------------------------------------------------------------

    def _add_routes(self) -> None:
        add = self._router.add
        add("GET", "/users/@me", self._get_me)
        add("GET", "/oauth2/applications/@me", self._get_application)
        add("GET", "/gateway/bot", self._get_gateway_bot)
        add("GET", "/gateway", self._get_gateway)
        add("PUT", "/applications/{application_id}/commands", self._put_commands)
        add(
            "PUT",
            "/applications/{application_id}/guilds/{guild_id}/commands",
            self._put_commands,
        )
        add("GET", "/channels/{channel_id}", self._get_channel)
        add("POST", "/channels/{channel_id}/messages", self._post_message)
        add("GET", "/channels/{channel_id}/messages/{message_id}", self._get_message)
        add("PATCH", "/channels/{channel_id}/messages/{message_id}", self._patch_message)
        add("DELETE", "/channels/{channel_id}/messages/{message_id}", self._delete_message)
        add("POST", "/channels/{channel_id}/typing", self._typing)
        add("GET", "/guilds/{guild_id}/members/{user_id}", self._get_member)
        add("POST", "/interactions/{interaction_id}/{token}/callback", self._callback)
        add("GET", "/webhooks/{application_id}/{token}/messages/{message_id}", self._get_hook_msg)
        add("PATCH", "/webhooks/{application_id}/{token}/messages/{message_id}", self._patch_hook)
        add("POST", "/webhooks/{application_id}/{token}", self._post_followup)

    def _bucket(self, method: str, route: str) -> str:
        return format(zlib.crc32(f"{method} {route}".encode()), "08x")

    def _json(self, data: Any, status: int = 200, headers: dict[str, str] | None = None) -> Any:
        # Exactly "application/json": discord.py reads a body with "; charset=utf-8" as text.
        all_headers = {"Content-Type": "application/json", **(headers or {})}
        return web.Response(status=status, body=json.dumps(data).encode(), headers=all_headers)

    def _error(self, status: int, code: int, message: str) -> Any:
        return self._json({"message": message, "code": code}, status)

    async def _rest(self, request: web.Request) -> web.StreamResponse:
        path = request.path[len(API_PREFIX) :]
        body: Any = None
        raw = await request.read()
        if raw and request.content_type == "application/json":
            body = json.loads(raw)
        found = self._router.match(request.method, path)
        template, params, handler = found if found else ("?", {}, None)
        call = Call(
            at=time.monotonic(),
            method=request.method,
            path=path,
            route=f"{request.method} {template}",
            params=params,
            query=dict(request.query),
            json=body,
            headers=dict(request.headers),
        )
        self.calls.append(call)
        try:
            response = await self._answer(request, template, params, handler, body)
            call.status = response.status
            if 200 <= response.status < 300 and response.status != 204:
                response.headers.update(self._ratelimit_headers(request.method, template))
            return response
        finally:
            await self._notify()

    def _ratelimit_headers(self, method: str, template: str) -> dict[str, str]:
        return {
            "X-RateLimit-Limit": str(self.ratelimit_limit),
            "X-RateLimit-Remaining": str(self.ratelimit_limit - 1),
            "X-RateLimit-Reset": f"{time.time() + 1:.3f}",
            "X-RateLimit-Reset-After": "1.000",
            "X-RateLimit-Bucket": self._bucket(method, template),
        }

    async def _answer(
        self,
        request: web.Request,
        template: str,
        params: dict[str, str],
        handler: Callable[..., Awaitable[Any]] | None,
        body: Any,
    ) -> Any:
        is_webhook = template.startswith(("/webhooks/", "/interactions/"))
        if not is_webhook and request.headers.get("Authorization") != f"Bot {self.token}":
            return self._error(401, 0, "401: Unauthorized")
        failure = self._take_failure(request.method, template)
        if failure is not None:
            return self._json(failure.body, failure.status, failure.headers)
        if handler is None:
            return self._error(404, 0, "404: Not Found")
        return await handler(request, params, body)

    async def _get_me(self, request: web.Request, params: dict[str, str], body: Any) -> Any:
        return self._json({**self.bot, "verified": True, "mfa_enabled": False, "flags": 0})

    async def _get_application(
        self, request: web.Request, params: dict[str, str], body: Any
    ) -> Any:
        return self._json(
            {
                "id": str(self.app_id),
                "name": "gptsbot",
                "description": "",
                "icon": None,
                "bot_public": False,
                "bot_require_code_grant": False,
                "owner": self.owner,
                "verify_key": "0" * 64,
                "flags": 0,
                "team": None,
                "summary": "",
                "rpc_origins": [],
            }
        )

    async def _get_gateway_bot(
        self, request: web.Request, params: dict[str, str], body: Any
    ) -> Any:
        return self._json(
            {
                "url": self.gateway_url,
                "shards": 1,
                "session_start_limit": {
                    "total": 1000,
                    "remaining": 999,
                    "reset_after": 14_400_000,
                    "max_concurrency": 1,
                },
            }
        )

    async def _get_gateway(self, request: web.Request, params: dict[str, str], body: Any) -> Any:
        return self._json({"url": self.gateway_url})

    async def _put_commands(self, request: web.Request, params: dict[str, str], body: Any) -> Any:
        commands = []
        for command in body or []:
            stored = {
                **command,
                "id": str(self.snowflake()),
                "application_id": str(self.app_id),
                "version": str(self.snowflake()),
            }
            if stored.get("default_member_permissions") is not None:
                # Discord answers permission sets as strings.
                stored["default_member_permissions"] = str(stored["default_member_permissions"])
            if "guild_id" in params:
                stored["guild_id"] = params["guild_id"]
            commands.append(stored)
        if "guild_id" in params:
            self.guild_commands[int(params["guild_id"])] = commands
        else:
            self.global_commands = commands
        return self._json(commands)

    async def _get_channel(self, request: web.Request, params: dict[str, str], body: Any) -> Any:
        channel = self.channels.get(int(params["channel_id"]))
        if channel is None:
            return self._error(404, 10003, "Unknown Channel")
        return self._json(channel)

    def _store_bot_message(
        self,
        channel_id: int,
        body: dict[str, Any],
        *,
        webhook: bool = False,
        interaction_id: int | None = None,
    ) -> FakeMessage:
        channel = self.channels.get(channel_id, {})
        reference = (body.get("message_reference") or {}).get("message_id")
        message = FakeMessage(
            self.snowflake(),
            channel_id,
            self.bot,
            body.get("content") or "",
            guild_id=int(channel["guild_id"]) if "guild_id" in channel else None,
            flags=int(body.get("flags") or 0),
            reference_id=int(reference) if reference else None,
            allowed_mentions=body.get("allowed_mentions"),
            webhook_id=self.app_id if webhook else None,
            interaction_id=interaction_id,
        )
        message.history.append((time.monotonic(), message.content))
        self.messages[message.id] = message
        return message

    async def _post_message(self, request: web.Request, params: dict[str, str], body: Any) -> Any:
        channel_id = int(params["channel_id"])
        if channel_id not in self.channels:
            return self._error(404, 10003, "Unknown Channel")
        content = (body or {}).get("content") or ""
        if not content.strip():
            return self._error(400, 50006, "Cannot send an empty message")
        if len(content) > 2000:
            return self._error(400, 50035, "Invalid Form Body: content: Must be 2000 or fewer.")
        message = self._store_bot_message(channel_id, body)
        return self._json(self.message_payload(message))

    def _find_message(self, params: dict[str, str]) -> FakeMessage | None:
        message = self.messages.get(int(params["message_id"]))
        if message is None or message.deleted:
            return None
        return message

    async def _get_message(self, request: web.Request, params: dict[str, str], body: Any) -> Any:
        message = self._find_message(params)
        if message is None or message.channel_id != int(params["channel_id"]):
            return self._error(404, 10008, "Unknown Message")
        return self._json(self.message_payload(message))

    def _edit(self, message: FakeMessage, body: dict[str, Any]) -> Any:
        if "content" in body:
            content = body["content"] or ""
            if len(content) > 2000:
                return self._error(400, 50035, "Invalid Form Body: content: Must be 2000 or fewer.")
            message.content = content
            message.flags &= ~LOADING_FLAG
        if "allowed_mentions" in body:
            message.allowed_mentions = body["allowed_mentions"]
        message.history.append((time.monotonic(), message.content))
        data = self.message_payload(message)
        data["edited_timestamp"] = _iso()
        return self._json(data)

    async def _patch_message(self, request: web.Request, params: dict[str, str], body: Any) -> Any:
        message = self._find_message(params)
        if message is None or message.channel_id != int(params["channel_id"]):
            return self._error(404, 10008, "Unknown Message")
        if message.author["id"] != self.bot["id"]:
            return self._error(403, 50005, "Cannot edit a message authored by another user")
        return self._edit(message, body or {})

    async def _delete_message(self, request: web.Request, params: dict[str, str], body: Any) -> Any:
        message = self._find_message(params)
        if message is None:
            return self._error(404, 10008, "Unknown Message")
        message.deleted = True
        return web.Response(status=204)

    def delete_message(self, message_id: int) -> None:
        """Someone deleted the message (the bot is not told; its next edit gets 404)."""
        self.messages[message_id].deleted = True

    async def _typing(self, request: web.Request, params: dict[str, str], body: Any) -> Any:
        return web.Response(status=204)

    async def _get_member(self, request: web.Request, params: dict[str, str], body: Any) -> Any:
        guild_id = int(params["guild_id"])
        if guild_id not in self.guilds:
            return self._error(404, 10004, "Unknown Guild")
        member = self.member(guild_id, params["user_id"])
        if member is None:
            return self._error(404, 10007, "Unknown Member")
        member.pop("permissions", None)
        return self._json(member)

    def _live_interaction(self, token: str) -> FakeInteraction | None:
        interaction = self.interaction_by_token(token)
        if interaction is None:
            return None
        if time.monotonic() - interaction.created_at > self.interaction_ttl_s:
            return None
        return interaction

    async def _callback(self, request: web.Request, params: dict[str, str], body: Any) -> Any:
        interaction = self.interactions.get(int(params["interaction_id"]))
        if interaction is None or interaction.token != params["token"]:
            return self._error(404, 10062, "Unknown interaction")
        if interaction.callbacks:
            return self._error(400, 40060, "Interaction has already been acknowledged.")
        if time.monotonic() - interaction.created_at > self.callback_deadline_s:
            return self._error(404, 10062, "Unknown interaction")
        body = body or {}
        interaction.callbacks.append(body)
        kind = body.get("type")
        data = body.get("data") or {}
        answer: dict[str, Any] = {
            "interaction": {
                "id": str(interaction.id),
                "type": interaction.payload["type"],
            }
        }
        if kind in (CHANNEL_MESSAGE, DEFERRED_CHANNEL_MESSAGE):
            flags = int(data.get("flags") or 0)
            if kind == DEFERRED_CHANNEL_MESSAGE:
                flags |= LOADING_FLAG
            message = self._store_bot_message(
                int(interaction.payload["channel_id"]),
                {**data, "flags": flags},
                webhook=True,
                interaction_id=interaction.id,
            )
            interaction.original_id = message.id
            answer["interaction"].update(
                response_message_id=str(message.id),
                response_message_loading=kind == DEFERRED_CHANNEL_MESSAGE,
                response_message_ephemeral=bool(flags & EPHEMERAL_FLAG),
            )
            answer["resource"] = {"type": kind, "message": self.message_payload(message)}
        return self._json(answer)

    def _hook_message(
        self, params: dict[str, str]
    ) -> tuple[FakeInteraction | None, FakeMessage | None, Any]:
        interaction = self._live_interaction(params["token"])
        if interaction is None:
            return None, None, self._error(401, 50027, "Invalid Webhook Token")
        message_id = params["message_id"]
        if message_id == "@original":
            if interaction.original_id is None:
                return interaction, None, self._error(404, 10008, "Unknown Message")
            message_id = str(interaction.original_id)
        message = self.messages.get(int(message_id))
        if message is None or message.deleted or message.interaction_id != interaction.id:
            return interaction, None, self._error(404, 10008, "Unknown Message")
        return interaction, message, None

    async def _get_hook_msg(self, request: web.Request, params: dict[str, str], body: Any) -> Any:
        _, message, error = self._hook_message(params)
        if message is None:
            return error
        return self._json(self.message_payload(message))

    async def _patch_hook(self, request: web.Request, params: dict[str, str], body: Any) -> Any:
        _, message, error = self._hook_message(params)
        if message is None:
            return error
        return self._edit(message, body or {})

    async def _post_followup(self, request: web.Request, params: dict[str, str], body: Any) -> Any:
        interaction = self._live_interaction(params["token"])
        if interaction is None:
            return self._error(401, 50027, "Invalid Webhook Token")
        if not interaction.callbacks:
            return self._error(404, 10015, "Unknown Webhook")
        content = (body or {}).get("content") or ""
        if len(content) > 2000:
            return self._error(400, 50035, "Invalid Form Body: content: Must be 2000 or fewer.")
        message = self._store_bot_message(
            int(interaction.payload["channel_id"]),
            body or {},
            webhook=True,
            interaction_id=interaction.id,
        )
        interaction.followup_ids.append(message.id)
        if request.query.get("wait") in ("1", "true", "True"):
            return self._json(self.message_payload(message))
        return web.Response(status=204)


def max_in_window(times: Iterable[float], window_s: float) -> int:
    """The most events in any half-open window [t, t + window_s)."""
    ordered = sorted(times)
    best, start = 0, 0
    for end, at in enumerate(ordered):
        while ordered[start] <= at - window_s:
            start += 1
        best = max(best, end - start + 1)
    return best
