"""Images out on Discord, end to end: the real discord.py client against the fake Discord, an
answer from the fake GPTs endpoint whose image links point at a local image host. The answer's
text keeps every link; the images follow as attachments (up to 10 a message) in the answer's
channel, or as a follow-up of a /chat answer."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.discord_fixtures import discord  # noqa: F401 — discord.py imported quietly

# isort: split
from bots.discord_adapter.text import quote_prompt
from core import i18n
from fakes.discord import FakeMessage
from fakes.gpts import FakeGpts, Reply
from fakes.images import FakeImageHost, png
from fakes.rate_window import max_in_window
from tests import test_discord
from tests.helpers import long_image_answer
from tests.test_discord import (
    EDIT_MESSAGE,
    POST_MESSAGE,
    TIMEOUT,
    World,
    option,
    wait_original,
    world,
)

FOLLOW_UP = "/webhooks/{application_id}/{token}"
pytestmark = pytest.mark.asyncio
# test_discord.py's fixture, found here by name: the default world.
w = test_discord.w


def with_files(w: World, channel_id: int) -> list[FakeMessage]:
    return [m for m in w.fake.bot_messages(channel_id) if m.uploads]


async def uploaded(w: World, channel_id: int, count: int) -> list[FakeMessage]:
    """The bot's messages with files in the channel, once they hold `count` files."""
    await w.fake.wait_for(
        lambda: sum(len(m.uploads) for m in with_files(w, channel_id)) >= count, TIMEOUT
    )
    return with_files(w, channel_id)


async def test_two_image_links_become_attachments_of_one_message_after_the_text(
    host: FakeImageHost, w: World
) -> None:
    cat, dog = host.url("/png/cat?se=2026&sig=abc"), host.url("/png/dog")
    answer = f"Here: ![a cat]({cat}) and ![a dog]({dog}) done."
    w.gpts.enqueue(Reply(answer, chunk_chars=20))
    asked = await w.fake.user_says(w.channel_id, w.member, "draw two", mention_bot=True)

    (images,) = await uploaded(w, w.channel_id, 2)
    text = [m for m in w.fake.bot_messages(w.channel_id) if not m.uploads]
    assert [m.content for m in text] == [answer]
    assert text[0].reference_id == asked.id
    assert [u.data for u in images.uploads] == [png("cat"), png("dog")]
    assert [(u.filename, u.description) for u in images.uploads] == [
        ("image-1.png", "a cat"),
        ("image-2.png", "a dog"),
    ]
    assert images.content == "" and images.id > text[0].id


async def test_a_chat_answer_with_a_dead_link_notes_it_once_and_follows_up_with_the_other(
    host: FakeImageHost, w: World
) -> None:
    w.fake.fail("POST", FOLLOW_UP, retry_after=0.05)  # the upload's 429 is survived
    gone, fine = host.url("/missing?sig=x"), host.url("/png/fine")
    answer = f"![old]({gone})\n\n![new]({fine})"
    w.gpts.enqueue(Reply(answer, chunk_chars=50))
    chat = await w.fake.slash(w.channel_id, w.member, "chat", [option("prompt", "draw")])

    note = i18n.IMAGE_UNREACHABLE("en", number=1)
    original = await wait_original(w, chat, f"{quote_prompt('draw')}{answer}\n\n{note}")
    assert original.content.count("could not be loaded") == 1
    (images,) = await uploaded(w, w.channel_id, 1)
    assert [u.data for u in images.uploads] == [png("fine")]
    assert chat.followup_ids == [images.id]
    statuses = [c.status for c in w.fake.calls_to("POST", FOLLOW_UP)]
    assert statuses == [429, 200]


async def test_too_large_and_not_an_image_are_refused_with_notes(
    host: FakeImageHost, w: World
) -> None:
    answer = f"Big ![big]({host.url('/huge-declared')}) and ![web]({host.url('/page')})"
    w.gpts.enqueue(Reply(answer, chunk_chars=200))
    notes = [
        i18n.IMAGE_TOO_LARGE("en", number=1, megabytes=10),
        i18n.IMAGE_NOT_AN_IMAGE("en", number=2),
    ]
    await w.fake.user_says(w.channel_id, w.member, "draw", mention_bot=True)
    shown = "\n\n".join([answer, "\n".join(notes)])
    await w.answered(w.channel_id, shown)
    assert not with_files(w, w.channel_id)
    assert len(w.fake.calls_to("POST", POST_MESSAGE)) == 1


async def test_twelve_images_take_two_messages_within_the_bot_wide_budget(
    tmp_path: Path, fake_gpts: FakeGpts, host: FakeImageHost
) -> None:
    rate = 2
    names = [f"p{n}" for n in range(12)]
    links = " ".join(f"![{name}]({host.url('/png/' + name)})" for name in names)
    fake_gpts.enqueue(Reply(f"Twelve: {links}", chunk_chars=40, chunk_delay_s=0.05))
    async with world(tmp_path, fake_gpts, discord_config={"requests_per_second": rate}) as w:
        await w.fake.user_says(w.channel_id, w.member, "many", mention_bot=True)
        messages = await uploaded(w, w.channel_id, 12)
        assert [len(m.uploads) for m in messages] == [10, 2]
        assert [u.data for m in messages for u in m.uploads] == [png(name) for name in names]
    routes = {f"POST {POST_MESSAGE}", f"PATCH {EDIT_MESSAGE}"}
    writes = [c.at for c in w.fake.calls if c.route in routes]
    assert len(writes) >= 4  # the text (sent, edited), then two uploads
    assert max_in_window(writes, 1.0 * 0.95) <= rate  # the uploads shared the bot-wide budget


async def test_a_long_answer_with_images_and_fences_splits_as_without_them(
    host: FakeImageHost, w: World
) -> None:
    answer = long_image_answer(host, code_lines=40, prose_words=200)
    assert len(answer.text) > 2 * 2000
    w.gpts.enqueue(Reply(answer.text, chunk_chars=700))
    await w.fake.user_says(w.channel_id, w.member, "long", mention_bot=True)

    (images,) = await uploaded(w, w.channel_id, 2)
    assert [u.data for u in images.uploads] == [png("first"), png("last")]
    pages = [m.content for m in w.fake.bot_messages(w.channel_id) if not m.uploads]
    assert len(pages) >= 3 and all(len(page) <= 2000 for page in pages)
    assert pages[0].startswith(f"![first]({answer.first})")
    assert pages[-1].endswith(f"![last]({answer.last})")
    assert "/png/code" not in "".join(host.requests)  # code is not downloaded
    shown = [line for page in pages for line in page.splitlines()]
    assert [line for line in shown if line.startswith("print(")] == answer.code.splitlines()
    # Each page that holds code opens and closes its fence.
    assert all(page.count("```") % 2 == 0 for page in pages)
