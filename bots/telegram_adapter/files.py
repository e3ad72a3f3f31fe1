"""Photos and documents sent to the bot: what the core gets (`core.turns.Attachment`, by file
id), and how it fetches them (getFile, then a download from the file endpoint).

The file endpoint sits beside the Bot API's: `https://api.telegram.org/bot<token>/getFile`, then
`https://api.telegram.org/file/bot<token>/<file_path>`; a self-hosted Bot API server lays them out
the same way, so `[telegram] base_url` gives both. Download URLs carry the token: they stay here;
the core stores and sends upstream only file ids and bytes.
"""

from __future__ import annotations

import mimetypes
from typing import Any, Final
from urllib.parse import urlsplit

from telegram import Message
from telegram.ext import ExtBot

from core.turns import Attachment

# Telegram re-encodes every photo (not a document) as a JPEG.
PHOTO_MIME: Final = "image/jpeg"
PHOTO_NAME: Final = "photo.jpg"
UNKNOWN_MIME: Final = "application/octet-stream"


def file_base_url(base_url: str) -> str:
    """The file endpoint for a Bot API `base_url`: `…/bot` → `…/file/bot`; for any other path,
    `/file/bot` on the same host."""
    if base_url.endswith("/bot"):
        return f"{base_url.removesuffix('/bot')}/file/bot"
    parts = urlsplit(base_url)
    return f"{parts.scheme}://{parts.netloc}/file/bot"


def attachments_of(message: Message) -> tuple[Attachment, ...]:
    """The photo (its largest size) or document a message carries, by file id."""
    if message.photo:
        largest = max(message.photo, key=lambda size: (size.width * size.height, size.file_size))
        return (Attachment(PHOTO_NAME, PHOTO_MIME, largest.file_size, largest.file_id),)
    document = message.document
    if document is not None:
        name = document.file_name or "file"
        mime = document.mime_type or mimetypes.guess_type(name)[0] or UNKNOWN_MIME
        return (Attachment(name, mime, document.file_size, document.file_id),)
    return ()


async def fetch_file(bot: ExtBot[Any] | None, file_id: str) -> bytes:
    """A file's bytes by its id: getFile, then its download."""
    if bot is None:
        raise ConnectionError("the Telegram bot is not connected")
    found = await bot.get_file(file_id)
    return bytes(await found.download_as_bytearray())
