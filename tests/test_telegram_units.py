"""The Telegram adapter's pure pieces: commands, mentions (UTF-16 offsets), rendering."""

from __future__ import annotations

import string

import pytest
from telegram import MessageEntity, User

from bots.telegram_adapter import text as say
from bots.telegram_adapter.rendering import render_markdown
from bots.telegram_adapter.text import (
    MAX_TEXT_UNITS,
    Command,
    bot_mentions,
    has_chinese,
    parse_command,
    utf16_slice,
    without_spans,
)
from core import commands
from core.i18n import Text

BOT = "gpts_test_bot"
BOT_ID = 123456


def command_entity(text: str) -> list[MessageEntity]:
    head = text.split(maxsplit=1)[0]
    return [MessageEntity(MessageEntity.BOT_COMMAND, 0, len(head.encode("utf-16-le")) // 2)]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("/gpt bind g-B3hgivKK9", Command("gpt", "bind g-B3hgivKK9")),
        (f"/gpt@{BOT} info", Command("gpt", "info")),
        (f"/GPT@{BOT.upper()}", Command("gpt", "")),
        ("/chat   what is  up?  ", Command("chat", "what is  up?")),
        ("/chat@other_bot hi", None),  # addressed to another bot
        ("hello /chat", None),
        ("/", None),
    ],
)
def test_parse_command(text: str, expected: Command | None) -> None:
    entities = command_entity(text) if expected is not None or "@other" in text else []
    assert parse_command(text, entities, BOT) == expected


def test_parse_command_without_entities_still_works() -> None:
    # Some relays drop entities; the leading word is enough.
    assert parse_command(f"/reset@{BOT}", [], BOT) == Command("reset", "")


def test_mentions_use_utf16_offsets() -> None:
    text = f"👍🏽 hey @{BOT} and @someone_else"
    offset = len("👍🏽 hey ".encode("utf-16-le")) // 2  # the emoji alone is 4 UTF-16 units
    assert offset == len("👍🏽 hey ") + 2
    entities = [
        MessageEntity(MessageEntity.MENTION, offset, len(BOT) + 1),
        MessageEntity(MessageEntity.MENTION, offset + len(BOT) + 6, 13),
    ]
    assert utf16_slice(text, *bot_mentions(text, entities, BOT, BOT_ID)[0]) == f"@{BOT}"
    assert bot_mentions(text, entities, BOT, BOT_ID) == [(offset, len(BOT) + 1)]
    assert without_spans(text, bot_mentions(text, entities, BOT, BOT_ID)) == (
        "👍🏽 hey and @someone_else"
    )


def test_text_mention_of_the_bot_counts() -> None:
    bot_user = User(BOT_ID, "GPTs", is_bot=True)
    entities = [MessageEntity(MessageEntity.TEXT_MENTION, 0, 4, user=bot_user)]
    assert bot_mentions("GPTs, help", entities, BOT, BOT_ID) == [(0, 4)]
    other = [MessageEntity(MessageEntity.TEXT_MENTION, 0, 4, user=User(1, "Ann", False))]
    assert bot_mentions("Ann, help", other, BOT, BOT_ID) == []


def test_render_markdown_to_entities() -> None:
    rendered = render_markdown(
        "**Bold**, *it* and [a link](https://example.com)\n\n```py\nx = 1\n```"
    )
    assert rendered is not None
    text, entities = rendered
    assert text.startswith("Bold, it and a link")
    kinds = {(e["type"], utf16_slice(text, e["offset"], e["length"])) for e in entities}
    assert ("bold", "Bold") in kinds and ("italic", "it") in kinds
    assert ("text_link", "a link") in kinds and ("pre", "x = 1") in kinds


def test_render_markdown_gives_up_when_it_would_not_fit() -> None:
    assert render_markdown("") is None
    # A heading gains a symbol when rendered; a page that is full already cannot take it.
    full = "# " + "x" * (MAX_TEXT_UNITS - 2)
    assert len(full) == MAX_TEXT_UNITS
    assert render_markdown(full) is None
    assert render_markdown("x" * MAX_TEXT_UNITS) == ("x" * MAX_TEXT_UNITS, [])


def test_every_adapter_sentence_has_both_languages_with_the_same_placeholders() -> None:
    texts = [value for value in vars(say).values() if isinstance(value, Text)]
    assert texts
    for text in texts:
        assert text.en and text.zh and text.en != text.zh, text
        assert sorted(_fields(text.en)) == sorted(_fields(text.zh)), text


def _fields(template: str) -> list[str]:
    return [name for _, name, _, _ in string.Formatter().parse(template) if name]


def test_command_menu_fits_telegram() -> None:
    for name, description in commands.top_level():
        assert name.islower() and len(name) <= 32
        assert all(1 <= len(d) <= 256 for d in (description.en, description.zh))


def test_chinese_text_is_recognised() -> None:
    assert has_chinese("/gpt bind 我的GPT") and has_chinese("繁體也算")
    assert not has_chinese("/gpt bind g-B3hgivKK9") and not has_chinese("こんにちは")
