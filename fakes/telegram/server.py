"""A local fake of the Telegram Bot API that the real python-telegram-bot talks to.

An aiohttp server on 127.0.0.1 answering `POST /bot<token>/<method>` with JSON, form-encoded or
multipart bodies, the way api.telegram.org does: `{"ok": true, "result": ...}`, or an error with
the real HTTP status and Telegram's own descriptions ("Bad Request: message is not modified: ...",
429 "Too Many Requests: retry after N" with `parameters.retry_after`). PTB chooses its exception
from the HTTP status, so the statuses matter as much as the texts.

What it checks like the real server: message length (4096 UTF-16 units after entity parsing),
MarkdownV2 syntax (unescaped reserved characters, unclosed entities), entity bounds, edits with
unchanged text, edits of unknown messages, drafts outside private chats. Photos the bot uploads
(`sendPhoto`, `sendMediaGroup`) are kept with their bytes (photos.py).

The test drives it: `user_message(chat, user, text)` queues an update (with the `bot_command` and
`mention` entities Telegram would add) for the long-polled `getUpdates`; `inject(method, fault)`
makes the next call(s) of a method fail; `set_member(chat, user, status)` decides what
`getChatMember` says; `deliver_again(update_id)` serves an update a second time;
`revoke_token()` does what BotFather's /revoke does: from then on every call (a long poll
already waiting included) answers 401 Unauthorized; `press(message, user, data)` presses an
inline keyboard button (a callback query the bot must answer with `answerCallbackQuery`);
`webhook` holds what setWebhook was given (getUpdates then answers 409 Conflict, as Telegram
does), and `update(update_id)` is the update a webhook would be posted. `bot_limit`
(a `fakes.rate_window.LiveLimit`) answers the messages over it 429, as Telegram's bot-wide flood
limit does, whichever process of the bot sends them. Every
call is recorded in
`calls` with the time it arrived on the fake's own clock (`time.monotonic()`), so tests measure
pacing where Telegram would.
"""

from __future__ import annotations

import asyncio
import math
import os
import time
from collections.abc import Callable
from typing import Any, Self

from aiohttp import web

from fakes import issued
from fakes.local_server import LocalServer
from fakes.rate_window import LiveLimit
from fakes.telegram.files import FileApi
from fakes.telegram.markdown import auto_entities
from fakes.telegram.photos import PhotoApi
from fakes.telegram.protocol import (
    FLOOD_METHODS,
    GROUP_ANONYMOUS_BOT_ID,
    UNAUTHORIZED,
    Call,
    Fault,
    Injected,
    Refused,
    error_response,
    read_params,
    shallow,
)

# Opt in to PTB's timedelta durations now: otherwise reading `RetryAfter.retry_after` (which PTB
# does itself while building the exception) warns, and the test suite turns warnings into errors.
os.environ.setdefault("PTB_TIMEDELTA", "true")
# Uploads: an album of ten photos of up to 10 MB each, as the Bot API takes.
MAX_REQUEST_BYTES = 110 * 1024 * 1024


class FakeTelegram(LocalServer, PhotoApi, FileApi):
    def __init__(
        self,
        *,
        token: str = "123456:TEST-fake-token",
        bot_id: int = 123456,
        username: str = "gpts_test_bot",
        first_name: str = "GPTs",
    ) -> None:
        super().__init__(
            {
                "id": bot_id,
                "is_bot": True,
                "first_name": first_name,
                "username": username,
                "can_join_groups": True,
                "can_read_all_group_messages": False,
                "supports_inline_queries": False,
            }
        )
        self.token = token
        issued.note(token)
        self.calls: list[Call] = []
        self._faults: dict[str, list[Injected]] = {}
        self._flooded_until: dict[int, float] = {}
        self.bot_limit: LiveLimit | None = None  # e.g. LiveLimit(30, 1.0): Telegram's own
        self._next_update_id = 1
        self._next_query_id = 4_000_000_001
        self._init_files()

    # --- lifecycle ----------------------------------------------------------------------------

    async def start(self) -> Self:
        app = web.Application(client_max_size=MAX_REQUEST_BYTES)
        app.router.add_post("/bot{token}/{method}", self._handle)
        app.router.add_get("/bot{token}/{method}", self._handle)
        app.router.add_get("/file/bot{token}/{path:.+}", self._download)
        await self._listen(app, access_log=None)
        return self

    async def close(self) -> None:
        self._closing = True
        self._notify()
        await super().close()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/bot"

    @property
    def username(self) -> str:
        return str(self.bot["username"])

    # --- what the test sets up ---------------------------------------------------------------

    def user(
        self,
        user_id: int,
        first_name: str,
        *,
        username: str = "",
        language_code: str = "",
    ) -> dict[str, Any]:
        """`language_code`: the user's app language as Telegram reports it ("zh-hans", "en");
        empty, like `username`, when the user has none."""
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
        return int(thread_id)

    def push_update(self, payload: dict[str, Any]) -> int:
        update_id = self._next_update_id
        self._next_update_id += 1
        self._updates.append({"update_id": update_id, **payload})
        self._sent[update_id] = self._updates[-1]
        self._notify()
        return update_id

    def deliver_again(self, update_id: int) -> None:
        """Serve an update once more, same id and all, to the next getUpdates whatever its
        offset: as Telegram does when a bot's confirmation never reached it (a crash), or a
        webhook is retried."""
        self._again.append(self._sent[update_id])
        self._notify()

    def update(self, update_id: int) -> dict[str, Any]:
        """The update as Telegram sends it (what a webhook gets posted)."""
        return self._sent[update_id]

    def update_id_of(self, message: dict[str, Any]) -> int:
        """The id of the update that brought `message` (from `user_message`)."""
        ids = [n for n, update in self._sent.items() if update.get("message") is message]
        assert ids, "no update brought this message"
        return ids[-1]

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
            message["reply_to_message"] = shallow(reply_to)
        elif thread_id is not None and chat.get("is_forum"):
            # Telegram marks every topic message as a reply to the topic's creation message.
            message["reply_to_message"] = shallow(self._topics[(chat["id"], thread_id)])
        self.push_update({"message": message})
        return message

    def press(self, message: dict[str, Any], user: dict[str, Any], data: str | None = None) -> str:
        """`user` presses the button with callback `data` under the bot's `message` (by
        default its first button); returns the callback query's id. The update carries the
        message as it is now, keyboard included, as Telegram sends it."""
        current = self.messages[(message["chat"]["id"], message["message_id"])]
        buttons = [b for row in current.get("reply_markup", {}).get("inline_keyboard", [])
                   for b in row]  # fmt: skip
        if data is None:
            assert buttons, "the message has no button to press"
            data = buttons[0]["callback_data"]
        query_id = str(self._next_query_id)
        self._next_query_id += 1
        self.open_queries.add(query_id)
        query = {
            "id": query_id,
            "from": user,
            "message": current,
            "chat_instance": str(-current["chat"]["id"]),
            "data": data,
        }
        self.push_update({"callback_query": query})
        return query_id

    async def wait_query_answer(
        self,
        query_id: str,
        timeout: float = 10.0,  # noqa: ASYNC109
    ) -> dict[str, Any]:
        """The parameters of the bot's `answerCallbackQuery` for `query_id`, once it came."""
        await self.wait_until(lambda: query_id in self.query_answers, timeout)
        return self.query_answers[query_id]

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
        self._faults.setdefault(method.lower(), []).append(Injected(fault, times, when))

    def revoke_token(self) -> None:
        """The bot's token stops working, as after BotFather's /revoke."""
        self.revoked = True
        self._notify()

    def delete_message(self, chat_id: int, message_id: int) -> None:
        """As if a user or admin deleted the message in the app."""
        del self.messages[(chat_id, message_id)]

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

    async def _handle(self, request: web.Request) -> web.Response:
        method = request.match_info["method"]
        token = request.match_info["token"]
        issued.note(token)
        if token != self.token:
            return error_response(UNAUTHORIZED)
        try:
            params = await read_params(request)
        except ConnectionResetError:  # the client gave up mid-request (e.g. at shutdown)
            return web.Response(status=400)
        except ValueError:  # not JSON, or not an object
            return error_response(Fault(400, "Bad Request: can't parse JSON body"))
        call = Call(method, params, self.clock())
        self.calls.append(call)
        self._notify()
        try:
            if self.revoked:
                raise Refused(UNAUTHORIZED)
            fault = (
                self._injected(method, params)
                or self._still_flooded(method, params)
                or self._over_bot_limit(method, call.at)
            )
            if fault is not None:
                if fault.retry_after is not None and "chat_id" in params:
                    until = self.clock() + fault.retry_after
                    self._flooded_until[params["chat_id"]] = until
                raise Refused(fault)
            handler = getattr(self, f"_api_{method.lower()}", None)
            if handler is None:
                raise Refused(Fault(404, "Not Found"))
            call.result = await handler(params)
            response = web.json_response({"ok": True, "result": call.result})
        except Refused as refused:
            call.status = refused.fault.status
            response = error_response(refused.fault)
        self._notify()
        return response

    def _injected(self, method: str, params: dict[str, Any]) -> Fault | None:
        for injected in self._faults.get(method.lower(), []):
            if injected.times > 0 and (injected.when is None or injected.when(params)):
                injected.times -= 1
                return injected.fault
        return None

    def _over_bot_limit(self, method: str, at: float) -> Fault | None:
        if self.bot_limit is None or method.lower() not in FLOOD_METHODS:
            return None
        return None if self.bot_limit.admits(at) else Fault.flood(1)

    def _still_flooded(self, method: str, params: dict[str, Any]) -> Fault | None:
        """Like Telegram, keep refusing messages to a chat until its retry_after has passed."""
        if method.lower() not in FLOOD_METHODS:
            return None
        left = self._flooded_until.get(params.get("chat_id"), 0.0) - self.clock()  # type: ignore[arg-type]
        return Fault.flood(max(1, math.ceil(left))) if left > 0 else None
