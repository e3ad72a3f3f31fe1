"""Usage: estimated token counts marked as such, and the indexes quotas and /usage count with.

- `messages.tokens_estimated`: the token counts are the bot's estimate (characters / 4), the
  endpoint having sent none. Answers stored before this revision without any count get one now,
  from their question and their own text (the history that went with them is not known, so it
  is a low estimate), marked estimated; answers with the endpoint's counts keep them, unmarked.
- `ix_messages_author_id_created_at`: a person's messages since a time (quotas, /usage).
- `ix_messages_conversation_id_created_at`: a chat's messages since a time.

Revision ID: 0003
Revises: 0002
Create Date: 2025-12-10
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision: str | None = "0002"

# Frozen copies of what the estimate means (core.quota.CHARS_PER_TOKEN): characters / 4, rounded
# up, for the question and for the answer.
ESTIMATE_OLD_ANSWERS = """
UPDATE messages SET
    prompt_tokens = (
        SELECT (LENGTH(question.content) + 3) / 4 FROM messages AS question
        WHERE question.id = messages.answers_id
    ),
    completion_tokens = (LENGTH(content) + 3) / 4,
    total_tokens = (
        SELECT (LENGTH(question.content) + 3) / 4 FROM messages AS question
        WHERE question.id = messages.answers_id
    ) + (LENGTH(content) + 3) / 4,
    tokens_estimated = :estimated
WHERE role = 'assistant'
  AND answers_id IS NOT NULL
  AND content != ''
  AND status IN ('complete', 'partial', 'stopped', 'interrupted')
  AND prompt_tokens IS NULL AND completion_tokens IS NULL AND total_tokens IS NULL
"""
FORGET_ESTIMATES = """
UPDATE messages SET prompt_tokens = NULL, completion_tokens = NULL, total_tokens = NULL
WHERE tokens_estimated = :estimated
"""


def upgrade() -> None:
    # A column with a constant default and two indexes: plain ALTER TABLE / CREATE INDEX on
    # SQLite as elsewhere, no table copy.
    op.add_column(
        "messages",
        sa.Column("tokens_estimated", sa.Boolean(), nullable=False, server_default=sa.false()),
    )
    op.create_index(
        op.f("ix_messages_author_id_created_at"), "messages", ["author_id", "created_at"]
    )
    op.create_index(
        op.f("ix_messages_conversation_id_created_at"),
        "messages",
        ["conversation_id", "created_at"],
    )
    op.execute(sa.text(ESTIMATE_OLD_ANSWERS).bindparams(estimated=True))


def downgrade() -> None:
    # 0002 can't tell an estimate from a count: estimated figures go.
    op.execute(sa.text(FORGET_ESTIMATES).bindparams(estimated=True))
    op.drop_index(op.f("ix_messages_conversation_id_created_at"), table_name="messages")
    op.drop_index(op.f("ix_messages_author_id_created_at"), table_name="messages")
    # SQLite drops a column in place since 3.35; an unindexed column without constraints.
    op.drop_column("messages", "tokens_estimated")
