"""The Discord adapter's pure pieces: turn text, the quoted /chat prompt, the /gpt info text."""

from __future__ import annotations

from datetime import UTC, datetime

from tests.discord_fixtures import discord  # noqa: F401  discord.py imported quietly first

# isort: split
from bots.discord_adapter.adapter import describe_binding
from bots.discord_adapter.text import MAX_MESSAGE_CHARS, quote_prompt, turn_text
from core.conversation import BindingInfo
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
