"""The fake Bot API's photo uploads: `sendPhoto` and `sendMediaGroup`, as python-telegram-bot
sends them (multipart/form-data: `photo` an attached file; `media` a JSON array whose items'
`media` is `attach://<field>` naming another file of the form).

Each photo message the bot sent keeps the bytes it uploaded in `photos[(chat_id, message_id)]`,
so tests compare them with what the image host served.
"""

from __future__ import annotations

import hashlib
import json
import struct
from dataclasses import dataclass
from typing import Any

from fakes.telegram.methods import BotApi
from fakes.telegram.protocol import Fault, Refused

MAX_PHOTO_BYTES = 10 * 1024 * 1024
MIN_ALBUM, MAX_ALBUM = 2, 10
MAX_CAPTION_CHARS = 1024


@dataclass(frozen=True, slots=True)
class Photo:
    data: bytes
    file_name: str
    mime_type: str


class PhotoApi(BotApi):
    def __init__(self, bot: dict[str, Any]) -> None:
        super().__init__(bot)
        self.photos: dict[tuple[int, int], Photo] = {}
        self._next_media_group = 13_000_000_001

    def photo_messages(self, chat_id: int) -> list[dict[str, Any]]:
        """The bot's photo messages in a chat, in the order they were sent."""
        return [
            m
            for (cid, _), m in sorted(self.messages.items())
            if cid == chat_id and "photo" in m and m["from"]["id"] == self.bot_id
        ]

    def _uploaded(self, params: dict[str, Any], field: str) -> Photo:
        value = params.get(field)
        if value is None or isinstance(value, str):
            # A URL or file_id would be fetched by Telegram; this fake only takes uploads.
            raise Refused(Fault(400, f"Bad Request: {field} must be an uploaded file (fake)"))
        data = value.file.read()
        if not data:
            raise Refused(Fault(400, "Bad Request: file must be non-empty"))
        if len(data) > MAX_PHOTO_BYTES:
            raise Refused(Fault(400, "Bad Request: PHOTO_SAVE_FILE_INVALID"))
        return Photo(data, str(value.filename), str(value.content_type))

    def _photo_message(
        self, params: dict[str, Any], photo: Photo, caption: object
    ) -> dict[str, Any]:
        chat = self._chat(params)
        thread_id = params.get("message_thread_id")
        if (
            thread_id is not None
            and chat.get("is_forum")
            and (chat["id"], thread_id) not in (self._topics)
        ):
            raise Refused(Fault(400, "Bad Request: message thread not found"))
        if isinstance(caption, str) and len(caption) > MAX_CAPTION_CHARS:
            raise Refused(Fault(400, "Bad Request: message caption is too long"))
        message = self._new_message(chat, self.bot, thread_id=thread_id)
        message["photo"] = _photo_sizes(photo.data)
        if caption:
            message["caption"] = caption
        self.photos[(chat["id"], message["message_id"])] = photo
        return message

    async def _api_sendphoto(self, params: dict[str, Any]) -> Any:
        photo = self._uploaded(params, "photo")
        return self._photo_message(params, photo, params.get("caption"))

    async def _api_sendmediagroup(self, params: dict[str, Any]) -> Any:
        try:
            media = json.loads(params.get("media") or "")
        except json.JSONDecodeError:
            raise Refused(Fault(400, "Bad Request: can't parse media JSON object")) from None
        if not isinstance(media, list) or not MIN_ALBUM <= len(media) <= MAX_ALBUM:
            raise Refused(Fault(400, "Bad Request: wrong number of media in the album (fake)"))
        photos = []
        for item in media:
            reference = str(item.get("media", ""))
            if item.get("type") != "photo" or not reference.startswith("attach://"):
                raise Refused(Fault(400, "Bad Request: wrong media in the album (fake)"))
            photos.append((self._uploaded(params, reference.removeprefix("attach://")), item))
        self._chat(params)  # the chat exists before any message is made
        group_id = str(self._next_media_group)
        self._next_media_group += 1
        messages = []
        for photo, item in photos:
            message = self._photo_message(params, photo, item.get("caption"))
            message["media_group_id"] = group_id
            messages.append(message)
        return messages


def _photo_sizes(data: bytes) -> list[dict[str, Any]]:
    """The PhotoSize array Telegram answers: here one size, the upload's own."""
    width, height = _png_size(data)
    digest = hashlib.sha1(data).hexdigest()
    return [
        {
            "file_id": f"AgAC{digest[:24]}",
            "file_unique_id": f"AQAD{digest[:12]}",
            "width": width,
            "height": height,
            "file_size": len(data),
        }
    ]


def _png_size(data: bytes) -> tuple[int, int]:
    if data.startswith(b"\x89PNG\r\n\x1a\n") and len(data) >= 24:
        width, height = struct.unpack(">II", data[16:24])
        return int(width), int(height)
    return 1, 1  # another format: its size does not matter to the tests
