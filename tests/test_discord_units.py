"""The Discord adapter's pure pieces: turn text, the quoted /chat prompt, its sentences in both
languages and the translator of command descriptions."""

from __future__ import annotations

import string

import pytest

from tests.discord_fixtures import discord  # discord.py imported quietly first

# isort: split
from discord import app_commands

from bots.discord_adapter import text
from bots.discord_adapter.replies import Buttons, components
from bots.discord_adapter.text import (
    MAX_MESSAGE_CHARS,
    CommandTranslator,
    described,
    quote_files,
    quote_prompt,
    turn_text,
)
from core import commands
from core.buttons import retry_button, stop_button
from core.i18n import Language, LanguageSetting, Text

BOT = 111


def test_turn_text_drops_the_bots_mention_and_names_the_others() -> None:
    content = f"<@{BOT}> ask <@222> and <@!333> about <@&444>, not <@&555>"
    text = turn_text(
        content, BOT, bot_role_id=555, user_names={222: "ann", 333: "bob"}, role_names={444: "mods"}
    )
    assert text == "ask @ann and @bob about @mods, not"


def test_turn_text_keeps_unknown_mentions_and_empty_stays_empty() -> None:
    assert turn_text(f"<@!{BOT}>", BOT) == ""
    assert turn_text("hi <@999>", BOT) == "hi <@999>"


def test_quote_files_names_each_file_escaped_and_shortened() -> None:
    assert quote_files(["a_b.png", "x" * 150], limit=10) == "> 📎 a\\_b.png\n> 📎 xxxxxxxxx…\n"
    assert quote_files([]) == ""


def test_quote_prompt_escapes_markdown_and_quotes_every_line() -> None:
    assert quote_prompt("```py\nx = *1*") == "> \\`\\`\\`py\n> x = \\*1\\*\n"
    assert quote_prompt("   ") == "> \n"


def test_quote_prompt_shortens_long_prompts() -> None:
    quoted = quote_prompt("word " * 200, limit=50)
    assert quoted.endswith("…\n") and len(quoted) <= 2 + 50 + 1
    assert len(quoted) < MAX_MESSAGE_CHARS


def _fields(template: str) -> list[str]:
    return sorted(name for _, name, _, _ in string.Formatter().parse(template) if name)


def test_every_adapter_sentence_has_both_languages_with_the_same_placeholders() -> None:
    texts = {name: v for name, v in vars(text).items() if isinstance(v, Text)}
    for name, sentence in texts.items():
        assert sentence.en and sentence.zh and sentence.en != sentence.zh, name
        assert _fields(sentence.en) == _fields(sentence.zh), name


def test_registry_descriptions_fit_discord() -> None:
    descriptions = [command.description for command in commands.REGISTRY]
    descriptions += [a.description for command in commands.REGISTRY for a in command.arguments]
    descriptions += [group.description for group in commands.GROUPS]
    for sentence in descriptions:  # Discord's limit for command and option descriptions
        assert 1 <= len(sentence.en) <= 100 and 1 <= len(sentence.zh) <= 100, sentence


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("setting", "locale", "expected"),
    [
        ("auto", discord.Locale.chinese, "向 GPT 提问"),
        ("auto", discord.Locale.taiwan_chinese, "向 GPT 提问"),
        ("auto", discord.Locale.american_english, None),
        ("auto", discord.Locale.japanese, None),
        ("en", discord.Locale.chinese, None),
        ("zh", discord.Locale.chinese, None),  # the default description is Chinese already
    ],
)
async def test_translator_gives_chinese_descriptions_to_chinese_clients(
    setting: LanguageSetting, locale: discord.Locale, expected: str | None
) -> None:
    translator = CommandTranslator(setting)
    context = app_commands.TranslationContext(app_commands.TranslationContextLocation.other, None)
    chat = commands.find("chat")
    assert chat is not None
    string = described(chat.description)
    assert string.message == chat.description.en
    assert await translator.translate(string, locale, context) == expected
    # Strings that are not adapter sentences (command names) are left alone.
    plain = app_commands.locale_str("chat")
    assert await translator.translate(plain, discord.Locale.chinese, context) is None


@pytest.mark.asyncio  # a discord.py View needs a running loop
@pytest.mark.parametrize("language", ["en", "zh"])
async def test_channel_message_buttons_are_the_json_discord_py_writes_for_them(
    language: Language,
) -> None:
    for buttons in ([stop_button(7)], [retry_button(7)], [stop_button(7), retry_button(8)]):
        assert components(buttons, language) == Buttons(buttons, language).to_components()
    assert components([], "en") == []
