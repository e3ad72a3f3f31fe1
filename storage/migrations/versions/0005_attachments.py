"""The files sent with a user message, by reference.

- `messages.attachments`: JSON, a list of `{kind, name, mime, size, reference}` (a Telegram file
  id, a Discord attachment URL, a local path: never the bytes, never a URL carrying a token);
  NULL for messages without files, answers, and every message stored before this revision.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-30
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | Sequence[str] | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # A nullable column with no default: a plain ALTER TABLE ... ADD COLUMN on both databases,
    # existing rows untouched.
    op.add_column("messages", sa.Column("attachments", sa.JSON(none_as_null=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("messages") as batch:
        batch.drop_column("attachments")
