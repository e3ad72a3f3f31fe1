"""Reading what users write (commands, mentions in UTF-16 offsets) and every sentence the adapter
itself says to people, in English and Simplified Chinese. Answers are rendered in `rendering`."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from telegram import MessageEntity
from telegram.constants import MessageEntityType, MessageLimit

from core.i18n import Text

MAX_TEXT_UNITS = MessageLimit.MAX_TEXT_LENGTH


@dataclass(frozen=True, slots=True)
class Command:
    name: str  # lower case, without "/" and "@botname"
    args: str


_COMMAND = re.compile(r"/([A-Za-z0-9_]{1,32})(?:@([A-Za-z0-9_]+))?")


def utf16_slice(text: str, offset: int, length: int) -> str:
    """The part of `text` an entity covers (Telegram counts offsets in UTF-16 code units)."""
    data = text.encode("utf-16-le")
    return data[2 * offset : 2 * (offset + length)].decode("utf-16-le")


def _utf16_to_index(text: str, units: int) -> int:
    return len(text.encode("utf-16-le")[: 2 * units].decode("utf-16-le"))


def parse_command(
    text: str, entities: Sequence[MessageEntity], bot_username: str
) -> Command | None:
    """The command a message starts with, or None (also when it is addressed to another bot)."""
    if not text.startswith("/"):
        return None
    starting = [e for e in entities if e.type == MessageEntityType.BOT_COMMAND and e.offset == 0]
    head = utf16_slice(text, 0, starting[0].length) if starting else text.split(maxsplit=1)[0]
    match = _COMMAND.fullmatch(head)
    if match is None:
        return None
    name, addressee = match.groups()
    if addressee is not None and addressee.lower() != bot_username.lower():
        return None
    return Command(name.lower(), text[len(head) :].strip())


def bot_mentions(
    text: str, entities: Sequence[MessageEntity], bot_username: str, bot_id: int
) -> list[tuple[int, int]]:
    """(offset, length) in UTF-16 units of every mention of the bot in the text."""
    handle = f"@{bot_username.lower()}"
    spans = []
    for entity in entities:
        if entity.type == MessageEntityType.MENTION:
            is_bot = utf16_slice(text, entity.offset, entity.length).lower() == handle
        elif entity.type == MessageEntityType.TEXT_MENTION:
            is_bot = entity.user is not None and entity.user.id == bot_id
        else:
            is_bot = False
        if is_bot:
            spans.append((entity.offset, entity.length))
    return spans


def without_spans(text: str, spans: Sequence[tuple[int, int]]) -> str:
    """`text` with the given UTF-16 spans cut out and the whitespace tidied."""
    for offset, length in sorted(spans, reverse=True):
        start = _utf16_to_index(text, offset)
        end = _utf16_to_index(text, offset + length)
        text = text[:start] + text[end:]
    return re.sub(r"[ \t]{2,}", " ", text).strip()


_HAN = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")


def has_chinese(text: str) -> bool:
    """Whether `text` contains Chinese characters: the only hint at the language a message wants
    when it carries no person's locale (posted by an anonymous admin or a channel)."""
    return _HAN.search(text) is not None


# --- what the adapter says ----------------------------------------------------------------------

# The command menu: (command, description). Telegram shows each person the list in their app's
# language, so it is registered once per language.
COMMANDS = (
    (
        "help",
        Text(
            "What this bot does and which GPT answers here", "机器人的用法，以及这里由哪个 GPT 回答"
        ),
    ),
    ("chat", Text("Ask the GPT: /chat <question>", "向 GPT 提问：/chat <问题>")),
    (
        "gpt",
        Text(
            "Show the GPT, or /gpt bind <link or id> · /gpt unbind",
            "查看当前 GPT，或 /gpt bind <链接或 id> · /gpt unbind",
        ),
    ),
    ("reset", Text("Start a new conversation", "开始新对话")),
    ("start", Text("Start talking to the GPT", "开始和 GPT 对话")),
)

GPT_USAGE = Text(
    "Usage: /gpt bind <GPT link or id> · /gpt unbind · /gpt info",
    "用法：/gpt bind <GPT 链接或 id> · /gpt unbind · /gpt info",
)
CHAT_USAGE = Text("Usage: /chat <your question>", "用法：/chat <你的问题>")
NOT_ADMIN = Text(
    "⛔ Only this group's creator or administrators can change its GPT.",
    "⛔ 只有本群的群主或管理员可以更换 GPT。",
)
EMPTY_MENTION = Text(
    "Ask me something after the mention, e.g. @{username} what can you do?",
    "请在 @ 我之后写上问题，例如：@{username} 你能做什么？",
)
RESET_DONE = Text(
    "🧹 Started a new conversation. Earlier messages are forgotten.",
    "🧹 已开始新对话，之前的消息都已忘记。",
)
UNKNOWN_COMMAND = Text("Unknown command /{name}. Try /help.", "未知命令 /{name}。试试 /help。")
BOUND = Text("✅ Bound {gpt_id} here.\n{url}", "✅ 已在这里绑定 {gpt_id}。\n{url}")
UNBOUND = Text("✅ Unbound. {info}", "✅ 已解除绑定。{info}")

# /help
HELP_INTRO = Text(
    "I pass your messages to a ChatGPT GPT and stream its answer back.",
    "我把你的消息转给一个 ChatGPT GPT，并实时传回它的回答。",
)
HELP_HOW_PRIVATE = Text(
    "Just write to me: every message is a question for the GPT.",
    "直接给我发消息就行：每条消息都是问 GPT 的问题。",
)
HELP_HOW_GROUP = Text(
    "Mention me (@{username}), reply to one of my messages, or use /chat <question>.",
    "@ 我（@{username}）、回复我的消息，或使用 /chat <问题>。",
)
HELP_HERE = Text("Answering here: {gpt_id} — {url}", "这里由 {gpt_id} 回答 — {url}")
HELP_NONE_HERE = Text("No GPT answers here yet.", "这里还没有绑定 GPT。")
HELP_BIND_PRIVATE = Text(
    "/gpt bind <GPT link or id> — choose the GPT that answers you",
    "/gpt bind <GPT 链接或 id> — 选择回答你的 GPT",
)
HELP_BIND_GROUP = Text(
    "/gpt bind <GPT link or id> — choose the GPT (group admins only)",
    "/gpt bind <GPT 链接或 id> — 选择 GPT（仅限群管理员）",
)
HELP_INFO = Text(
    "/gpt info — which GPT answers here · /gpt unbind — remove the binding",
    "/gpt info — 查看这里由哪个 GPT 回答 · /gpt unbind — 解除绑定",
)
HELP_RESET = Text("/reset — start a new conversation", "/reset — 开始新对话")

# /gpt info. BY and ON are filled into INHERITED and BOUND_HERE (empty when unknown); each
# language orders the pieces its own way.
NO_BINDING = Text(
    "No GPT answers here yet. Bind one with /gpt bind <GPT link or id>.",
    "这里还没有绑定 GPT。可以用 /gpt bind <GPT 链接或 id> 绑定一个。",
)
MODEL = Text("Model: {model}", "模型：{model}")
DEFAULT_GPT = Text(
    "This is the bot's default GPT (nothing is bound here).",
    "这是机器人的默认 GPT（这里没有绑定）。",
)
INHERITED = Text("Inherited from the group's binding{by}{on}.", "沿用群里{by}{on}设置的绑定。")
BOUND_HERE = Text("Bound{by}{on}.", "已{by}{on}绑定。")
BY = Text(" by {name}", "由 {name} ")
ON = Text(" on {time} UTC", "于 {time} UTC ")
