"""The fake Discord's interaction callbacks and the webhooks that edit and follow up on them."""

from __future__ import annotations

import time
from typing import Any

from aiohttp import web

from fakes.discord.protocol import (
    CHANNEL_MESSAGE,
    DEFERRED_CHANNEL_MESSAGE,
    DEFERRED_UPDATE_MESSAGE,
    EPHEMERAL_FLAG,
    LOADING_FLAG,
    FakeInteraction,
    FakeMessage,
)
from fakes.discord.rest import Rest
from fakes.discord.uploads import UPLOADS, Upload, uploads_problem


class Interactions(Rest):
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
        elif kind == DEFERRED_UPDATE_MESSAGE and "message" not in interaction.payload:
            return self._error(400, 40060, "Interaction has no message to update (fake check)")
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
        uploads: list[Upload] = request.get(UPLOADS, [])
        if not content.strip() and not uploads:
            return self._error(400, 50006, "Cannot send an empty message")
        if problem := uploads_problem(uploads):
            return self._error(400, 50035, f"Invalid Form Body: {problem}")
        message = self._store_bot_message(
            int(interaction.payload["channel_id"]),
            body or {},
            webhook=True,
            interaction_id=interaction.id,
            uploads=uploads,
        )
        interaction.followup_ids.append(message.id)
        if request.query.get("wait") in ("1", "true", "True"):
            return self._json(self.message_payload(message))
        return web.Response(status=204)
