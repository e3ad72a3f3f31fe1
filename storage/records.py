"""The plain records storage takes and returns: frozen dataclasses, never ORM rows.

`ScopeKey` is also the core's `Scope` (`core.turns` re-exports it), so a scope crosses into
storage as it is. Nothing here imports SQLAlchemy or `core`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Final, Literal, Protocol, get_args

# Every status a stored message can have, spelled here only. Adding one is one more string here
# plus a migration: the database's CHECK constraint lists the statuses it accepts, and
# tests/test_storage.py stores every one of them, so a status the database refuses fails there.
MessageStatus = Literal["complete", "partial", "error"]
MESSAGE_STATUSES: Final[tuple[MessageStatus, ...]] = get_args(MessageStatus)


def _check_status(status: str) -> None:
    """ValueError unless `status` is a `MessageStatus` (a type hint guards nothing at run time)."""
    if status not in MESSAGE_STATUSES:
        raise ValueError(f"message status must be one of {list(MESSAGE_STATUSES)}, got {status!r}")


@dataclass(frozen=True, slots=True)
class ScopeKey:
    """Where a conversation lives: a DM, a channel or group, or a thread/topic inside one.

    `thread_id` is "" for the chat itself. A thread's scope shares its parent's `chat_id`, so
    the parent (whose binding a thread inherits) is the same scope with `thread_id` "".
    """

    platform: str
    chat_id: str
    thread_id: str = ""

    @property
    def parent(self) -> ScopeKey | None:
        return ScopeKey(self.platform, self.chat_id) if self.thread_id else None

    def __str__(self) -> str:
        tail = f"/{self.thread_id}" if self.thread_id else ""
        return f"{self.platform}:{self.chat_id}{tail}"


class TokenUsage(Protocol):
    """The token counts of one answer, as the upstream reported them (the core's `Usage` is one).

    Read-only attributes, so any record with these three fields fits without conversion.
    """

    @property
    def prompt_tokens(self) -> int | None: ...

    @property
    def completion_tokens(self) -> int | None: ...

    @property
    def total_tokens(self) -> int | None: ...


@dataclass(frozen=True, slots=True)
class NewMessage:
    """A message to store (`Repository.add_message`, `Repository.start_turn`).

    `first_chunk_ms`/`total_ms`: how long the answer took to start and to finish.
    `platform_message_ids`: the platform messages it was shown as (a long answer spans several).
    """

    role: str
    content: str
    status: MessageStatus = "complete"
    author_id: str | None = None
    author_name: str | None = None
    model: str | None = None
    usage: TokenUsage | None = None
    first_chunk_ms: int | None = None
    total_ms: int | None = None
    platform_message_ids: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        _check_status(self.status)


@dataclass(frozen=True, slots=True)
class MessageRecord:
    """A stored message, as the history window returns it."""

    id: int
    role: str
    content: str
    author_id: str | None
    author_name: str | None
    status: MessageStatus
    model: str | None
    created_at: datetime


@dataclass(frozen=True, slots=True)
class BindingRecord:
    """A scope bound to a GPT: who bound it and when. `group_id`: the scope's guild, if any."""

    scope: ScopeKey
    gpt_id: str
    group_id: str | None
    bound_by_id: str | None
    bound_by_name: str | None
    bound_at: datetime


@dataclass(frozen=True, slots=True)
class TurnStart:
    """What `Repository.start_turn` found and stored."""

    conversation_id: int
    history: list[MessageRecord]  # oldest first, without the new message
    message_id: int  # the user's message
    binding: BindingRecord | None = None  # with_binding: the scope's, else its parent chat's
