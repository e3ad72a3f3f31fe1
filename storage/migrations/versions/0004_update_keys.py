"""A user message's platform update, unique: an update delivered twice is answered once.

- `messages.update_key`: `<platform>:<the platform's id>` of the update that brought a user
  message (a Telegram chat and message id, a Discord message or interaction id); NULL for
  answers, the terminal, and messages stored before this revision.
- `uq_messages_update_key`: a unique index on it. An index, not a constraint, so SQLite adds it
  without rebuilding the table; NULLs never collide, on SQLite and PostgreSQL alike.

Revision ID: 0004
Revises: 0002
Create Date: 2026-01-10
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
# 0003 (quotas) is written beside this one: whichever lands second revises the other.
down_revision: str | None = "0003"

# A frozen copy, as in 0001: this migration must not change when the models do.
UPDATE_KEY_CHARS = 160


def upgrade() -> None:
    # A nullable column with no default: a plain ALTER TABLE ... ADD COLUMN on both databases.
    op.add_column("messages", sa.Column("update_key", sa.String(UPDATE_KEY_CHARS), nullable=True))
    op.create_index("uq_messages_update_key", "messages", ["update_key"], unique=True)


def downgrade() -> None:
    op.drop_index("uq_messages_update_key", table_name="messages")
    with op.batch_alter_table("messages") as batch:
        batch.drop_column("update_key")
