"""Initial schema: scopes, conversations, messages, bindings.

Revision ID: 0001
Revises:
Create Date: 2025-11-26
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision: str | None = None

# Frozen copies of the model's types: a migration must not change when models.py does later.
BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
UTC_TIMESTAMP = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "scopes",
        sa.Column("id", BIG_ID, nullable=False),
        sa.Column("platform", sa.String(32), nullable=False),
        sa.Column("chat_id", sa.String(64), nullable=False),
        sa.Column("thread_id", sa.String(64), server_default="", nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_scopes")),
        sa.UniqueConstraint(
            "platform", "chat_id", "thread_id", name=op.f("uq_scopes_platform_chat_id_thread_id")
        ),
    )
    op.create_table(
        "conversations",
        sa.Column("id", BIG_ID, nullable=False),
        sa.Column("scope_id", BIG_ID, nullable=False),
        sa.Column("started_at", UTC_TIMESTAMP, nullable=False),
        sa.ForeignKeyConstraint(
            ["scope_id"],
            ["scopes.id"],
            name=op.f("fk_conversations_scope_id_scopes"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_conversations")),
    )
    op.create_index(op.f("ix_conversations_scope_id_id"), "conversations", ["scope_id", "id"])
    op.create_table(
        "messages",
        sa.Column("id", BIG_ID, nullable=False),
        sa.Column("conversation_id", BIG_ID, nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("author_id", sa.String(64), nullable=True),
        sa.Column("author_name", sa.String(255), nullable=True),
        sa.Column("content", sa.Text(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("model", sa.String(255), nullable=True),
        sa.Column("prompt_tokens", sa.Integer(), nullable=True),
        sa.Column("completion_tokens", sa.Integer(), nullable=True),
        sa.Column("total_tokens", sa.Integer(), nullable=True),
        sa.Column("first_chunk_ms", sa.Integer(), nullable=True),
        sa.Column("total_ms", sa.Integer(), nullable=True),
        sa.Column("platform_message_ids", sa.JSON(), nullable=False),
        sa.Column("created_at", UTC_TIMESTAMP, nullable=False),
        sa.CheckConstraint(
            "status IN ('complete', 'partial', 'error')", name=op.f("ck_messages_status")
        ),
        sa.ForeignKeyConstraint(
            ["conversation_id"],
            ["conversations.id"],
            name=op.f("fk_messages_conversation_id_conversations"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_messages")),
    )
    op.create_index(op.f("ix_messages_conversation_id_id"), "messages", ["conversation_id", "id"])
    op.create_table(
        "bindings",
        sa.Column("id", BIG_ID, nullable=False),
        sa.Column("scope_id", BIG_ID, nullable=False),
        sa.Column("gpt_id", sa.String(128), nullable=False),
        sa.Column("group_id", sa.String(64), nullable=True),
        sa.Column("bound_by_id", sa.String(64), nullable=True),
        sa.Column("bound_by_name", sa.String(255), nullable=True),
        sa.Column("bound_at", UTC_TIMESTAMP, nullable=False),
        sa.ForeignKeyConstraint(
            ["scope_id"],
            ["scopes.id"],
            name=op.f("fk_bindings_scope_id_scopes"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_bindings")),
        sa.UniqueConstraint("scope_id", name=op.f("uq_bindings_scope_id")),
    )
    op.create_index(op.f("ix_bindings_group_id"), "bindings", ["group_id"])


def downgrade() -> None:
    op.drop_index(op.f("ix_bindings_group_id"), table_name="bindings")
    op.drop_table("bindings")
    op.drop_index(op.f("ix_messages_conversation_id_id"), table_name="messages")
    op.drop_table("messages")
    op.drop_index(op.f("ix_conversations_scope_id_id"), table_name="conversations")
    op.drop_table("conversations")
    op.drop_table("scopes")
