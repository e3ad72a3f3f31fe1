"""Reading what users write (commands, mentions in UTF-16 offsets, the topic and chat a message
is in), the command menu, and the one sentence only Telegram says (the others are the core's, in
`core.i18n`). Answers are rendered in `rendering`."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from telegram import Bot, BotCommand, Message, MessageEntity
from telegram.constants import MessageEntityType, MessageLimit

from bots.telegram_adapter.settings import NAME as PLATFORM
from core import commands
from core.i18n import Language, LanguageSetting, Text, language_for
from core.turns import Scope

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


def language_of(items: Sequence[Message], setting: LanguageSetting) -> Language:
    """The language to speak to the sender of a message (or an album's items) in: their Telegram
    app's language; for a message posted as a chat (anonymous admins, channels), which carries no
    person's locale, Chinese when the text is written in Chinese. `[bot] language` overrides
    both."""
    message = items[0]
    user = message.from_user
    if message.sender_chat is None and user is not None:
        locale = user.language_code
    else:
        written = " ".join(item.text or item.caption or "" for item in items)
        locale = "zh" if has_chinese(written) else None
    return language_for(locale, setting)


def thread_id_of(message: Message) -> int | None:
    """The forum topic a message is in; None outside forums (reply threads are not topics)."""
    if message.chat.is_forum and message.is_topic_message:
        return message.message_thread_id
    return None


def scope_of(message: Message) -> Scope:
    thread_id = thread_id_of(message)
    return Scope(PLATFORM, str(message.chat.id), str(thread_id) if thread_id else "")


def is_reply_to(message: Message, bot_id: int) -> bool:
    replied = message.reply_to_message
    if replied is None or replied.from_user is None or replied.from_user.id != bot_id:
        return False
    # In a forum every topic message "replies" to the topic's first message: not a real reply.
    return replied.forum_topic_created is None and replied.id != thread_id_of(message)


# --- what the adapter says ----------------------------------------------------------------------

EMPTY_MENTION = Text(
    "Ask me something after the mention, e.g. @{username} what can you do?",
    "请在 @ 我之后写上问题，例如：@{username} 你能做什么？",
)


async def register_commands(bot: Bot, setting: LanguageSetting) -> None:
    """The command menu for everyone, and again for Chinese apps (Telegram picks the list by
    the app's language). A fixed `[bot] language` writes both lists in that language, which
    also replaces a Chinese list an earlier run registered."""
    for language, code in (
        (language_for(None, setting), None),
        (language_for("zh", setting), "zh"),
    ):
        menu = [BotCommand(name, text(language)) for name, text in commands.top_level()]
        await bot.set_my_commands(menu, language_code=code)
