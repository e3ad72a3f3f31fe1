"""The repository's SQL: statements built once, and the steps of a transaction that run them.

Every function here takes an open `Connection` inside the caller's transaction and returns plain
values or records. The hot paths' statements are built once, on Core tables, with named
parameters: executing them skips statement construction, ORM compilation and cache-key generation
on every call. The SQL is portable (SQLite and PostgreSQL).
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import Any, Final, cast

from sqlalchemy import (
    Integer,
    Select,
    bindparam,
    func,
    insert,
    literal,
    literal_column,
    select,
    text,
    update,
)
from sqlalchemy.engine import Connection

from storage.direct import execute
from storage.models import CONVERSATIONS, MESSAGES, SCOPES, utcnow
from storage.records import (
    AttachmentRecord,
    Exchange,
    InterruptedAnswer,
    MessageRecord,
    MessageStatus,
    NewMessage,
    ScopeKey,
)

_HISTORY: Final = (
    select(
        MESSAGES.c.id,
        MESSAGES.c.role,
        MESSAGES.c.content,
        MESSAGES.c.author_id,
        MESSAGES.c.author_name,
        MESSAGES.c.status,
        MESSAGES.c.model,
        MESSAGES.c.created_at,
        MESSAGES.c.answers_id,
        MESSAGES.c.full_length,
    )
    .where(MESSAGES.c.conversation_id == bindparam("conversation_id"))
    .order_by(MESSAGES.c.id.desc())
    .limit(bindparam("limit", type_=Integer))
)
# Answers that go upstream as history: with text, and not still streaming elsewhere.
PAIRED_STATUSES: Final[tuple[MessageStatus, ...]] = (
    "complete",
    "partial",
    "interrupted",
    "stopped",
)
_QUESTION: Final = MESSAGES.alias("question")
_ANSWER: Final = MESSAGES.alias("answer")
_NEWER: Final = MESSAGES.alias("newer")
# The window looks at most this many messages back per exchange it returns: a conversation of
# thousands of unanswered messages (no GPT bound, refusals) costs no more than a short one.
SCAN_PER_EXCHANGE: Final = 8


def _exchanges_statement(*, before: bool) -> Select[Any]:
    """The history window: the newest questions that got an answer, each with its newest answer
    that Retry did not supersede. Ordered by the question, so answers written late or by another
    process never change the order. One seek on ix_messages_conversation_id_id, then seeks on
    ix_messages_answers_id per question. `before`: only questions older than `:before` (the
    window of a question asked again)."""
    in_conversation = MESSAGES.c.conversation_id == bindparam("conversation_id")
    bound = [MESSAGES.c.id < bindparam("before")] if before else []
    # The id of the oldest message the window may look at (NULL: fewer messages than that).
    scan_start = (
        select(MESSAGES.c.id)
        .where(in_conversation, *bound)
        .order_by(MESSAGES.c.id.desc())
        .limit(1)
        .offset(bindparam("scan", type_=Integer))
        .scalar_subquery()
    )
    newer_answer = (
        select(_NEWER.c.id)
        .where(
            _NEWER.c.answers_id == _QUESTION.c.id,
            _NEWER.c.id > _ANSWER.c.id,
            _NEWER.c.status != literal("superseded"),
        )
        .exists()
    )
    question_bound = [_QUESTION.c.id < bindparam("before")] if before else []
    return (
        select(
            _QUESTION.c.id,
            _QUESTION.c.author_name,
            _QUESTION.c.content,
            _ANSWER.c.content,
            _ANSWER.c.status,
            _QUESTION.c.attachments,
        )
        .join_from(_QUESTION, _ANSWER, _ANSWER.c.answers_id == _QUESTION.c.id)
        .where(
            _QUESTION.c.conversation_id == bindparam("conversation_id"),
            _QUESTION.c.id >= func.coalesce(scan_start, 0),
            *question_bound,
            _ANSWER.c.status.in_([literal(status) for status in PAIRED_STATUSES]),
            _ANSWER.c.content != literal(""),
            ~newer_answer,
        )
        .order_by(_QUESTION.c.id.desc())
        .limit(bindparam("limit", type_=Integer))
    )


_EXCHANGES: Final = _exchanges_statement(before=False)
_EXCHANGES_BEFORE: Final = _exchanges_statement(before=True)
# While an answer streams: its text so far and the platform messages showing it. Only while it
# is still `streaming`, so a save that lands after the final update changes nothing.
_SAVE_ANSWER: Final = (
    update(MESSAGES)
    .where(MESSAGES.c.id == bindparam("answer_id"), MESSAGES.c.status == literal("streaming"))
    .values(content=bindparam("saved_content"), platform_message_ids=bindparam("saved_ids"))
)
# What finishing an answer sets: its final text, status, usage, timings and platform messages.
_FINAL_COLUMNS: Final = (
    "content",
    "status",
    "model",
    "prompt_tokens",
    "completion_tokens",
    "total_tokens",
    "tokens_estimated",
    "first_chunk_ms",
    "total_ms",
    "platform_message_ids",
)
# (A parameter may not be named after the column it sets: hence the prefix.)
_FINISH_ANSWER: Final = (
    update(MESSAGES)
    .where(MESSAGES.c.id == bindparam("answer_id"))
    .values({column: bindparam(f"final_{column}") for column in _FINAL_COLUMNS})
)
_NEWEST_CONVERSATION: Final = (
    select(CONVERSATIONS.c.id)
    .where(CONVERSATIONS.c.scope_id == SCOPES.c.id)
    .order_by(CONVERSATIONS.c.id.desc())
    .limit(1)
    .scalar_subquery()
)
IS_SCOPE: Final = (
    SCOPES.c.platform == bindparam("platform"),
    SCOPES.c.chat_id == bindparam("chat_id"),
    SCOPES.c.thread_id == bindparam("thread_id"),
)
# One statement, so the scope and its newest conversation are read from one snapshot: reading
# them separately could see a scope that a concurrent caller committed in between and wrongly
# conclude it has no conversation yet.
_CURRENT_CONVERSATION: Final = select(SCOPES.c.id, _NEWEST_CONVERSATION).where(*IS_SCOPE)
SCOPE_ID: Final = select(SCOPES.c.id).where(*IS_SCOPE)
_UPDATE_STORED: Final = select(literal(1)).where(MESSAGES.c.update_key == bindparam("update_key"))
_STREAMING: Final = select(MESSAGES.c.id).where(MESSAGES.c.status == literal_column("'streaming'"))
_INSERT_SCOPE: Final = insert(SCOPES).returning(SCOPES.c.id)
_INSERT_CONVERSATION: Final = insert(CONVERSATIONS).returning(CONVERSATIONS.c.id)
_INSERT_MESSAGE: Final = insert(MESSAGES).returning(MESSAGES.c.id)


def scope_params(scope: ScopeKey) -> dict[str, str]:
    """The named parameters that pick `scope` in the statements above."""
    return {"platform": scope.platform, "chat_id": scope.chat_id, "thread_id": scope.thread_id}


def _final_values(message: NewMessage) -> dict[str, Any]:
    """The values of `_FINAL_COLUMNS` for `message`."""
    usage = message.usage
    return {
        "content": message.content,
        "status": message.status,
        "model": message.model,
        "prompt_tokens": usage.prompt_tokens if usage else None,
        "completion_tokens": usage.completion_tokens if usage else None,
        "total_tokens": usage.total_tokens if usage else None,
        "tokens_estimated": message.tokens_estimated,
        "first_chunk_ms": message.first_chunk_ms,
        "total_ms": message.total_ms,
        "platform_message_ids": list(message.platform_message_ids),
    }


def message_values(message: NewMessage) -> dict[str, Any]:
    """The parameters of one message's INSERT (add `conversation_id`)."""
    return {
        "role": message.role,
        "author_id": message.author_id,
        "author_name": message.author_name,
        **_final_values(message),
        "created_at": utcnow(),
        "answers_id": message.answers_id,
        "full_length": message.full_length,
        "tokens_estimated": message.tokens_estimated,
        "update_key": message.update_key,
        "attachments": attachments_json(message.attachments),
    }


def attachments_json(attachments: Sequence[AttachmentRecord]) -> list[dict[str, Any]] | None:
    """The `attachments` column's value: None (SQL NULL) when there are none."""
    if not attachments:
        return None
    return [
        {
            "kind": record.kind,
            "name": record.name,
            "mime": record.mime,
            "size": record.size,
            "reference": record.reference,
        }
        for record in attachments
    ]


def attachment_records(value: Sequence[dict[str, Any]] | None) -> tuple[AttachmentRecord, ...]:
    """The records an `attachments` column holds (none for NULL)."""
    if not value:
        return ()
    return tuple(
        AttachmentRecord(
            str(item["kind"]),
            str(item["name"]),
            str(item["mime"]),
            item.get("size"),
            str(item["reference"]),
        )
        for item in value
    )


def insert_message(connection: Connection, values: dict[str, Any]) -> int:
    """Store one message from `message_values(...)` plus `conversation_id`; returns its id."""
    return cast(int, execute(connection, _INSERT_MESSAGE, values)[0][0])


def history(connection: Connection, conversation_id: int, limit: int) -> list[MessageRecord]:
    """The last `limit` (> 0) messages of the conversation, oldest first."""
    rows = connection.execute(_HISTORY, {"conversation_id": conversation_id, "limit": limit}).all()
    return [MessageRecord(*row) for row in reversed(rows)]


def exchanges(
    connection: Connection, conversation_id: int, limit: int, *, before: int | None = None
) -> list[Exchange]:
    """The last `limit` (> 0) answered questions of the conversation with their answers, oldest
    first; with `before`, only the questions older than that message."""
    params: dict[str, Any] = {
        "conversation_id": conversation_id,
        "limit": limit,
        "scan": limit * SCAN_PER_EXCHANGE,
    }
    statement = _EXCHANGES
    if before is not None:
        statement, params["before"] = _EXCHANGES_BEFORE, before
    rows = execute(connection, statement, params)
    return [
        Exchange(row[0], row[1], row[2], row[3], row[4], attachment_records(row[5]))
        for row in reversed(rows)
    ]


def save_answer(connection: Connection, answer_id: int, content: str, ids: Sequence[str]) -> None:
    params = {"answer_id": answer_id, "saved_content": content, "saved_ids": list(ids)}
    execute(connection, _SAVE_ANSWER, params)


def finish_answer(connection: Connection, answer_id: int, message: NewMessage) -> None:
    """The answer's final text, status, usage and timings (`message.role` etc. are kept)."""
    final = {f"final_{column}": value for column, value in _final_values(message).items()}
    execute(connection, _FINISH_ANSWER, {"answer_id": answer_id, **final})


def is_update_stored(connection: Connection, update_key: str) -> bool:
    """Whether a message with this `update_key` is stored (one seek on its unique index)."""
    found = connection.execute(_UPDATE_STORED, {"update_key": update_key}).first()
    return found is not None


def _streaming_ids(connection: Connection) -> list[int]:
    """The few answers streaming anywhere: one table, its partial index (the status spelled out,
    not a parameter, so SQLite can use ix_messages_streaming); usually none."""
    return list(connection.scalars(_STREAMING).all())


def streaming_scopes(connection: Connection, platform: str, chat_id: str | None) -> set[ScopeKey]:
    """The scopes of the platform (or of one chat of it) with an answer still `streaming`."""
    streaming = _streaming_ids(connection)
    if not streaming:
        return set()
    conditions = [MESSAGES.c.id.in_(streaming), SCOPES.c.platform == platform]
    if chat_id is not None:
        conditions.append(SCOPES.c.chat_id == chat_id)
    query = (
        select(SCOPES.c.chat_id, SCOPES.c.thread_id)
        .distinct()
        .select_from(MESSAGES)
        .join(CONVERSATIONS, MESSAGES.c.conversation_id == CONVERSATIONS.c.id)
        .join(SCOPES, CONVERSATIONS.c.scope_id == SCOPES.c.id)
        .where(*conditions)
    )
    return {ScopeKey(platform, row[0], row[1]) for row in connection.execute(query)}


def interrupt_streaming(
    connection: Connection,
    platform: str,
    chat_id: str | None,
    scopes: Collection[ScopeKey] | None = None,
) -> list[InterruptedAnswer]:
    """Mark `interrupted` every answer of the platform (or of one chat of it, or of `scopes`)
    still `streaming`, and return them with their questions. Only call it where no live process
    streams them."""
    streaming = _streaming_ids(connection)
    if not streaming:
        return []
    question = MESSAGES.alias("question")
    conditions = [MESSAGES.c.id.in_(streaming), SCOPES.c.platform == platform]
    if chat_id is not None:
        conditions.append(SCOPES.c.chat_id == chat_id)
    query = (
        select(
            MESSAGES.c.id,
            SCOPES.c.chat_id,
            SCOPES.c.thread_id,
            MESSAGES.c.content,
            MESSAGES.c.platform_message_ids,
            question.c.content,
            question.c.platform_message_ids,
        )
        .select_from(MESSAGES)
        .join(CONVERSATIONS, MESSAGES.c.conversation_id == CONVERSATIONS.c.id)
        .join(SCOPES, CONVERSATIONS.c.scope_id == SCOPES.c.id)
        .outerjoin(question, MESSAGES.c.answers_id == question.c.id)
        .where(*conditions)
        .order_by(MESSAGES.c.id)
    )
    found = [
        InterruptedAnswer(
            id=row[0],
            scope=ScopeKey(platform, row[1], row[2]),
            content=row[3],
            platform_message_ids=tuple(row[4] or ()),
            question=row[5] or "",
            question_message_ids=tuple(row[6] or ()),
        )
        for row in connection.execute(query)
        if scopes is None or ScopeKey(platform, row[1], row[2]) in scopes
    ]
    if not found:
        return []
    # Only those still streaming: one that a live process finished meanwhile is left alone.
    marked = set(
        connection.scalars(
            update(MESSAGES)
            .where(
                MESSAGES.c.id.in_([answer.id for answer in found]),
                MESSAGES.c.status == literal("streaming"),
            )
            .values(status="interrupted")
            .returning(MESSAGES.c.id)
        )
    )
    return [answer for answer in found if answer.id in marked]


def current_conversation(connection: Connection, scope: ScopeKey) -> int:
    """The scope's newest conversation id; inserts the scope (with one) when missing."""
    rows = execute(connection, _CURRENT_CONVERSATION, scope_params(scope))
    if not rows:
        return insert_scope(connection, scope)[1]
    scope_id, conversation_id = rows[0]
    if conversation_id is not None:
        return cast(int, conversation_id)
    # Unreachable through this API (scopes are born with a conversation); repairs rows written by
    # hand.
    return _insert_conversation(connection, scope_id)


def start_conversation(connection: Connection, scope: ScopeKey) -> int:
    """Insert a new (current) conversation for the scope; returns its id."""
    found = scope_id(connection, scope)
    if found is None:
        # A brand-new scope's first conversation is already a fresh one.
        return insert_scope(connection, scope)[1]
    return _insert_conversation(connection, found)


def scope_id(connection: Connection, scope: ScopeKey) -> int | None:
    return cast("int | None", connection.execute(SCOPE_ID, scope_params(scope)).scalar())


def insert_scope(connection: Connection, scope: ScopeKey) -> tuple[int, int]:
    """Insert a scope together with its first conversation; returns both ids. Every scope has a
    conversation from birth, so `current_conversation` never races on an empty scope."""
    new_id = cast(int, execute(connection, _INSERT_SCOPE, scope_params(scope))[0][0])
    return new_id, _insert_conversation(connection, new_id)


def _insert_conversation(connection: Connection, scope_id: int) -> int:
    values = {"scope_id": scope_id, "started_at": utcnow()}
    return cast(int, execute(connection, _INSERT_CONVERSATION, values)[0][0])


def count_messages(connection: Connection, conversation_id: int) -> int:
    query = (
        select(func.count())
        .select_from(MESSAGES)
        .where(MESSAGES.c.conversation_id == conversation_id)
    )
    return connection.execute(query).scalar_one()


def read_version(connection: Connection) -> None:
    """The cheapest read that proves the database is gptsbot's: Alembic's version table."""
    connection.execute(text("SELECT version_num FROM alembic_version")).all()
