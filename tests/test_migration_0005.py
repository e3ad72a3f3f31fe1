"""Migration 0005 (attachments) on a database filled at 0004: everything reads back, old messages
have no files, new ones keep theirs by reference, and a downgrade keeps the messages. On SQLite
and PostgreSQL (`db_url`)."""

from __future__ import annotations

import pytest
from alembic.script import ScriptDirectory

from storage import AttachmentRecord, NewMessage, Repository, alembic_config
from tests.databases import rows, scalar
from tests.test_migration_0002 import CHANNEL, TOPIC, fill_at_0001, migrate

SCRIPTS = ScriptDirectory.from_config(alembic_config())
ATTACHMENTS = SCRIPTS.get_revision("0005")
assert ATTACHMENTS is not None
BEFORE = str(ATTACHMENTS.down_revision)
PHOTO = AttachmentRecord("image", "photo.jpg", "image/jpeg", 2048, "AgACAgIAAxkBAAIB")


async def filled_before_0005(url: str) -> None:
    await migrate(url, "0001")
    await fill_at_0001(url)
    await migrate(url, BEFORE)


@pytest.mark.asyncio
async def test_a_filled_database_upgrades_and_keeps_files_by_reference(db_url: str) -> None:
    await filled_before_0005(db_url)

    async with await Repository.open(db_url) as repo:
        await repo.upgrade()
        current = await repo.current_conversation(TOPIC)
        old = await repo.exchanges(current, limit=5)
        assert [(e.question, e.question_attachments) for e in old] == [
            ("first question", ()),
            ("second question", ()),
        ]
        binding = await repo.get_binding(CHANNEL)
        assert binding is not None and binding.gpt_id == "g-Discord01"

        asked = NewMessage("user", "what is this?", attachments=(PHOTO,))
        start = await repo.start_turn(TOPIC, asked, history_limit=5)
        await repo.add_message(
            start.conversation_id,
            NewMessage("assistant", "a cat", answers_id=start.message_id),
        )
        window = await repo.exchanges(start.conversation_id, limit=5)
        assert window[-1].question == "what is this?"
        assert window[-1].question_attachments == (PHOTO,)

    # Old messages and answers hold SQL NULL, not a JSON null.
    assert await scalar(db_url, "SELECT count(*) FROM messages WHERE attachments IS NULL") == 11
    head = SCRIPTS.get_current_head()
    assert await rows(db_url, "SELECT version_num FROM alembic_version") == [(head,)]


@pytest.mark.asyncio
async def test_0005_downgrades_keeping_the_messages(db_url: str) -> None:
    await filled_before_0005(db_url)
    async with await Repository.open(db_url) as repo:
        await repo.upgrade()
        asked = NewMessage("user", "with a photo", attachments=(PHOTO,))
        await repo.start_turn(CHANNEL, asked, history_limit=0)

    await migrate(db_url, BEFORE, down=True)

    contents = await rows(db_url, "SELECT content FROM messages ORDER BY id")
    assert len(contents) == 11 and contents[-1] == ("with a photo",)
