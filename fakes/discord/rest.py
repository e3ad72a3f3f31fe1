"""The fake Discord's REST API under `/api/v10`: every call recorded, chosen routes made to fail,
and the bot's own resources (users, gateway, commands, channels, messages, members)."""

from __future__ import annotations

import json
import time
import zlib
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from fakes import issued
from fakes.discord.protocol import (
    API_PREFIX,
    LOADING_FLAG,
    Call,
    Failure,
    FakeMessage,
    components_problem,
    iso,
)
from fakes.discord.state import DiscordState
from fakes.discord.uploads import UPLOADS, Upload, read_multipart, uploads_problem


class Rest(DiscordState):
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

    # -- serving ------------------------------------------------------------------------------

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
        if request.content_type == "multipart/form-data":  # a message with files
            body, request[UPLOADS] = await read_multipart(request)
        else:
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
            response: web.StreamResponse = await self._answer(
                request, template, params, handler, body
            )
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
        authorization = request.headers.get("Authorization")
        issued.note_authorization(authorization)
        if not is_webhook and (authorization != f"Bot {self.token}" or self.revoked):
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
                "shards": self.recommended_shards,
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
        uploads: list[Upload] | None = None,
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
            components=list(body.get("components") or []),
            uploads=list(uploads or []),
        )
        message.history.append((time.monotonic(), message.content))
        self.messages[message.id] = message
        return message

    async def _post_message(self, request: web.Request, params: dict[str, str], body: Any) -> Any:
        channel_id = int(params["channel_id"])
        if channel_id not in self.channels:
            return self._error(404, 10003, "Unknown Channel")
        content = (body or {}).get("content") or ""
        uploads: list[Upload] = request.get(UPLOADS, [])
        if not content.strip() and not uploads:
            return self._error(400, 50006, "Cannot send an empty message")
        if problem := uploads_problem(uploads):
            return self._error(400, 50035, f"Invalid Form Body: {problem}")
        if len(content) > 2000:
            return self._error(400, 50035, "Invalid Form Body: content: Must be 2000 or fewer.")
        if problem := components_problem((body or {}).get("components", [])):
            return self._error(400, 50035, f"Invalid Form Body: {problem}")
        message = self._store_bot_message(channel_id, body, uploads=uploads)
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
        if problem := components_problem(body.get("components", [])):
            return self._error(400, 50035, f"Invalid Form Body: {problem}")
        if "content" in body:
            content = body["content"] or ""
            if len(content) > 2000:
                return self._error(400, 50035, "Invalid Form Body: content: Must be 2000 or fewer.")
            message.content = content
            message.flags &= ~LOADING_FLAG
        if "components" in body:  # an empty list removes them; absent, they stay
            message.components = list(body["components"])
        if "allowed_mentions" in body:
            message.allowed_mentions = body["allowed_mentions"]
        message.history.append((time.monotonic(), message.content))
        data = self.message_payload(message)
        data["edited_timestamp"] = iso()
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
