"""Pure text helpers of the Discord adapter: what a turn says, how /chat shows its prompt."""

from __future__ import annotations

import re
from collections.abc import Mapping

import discord

# Discord counts a message's 2,000 characters in code points.
MAX_MESSAGE_CHARS = 2000
# The /chat prompt is quoted above the answer; a long prompt is shortened there (not upstream).
PROMPT_QUOTE_CHARS = 300

_USER_MENTION = re.compile(r"<@!?(\d+)>")
_ROLE_MENTION = re.compile(r"<@&(\d+)>")


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
    user_names = user_names or {}
    role_names = role_names or {}

    def user(match: re.Match[str]) -> str:
        user_id = int(match.group(1))
        if user_id == bot_id:
            return ""
        name = user_names.get(user_id)
        return f"@{name}" if name else match.group(0)

    def role(match: re.Match[str]) -> str:
        role_id = int(match.group(1))
        if role_id == bot_role_id:
            return ""
        name = role_names.get(role_id)
        return f"@{name}" if name else match.group(0)

    text = _USER_MENTION.sub(user, content)
    text = _ROLE_MENTION.sub(role, text)
    return re.sub(r"[ \t]{2,}", " ", text).strip()
