"""Storage: the database behind gptsbot (SQLAlchemy 2 async; SQLite by default, PostgreSQL-ready).

The core hands it a URL and plain strings/ints, and gets frozen records back::

    repo = await Repository.open("sqlite+aiosqlite:///gptsbot.db")
    await repo.upgrade()
    conversation_id = await repo.current_conversation("discord", channel_id)

No other package writes SQL, and this one imports nothing from `core`.
"""

from storage.models import MESSAGE_STATUSES
from storage.repository import BindingRecord, MessageRecord, Repository, alembic_config

__all__ = ["MESSAGE_STATUSES", "BindingRecord", "MessageRecord", "Repository", "alembic_config"]
