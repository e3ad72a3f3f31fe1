"""A local fake Discord that the real discord.py 2.7 client accepts: REST under `/api/v10` and a
gateway websocket (HELLO, heartbeat ACK, IDENTIFY -> READY -> GUILD_CREATE, then events the test
dispatches), zlib-stream compressed when the client asks for it.

Every REST call is recorded with the time the fake received it (`time.monotonic`), so tests can
check edit spacing, per-channel and bot-wide request rates, `allowed_mentions` and contents.
Files sent with a message (multipart, as discord.py uploads them) are kept with it (uploads.py).
Chosen routes can be made to answer 429 (with the `Via` header and JSON `retry_after` discord.py
needs before it retries) or any other error.

Facts it follows are in /work/shared/PROTOCOL-NOTES.md: JSON answers carry exactly
`Content-Type: application/json`; interaction callbacks answer `{"interaction", "resource"}`;
zlib-stream uses one compression context per connection, each frame `Z_SYNC_FLUSH`ed.
"""

from __future__ import annotations

import contextlib
from typing import Self

from aiohttp import web

from fakes.discord.attachments import Attachments
from fakes.discord.gateway import Gateway
from fakes.discord.interactions import Interactions
from fakes.discord.protocol import API_PREFIX
from fakes.discord.uploads import MAX_REQUEST_BYTES


class FakeDiscord(Gateway, Interactions, Attachments):
    """The fake. Build guilds, channels and members before the client connects (they arrive in
    GUILD_CREATE), then `async with` (or `start`/`close`) and point the client at `api_base`."""

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

    async def start(self) -> Self:
        app = web.Application(client_max_size=MAX_REQUEST_BYTES)
        app.router.add_get("/gateway", self._gateway)
        app.router.add_get("/attachments/{attachment_id}/{filename}", self._cdn_get)
        app.router.add_route("*", API_PREFIX + "/{tail:.*}", self._rest)
        app.on_shutdown.append(self._close_sockets)
        await self._listen(app, handle_signals=False, access_log=None)
        return self

    async def _close_sockets(self, app: web.Application) -> None:
        for conn in list(self.connections):
            with contextlib.suppress(Exception):
                await conn.ws.close(code=1001)
