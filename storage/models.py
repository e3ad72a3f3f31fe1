"""ORM tables. Only `storage.repository` and the Alembic migrations use them.

Schema (every id is an autoincrementing integer; every timestamp is timezone-aware UTC):

    scopes         (platform, chat_id, thread_id)  unique     -- where a conversation lives
      └─ conversations (scope_id, started_at)      ix (scope_id, id)
           └─ messages  (conversation_id, role, content, ...)   ix (conversation_id, id)
                answers_id -> the user message an answer answers  ix (answers_id)
                ix (author_id, created_at), ix (conversation_id, created_at): quotas, /usage
                update_key  the platform update a user message came in   unique
                attachments the files sent with a user message, by reference (JSON)
      └─ bindings      (scope_id unique, gpt_id, group_id ix, bound_by_*, bound_at)

A scope's *current* conversation is its newest one (highest id); there is no pointer column.
`/reset` is then a single INSERT, there is no scopes <-> conversations foreign-key cycle to manage,
and the lookup is one seek on the (scope_id, id) index. The repository keeps the invariant that
every scope has at least one conversation (a scope row is always inserted together with its first
conversation), which is what makes `current_conversation` race-free with a plain unique constraint.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Final, cast

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    Dialect,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    TypeDecorator,
    UniqueConstraint,
    false,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from storage.records import MESSAGE_STATUSES, MessageStatus

# `<platform>:<id>`: a Telegram chat and message id, a Discord snowflake, a callback query id.
UPDATE_KEY_CHARS: Final = 160
_QUOTED_STATUSES: Final = ", ".join(f"'{status}'" for status in MESSAGE_STATUSES)

# Deterministic constraint names, so later migrations (and SQLite batch mode) can refer to them.
NAMING_CONVENTION: Final = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

# BIGINT on PostgreSQL (messages can pass 2**31), but exactly INTEGER on SQLite, where only an
# "INTEGER PRIMARY KEY" column is the rowid alias that autoincrements.
BigId = BigInteger().with_variant(Integer(), "sqlite")


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """Stores aware datetimes as UTC and always hands back aware UTC datetimes.

    SQLite has no time zone type and returns naive values; PostgreSQL's timestamptz returns aware
    ones in the session's zone. Both come back as UTC here.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r}: storage keeps aware UTC timestamps only")
        return value.astimezone(UTC)

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if not isinstance(value, datetime):
            raise TypeError(f"expected a datetime from the database, got {value!r}")
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class Scope(Base):
    __tablename__ = "scopes"
    __table_args__ = (UniqueConstraint("platform", "chat_id", "thread_id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    platform: Mapped[str] = mapped_column(String(32))
    chat_id: Mapped[str] = mapped_column(String(64))
    # "" rather than NULL for "no thread": NULLs are never equal, so a unique constraint over a
    # nullable column would let the same thread-less scope be inserted twice.
    thread_id: Mapped[str] = mapped_column(String(64), default="", server_default="")


class Conversation(Base):
    __tablename__ = "conversations"
    __table_args__ = (Index("ix_conversations_scope_id_id", "scope_id", "id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    scope_id: Mapped[int] = mapped_column(BigId, ForeignKey("scopes.id", ondelete="CASCADE"))
    started_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class Message(Base):
    __tablename__ = "messages"
    __table_args__ = (
        # The history window is "WHERE conversation_id = ? ORDER BY id DESC LIMIT n": one seek on
        # this index and n steps, whatever the table holds.
        Index("ix_messages_conversation_id_id", "conversation_id", "id"),
        # Changing the statuses changes this constraint: that needs a migration.
        CheckConstraint(f"status IN ({_QUOTED_STATUSES})", name="status"),
        # The answers still streaming: a start finds those a dead process left without scanning
        # the table, and the index holds only the few rows streaming at any moment.
        Index(
            "ix_messages_streaming",
            "id",
            sqlite_where=text("status = 'streaming'"),
            postgresql_where=text("status = 'streaming'"),
        ),
        # Quotas and /usage (storage.usage): a person's messages since a time, and a chat's.
        Index("ix_messages_author_id_created_at", "author_id", "created_at"),
        Index("ix_messages_conversation_id_created_at", "conversation_id", "created_at"),
        # An update delivered twice (Telegram re-delivery, a retried webhook, a gateway replay)
        # stores its message once: the second INSERT fails here, before any upstream call.
        # NULLs (answers, the terminal) never collide.
        Index("uq_messages_update_key", "update_key", unique=True),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    conversation_id: Mapped[int] = mapped_column(
        BigId, ForeignKey("conversations.id", ondelete="CASCADE")
    )
    role: Mapped[str] = mapped_column(String(16))
    author_id: Mapped[str | None] = mapped_column(String(64))
    author_name: Mapped[str | None] = mapped_column(String(255))
    content: Mapped[str] = mapped_column(Text)
    status: Mapped[MessageStatus] = mapped_column(String(16), default="complete")
    model: Mapped[str | None] = mapped_column(String(255))
    prompt_tokens: Mapped[int | None] = mapped_column(Integer)
    completion_tokens: Mapped[int | None] = mapped_column(Integer)
    total_tokens: Mapped[int | None] = mapped_column(Integer)
    first_chunk_ms: Mapped[int | None] = mapped_column(Integer)
    total_ms: Mapped[int | None] = mapped_column(Integer)
    # The platform messages this one was shown as (a long answer spans several).
    platform_message_ids: Mapped[list[str]] = mapped_column(JSON, default=list)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    # An answer's user message: the history window pairs them (`ix_messages_answers_id` finds a
    # question's answer in one seek). Not a foreign key: SQLite rebuilds the table to change a
    # constraint, and a self-reference would be cut by that rebuild's DROP TABLE.
    answers_id: Mapped[int | None] = mapped_column(BigId, index=True)
    # Set when `content` is stored truncated (a refused over-long message): its real length.
    full_length: Mapped[int | None] = mapped_column(Integer)
    # The token counts are the core's estimate: the endpoint sent none.
    tokens_estimated: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    # A user message's platform update, `<platform>:<the platform's id>` (see NewMessage).
    update_key: Mapped[str | None] = mapped_column(String(UPDATE_KEY_CHARS))
    # A user message's files, by reference (`AttachmentRecord` fields): NULL, not `null`, when
    # there are none.
    attachments: Mapped[list[dict[str, Any]] | None] = mapped_column(JSON(none_as_null=True))


class Binding(Base):
    __tablename__ = "bindings"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    scope_id: Mapped[int] = mapped_column(
        BigId, ForeignKey("scopes.id", ondelete="CASCADE"), unique=True
    )
    gpt_id: Mapped[str] = mapped_column(String(128))
    # The container the scope belongs to (a Discord guild), for "GPTs bound in this guild".
    group_id: Mapped[str | None] = mapped_column(String(64), index=True)
    bound_by_id: Mapped[str | None] = mapped_column(String(64))
    bound_by_name: Mapped[str | None] = mapped_column(String(255))
    bound_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


# The same tables for SQL written with SQLAlchemy Core (storage.queries, answers, bindings, usage).
SCOPES: Final = cast(Table, Scope.__table__)
CONVERSATIONS: Final = cast(Table, Conversation.__table__)
MESSAGES: Final = cast(Table, Message.__table__)
BINDINGS: Final = cast(Table, Binding.__table__)
