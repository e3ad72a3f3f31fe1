"""Discord's wire as the fake speaks it: constants, the records it keeps, REST routing and one
gateway connection (zlib-stream or zstd-stream compressed when the client asks)."""

from __future__ import annotations

import json
import re
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from fakes.discord.uploads import Upload

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
APPLICATION_COMMAND, MESSAGE_COMPONENT, AUTOCOMPLETE = 2, 3, 4
CHANNEL_MESSAGE, DEFERRED_CHANNEL_MESSAGE, DEFERRED_UPDATE_MESSAGE, UPDATE_MESSAGE = 4, 5, 6, 7
AUTOCOMPLETE_RESULT = 8
# Components: an action row holds up to 5 buttons; a custom id is at most 100 characters.
ACTION_ROW, BUTTON = 1, 2
MAX_CUSTOM_ID_CHARS, MAX_BUTTON_LABEL_CHARS, MAX_ROW_BUTTONS = 100, 80, 5
EPHEMERAL_FLAG = 1 << 6
LOADING_FLAG = 1 << 7

INTERACTION_TOKEN_TTL_S = 15 * 60


def components_problem(components: Any) -> str | None:
    """What Discord would refuse in a message's components (action rows of buttons), if any."""
    if not isinstance(components, list):
        return "components: must be a list"
    for row in components:
        buttons = row.get("components") if isinstance(row, dict) else None
        if row.get("type") != ACTION_ROW or not isinstance(buttons, list):
            return "components: each top-level component must be an action row"
        if not 0 < len(buttons) <= MAX_ROW_BUTTONS:
            return "components: an action row holds 1 to 5 buttons"
        for button in buttons:
            if button.get("type") != BUTTON or not button.get("label"):
                return "components: a button needs a label (fake check)"
            if len(button["label"]) > MAX_BUTTON_LABEL_CHARS:
                return "components: label: Must be 80 or fewer in length."
            if not 0 < len(button.get("custom_id") or "") <= MAX_CUSTOM_ID_CHARS:
                return "components: custom_id: Must be between 1 and 100 in length."
    return None


def iso(ts: float | None = None) -> str:
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
    components: list[dict[str, Any]] = field(default_factory=list)
    uploads: list[Upload] = field(default_factory=list)  # files the bot sent with it
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


class Router:
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


class GatewayConnection:
    def __init__(self, ws: web.WebSocketResponse, compress: str | None) -> None:
        self.ws = ws
        self.compress = compress
        self.ready = False
        self.intents: int | None = None
        self.identify: dict[str, Any] | None = None
        self.shard = (0, 1)  # (shard_id, shard_count) from IDENTIFY
        self.heartbeats = 0
        self._zlib = zlib.compressobj() if compress == "zlib-stream" else None
        self._zstd: Any = None
        if compress == "zstd-stream":
            import zstandard  # only when the client asked for it (discord.py[speed])

            self._zstd = zstandard.ZstdCompressor().compressobj()
            self._zstd_flush = zstandard.COMPRESSOBJ_FLUSH_BLOCK

    def has_guild(self, guild_id: int | None) -> bool:
        """Whether this connection's shard receives the guild's events (DMs: shard 0)."""
        shard_id, shard_count = self.shard
        if guild_id is None:
            return shard_id == 0
        return (guild_id >> 22) % shard_count == shard_id

    async def send(self, payload: dict[str, Any]) -> None:
        data = json.dumps(payload).encode()
        if self._zlib is not None:
            frame = self._zlib.compress(data) + self._zlib.flush(zlib.Z_SYNC_FLUSH)
            await self.ws.send_bytes(frame)
        elif self._zstd is not None:
            await self.ws.send_bytes(self._zstd.compress(data) + self._zstd.flush(self._zstd_flush))
        else:
            await self.ws.send_str(data.decode())
