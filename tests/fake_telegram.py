"""A local fake of the Telegram Bot API that the real python-telegram-bot talks to.

An aiohttp server on 127.0.0.1 answering `POST /bot<token>/<method>` with form-encoded or
multipart bodies, the way api.telegram.org does: `{"ok": true, "result": ...}`, or an error with
the real HTTP status and Telegram's own descriptions ("Bad Request: message is not modified: ...",
429 "Too Many Requests: retry after N" with `parameters.retry_after`). PTB chooses its exception
from the HTTP status, so the statuses matter as much as the texts.

What it checks like the real server: message length (4096 UTF-16 units after entity parsing),
MarkdownV2 syntax (unescaped reserved characters, unclosed entities), entity bounds, edits with
unchanged text, edits of unknown messages, drafts outside private chats.

The test drives it: `user_message(chat, user, text)` queues an update (with the `bot_command` and
`mention` entities Telegram would add) for the long-polled `getUpdates`; `inject(method, fault)`
makes the next call(s) of a method fail; `set_member(chat, user, status)` decides what
`getChatMember` says. Every call is recorded in `calls` with the time it arrived on the fake's
own clock (`time.monotonic()`), so tests measure pacing where Telegram would.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

# Opt in to PTB's timedelta durations now: otherwise reading `RetryAfter.retry_after` (which PTB
# does itself while building the exception) warns, and the test suite turns warnings into errors.
os.environ.setdefault("PTB_TIMEDELTA", "true")

MAX_TEXT_UNITS = 4096
GROUP_ANONYMOUS_BOT_ID = 1087968824

_RESERVED = set("_*[]()~`>#+-=|{}.!")
_JSON_PARAMS = {
    "reply_parameters", "entities", "reply_markup", "commands", "scope", "allowed_updates",
    "link_preview_options",
}  # fmt: skip
_INT_PARAMS = {
    "chat_id", "message_id", "message_thread_id", "user_id", "offset", "timeout", "limit",
    "draft_id",
}  # fmt: skip
_BOOL_PARAMS = {"disable_notification", "protect_content", "drop_pending_updates"}
_ENTITY_TYPES = {
    "mention", "hashtag", "cashtag", "bot_command", "url", "email", "phone_number", "bold",
    "italic", "underline", "strikethrough", "spoiler", "blockquote", "expandable_blockquote",
    "code", "pre", "text_link", "text_mention", "custom_emoji", "date_time",
}  # fmt: skip
_FLOOD_METHODS = {"sendmessage", "editmessagetext", "sendmessagedraft"}
_MENTION = re.compile(r"@[A-Za-z0-9_]{3,32}")
_COMMAND = re.compile(r"/[A-Za-z0-9_]{1,32}(?:@[A-Za-z0-9_]{3,32})?")


def utf16_len(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


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
    def edit_not_found(cls) -> Fault:
        return cls(400, "Bad Request: message to edit not found")


class _Refused(Exception):
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
class _Injected:
    fault: Fault
    times: int
    when: Callable[[dict[str, Any]], bool] | None


@dataclass(slots=True)
class Draft:
    chat_id: int
    draft_id: int
    text: str
    at: float


# --- MarkdownV2 ------------------------------------------------------------------------------


class MarkdownV2Error(ValueError):
    pass


_TOGGLES = ("||", "__", "*", "_", "~")
_TOGGLE_TYPES = {
    "||": "spoiler",
    "__": "underline",
    "*": "bold",
    "_": "italic",
    "~": "strikethrough",
}


def parse_markdown_v2(source: str) -> tuple[str, list[dict[str, Any]]]:
    """Plain text and entities of a MarkdownV2 text, or MarkdownV2Error with Telegram's words.

    Covers what bots send: escapes, bold/italic/underline/strike/spoiler, inline code, pre
    blocks, links, blockquotes. Good enough to reject what real Telegram rejects most often.
    """
    out: list[str] = []
    entities: list[dict[str, Any]] = []
    stack: list[
        tuple[str, int, int]
    ] = []  # (marker, utf-16 start in output, byte offset in source)

    def offset() -> int:
        return utf16_len("".join(out))

    def byte_at(index: int) -> int:
        return len(source[:index].encode("utf-8"))

    def unclosed(index: int) -> MarkdownV2Error:
        return MarkdownV2Error(
            f"Can't find end of the entity starting at byte offset {byte_at(index)}"
        )

    i, n = 0, len(source)
    while i < n:
        ch = source[i]
        at_line_start = i == 0 or source[i - 1] == "\n"
        if ch == "\\":
            if i + 1 < n and 0 < ord(source[i + 1]) < 127:
                out.append(source[i + 1])
                i += 2
                continue
            raise MarkdownV2Error(
                "Character '\\' is reserved and must be escaped with the preceding '\\'"
            )
        if source.startswith("```", i):
            end = i + 3
            newline = source.find("\n", end)
            language = ""
            if newline != -1 and re.fullmatch(r"[A-Za-z0-9_+#-]*", source[end:newline]):
                language, end = source[end:newline], newline + 1
            body: list[str] = []
            j = end
            while j < n and not source.startswith("```", j):
                if source[j] == "\\" and j + 1 < n:
                    body.append(source[j + 1])
                    j += 2
                else:
                    body.append(source[j])
                    j += 1
            if j >= n:
                raise unclosed(i)
            start = offset()
            out.append("".join(body))
            entity: dict[str, Any] = {"type": "pre", "offset": start, "length": offset() - start}
            if language:
                entity["language"] = language
            if entity["length"]:
                entities.append(entity)
            i = j + 3
            continue
        if ch == "`":
            close = i + 1
            body = []
            while close < n and source[close] != "`":
                if source[close] == "\\" and close + 1 < n:
                    body.append(source[close + 1])
                    close += 2
                else:
                    body.append(source[close])
                    close += 1
            if close >= n:
                raise unclosed(i)
            start = offset()
            out.append("".join(body))
            entities.append({"type": "code", "offset": start, "length": offset() - start})
            i = close + 1
            continue
        if ch == ">" and at_line_start:
            i += 1
            continue
        if ch == "!" and source.startswith("![", i):
            i += 1  # custom emoji: ![👍](tg://emoji?id=...) parses like a link
            continue
        if ch == "[":
            stack.append(("[", offset(), i))
            i += 1
            continue
        if ch == "]" and stack and stack[-1][0] == "[":
            if not source.startswith("](", i):
                raise MarkdownV2Error(
                    "Character ']' is reserved and must be escaped with the preceding '\\'"
                )
            close = i + 2
            url: list[str] = []
            while close < n and source[close] != ")":
                if source[close] == "\\" and close + 1 < n:
                    url.append(source[close + 1])
                    close += 2
                else:
                    url.append(source[close])
                    close += 1
            if close >= n:
                raise unclosed(stack[-1][2])
            _, start, _ = stack.pop()
            entities.append(
                {
                    "type": "text_link",
                    "offset": start,
                    "length": offset() - start,
                    "url": "".join(url),
                }
            )
            i = close + 1
            continue
        toggle = next((t for t in _TOGGLES if source.startswith(t, i)), None)
        if toggle is not None:
            if stack and stack[-1][0] == toggle:
                _, start, _ = stack.pop()
                if offset() > start:
                    entities.append(
                        {"type": _TOGGLE_TYPES[toggle], "offset": start, "length": offset() - start}
                    )
            else:
                stack.append((toggle, offset(), i))
            i += len(toggle)
            continue
        if ch in _RESERVED:
            raise MarkdownV2Error(
                f"Character '{ch}' is reserved and must be escaped with the preceding '\\'"
            )
        out.append(ch)
        i += 1
    if stack:
        raise unclosed(stack[0][2])
    return "".join(out), sorted(entities, key=lambda e: e["offset"])


# --- the server ------------------------------------------------------------------------------


@dataclass(slots=True)
class _State:
    next_message_id: dict[int, int] = field(default_factory=dict)
    next_thread_id: dict[int, int] = field(default_factory=dict)


class FakeTelegram:
    def __init__(
        self,
        *,
        token: str = "123456:TEST-fake-token",
        bot_id: int = 123456,
        username: str = "gpts_test_bot",
        first_name: str = "GPTs",
    ) -> None:
        self.token = token
        self.bot = {
            "id": bot_id,
            "is_bot": True,
            "first_name": first_name,
            "username": username,
            "can_join_groups": True,
            "can_read_all_group_messages": False,
            "supports_inline_queries": False,
        }
        self.calls: list[Call] = []
        self.chats: dict[int, dict[str, Any]] = {}
        self.users: dict[int, dict[str, Any]] = {bot_id: self.bot}
        self.members: dict[tuple[int, int], str] = {}
        self.messages: dict[tuple[int, int], dict[str, Any]] = {}
        self.drafts: list[Draft] = []
        self.commands: list[dict[str, Any]] | None = None  # the list for every language
        # Each list registered, by language_code ("" for the list for every language).
        self.commands_by_language: dict[str, list[dict[str, Any]]] = {}
        self.allowed_updates: set[str] | None = None  # None: every kind but a few rare ones
        self._topics: dict[tuple[int, int], dict[str, Any]] = {}
        self._faults: dict[str, list[_Injected]] = {}
        self._flooded_until: dict[int, float] = {}
        self._updates: list[dict[str, Any]] = []
        self._next_update_id = 1
        self._changed = asyncio.Event()
        self._closing = False
        self._state = _State()
        self._runner: web.AppRunner | None = None
        self.port = 0

    # --- lifecycle ----------------------------------------------------------------------------

    async def start(self) -> FakeTelegram:
        app = web.Application()
        app.router.add_post("/bot{token}/{method}", self._handle)
        app.router.add_get("/bot{token}/{method}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        server = site._server
        assert server is not None and server.sockets  # type: ignore[attr-defined]
        self.port = server.sockets[0].getsockname()[1]  # type: ignore[attr-defined]
        return self

    async def close(self) -> None:
        self._closing = True
        self._notify()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> FakeTelegram:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/bot"

    @property
    def username(self) -> str:
        return str(self.bot["username"])

    @property
    def bot_id(self) -> int:
        return int(self.bot["id"])

    @staticmethod
    def clock() -> float:
        return time.monotonic()

    # --- what the test sets up ---------------------------------------------------------------

    def user(
        self,
        user_id: int,
        first_name: str,
        *,
        username: str | None = None,
        language_code: str | None = None,
    ) -> dict[str, Any]:
        """`language_code`: the user's app language as Telegram reports it ("zh-hans", "en")."""
        user: dict[str, Any] = {"id": user_id, "is_bot": False, "first_name": first_name}
        if username:
            user["username"] = username
        if language_code:
            user["language_code"] = language_code
        self.users[user_id] = user
        return user

    def private_chat(self, user: dict[str, Any]) -> dict[str, Any]:
        chat = {"id": user["id"], "type": "private", "first_name": user["first_name"]}
        if "username" in user:
            chat["username"] = user["username"]
        self.chats[chat["id"]] = chat
        return chat

    def group(self, chat_id: int, title: str, *, forum: bool = False) -> dict[str, Any]:
        """A supergroup (ids like -100...); `forum` makes it one with topics."""
        chat: dict[str, Any] = {"id": chat_id, "type": "supergroup", "title": title}
        if forum:
            chat["is_forum"] = True
        self.chats[chat_id] = chat
        return chat

    def set_member(self, chat: dict[str, Any], user: dict[str, Any], status: str) -> None:
        """`status`: "creator", "administrator", "member", "restricted", "left" or "kicked"."""
        self.members[(chat["id"], user["id"])] = status

    def create_topic(self, chat: dict[str, Any], name: str, creator: dict[str, Any]) -> int:
        """A forum topic, opened (as in Telegram) by a service message whose id is the thread id."""
        message = self._new_message(chat, creator, thread_id=None)
        thread_id = message["message_id"]
        message["message_thread_id"] = thread_id
        message["is_topic_message"] = True
        message["forum_topic_created"] = {"name": name, "icon_color": 7322096}
        self._topics[(chat["id"], thread_id)] = message
        self.push_update({"message": message})
        return thread_id

    def push_update(self, payload: dict[str, Any]) -> int:
        update_id = self._next_update_id
        self._next_update_id += 1
        self._updates.append({"update_id": update_id, **payload})
        self._notify()
        return update_id

    def user_message(
        self,
        chat: dict[str, Any],
        user: dict[str, Any] | None,
        text: str,
        *,
        reply_to: dict[str, Any] | None = None,
        thread_id: int | None = None,
        sender_chat: dict[str, Any] | None = None,
        entities: list[dict[str, Any]] | None = None,
    ) -> dict[str, Any]:
        """A text message from `user` (or from `sender_chat`, as anonymous admins and channels
        post), queued as an update. Returns the message as the bot will receive it."""
        if sender_chat is not None and user is None:
            user = self.users.setdefault(
                GROUP_ANONYMOUS_BOT_ID,
                {"id": GROUP_ANONYMOUS_BOT_ID, "is_bot": True, "first_name": "Group",
                 "username": "GroupAnonymousBot"},
            )  # fmt: skip
        assert user is not None
        message = self._new_message(chat, user, thread_id=thread_id)
        message["text"] = text
        message["entities"] = auto_entities(text) if entities is None else entities
        if not message["entities"]:
            del message["entities"]
        if sender_chat is not None:
            message["sender_chat"] = sender_chat
        if reply_to is not None:
            message["reply_to_message"] = _shallow(reply_to)
        elif thread_id is not None and chat.get("is_forum"):
            # Telegram marks every topic message as a reply to the topic's creation message.
            message["reply_to_message"] = _shallow(self._topics[(chat["id"], thread_id)])
        self.push_update({"message": message})
        return message

    def edit_user_message(self, message: dict[str, Any], text: str) -> None:
        edited = {**message, "text": text, "edit_date": int(time.time())}
        edited.pop("entities", None)
        if entities := auto_entities(text):
            edited["entities"] = entities
        self.messages[(message["chat"]["id"], message["message_id"])] = edited
        self.push_update({"edited_message": edited})

    def inject(
        self,
        method: str,
        fault: Fault,
        *,
        times: int = 1,
        when: Callable[[dict[str, Any]], bool] | None = None,
    ) -> None:
        """Answer the next `times` calls of `method` (matching `when`, if given) with `fault`."""
        self._faults.setdefault(method.lower(), []).append(_Injected(fault, times, when))

    # --- what the test reads -----------------------------------------------------------------

    def calls_to(self, method: str, *, ok: bool | None = None) -> list[Call]:
        name = method.lower()
        return [c for c in self.calls if c.method.lower() == name and (ok is None or c.ok == ok)]

    def bot_messages(self, chat_id: int, thread_id: int | None = None) -> list[dict[str, Any]]:
        """The bot's messages in a chat (current text), in the order they were sent."""
        return [
            m
            for (cid, _), m in sorted(self.messages.items())
            if cid == chat_id
            and m["from"]["id"] == self.bot_id
            and (thread_id is None or m.get("message_thread_id") == thread_id)
        ]

    async def wait_until(
        self,
        condition: Callable[[], bool],
        timeout: float = 10.0,  # noqa: ASYNC109
    ) -> None:
        """Wait until `condition()` holds after some call (fails the test after `timeout`)."""

        await asyncio.wait_for(self._until(condition), timeout)

    async def _until(self, condition: Callable[[], bool]) -> None:
        while True:
            changed = self._changed
            if condition():
                return
            await changed.wait()

    async def wait_for_call(
        self,
        method: str,
        predicate: Callable[[Call], bool] | None = None,
        *,
        count: int = 1,
        timeout: float = 10.0,  # noqa: ASYNC109
    ) -> list[Call]:
        def matching() -> list[Call]:
            return [c for c in self.calls_to(method) if predicate is None or predicate(c)]

        await self.wait_until(lambda: len(matching()) >= count, timeout)
        return matching()

    # --- serving ------------------------------------------------------------------------------

    def _notify(self) -> None:
        """Wake everything waiting for a change (long polls, `wait_until`)."""
        self._changed.set()
        self._changed = asyncio.Event()

    async def _handle(self, request: web.Request) -> web.Response:
        method = request.match_info["method"]
        if request.match_info["token"] != self.token:
            return _error(Fault(401, "Unauthorized"))
        try:
            params = _decode(dict(await request.post()))
        except ConnectionResetError:  # the client gave up mid-request (e.g. at shutdown)
            return web.Response(status=400)
        call = Call(method, params, self.clock())
        self.calls.append(call)
        self._notify()
        try:
            fault = self._injected(method, params) or self._still_flooded(method, params)
            if fault is not None:
                if fault.retry_after is not None and "chat_id" in params:
                    until = self.clock() + fault.retry_after
                    self._flooded_until[params["chat_id"]] = until
                raise _Refused(fault)
            handler = getattr(self, f"_api_{method.lower()}", None)
            if handler is None:
                raise _Refused(Fault(404, "Not Found"))
            call.result = await handler(params)
            response = web.json_response({"ok": True, "result": call.result})
        except _Refused as refused:
            call.status = refused.fault.status
            response = _error(refused.fault)
        self._notify()
        return response

    def _injected(self, method: str, params: dict[str, Any]) -> Fault | None:
        for injected in self._faults.get(method.lower(), []):
            if injected.times > 0 and (injected.when is None or injected.when(params)):
                injected.times -= 1
                return injected.fault
        return None

    def _still_flooded(self, method: str, params: dict[str, Any]) -> Fault | None:
        """Like Telegram, keep refusing messages to a chat until its retry_after has passed."""
        if method.lower() not in _FLOOD_METHODS:
            return None
        left = self._flooded_until.get(params.get("chat_id"), 0.0) - self.clock()  # type: ignore[arg-type]
        return Fault.flood(max(1, math.ceil(left))) if left > 0 else None

    def _chat(self, params: dict[str, Any]) -> dict[str, Any]:
        chat = self.chats.get(params.get("chat_id"))  # type: ignore[arg-type]
        if chat is None:
            raise _Refused(Fault(400, "Bad Request: chat not found"))
        return chat

    def _new_message(
        self, chat: dict[str, Any], sender: dict[str, Any], *, thread_id: int | None
    ) -> dict[str, Any]:
        chat_id = chat["id"]
        message_id = self._state.next_message_id.get(chat_id, 1)
        self._state.next_message_id[chat_id] = message_id + 1
        message: dict[str, Any] = {
            "message_id": message_id,
            "from": sender,
            "chat": chat,
            "date": int(time.time()),
        }
        if thread_id is not None:
            message["message_thread_id"] = thread_id
            if chat.get("is_forum"):
                message["is_topic_message"] = True
        self.messages[(chat_id, message_id)] = message
        return message

    def _text(self, params: dict[str, Any]) -> tuple[str, list[dict[str, Any]]]:
        """The text as Telegram stores it (after parsing), checked like Telegram checks it."""
        text = params.get("text")
        if not isinstance(text, str) or not text.strip():
            raise _Refused(Fault(400, "Bad Request: message text is empty"))
        parse_mode = params.get("parse_mode")
        entities: list[dict[str, Any]] = list(params.get("entities") or [])
        if parse_mode == "MarkdownV2":
            try:
                text, entities = parse_markdown_v2(text)
            except MarkdownV2Error as exc:
                raise _Refused(Fault.cant_parse(str(exc))) from exc
        elif parse_mode is not None:
            raise _Refused(Fault(400, f"Bad Request: unsupported parse_mode {parse_mode!r} (fake)"))
        size = utf16_len(text)
        for entity in entities:
            start, length = entity.get("offset"), entity.get("length")
            if (
                entity.get("type") not in _ENTITY_TYPES
                or not isinstance(start, int)
                or not isinstance(length, int)
                or start < 0
                or length <= 0
                or start + length > size
            ):
                raise _Refused(Fault.cant_parse(f"bad entity {entity!r} (fake check)"))
        if size > MAX_TEXT_UNITS:
            raise _Refused(Fault.too_long())
        if not text.strip():
            raise _Refused(Fault(400, "Bad Request: message text is empty"))
        return text, entities

    # --- methods ------------------------------------------------------------------------------

    async def _api_getme(self, params: dict[str, Any]) -> Any:
        return self.bot

    async def _api_deletewebhook(self, params: dict[str, Any]) -> Any:
        return True

    async def _api_setmycommands(self, params: dict[str, Any]) -> Any:
        commands = params.get("commands")
        if not isinstance(commands, list) or not all(
            re.fullmatch(r"[a-z0-9_]{1,32}", c.get("command", "")) and c.get("description")
            for c in commands
        ):
            raise _Refused(Fault(400, "Bad Request: BOT_COMMAND_INVALID"))
        language = params.get("language_code") or ""
        if language and not re.fullmatch(r"[a-z]{2}", language):
            raise _Refused(Fault(400, "Bad Request: invalid language code specified"))
        self.commands_by_language[language] = commands
        if not language:
            self.commands = commands
        return True

    async def _api_getupdates(self, params: dict[str, Any]) -> Any:
        offset = int(params.get("offset") or 0)
        timeout = float(params.get("timeout") or 0)
        limit = int(params.get("limit") or 100)
        if offset:
            self._updates = [u for u in self._updates if u["update_id"] >= offset]
        if "allowed_updates" in params:  # Telegram remembers it until the next one
            self.allowed_updates = set(params["allowed_updates"]) or None

        def wanted(update: dict[str, Any]) -> bool:
            kinds = set(update) - {"update_id"}
            return self.allowed_updates is None or bool(kinds & self.allowed_updates)

        def pending() -> list[dict[str, Any]]:
            # Updates of unwanted kinds are skipped for good, as Telegram does.
            return [u for u in self._updates if u["update_id"] >= offset and wanted(u)][:limit]

        if timeout > 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(
                    self._until(lambda: bool(pending()) or self._closing), timeout
                )
        return pending()

    async def _api_sendchataction(self, params: dict[str, Any]) -> Any:
        self._chat(params)
        if params.get("action") not in {
            "typing",
            "upload_photo",
            "record_video",
            "upload_document",
        }:
            raise _Refused(Fault(400, "Bad Request: wrong parameter action in request"))
        return True

    async def _api_getchatmember(self, params: dict[str, Any]) -> Any:
        chat = self._chat(params)
        user = self.users.get(params.get("user_id"))  # type: ignore[arg-type]
        if user is None:
            raise _Refused(Fault(400, "Bad Request: PARTICIPANT_ID_INVALID"))
        default = "member"
        if chat["type"] == "private":
            default = "member" if chat["id"] == user["id"] else "left"
        status = self.members.get((chat["id"], user["id"]), default)
        member: dict[str, Any] = {"status": status, "user": user}
        if status == "creator":
            member["is_anonymous"] = False
        elif status == "administrator":
            member |= {"can_be_edited": False, "is_anonymous": False}
            member |= {
                key: True
                for key in (
                    "can_manage_chat", "can_delete_messages", "can_manage_video_chats",
                    "can_restrict_members", "can_promote_members", "can_change_info",
                    "can_invite_users", "can_post_stories", "can_edit_stories",
                    "can_delete_stories", "can_pin_messages", "can_manage_topics",
                )
            }  # fmt: skip
        elif status == "restricted":
            member |= {
                key: False
                for key in (
                    "is_member", "can_send_messages", "can_send_audios", "can_send_documents",
                    "can_send_photos", "can_send_videos", "can_send_video_notes",
                    "can_send_voice_notes", "can_send_polls", "can_send_other_messages",
                    "can_add_web_page_previews", "can_change_info", "can_invite_users",
                    "can_pin_messages", "can_manage_topics",
                )
            }  # fmt: skip
            member["until_date"] = 0
        elif status == "kicked":
            member["until_date"] = 0
        return member

    async def _api_sendmessage(self, params: dict[str, Any]) -> Any:
        chat = self._chat(params)
        text, entities = self._text(params)
        thread_id = params.get("message_thread_id")
        if (
            thread_id is not None
            and chat.get("is_forum")
            and (chat["id"], thread_id) not in self._topics
        ):
            raise _Refused(Fault(400, "Bad Request: message thread not found"))
        replied = None
        reply = params.get("reply_parameters")
        if reply is not None:
            replied = self.messages.get((chat["id"], reply.get("message_id")))
            if replied is None and not reply.get("allow_sending_without_reply"):
                raise _Refused(Fault(400, "Bad Request: message to be replied not found"))
        message = self._new_message(chat, self.bot, thread_id=thread_id)
        message["text"] = text
        if entities:
            message["entities"] = entities
        if replied is not None:
            message["reply_to_message"] = _shallow(replied)
        return message

    async def _api_editmessagetext(self, params: dict[str, Any]) -> Any:
        chat = self._chat(params)
        message = self.messages.get((chat["id"], params.get("message_id")))  # type: ignore[arg-type]
        if message is None or message["from"]["id"] != self.bot_id:
            raise _Refused(Fault.edit_not_found())
        text, entities = self._text(params)
        if text == message.get("text") and entities == message.get("entities", []):
            raise _Refused(Fault.not_modified())
        message["text"] = text
        message.pop("entities", None)
        if entities:
            message["entities"] = entities
        message["edit_date"] = int(time.time())
        return message

    async def _api_sendmessagedraft(self, params: dict[str, Any]) -> Any:
        chat = self._chat(params)
        if chat["type"] != "private":
            raise _Refused(Fault(400, "Bad Request: TEXTDRAFT_PEER_INVALID"))
        if not params.get("draft_id"):
            raise _Refused(Fault(400, "Bad Request: draft_id must be non-zero"))
        text, _ = self._text(params) if params.get("text") else ("", [])
        self.drafts.append(Draft(chat["id"], params["draft_id"], text, self.clock()))
        return True

    # --- test helpers ---------------------------------------------------------------------------

    def delete_message(self, chat_id: int, message_id: int) -> None:
        """As if a user or admin deleted the message in the app."""
        del self.messages[(chat_id, message_id)]


def auto_entities(text: str) -> list[dict[str, Any]]:
    """The `bot_command` and `mention` entities Telegram adds to a user's text (UTF-16 offsets)."""
    entities: list[dict[str, Any]] = []
    command = _COMMAND.match(text)
    if command:
        entities.append({"type": "bot_command", "offset": 0, "length": utf16_len(command.group())})
    for match in _MENTION.finditer(text):
        if command and match.start() < command.end():
            continue
        if match.start() > 0 and (
            text[match.start() - 1].isalnum() or text[match.start() - 1] == "_"
        ):
            continue  # an e-mail address, not a mention
        entities.append(
            {
                "type": "mention",
                "offset": utf16_len(text[: match.start()]),
                "length": utf16_len(match.group()),
            }
        )
    return entities


def _shallow(message: dict[str, Any]) -> dict[str, Any]:
    """A message as Telegram embeds it in `reply_to_message` (without its own reply)."""
    return {k: v for k, v in message.items() if k != "reply_to_message"}


def _decode(form: dict[str, Any]) -> dict[str, Any]:
    """Form values are strings; PTB JSON-encodes everything that isn't one."""
    params: dict[str, Any] = {}
    for key, value in form.items():
        if not isinstance(value, str):
            params[key] = value  # an uploaded file
        elif key in _JSON_PARAMS:
            params[key] = json.loads(value)
        elif key in _INT_PARAMS:
            try:
                params[key] = int(value)
            except ValueError:
                params[key] = value  # e.g. chat_id "@channelname"
        elif key in _BOOL_PARAMS:
            params[key] = value == "true"
        else:
            params[key] = value
    return params


def _error(fault: Fault) -> web.Response:
    return web.json_response(fault.body(), status=fault.status)
