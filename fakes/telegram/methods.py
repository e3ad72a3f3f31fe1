"""What the fake Bot API stores (users, chats, messages, drafts, updates) and its methods.

Each Bot API method `name` is `_api_<name lowercased>(params)`: it returns the call's `result` or
raises `Refused` with Telegram's error. The server around it is `FakeTelegram` (server.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from collections.abc import Callable
from typing import Any

from fakes.telegram.markdown import MarkdownV2Error, parse_markdown_v2, utf16_len
from fakes.telegram.protocol import (
    ENTITY_TYPES,
    MAX_CALLBACK_ANSWER_CHARS,
    MAX_CALLBACK_DATA_BYTES,
    MAX_TEXT_UNITS,
    UNAUTHORIZED,
    Draft,
    Fault,
    Refused,
    shallow,
)


class BotApi:
    def __init__(self, bot: dict[str, Any]) -> None:
        self.bot = bot
        self.chats: dict[int, dict[str, Any]] = {}
        self.users: dict[int, dict[str, Any]] = {bot["id"]: bot}
        self.members: dict[tuple[int, int], str] = {}
        self.messages: dict[tuple[int, int], dict[str, Any]] = {}
        self.drafts: list[Draft] = []
        # Callback queries the bot has not answered yet, and the answers it gave, by query id.
        self.open_queries: set[str] = set()
        self.query_answers: dict[str, dict[str, Any]] = {}
        self.commands: list[dict[str, Any]] | None = None  # the list for every language
        # Each list registered, by language_code ("" for the list for every language).
        self.commands_by_language: dict[str, list[dict[str, Any]]] = {}
        self.allowed_updates: set[str] | None = None  # None: every kind but a few rare ones
        self._topics: dict[tuple[int, int], dict[str, Any]] = {}
        self._updates: list[dict[str, Any]] = []
        self._sent: dict[int, dict[str, Any]] = {}  # every update queued, by update_id
        self._again: list[dict[str, Any]] = []  # to deliver again, whatever the offset
        self._next_message_id: dict[int, int] = {}
        self._changed = asyncio.Event()
        self._closing = False
        self.revoked = False  # the token was revoked (server.py's `revoke_token`)
        self.webhook: dict[str, Any] | None = None  # setWebhook's parameters, until deleteWebhook

    @property
    def bot_id(self) -> int:
        return int(self.bot["id"])

    @staticmethod
    def clock() -> float:
        return time.monotonic()

    def _notify(self) -> None:
        """Wake everything waiting for a change (long polls, `wait_until`)."""
        self._changed.set()
        self._changed = asyncio.Event()

    async def _until(self, condition: Callable[[], bool]) -> None:
        while True:
            changed = self._changed
            if condition():
                return
            await changed.wait()

    def _chat(self, params: dict[str, Any]) -> dict[str, Any]:
        chat = self.chats.get(params.get("chat_id"))  # type: ignore[arg-type]
        if chat is None:
            if params.get("chat_id") in self.users:  # a person who never opened the bot's chat
                raise Refused(Fault(403, "Forbidden: bot can't initiate conversation with a user"))
            raise Refused(Fault(400, "Bad Request: chat not found"))
        return chat

    def _new_message(
        self, chat: dict[str, Any], sender: dict[str, Any], *, thread_id: int | None
    ) -> dict[str, Any]:
        chat_id = chat["id"]
        message_id = self._next_message_id.get(chat_id, 1)
        self._next_message_id[chat_id] = message_id + 1
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
            raise Refused(Fault(400, "Bad Request: message text is empty"))
        parse_mode = params.get("parse_mode")
        entities: list[dict[str, Any]] = list(params.get("entities") or [])
        if parse_mode == "MarkdownV2":
            try:
                text, entities = parse_markdown_v2(text)
            except MarkdownV2Error as exc:
                raise Refused(Fault.cant_parse(str(exc))) from exc
        elif parse_mode is not None:
            raise Refused(Fault(400, f"Bad Request: unsupported parse_mode {parse_mode!r} (fake)"))
        size = utf16_len(text)
        self._check_markup(params)
        for entity in entities:
            start, length = entity.get("offset"), entity.get("length")
            if (
                entity.get("type") not in ENTITY_TYPES
                or not isinstance(start, int)
                or not isinstance(length, int)
                or start < 0
                or length <= 0
                or start + length > size
            ):
                raise Refused(Fault.cant_parse(f"bad entity {entity!r} (fake check)"))
        if size > MAX_TEXT_UNITS:
            raise Refused(Fault.too_long())
        if not text.strip():
            raise Refused(Fault(400, "Bad Request: message text is empty"))
        return text, entities

    @staticmethod
    def _check_markup(params: dict[str, Any]) -> None:
        """An inline keyboard as Telegram checks it: rows of buttons, each with a text and at
        most 64 bytes of callback data."""
        markup = params.get("reply_markup")
        if markup is None:
            return
        rows = markup.get("inline_keyboard") if isinstance(markup, dict) else None
        if not isinstance(rows, list) or not all(isinstance(row, list) for row in rows):
            raise Refused(Fault(400, "Bad Request: can't parse reply keyboard markup JSON object"))
        for button in (button for row in rows for button in row):
            if not button.get("text"):
                raise Refused(Fault(400, "Bad Request: BUTTON_TEXT_EMPTY"))
            data = button.get("callback_data")
            if data is not None and not 1 <= len(data.encode()) <= MAX_CALLBACK_DATA_BYTES:
                raise Refused(Fault(400, "Bad Request: BUTTON_DATA_INVALID"))

    # --- methods ------------------------------------------------------------------------------

    async def _api_getme(self, params: dict[str, Any]) -> Any:
        return self.bot

    async def _api_deletewebhook(self, params: dict[str, Any]) -> Any:
        self.webhook = None
        return True

    async def _api_setwebhook(self, params: dict[str, Any]) -> Any:
        url = str(params.get("url") or "")
        if not url.startswith("https://"):
            raise Refused(
                Fault(400, "Bad Request: bad webhook: An HTTPS URL must be provided for webhook")
            )
        secret = params.get("secret_token")
        if secret is not None and not re.fullmatch(r"[A-Za-z0-9_-]{1,256}", str(secret)):
            raise Refused(Fault(400, "Bad Request: secret token contains unallowed characters"))
        self.webhook = dict(params)
        if "allowed_updates" in params:
            self.allowed_updates = set(params["allowed_updates"]) or None
        return True

    async def _api_setmycommands(self, params: dict[str, Any]) -> Any:
        commands = params.get("commands")
        if not isinstance(commands, list) or not all(
            re.fullmatch(r"[a-z0-9_]{1,32}", c.get("command", "")) and c.get("description")
            for c in commands
        ):
            raise Refused(Fault(400, "Bad Request: BOT_COMMAND_INVALID"))
        language = params.get("language_code") or ""
        if language and not re.fullmatch(r"[a-z]{2}", language):
            raise Refused(Fault(400, "Bad Request: invalid language code specified"))
        self.commands_by_language[language] = commands
        if not language:
            self.commands = commands
        return True

    async def _api_getupdates(self, params: dict[str, Any]) -> Any:
        if self.webhook is not None:
            problem = (
                "can't use getUpdates method while webhook is active;"
                " use deleteWebhook to delete the webhook first"
            )
            raise Refused(Fault(409, f"Conflict: {problem}"))
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
            fresh = [u for u in self._updates if u["update_id"] >= offset and wanted(u)]
            return [*self._again, *fresh][:limit]

        if timeout > 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(
                    self._until(lambda: bool(pending()) or self._closing or self.revoked), timeout
                )
        if self.revoked:
            raise Refused(UNAUTHORIZED)
        served = pending()
        self._again = [u for u in self._again if u not in served]
        return served

    async def _api_sendchataction(self, params: dict[str, Any]) -> Any:
        self._chat(params)
        if params.get("action") not in {
            "typing",
            "upload_photo",
            "record_video",
            "upload_document",
        }:
            raise Refused(Fault(400, "Bad Request: wrong parameter action in request"))
        return True

    async def _api_getchatmember(self, params: dict[str, Any]) -> Any:
        chat = self._chat(params)
        user = self.users.get(params.get("user_id"))  # type: ignore[arg-type]
        if user is None:
            raise Refused(Fault(400, "Bad Request: PARTICIPANT_ID_INVALID"))
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
            raise Refused(Fault(400, "Bad Request: message thread not found"))
        replied = None
        reply = params.get("reply_parameters")
        if reply is not None:
            replied = self.messages.get((chat["id"], reply.get("message_id")))
            if replied is None and not reply.get("allow_sending_without_reply"):
                raise Refused(Fault(400, "Bad Request: message to be replied not found"))
        message = self._new_message(chat, self.bot, thread_id=thread_id)
        message["text"] = text
        if entities:
            message["entities"] = entities
        if params.get("reply_markup"):
            message["reply_markup"] = params["reply_markup"]
        if replied is not None:
            message["reply_to_message"] = shallow(replied)
        return message

    async def _api_editmessagetext(self, params: dict[str, Any]) -> Any:
        chat = self._chat(params)
        message = self.messages.get((chat["id"], params.get("message_id")))  # type: ignore[arg-type]
        if message is None or message["from"]["id"] != self.bot_id:
            raise Refused(Fault.edit_not_found())
        text, entities = self._text(params)
        # An edit shows exactly the keyboard it carries: one without any removes the keyboard.
        markup = params.get("reply_markup") or None
        if (
            text == message.get("text")
            and entities == message.get("entities", [])
            and markup == message.get("reply_markup")
        ):
            raise Refused(Fault.not_modified())
        message["text"] = text
        message.pop("entities", None)
        if entities:
            message["entities"] = entities
        message.pop("reply_markup", None)
        if markup:
            message["reply_markup"] = markup
        message["edit_date"] = int(time.time())
        return message

    async def _api_answercallbackquery(self, params: dict[str, Any]) -> Any:
        query_id = str(params.get("callback_query_id"))
        if query_id not in self.open_queries:
            raise Refused(Fault.query_too_old())
        if len(params.get("text") or "") > MAX_CALLBACK_ANSWER_CHARS:
            raise Refused(Fault(400, "Bad Request: MESSAGE_TOO_LONG"))
        self.open_queries.discard(query_id)
        self.query_answers[query_id] = params
        return True

    async def _api_sendmessagedraft(self, params: dict[str, Any]) -> Any:
        chat = self._chat(params)
        if chat["type"] != "private":
            raise Refused(Fault(400, "Bad Request: TEXTDRAFT_PEER_INVALID"))
        if not params.get("draft_id"):
            raise Refused(Fault(400, "Bad Request: draft_id must be non-zero"))
        text, _ = self._text(params) if params.get("text") else ("", [])
        self.drafts.append(Draft(chat["id"], params["draft_id"], text, self.clock()))
        return True
