"""Answers linked to their questions, truncated refusals, the statuses of durable answers.

- `messages.answers_id`: the user message an answer answers (indexed); existing answers are
  linked to the user message before them in their conversation.
- `messages.full_length`: the real length of a message stored truncated.
- The status CHECK accepts streaming, interrupted, stopped, refused and superseded too.
- `ix_messages_streaming`: a partial index of the answers still streaming.

Revision ID: 0002
Revises: 0001
Create Date: 2025-12-03
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision: str | None = "0001"

# Frozen copies, as in 0001: this migration must not change when the models do.
BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
OLD_STATUSES = "status IN ('complete', 'partial', 'error')"
NEW_STATUSES = (
    "status IN ('complete', 'partial', 'error', 'streaming', 'interrupted', 'stopped', "
    "'refused', 'superseded')"
)
# Each answer answers the newest user message before it in its conversation: until now one
# process answered each scope in order, so that is the message it was written for.
LINK_ANSWERS = """
UPDATE messages SET answers_id = (
    SELECT MAX(question.id) FROM messages AS question
    WHERE question.conversation_id = messages.conversation_id
      AND question.role = 'user'
      AND question.id < messages.id
)
WHERE role = 'assistant'
"""
# Downgrading: the closest status 0001 knows.
OLD_STATUS_OF = {
    "streaming": "partial",
    "interrupted": "partial",
    "stopped": "partial",
    "superseded": "partial",
    "refused": "complete",
}


def upgrade() -> None:
    # On SQLite, batch mode rebuilds the table (a CHECK constraint can't be altered in place);
    # elsewhere these are plain ALTER TABLE statements.
    with op.batch_alter_table("messages") as batch:
        batch.add_column(sa.Column("answers_id", BIG_ID, nullable=True))
        batch.add_column(sa.Column("full_length", sa.Integer(), nullable=True))
        batch.drop_constraint(op.f("ck_messages_status"), type_="check")
        batch.create_check_constraint(op.f("ck_messages_status"), sa.text(NEW_STATUSES))
        batch.create_index(op.f("ix_messages_answers_id"), ["answers_id"])
    # Partial: only the few answers streaming at any moment (see models.Message).
    op.create_index(
        "ix_messages_streaming",
        "messages",
        ["id"],
        sqlite_where=sa.text("status = 'streaming'"),
        postgresql_where=sa.text("status = 'streaming'"),
    )
    op.execute(LINK_ANSWERS)


def downgrade() -> None:
    for new, old in OLD_STATUS_OF.items():
        op.execute(
            sa.text("UPDATE messages SET status = :old WHERE status = :new").bindparams(
                old=old, new=new
            )
        )
    op.drop_index("ix_messages_streaming", table_name="messages")
    with op.batch_alter_table("messages") as batch:
        batch.drop_index(op.f("ix_messages_answers_id"))
        batch.drop_constraint(op.f("ck_messages_status"), type_="check")
        batch.create_check_constraint(op.f("ck_messages_status"), sa.text(OLD_STATUSES))
        batch.drop_column("full_length")
        batch.drop_column("answers_id")
