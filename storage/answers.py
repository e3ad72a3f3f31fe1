"""The SQL of one answer at a time, for the buttons under it: find it, find a scope's latest, and
start asking its question again (Retry).

Like `storage.queries`, each function takes an open `Connection` inside the caller's transaction.
Retry supersedes the earlier answer in the same transaction that starts the new one, so two
presses of one Retry button ask once: the second finds the answer superseded.
"""

from __future__ import annotations

from typing import Any, Final

from sqlalchemy import bindparam, func, literal, select, update
from sqlalchemy.engine import Connection

from storage import bindings, queries
from storage.models import CONVERSATIONS, MESSAGES, SCOPES
from storage.records import ScopeKey, StoredAnswer, TurnStart

_QUESTION: Final = MESSAGES.alias("question")
_NEWEST: Final = CONVERSATIONS.alias("newest")

_STORED_ANSWER: Final = (
    select(
        MESSAGES.c.id,
        SCOPES.c.platform,
        SCOPES.c.chat_id,
        SCOPES.c.thread_id,
        MESSAGES.c.conversation_id,
        MESSAGES.c.status,
        MESSAGES.c.answers_id,
        _QUESTION.c.content,
        _QUESTION.c.author_id,
        _QUESTION.c.author_name,
        _QUESTION.c.platform_message_ids,
        _QUESTION.c.attachments,
        select(func.max(_NEWEST.c.id)).where(_NEWEST.c.scope_id == SCOPES.c.id).scalar_subquery(),
    )
    .select_from(MESSAGES)
    .join(CONVERSATIONS, MESSAGES.c.conversation_id == CONVERSATIONS.c.id)
    .join(SCOPES, CONVERSATIONS.c.scope_id == SCOPES.c.id)
    .outerjoin(_QUESTION, MESSAGES.c.answers_id == _QUESTION.c.id)
    .where(MESSAGES.c.id == bindparam("answer_id"), MESSAGES.c.role == literal("assistant"))
)
# The newest answer of a conversation that Retry did not replace: one backward seek on
# ix_messages_conversation_id_id.
_LATEST_ANSWER: Final = (
    select(MESSAGES.c.id)
    .where(
        MESSAGES.c.conversation_id == bindparam("conversation_id"),
        MESSAGES.c.role == literal("assistant"),
        MESSAGES.c.status != literal("superseded"),
    )
    .order_by(MESSAGES.c.id.desc())
    .limit(1)
)
_CURRENT_CONVERSATION: Final = (
    select(func.max(CONVERSATIONS.c.id))
    .join(SCOPES, CONVERSATIONS.c.scope_id == SCOPES.c.id)
    .where(
        SCOPES.c.platform == bindparam("platform"),
        SCOPES.c.chat_id == bindparam("chat_id"),
        SCOPES.c.thread_id == bindparam("thread_id"),
    )
)
_SUPERSEDE: Final = (
    update(MESSAGES).where(MESSAGES.c.id == bindparam("answer_id")).values(status="superseded")
)


def stored_answer(connection: Connection, answer_id: int) -> StoredAnswer | None:
    """The answer `answer_id` with its question; None when there is no such answer."""
    row = connection.execute(_STORED_ANSWER, {"answer_id": answer_id}).one_or_none()
    if row is None:
        return None
    (id_, platform, chat_id, thread_id, conversation_id, status, question_id, question,
     asker_id, asker_name, question_ids, files, newest) = row  # fmt: skip
    return StoredAnswer(
        id=id_,
        scope=ScopeKey(platform, chat_id, thread_id),
        conversation_id=conversation_id,
        status=status,
        question_id=question_id,
        question=question or "",
        asker_id=asker_id,
        asker_name=asker_name,
        question_message_ids=tuple(question_ids or ()),
        is_current=conversation_id == newest,
        question_attachments=queries.attachment_records(files),
    )


def latest_answer(connection: Connection, scope: ScopeKey) -> StoredAnswer | None:
    """The newest answer in the scope's current conversation that Retry did not replace."""
    params = {"platform": scope.platform, "chat_id": scope.chat_id, "thread_id": scope.thread_id}
    conversation_id = connection.execute(_CURRENT_CONVERSATION, params).scalar()
    if conversation_id is None:
        return None
    answer_id = connection.execute(_LATEST_ANSWER, {"conversation_id": conversation_id}).scalar()
    return None if answer_id is None else stored_answer(connection, answer_id)


def retry_turn(
    connection: Connection,
    scope: ScopeKey,
    answer_id: int,
    *,
    history_limit: int,
    with_binding: bool,
    answer_values: dict[str, Any],
) -> TurnStart | None:
    """Supersede answer `answer_id` and start a new answer to its question (None, and nothing
    written, when it can no longer be retried): the history window before the question, the
    binding, the new answer's row. `TurnStart.message_id` is the question's."""
    answer = stored_answer(connection, answer_id)
    if answer is None or answer.scope != scope or not answer.can_retry:
        return None
    question_id = answer.question_id
    assert question_id is not None
    connection.execute(_SUPERSEDE, {"answer_id": answer_id})
    conversation_id = answer.conversation_id
    history = (
        queries.exchanges(connection, conversation_id, history_limit, before=question_id)
        if history_limit > 0
        else []
    )
    binding = bindings.turn_binding(connection, scope) if with_binding else None
    answer_values["conversation_id"] = conversation_id
    answer_values["answers_id"] = question_id
    new_id = queries.insert_message(connection, answer_values)
    return TurnStart(conversation_id, history, question_id, binding, new_id)
