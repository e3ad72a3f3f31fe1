"""Storage: the database behind gptsbot (SQLAlchemy 2 async; SQLite by default, or PostgreSQL).

The core hands it a URL and frozen records (`storage.records`), and gets frozen records back::

    repo = await Repository.open("sqlite+aiosqlite:///gptsbot.db")
    await repo.upgrade()
    conversation_id = await repo.current_conversation(ScopeKey("discord", channel_id))
    await repo.add_message(conversation_id, NewMessage("user", "hi", author_name="Ann"))

No other package writes SQL, and this one imports nothing from `core`.
"""

from storage.engine import sqlite_file
from storage.records import (
    MESSAGE_STATUSES,
    BindingRecord,
    Exchange,
    InterruptedAnswer,
    MessageRecord,
    MessageStatus,
    NewMessage,
    ScopeKey,
    TokenUsage,
    TurnStart,
)
from storage.repository import DuplicateUpdate, Repository, StorageBusy, alembic_config

__all__ = [
    "MESSAGE_STATUSES",
    "BindingRecord",
    "DuplicateUpdate",
    "Exchange",
    "InterruptedAnswer",
    "MessageRecord",
    "MessageStatus",
    "NewMessage",
    "Repository",
    "ScopeKey",
    "StorageBusy",
    "TokenUsage",
    "TurnStart",
    "alembic_config",
    "sqlite_file",
]
