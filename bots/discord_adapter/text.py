"""The Discord adapter's text: what a turn says, how /chat shows its prompt, and every sentence
the bot sends people, in English and Simplified Chinese (`core.i18n.Text`)."""

from __future__ import annotations

import re
from collections.abc import Mapping

import discord
from discord import app_commands

from core.i18n import Language, LanguageSetting, Text, language_for

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


# --- what the adapter says (core sentences such as APOLOGY and NOT_ADMIN live in core.i18n) ----

NOT_HERE = Text("⚠️ This bot is not enabled here.", "⚠️ 本机器人未在这里启用。")
NEEDS_MANAGE_CHANNELS = Text(
    "⚠️ Binding a GPT here needs the Manage Channels or Administrator permission in this channel.",
    "⚠️ 在这里绑定 GPT 需要本频道的「管理频道」或「管理员」权限。",
)
NEW_CONVERSATION = Text(
    "🆕 New conversation: the GPT no longer sees the earlier messages here.",
    "🆕 新对话：GPT 不会再看到这里之前的消息。",
)
BOUND_TO_CHANNEL = Text(
    "✅ {name} bound the GPT `{gpt_id}` to this channel: <{url}>",
    "✅ {name} 已将 GPT `{gpt_id}` 绑定到本频道：<{url}>",
)
BOUND_TO_THREAD = Text(
    "✅ {name} bound the GPT `{gpt_id}` to this thread: <{url}>",
    "✅ {name} 已将 GPT `{gpt_id}` 绑定到本子区：<{url}>",
)
BOUND_TO_CHAT = Text(
    "✅ {name} bound the GPT `{gpt_id}` to this chat: <{url}>",
    "✅ {name} 已将 GPT `{gpt_id}` 绑定到本对话：<{url}>",
)
UNBOUND = Text("{name} unbound the GPT from here.", "{name} 已解除这里的 GPT 绑定。")

# /gpt info. `{gpt}` is "`g-...` (<link>)"; `{detail}` is BOUND_BY_WHEN, BOUND_BY, BOUND_WHEN or "".
INFO_NOTHING_BOUND = Text(
    "No GPT answers here yet. Someone with Manage Channels can use /gpt bind.",
    "这里还没有 GPT 回答。拥有「管理频道」权限的成员可以使用 /gpt bind 绑定。",
)
INFO_DEFAULT = Text(
    "No GPT is bound here; the default GPT {gpt} answers.",
    "这里没有绑定 GPT，由默认 GPT {gpt} 回答。",
)
INFO_INHERITED = Text(
    "This thread uses its channel's GPT {gpt}, bound in <#{channel_id}>{detail}.",
    "本子区沿用频道 <#{channel_id}> 的 GPT {gpt}{detail}。",
)
INFO_BOUND = Text(
    "The GPT {gpt} answers here, bound{detail}.",
    "这里由 GPT {gpt} 回答{detail}。",
)
BOUND_BY_WHEN = Text(" by {name} {when}", "，由 {name} 于 {when} 绑定")
BOUND_BY = Text(" by {name}", "，由 {name} 绑定")
BOUND_WHEN = Text(" {when}", "，于 {when} 绑定")

# Slash command and option descriptions (Discord shows the Chinese ones to zh-CN and zh-TW clients).
CHAT_DESCRIPTION = Text("Ask the GPT bound to this channel", "向本频道绑定的 GPT 提问")
PROMPT_DESCRIPTION = Text("What to ask", "要问的问题")
RESET_DESCRIPTION = Text("Start a new conversation here", "在这里开始新对话")
GPT_DESCRIPTION = Text("Choose the GPT that answers here", "选择在这里回答的 GPT")
BIND_DESCRIPTION = Text(
    "Make a GPT answer in this channel or thread", "让一个 GPT 在本频道或子区回答"
)
BIND_GPT_DESCRIPTION = Text(
    "A GPT link (https://chatgpt.com/g/g-...) or id (g-...)",
    "GPT 链接（https://chatgpt.com/g/g-...）或 id（g-...）",
)
UNBIND_DESCRIPTION = Text(
    "Remove the GPT bound to this channel or thread", "移除本频道或子区绑定的 GPT"
)
INFO_DESCRIPTION = Text("Show which GPT answers here", "查看这里由哪个 GPT 回答")


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
