"""Plain data that crosses from the platform adapters into the core."""

from __future__ import annotations

from dataclasses import dataclass

from core.i18n import Language


@dataclass(frozen=True, slots=True)
class Scope:
    """Where a conversation lives: a DM, a channel or group, or a thread/topic inside one.

    `thread_id` is "" for the chat itself. A thread's scope shares its parent's `chat_id`, so
    the parent (whose binding a thread inherits) is the same scope with `thread_id` "".
    """

    platform: str
    chat_id: str
    thread_id: str = ""

    @property
    def parent(self) -> Scope | None:
        return Scope(self.platform, self.chat_id) if self.thread_id else None

    def __str__(self) -> str:
        tail = f"/{self.thread_id}" if self.thread_id else ""
        return f"{self.platform}:{self.chat_id}{tail}"


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
class Turn:
    """One user message for the GPT. `is_private`: a one-to-one chat with the bot.
    `language`: what the bot's own lines (errors, notices) are written in."""

    scope: Scope
    author: Author
    text: str
    is_private: bool
    message_id: str | None = None
    language: Language = "en"
