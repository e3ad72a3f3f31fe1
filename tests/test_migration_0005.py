"""Migration 0005 (attachments) on a database filled at 0004: everything reads back, old messages
have no files, new ones keep theirs by reference, and a downgrade keeps the messages. On SQLite
and PostgreSQL (`db_url`)."""

from __future__ import annotations

import pytest

from storage import AttachmentRecord, NewMessage
from tests.databases import scalar
from tests.revisions import CHANNEL, TOPIC, downgraded_after, revision_before, upgraded_from

BEFORE = revision_before("0005")
PHOTO = AttachmentRecord("image", "photo.jpg", "image/jpeg", 2048, "AgACAgIAAxkBAAIB")


@pytest.mark.asyncio
async def test_a_filled_database_upgrades_and_keeps_files_by_reference(db_url: str) -> None:
    async with upgraded_from(db_url, BEFORE) as repo:
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


@pytest.mark.asyncio
async def test_0005_downgrades_keeping_the_messages(db_url: str) -> None:
    asked = NewMessage("user", "with a photo", attachments=(PHOTO,))
    contents = await downgraded_after(db_url, asked, to=BEFORE)
    assert len(contents) == 11 and contents[-1] == ("with a photo",)
