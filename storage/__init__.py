"""Storage: the database behind gptsbot (SQLAlchemy 2 async; SQLite by default, or PostgreSQL).

The core hands it a URL and frozen records (`storage.records`), and gets frozen records back::

    repo = await Repository.open("sqlite+aiosqlite:///gptsbot.db")
    await repo.upgrade()
    conversation_id = await repo.current_conversation(ScopeKey("discord", channel_id))
    await repo.add_message(conversation_id, NewMessage("user", "hi", author_name="Ann"))

No other package writes SQL, and this one imports nothing from `core`.
"""

from storage import records
from storage.engine import sqlite_file
from storage.records import *  # noqa: F403 (the records, as `records.__all__` names them)
from storage.repository import DuplicateUpdate, Repository, StorageBusy, alembic_config

__all__ = [
    *records.__all__,
    "DuplicateUpdate",
    "Repository",
    "StorageBusy",
    "alembic_config",
    "sqlite_file",
]
