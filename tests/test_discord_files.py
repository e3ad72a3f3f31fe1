"""Images and files attached to Discord messages go to the GPT: the real discord.py client on
the fake Discord (gateway, REST, CDN), the fake GPTs endpoint records what went up."""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

import pytest

from bots.discord_adapter.text import quote_prompt
from fakes.gpts import image_urls, text_of
from tests import test_discord
from tests.helpers import data_url_bytes
from tests.test_discord import World

pytestmark = pytest.mark.asyncio
# test_discord.py's fixture, found here by name: the default world.
w = test_discord.w

PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4


def png(n: int) -> bytes:
    return PNG + bytes([n])


def answered(messages: list[Any], n: int) -> bool | None:
    """The bot's n-th message in the chat reads its final echo of picture n."""
    done = len(messages) == n and messages[-1].content == f"echo: picture {n} (+1 images)"
    return done or None


async def test_an_image_attached_to_a_mention_goes_up_with_its_text(w: World) -> None:
    image = w.fake.attachment(PNG, "diagram.png", "image/png")
    await w.fake.user_says(
        w.channel_id, w.member, "explain this", mention_bot=True, attachments=[image]
    )
    await w.answered(w.channel_id, "echo: mia: explain this (+1 images)")

    content = w.gpts.requests[-1].messages[-1]["content"]
    assert content[0] == {"type": "text", "text": "mia: explain this"}
    assert [data_url_bytes(url) for url in image_urls(content)] == [PNG]
    assert all(w.fake.token not in json.dumps(r.json) for r in w.gpts.requests)
    assert w.fake.cdn_fetches == Counter({image["id"]: 1})


async def test_too_many_images_get_a_clear_line_and_nothing_goes_upstream(w: World) -> None:
    dm = w.fake.dm_channel(w.member)
    images = [w.fake.attachment(png(n), f"p{n}.png", "image/png") for n in range(5)]
    await w.fake.user_says(dm, w.member, "all of these", attachments=images)
    (line,) = await w.fake.wait_for(lambda: w.fake.bot_messages(dm) or None, 10.0)
    assert line.content.startswith("⚠️ At most 4 images per message (this one has 5)")
    assert w.gpts.requests == []
    assert w.fake.cdn_fetches == Counter()


async def test_a_text_file_without_words_goes_up_as_the_message(w: World) -> None:
    dm = w.fake.dm_channel(w.member)
    script = w.fake.attachment(b"print('hi')\n", "hello.py", None)  # no content_type
    await w.fake.user_says(dm, w.member, "", attachments=[script])
    await w.fake.wait_for(lambda: w.gpts.requests or None, 10.0)
    sent = w.gpts.requests[-1].messages[-1]["content"]
    assert sent == "hello.py:\n```py\nprint('hi')\n```"


async def test_history_sends_again_only_the_last_two_image_turns(w: World) -> None:
    dm = w.fake.dm_channel(w.member)
    ids = []
    for n in (1, 2, 3):
        image = w.fake.attachment(png(n), f"p{n}.png", "image/png")
        ids.append(image["id"])
        await w.fake.user_says(dm, w.member, f"picture {n}", attachments=[image])
        await w.fake.wait_for(lambda n=n: answered(w.fake.bot_messages(dm), n), 10.0)
    before = Counter(w.fake.cdn_fetches)
    await w.fake.user_says(dm, w.member, "which one is brighter?")
    await w.fake.wait_for(lambda: len(w.gpts.requests) == 4 or None, 10.0)

    users = [m for m in w.gpts.requests[-1].messages if m["role"] == "user"]
    assert [
        (text_of(m["content"]), [data_url_bytes(u)[-1] for u in image_urls(m["content"])])
        for m in users
    ] == [
        ("picture 1", []),
        ("picture 2", [2]),
        ("picture 3", [3]),
        ("which one is brighter?", []),
    ]
    assert w.fake.cdn_fetches - before == Counter({ids[1]: 1, ids[2]: 1})


async def test_a_file_given_to_chat_goes_up_with_the_prompt_and_is_named_above_the_answer(
    w: World,
) -> None:
    image = w.fake.attachment(PNG, "diagram_v2.png", "image/png")
    file_option = {"name": "file", "type": 11, "value": image["id"]}
    interaction = await w.fake.slash(
        w.channel_id,
        w.member,
        "chat",
        [test_discord.option("prompt", "explain this"), file_option],
        attachments=[image],
    )
    header = quote_prompt("explain this") + "> 📎 diagram\\_v2.png\n"
    await test_discord.wait_original(w, interaction, header + "echo: mia: explain this (+1 images)")

    content = w.gpts.requests[-1].messages[-1]["content"]
    assert content[0] == {"type": "text", "text": "mia: explain this"}
    assert [data_url_bytes(url) for url in image_urls(content)] == [PNG]
    assert w.fake.cdn_fetches == Counter({image["id"]: 1})
