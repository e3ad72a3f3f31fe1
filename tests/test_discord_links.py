"""Discord renders Markdown itself: masked links to anything but http(s)/mailto are sent with their
brackets escaped, so they show exactly as written and nothing in them is clickable. Unit tests of
`bots.discord_adapter.links`, and one answer end to end through the real discord.py client."""

from __future__ import annotations

import itertools
import re
from pathlib import Path

import pytest

from tests.discord_fixtures import discord  # noqa: F401  (discord.py imported quietly first)

# isort: split
from bots.discord_adapter.links import shown_chars_bound, without_unsafe_links
from core.links import is_safe_url
from core.splitting import split_message
from fakes.gpts import FakeGpts, Reply
from tests.rendering_corpus import CORPUS
from tests.test_discord import world

# What Discord reads as a masked link, and its code (a closed ``` block, a `` or ` span).
_LINK = re.compile(
    r"(?<!\\)\[([^\[\]]*(?:\[[^\[\]]*\][^\[\]]*)*)(?<!\\)\]"
    r"\(\s*<?([^\s()<>]*(?:\([^\s()]*\)[^\s()<>]*)*)>?(?:\s+\"[^\"]*\")?\s*\)"
)
_CODE = re.compile(r"```[\s\S]*?```|``[\s\S]*?``|`[^`]*`")


def clickable(text: str) -> list[str]:
    """URLs of the masked links Discord would make of `text` (outside code)."""
    return [m.group(2) for m in _LINK.finditer(_CODE.sub("", text))]


def as_shown(text: str) -> str:
    """`text` as Discord shows it, as far as our escapes go: `\\[` and `\\]` are brackets."""
    return text.replace("\\[", "[").replace("\\]", "]")


@pytest.mark.parametrize(
    ("text", "sent"),
    [
        ("[Open](tg://resolve?domain=x)", "\\[Open\\](tg://resolve?domain=x)"),
        ("[run](javascript:alert(1)) now", "\\[run\\](javascript:alert(1)) now"),
        (
            "[f](file:///etc/passwd) [d](data:text/html,x)",
            "\\[f\\](file:///etc/passwd) \\[d\\](data:text/html,x)",
        ),
        ("[rel](/path) [top](#top)", "\\[rel\\](/path) \\[top\\](#top)"),
        ('[t](<tg://x>) [u](tg://y "title")', '\\[t\\](<tg://x>) \\[u\\](tg://y "title")'),
        (
            "[ok](https://example.com) [m](mailto:a@b.c)",
            "[ok](https://example.com) [m](mailto:a@b.c)",
        ),
        ("[a [b](tg://z)](https://ok.example)", "[a \\[b\\](tg://z)](https://ok.example)"),
        ("[a [b](tg://z)](tg://w)", "\\[a \\[b\\](tg://z)\\](tg://w)"),
        ("`[c](tg://y)` and ```\n[d](tg://y)\n```", "`[c](tg://y)` and ```\n[d](tg://y)\n```"),
        ("no links, a<b and [brackets]", "no links, a<b and [brackets]"),
        ("[half](tg://x", "[half](tg://x"),  # still streaming: not a link yet
        ("😀 [中文](tg://x) 😀", "😀 \\[中文\\](tg://x) 😀"),
    ],
)
def test_unsafe_masked_links_are_escaped(text: str, sent: str) -> None:
    assert without_unsafe_links(text) == sent
    assert as_shown(sent) == text  # every character shows as written
    assert all(is_safe_url(url) for url in clickable(sent))


def test_corpus_answers_lose_nothing_and_link_only_safely_on_discord() -> None:
    for answer in CORPUS:
        for page in split_message(answer.text, 2000):
            sent = without_unsafe_links(page)
            assert as_shown(sent) == page, answer.name
            assert all(is_safe_url(url) for url in clickable(sent)), answer.name
            assert len(sent) <= shown_chars_bound(page)


def test_the_measure_never_shrinks_and_always_covers_the_escapes() -> None:
    # Closing the code span un-escapes the link inside it: the exact length shrinks there.
    text = "`[a](tg://x) [b [c](tg://y)](https://ok.example)` [d](tg://z) x](y"
    bounds = [shown_chars_bound(text[:end]) for end in range(len(text) + 1)]
    assert all(a <= b for a, b in itertools.pairwise(bounds))
    for end in range(len(text) + 1):
        assert len(without_unsafe_links(text[:end])) <= bounds[end]


def test_escaping_is_fast_on_bracket_soup() -> None:
    for soup in ("[" * 1000 + "](" + "]" * 998, "](" + "[x]" * 600, "[a](" + "\\" * 2000):
        assert as_shown(without_unsafe_links(soup)) == soup


@pytest.mark.asyncio
async def test_answer_with_unsafe_links_arrives_escaped(
    tmp_path: Path, fake_gpts: FakeGpts
) -> None:
    answer = (
        "See [docs](https://example.com/docs), [Open](tg://resolve?domain=botfather) and "
        "[run](javascript:alert(document.cookie)); code keeps `[c](tg://y)` and a<b <br> stay."
    )
    sent = without_unsafe_links(answer)
    assert sent != answer
    fake_gpts.enqueue(Reply(answer, chunk_chars=20, chunk_delay_s=0.01))
    async with world(tmp_path, fake_gpts) as w:
        await w.fake.user_says(w.channel_id, w.member, "links please", mention_bot=True)
        (message,) = await w.answered(w.channel_id, sent)
        assert clickable(message.content) == ["https://example.com/docs"]
        # Every streamed version was escaped too: Discord renders those as well.
        for _, content in message.history:
            assert all(is_safe_url(url) for url in clickable(content))
