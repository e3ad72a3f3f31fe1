"""The Bot API's wire: how parameters arrive, how answers and errors go out, what is recorded."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web

MAX_TEXT_UNITS = 4096
GROUP_ANONYMOUS_BOT_ID = 1087968824

JSON_PARAMS = {
    "reply_parameters", "entities", "reply_markup", "commands", "scope", "allowed_updates",
    "link_preview_options",
}  # fmt: skip
INT_PARAMS = {
    "chat_id", "message_id", "message_thread_id", "user_id", "offset", "timeout", "limit",
    "draft_id",
}  # fmt: skip
BOOL_PARAMS = {
    "disable_notification", "protect_content", "drop_pending_updates", "show_alert",
}  # fmt: skip
MAX_CALLBACK_DATA_BYTES = 64
MAX_CALLBACK_ANSWER_CHARS = 200
ENTITY_TYPES = {
    "mention", "hashtag", "cashtag", "bot_command", "url", "email", "phone_number", "bold",
    "italic", "underline", "strikethrough", "spoiler", "blockquote", "expandable_blockquote",
    "code", "pre", "text_link", "text_mention", "custom_emoji", "date_time",
}  # fmt: skip
FLOOD_METHODS = {
    "sendmessage", "editmessagetext", "sendmessagedraft", "sendphoto", "sendmediagroup",
}  # fmt: skip


@dataclass(frozen=True, slots=True)
class Fault:
    """An error answer exactly as Telegram sends it."""

    status: int
    description: str
    retry_after: int | None = None

    def body(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "ok": False,
            "error_code": self.status,
            "description": self.description,
        }
        if self.retry_after is not None:
            body["parameters"] = {"retry_after": self.retry_after}
        return body

    @classmethod
    def flood(cls, retry_after: int) -> Fault:
        return cls(429, f"Too Many Requests: retry after {retry_after}", retry_after)

    @classmethod
    def not_modified(cls) -> Fault:
        return cls(
            400,
            "Bad Request: message is not modified: specified new message content and reply "
            "markup of the current message are exactly the same",
        )

    @classmethod
    def too_long(cls) -> Fault:
        return cls(400, "Bad Request: message is too long")

    @classmethod
    def cant_parse(
        cls, detail: str = "Can't find end of the entity starting at byte offset 0"
    ) -> Fault:
        return cls(400, f"Bad Request: can't parse entities: {detail}")

    @classmethod
    def query_too_old(cls) -> Fault:
        return cls(
            400,
            "Bad Request: query is too old and response timeout expired or query ID is invalid",
        )

    @classmethod
    def edit_not_found(cls) -> Fault:
        return cls(400, "Bad Request: message to edit not found")


UNAUTHORIZED = Fault(401, "Unauthorized")  # a wrong or revoked token


class Refused(Exception):
    """Raised by a method: the call is answered with `fault`."""

    def __init__(self, fault: Fault) -> None:
        super().__init__(fault.description)
        self.fault = fault


@dataclass(slots=True)
class Call:
    """One request the fake received: method, decoded parameters, arrival time, answer."""

    method: str
    params: dict[str, Any]
    at: float
    status: int = 200
    result: Any = None

    @property
    def ok(self) -> bool:
        return self.status == 200


@dataclass(slots=True)
class Injected:
    fault: Fault
    times: int
    when: Callable[[dict[str, Any]], bool] | None


@dataclass(slots=True)
class Draft:
    chat_id: int
    draft_id: int
    text: str
    at: float


def shallow(message: dict[str, Any]) -> dict[str, Any]:
    """A message as Telegram embeds it in `reply_to_message` (without its own reply)."""
    return {k: v for k, v in message.items() if k != "reply_to_message"}


async def read_params(request: web.Request) -> dict[str, Any]:
    """A call's parameters from its JSON, form-encoded or multipart body (the Bot API takes all
    three). Raises ValueError for a JSON body that is not an object."""
    if request.content_type == "application/json":
        params = await request.json()
        if not isinstance(params, dict):
            raise ValueError("the JSON body is not an object")
        return params
    return decode(dict(await request.post()))


def decode(form: dict[str, Any]) -> dict[str, Any]:
    """Form values are strings; PTB JSON-encodes everything that isn't one."""
    params: dict[str, Any] = {}
    for key, value in form.items():
        if not isinstance(value, str):
            params[key] = value  # an uploaded file
        elif key in JSON_PARAMS:
            params[key] = json.loads(value)
        elif key in INT_PARAMS:
            try:
                params[key] = int(value)
            except ValueError:
                params[key] = value  # e.g. chat_id "@channelname"
        elif key in BOOL_PARAMS:
            params[key] = value == "true"
        else:
            params[key] = value
    return params


def error_response(fault: Fault) -> web.Response:
    return web.json_response(fault.body(), status=fault.status)
