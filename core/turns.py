"""Plain data that crosses from the platform adapters into the core."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from core.i18n import Language
from storage.records import ScopeKey

# What some database or platform refuses in text: NUL (PostgreSQL's text type) and UTF-16
# surrogates (no codec encodes a lone one, and JSON escapes such as "\\ud83d" can carry them).
UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def storable_text(text: str) -> str:
    """`text` as every database and platform takes it: each UTF-16 surrogate pair joined into
    its character, each lone half and each NUL replaced by U+FFFD."""
    if not UNSTORABLE.search(text):
        return text
    text = text.replace("\x00", "\ufffd")
    return text.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")


# Where a conversation lives: the storage's own key, so a scope goes to storage as it is.
# `Scope(platform, chat_id, thread_id="")`; `.parent` is the chat a thread/topic belongs to.
Scope = ScopeKey


@dataclass(frozen=True, slots=True)
class Author:
    """Who wrote a message. `is_admin`: an admin of this chat, as the platform says (the adapter
    checked it). `is_owner`: the adapter knows this person runs the bot (the terminal's user);
    `[access] owners` names the others."""

    id: str
    display_name: str
    is_admin: bool = False
    is_owner: bool = False


@dataclass(frozen=True, slots=True)
class Attachment:
    """A file sent with a message. `reference`: how the platform finds it again (a Telegram file
    id, a Discord attachment URL, a local path), never a URL with a secret in it. `size`: in
    bytes, as the platform says (None: unknown). `data`: its bytes, when the adapter has them;
    otherwise the core fetches them through the platform's fetcher (`core.attachments`)."""

    name: str
    mime: str
    size: int | None
    reference: str
    data: bytes | None = field(default=None, repr=False)


@dataclass(frozen=True, slots=True)
class Turn:
    """One user message for the GPT. `is_private`: a one-to-one chat with the bot.
    `language`: what the bot's own lines (errors, notices) are written in.
    `update_id`: the platform's id of the update that brought the message, unique within the
    platform (a Telegram chat and message id, a Discord message or interaction id): the same
    update delivered twice is answered once. None where updates are never delivered twice.
    `attachments`: the images and files sent with the message, in order."""

    scope: Scope
    author: Author
    text: str
    is_private: bool
    language: Language = "en"
    message_id: str | None = None
    update_id: str | None = None
    attachments: tuple[Attachment, ...] = ()

    @property
    def update_key(self) -> str | None:
        """`update_id` made unique across platforms, as storage keeps it."""
        return f"{self.scope.platform}:{self.update_id}" if self.update_id else None
