"""The Discord adapter's text: what a turn says, how /chat shows its prompt, and every sentence
the bot sends people, in English and Simplified Chinese (`core.i18n.Text`)."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping

import discord
from discord import app_commands

from core.i18n import Language, LanguageSetting, Text, language_for

# Discord counts a message's 2,000 characters in code points.
MAX_MESSAGE_CHARS = 2000
# The /chat prompt is quoted above the answer; a long prompt is shortened there (not upstream).
PROMPT_QUOTE_CHARS = 300
FILE_NAME_QUOTE_CHARS = 100  # and each file's name under it

_USER_MENTION = re.compile(r"<@!?(\d+)>")
_ROLE_MENTION = re.compile(r"<@&(\d+)>")


def quote_files(names: Iterable[str], limit: int = FILE_NAME_QUOTE_CHARS) -> str:
    """A quote line per file sent with a prompt, under `quote_prompt`'s lines: 📎 and its name
    (shortened past `limit` characters)."""
    shown = (name if len(name) <= limit else name[: limit - 1] + "…" for name in names)
    return "".join(f"> 📎 {discord.utils.escape_markdown(name)}\n" for name in shown)


def quote_prompt(prompt: str, limit: int = PROMPT_QUOTE_CHARS) -> str:
    """The prompt as a Markdown quote, one `> ` per line, ending in a newline.

    Markdown in the prompt is escaped so it is shown as typed and cannot open a code block that
    would swallow the answer below it.
    """
    text = prompt.strip()
    if len(text) > limit:
        text = text[: limit - 1].rstrip() + "…"
    lines = discord.utils.escape_markdown(text).splitlines() or [""]
    return "".join(f"> {line}\n" for line in lines)


def turn_text(
    content: str,
    bot_id: int,
    *,
    bot_role_id: int | None = None,
    user_names: Mapping[int, str] | None = None,
    role_names: Mapping[int, str] | None = None,
) -> str:
    """A message's text as the GPT should read it: the bot's own @mention (or its role's)
    removed, other mentions turned into readable @names."""

    def readable(own_id: int | None, names: Mapping[int, str]) -> Callable[[re.Match[str]], str]:
        def replace(match: re.Match[str]) -> str:
            mentioned = int(match.group(1))
            if mentioned == own_id:
                return ""
            name = names.get(mentioned)
            return f"@{name}" if name else match.group(0)

        return replace

    text = _USER_MENTION.sub(readable(bot_id, user_names or {}), content)
    text = _ROLE_MENTION.sub(readable(bot_role_id, role_names or {}), text)
    return re.sub(r"[ \t]{2,}", " ", text).strip()


# What only Discord would say goes here, as `Text` constants (today every sentence is the core's,
# in core.i18n; refusals included).


def described(text: Text, default: Language = "en") -> app_commands.locale_str:
    """A command or option description that `CommandTranslator` can localize."""
    return app_commands.locale_str(text(default), text=text)


class CommandTranslator(app_commands.Translator):
    """Chinese descriptions for Chinese Discord clients (zh-CN and zh-TW; both read Simplified
    Chinese, like every other sentence of the bot). Names stay English: the bot's sentences cite
    them. With `[bot] language` fixed, the descriptions are written in that language only."""

    def __init__(self, setting: LanguageSetting = "auto") -> None:
        self.setting = setting

    async def translate(
        self,
        string: app_commands.locale_str,
        locale: discord.Locale,
        context: app_commands.TranslationContextTypes,
    ) -> str | None:
        text = string.extras.get("text")
        if self.setting != "auto" or not isinstance(text, Text):
            return None  # a fixed language is already the default description
        return text.zh if language_for(locale.value) == "zh" else None
