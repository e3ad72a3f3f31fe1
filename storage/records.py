"""The plain records storage takes and returns: frozen dataclasses, never ORM rows.

`ScopeKey` is also the core's `Scope` (`core.turns` re-exports it), so a scope crosses into
storage as it is. Nothing here imports SQLAlchemy or `core`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Final, Literal, Protocol, get_args

__all__ = [
    "MESSAGE_STATUSES",
    "AttachmentRecord",
    "BindingRecord",
    "Exchange",
    "InterruptedAnswer",
    "MessageRecord",
    "MessageStatus",
    "NewMessage",
    "QuotaUse",
    "ScopeKey",
    "StoredAnswer",
    "TokenUsage",
    "TurnStart",
    "UsageFigures",
    "UsageReport",
    "UserUsage",
]

# Every status a stored message can have, spelled here only. Adding one is one more string here
# plus a migration: the database's CHECK constraint lists the statuses it accepts, and
# tests/test_storage.py stores every one of them, so a status the database refuses fails there.
#
#   complete     a user message taken, or an answer that arrived in full
#   partial      an answer the GPTs endpoint cut off after some text
#   error        an answer that never got text (upstream failed, no GPT bound, empty answer)
#   streaming    an answer still arriving: its row is saved every few seconds while it streams
#   interrupted  an answer whose process died while it streamed (settled at the next start)
#   stopped      an answer stopped before its end (the bot shut down mid-answer)
#   refused      a user message the bot did not send on (empty, or over the input limit)
#   superseded   an answer replaced by a newer one to the same question (Retry): kept, never
#                sent upstream again
MessageStatus = Literal[
    "complete",
    "partial",
    "error",
    "streaming",
    "interrupted",
    "stopped",
    "refused",
    "superseded",
]
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
class AttachmentRecord:
    """A file stored with a user message, by reference only (never its bytes): `kind` "image" or
    "text", its name, mime type, size in bytes (None: unknown) and `reference`, how its platform
    finds it again (a Telegram file id, a Discord attachment URL, a local path)."""

    kind: str
    name: str
    mime: str
    size: int | None
    reference: str


@dataclass(frozen=True, slots=True)
class NewMessage:
    """A message to store (`Repository.add_message`, `Repository.start_turn`).

    `first_chunk_ms`/`total_ms`: how long the answer took to start and to finish.
    `platform_message_ids`: the platform messages it was shown as (a long answer spans several).
    `answers_id`: for an answer, the user message it answers (history is built from these pairs).
    `full_length`: set when `content` was stored truncated: the length of the message in full.
    `tokens_estimated`: the endpoint sent no token counts, `usage` is the core's estimate.
    `update_key`: for a user message, the platform's id of the update that brought it, as
    `<platform>:<id>` (unique across the database): the same update delivered again is refused
    (`DuplicateUpdate`), so it is answered once whichever process gets it.
    `attachments`: for a user message, the files sent with it, by reference.
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
    answers_id: int | None = None
    full_length: int | None = None
    tokens_estimated: bool = False
    update_key: str | None = None
    attachments: tuple[AttachmentRecord, ...] = ()

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
    answers_id: int | None = None
    full_length: int | None = None


@dataclass(frozen=True, slots=True)
class Exchange:
    """One step of the history window: a user message and the answer it got.

    Only answers with text are paired (`answer_status` is complete, partial, interrupted or
    stopped); a user message that got none is never part of the window.
    `question_attachments`: the files sent with the question, by reference.
    """

    question_id: int
    author_name: str | None
    question: str
    answer: str
    answer_status: MessageStatus
    question_attachments: tuple[AttachmentRecord, ...] = ()


@dataclass(frozen=True, slots=True)
class InterruptedAnswer:
    """An answer left `streaming` by a process that died, now marked `interrupted`: what was saved
    of it, the platform messages it was shown in, and the user message it answers."""

    id: int
    scope: ScopeKey
    content: str
    platform_message_ids: tuple[str, ...]
    question: str
    question_message_ids: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class StoredAnswer:
    """An answer as a Stop or Retry press needs it: where it lives, how it ended, and the user
    message it answers (who asked, what, and the platform messages that asked it).
    `is_current`: its conversation is still its scope's current one (no /reset since)."""

    id: int
    scope: ScopeKey
    conversation_id: int
    status: MessageStatus
    question_id: int | None
    question: str
    asker_id: str | None
    asker_name: str | None
    question_message_ids: tuple[str, ...]
    is_current: bool
    question_attachments: tuple[AttachmentRecord, ...] = ()  # the files sent with the question

    @property
    def can_retry(self) -> bool:
        """It has ended, no newer answer replaced it, it answers a question, and its
        conversation was not reset since."""
        return (
            self.is_current
            and self.question_id is not None
            and self.status not in ("streaming", "superseded")
        )


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
    history: list[Exchange]  # oldest first, without the new message
    message_id: int  # the user's message
    binding: BindingRecord | None = None  # with_binding: the scope's, else its parent chat's
    answer_id: int | None = None  # the answer's row, when one was started with the turn


@dataclass(frozen=True, slots=True)
class QuotaUse:
    """What a person and a chat used in the quota windows (`Repository.quota_use`); a figure
    that was not asked for is 0. `oldest_turn_at`: the first of the person's `turns`."""

    turns: int = 0
    oldest_turn_at: datetime | None = None
    user_tokens: int = 0
    scope_tokens: int = 0


@dataclass(frozen=True, slots=True)
class UsageFigures:
    """Turns (messages that went to the GPT) and their answers' tokens, today and this month.
    `estimated`: some of the tokens are the core's estimate."""

    turns_today: int = 0
    tokens_today: int = 0
    turns_month: int = 0
    tokens_month: int = 0
    estimated: bool = False


@dataclass(frozen=True, slots=True)
class UserUsage:
    """One person's figures in a chat; `name`: the display name of one of their messages."""

    user_id: str
    name: str | None
    figures: UsageFigures


@dataclass(frozen=True, slots=True)
class UsageReport:
    """`Repository.usage`: the person's own figures, and when asked for, the chat's with its top
    users, and the whole bot's."""

    own: UsageFigures
    chat: UsageFigures | None = None
    top_users: tuple[UserUsage, ...] = ()
    bot: UsageFigures | None = None
