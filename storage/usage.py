"""The SQL of quotas and /usage: what a person, a chat and the whole bot used since a time.

A *turn* is a user message that was not refused; its tokens are its answers' (linked by
`answers_id`): `total_tokens`, else prompt + completion, else 0. A *chat* is a scope's
`(platform, chat_id)`: a channel or group with its threads and topics.

What each figure costs (indexes in models.Message):

- a person's turns or tokens since a time: one range of `ix_messages_author_id_created_at`, each
  row joined to its conversation and scope (the platform) and to its answer
  (`ix_messages_answers_id`): proportional to that person's turns in the window;
- a chat's tokens since a time: the chat's scopes (`uq_scopes_platform_chat_id_thread_id`), their
  conversations (`ix_conversations_scope_id_id`), then one range of
  `ix_messages_conversation_id_created_at` each: proportional to the chat's messages in the window
  (plus one seek per conversation the chat ever had);
- the whole bot's month (owners' /usage only): every message of the month.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Final

from sqlalchemy import (
    ColumnElement,
    Select,
    bindparam,
    case,
    distinct,
    func,
    literal,
    select,
)
from sqlalchemy.engine import Connection

from storage.models import CONVERSATIONS, MESSAGES, SCOPES
from storage.records import QuotaUse, ScopeKey, UsageFigures, UsageReport, UserUsage

_QUESTION: Final = MESSAGES.alias("question")
_ANSWER: Final = MESSAGES.alias("answer")

_TOKENS: Final = func.coalesce(
    _ANSWER.c.total_tokens,
    func.coalesce(_ANSWER.c.prompt_tokens, 0) + func.coalesce(_ANSWER.c.completion_tokens, 0),
)
_IS_TURN: Final = (
    _QUESTION.c.role == literal("user"),
    _QUESTION.c.status != literal("refused"),
)
_OF_USER: Final = (
    _QUESTION.c.author_id == bindparam("user_id"),
    SCOPES.c.platform == bindparam("platform"),
)
_OF_CHAT: Final = (
    SCOPES.c.platform == bindparam("platform"),
    SCOPES.c.chat_id == bindparam("chat_id"),
)
# Questions with their scope, and their answers when they have some.
_QUESTIONS: Final = _QUESTION.join(
    CONVERSATIONS, CONVERSATIONS.c.id == _QUESTION.c.conversation_id
).join(SCOPES, SCOPES.c.id == CONVERSATIONS.c.scope_id)
_TURNS: Final = _QUESTIONS.outerjoin(_ANSWER, _ANSWER.c.answers_id == _QUESTION.c.id)

# -- quotas: one statement per limit that is set -----------------------------------------------

_USER_TURNS: Final = (
    select(func.count(_QUESTION.c.id), func.min(_QUESTION.c.created_at))
    .select_from(_QUESTIONS)
    .where(*_OF_USER, *_IS_TURN, _QUESTION.c.created_at >= bindparam("since"))
)
_USER_TOKENS: Final = (
    select(func.coalesce(func.sum(_TOKENS), 0))
    .select_from(_TURNS)
    .where(*_OF_USER, *_IS_TURN, _QUESTION.c.created_at >= bindparam("since"))
)
# The chat's answers themselves, by their own time: no join back to the questions.
_CHAT_TOKENS: Final = (
    select(func.coalesce(func.sum(_TOKENS), 0))
    .select_from(
        SCOPES.join(CONVERSATIONS, CONVERSATIONS.c.scope_id == SCOPES.c.id).join(
            _ANSWER, _ANSWER.c.conversation_id == CONVERSATIONS.c.id
        )
    )
    .where(
        *_OF_CHAT,
        _ANSWER.c.created_at >= bindparam("since"),
        _ANSWER.c.role == literal("assistant"),
    )
)


def quota_use(
    connection: Connection,
    scope: ScopeKey,
    user_id: str,
    *,
    minute_since: datetime | None,
    day_since: datetime | None,
    chat_day_since: datetime | None,
) -> QuotaUse:
    """The person's turns since `minute_since` and tokens since `day_since`, and the chat's
    tokens since `chat_day_since`; each only when its time is given (its limit is set)."""
    user = {"user_id": user_id, "platform": scope.platform}
    turns, oldest, user_tokens, chat_tokens = 0, None, 0, 0
    if minute_since is not None:
        turns, oldest = connection.execute(_USER_TURNS, {**user, "since": minute_since}).one()
    if day_since is not None:
        user_tokens = connection.execute(_USER_TOKENS, {**user, "since": day_since}).scalar_one()
    if chat_day_since is not None:
        chat = {"platform": scope.platform, "chat_id": scope.chat_id, "since": chat_day_since}
        chat_tokens = connection.execute(_CHAT_TOKENS, chat).scalar_one()
    return QuotaUse(turns, oldest, int(user_tokens), int(chat_tokens))


# -- /usage ------------------------------------------------------------------------------------


def _figures_columns() -> list[ColumnElement[Any]]:
    today = _QUESTION.c.created_at >= bindparam("day")
    return [
        func.count(distinct(case((today, _QUESTION.c.id)))),
        func.coalesce(func.sum(case((today, _TOKENS), else_=0)), 0),
        func.count(distinct(_QUESTION.c.id)),
        func.coalesce(func.sum(_TOKENS), 0),
        func.coalesce(func.max(case((_ANSWER.c.tokens_estimated, 1), else_=0)), 0),
    ]


def _figures(*where: ColumnElement[bool]) -> Select[Any]:
    return (
        select(*_figures_columns())
        .select_from(_TURNS)
        .where(*_IS_TURN, _QUESTION.c.created_at >= bindparam("month"), *where)
    )


_OWN: Final = _figures(*_OF_USER)
_CHAT: Final = _figures(*_OF_CHAT)
_BOT: Final = _figures()
_TOP_USERS: Final = (
    select(_QUESTION.c.author_id, func.max(_QUESTION.c.author_name), *_figures_columns())
    .select_from(_TURNS)
    .where(*_IS_TURN, _QUESTION.c.created_at >= bindparam("month"), *_OF_CHAT)
    .group_by(_QUESTION.c.author_id)
    .order_by(
        func.coalesce(func.sum(_TOKENS), 0).desc(), func.count(distinct(_QUESTION.c.id)).desc()
    )
    .limit(bindparam("top"))
)


def _as_figures(row: Any) -> UsageFigures:
    turns_today, tokens_today, turns_month, tokens_month, estimated = row
    return UsageFigures(
        int(turns_today), int(tokens_today), int(turns_month), int(tokens_month), bool(estimated)
    )


def usage(
    connection: Connection,
    scope: ScopeKey,
    user_id: str,
    *,
    day_since: datetime,
    month_since: datetime,
    chat_top: int | None,
    whole_bot: bool,
) -> UsageReport:
    """The person's figures on the scope's platform; with `chat_top`, the scope's chat's and
    its top `chat_top` users by tokens this month; with `whole_bot`, every platform's."""
    times = {"day": day_since, "month": month_since}
    chat = {"platform": scope.platform, "chat_id": scope.chat_id, **times}
    own = connection.execute(_OWN, {"user_id": user_id, "platform": scope.platform, **times})
    report = UsageReport(_as_figures(own.one()))
    if chat_top is not None:
        figures = _as_figures(connection.execute(_CHAT, chat).one())
        rows = connection.execute(_TOP_USERS, {**chat, "top": chat_top}).all()
        top = tuple(UserUsage(row[0], row[1], _as_figures(row[2:])) for row in rows)
        report = UsageReport(report.own, figures, top)
    if whole_bot:
        bot = _as_figures(connection.execute(_BOT, times).one())
        report = UsageReport(report.own, report.chat, report.top_users, bot)
    return report
