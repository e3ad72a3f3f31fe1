"""The Discord adapter's pure pieces: turn text, the quoted /chat prompt, the /gpt info text, its
sentences in both languages and the translator of command descriptions."""

from __future__ import annotations

import string
from datetime import UTC, datetime

import pytest

from tests.discord_fixtures import discord  # discord.py imported quietly first

# isort: split
from discord import app_commands

from bots.discord_adapter import text
from bots.discord_adapter.adapter import describe_binding
from bots.discord_adapter.text import (
    MAX_MESSAGE_CHARS,
    CommandTranslator,
    described,
    quote_prompt,
    turn_text,
)
from core.conversation import BindingInfo
from core.i18n import LanguageSetting, Text
from core.turns import Scope

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


def test_quote_prompt_escapes_markdown_and_quotes_every_line() -> None:
    assert quote_prompt("```py\nx = *1*") == "> \\`\\`\\`py\n> x = \\*1\\*\n"
    assert quote_prompt("   ") == "> \n"


def test_quote_prompt_shortens_long_prompts() -> None:
    quoted = quote_prompt("word " * 200, limit=50)
    assert quoted.endswith("…\n") and len(quoted) <= 2 + 50 + 1
    assert len(quoted) < MAX_MESSAGE_CHARS


def test_describe_binding_for_each_origin() -> None:
    channel = Scope("discord", "10")
    thread = Scope("discord", "10", "20")
    when = datetime(2025, 1, 2, tzinfo=UTC)
    bound = BindingInfo("g-B3hgivKK9", "gpt-4-gizmo-g-B3hgivKK9", channel, "max", when, False)
    inherited = BindingInfo("g-B3hgivKK9", "m", channel, "max", when, True)
    default = BindingInfo("g-Default01", "m", None, None, None, False)
    assert describe_binding(bound, channel) == (
        f"The GPT `g-B3hgivKK9` (<https://chatgpt.com/g/g-B3hgivKK9>) answers here, bound by max "
        f"<t:{int(when.timestamp())}:R>."
    )
    assert "<#10>" in describe_binding(inherited, thread)
    assert "default GPT `g-Default01`" in describe_binding(default, channel)
    assert "/gpt bind" in describe_binding(None, channel)


def test_describe_binding_in_chinese() -> None:
    channel = Scope("discord", "10")
    thread = Scope("discord", "10", "20")
    when = datetime(2025, 1, 2, tzinfo=UTC)
    stamp = f"<t:{int(when.timestamp())}:R>"
    link = "`g-B3hgivKK9` (<https://chatgpt.com/g/g-B3hgivKK9>)"
    bound = BindingInfo("g-B3hgivKK9", "m", channel, "max", when, False)
    anonymous = BindingInfo("g-B3hgivKK9", "m", channel, None, when, False)
    inherited = BindingInfo("g-B3hgivKK9", "m", channel, "max", when, True)
    default = BindingInfo("g-Default01", "m", None, None, None, False)
    assert (
        describe_binding(bound, channel, "zh")
        == f"这里由 GPT {link} 回答，由 max 于 {stamp} 绑定。"
    )
    assert (
        describe_binding(anonymous, channel, "zh") == f"这里由 GPT {link} 回答，于 {stamp} 绑定。"
    )
    assert describe_binding(anonymous, channel, "en") == (
        f"The GPT {link} answers here, bound {stamp}."
    )
    assert describe_binding(inherited, thread, "zh") == (
        f"本子区沿用频道 <#10> 的 GPT {link}，由 max 于 {stamp} 绑定。"
    )
    assert describe_binding(default, channel, "zh").startswith("这里没有绑定 GPT，由默认 GPT")
    assert "/gpt bind" in describe_binding(None, channel, "zh")


def _fields(template: str) -> list[str]:
    return sorted(name for _, name, _, _ in string.Formatter().parse(template) if name)


def test_every_adapter_sentence_has_both_languages_with_the_same_placeholders() -> None:
    texts = {name: v for name, v in vars(text).items() if isinstance(v, Text)}
    assert len(texts) >= 20
    for name, sentence in texts.items():
        assert sentence.en and sentence.zh and sentence.en != sentence.zh, name
        assert _fields(sentence.en) == _fields(sentence.zh), name
    for name, sentence in texts.items():
        if name.endswith("_DESCRIPTION"):  # Discord's limit for command descriptions
            assert 1 <= len(sentence.en) <= 100 and 1 <= len(sentence.zh) <= 100, name


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("setting", "locale", "expected"),
    [
        ("auto", discord.Locale.chinese, "向本频道绑定的 GPT 提问"),
        ("auto", discord.Locale.taiwan_chinese, "向本频道绑定的 GPT 提问"),
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
    string = described(text.CHAT_DESCRIPTION)
    assert string.message == text.CHAT_DESCRIPTION.en
    assert await translator.translate(string, locale, context) == expected
    # Strings that are not adapter sentences (command names) are left alone.
    plain = app_commands.locale_str("chat")
    assert await translator.translate(plain, discord.Locale.chinese, context) is None
