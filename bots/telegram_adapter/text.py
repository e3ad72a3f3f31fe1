"""Reading what users write (commands, mentions in UTF-16 offsets), rendering answers, and the one
sentence only Telegram says (the others are the core's, in `core.i18n`)."""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass

import telegramify_markdown
from telegram import MessageEntity
from telegram.constants import MessageEntityType, MessageLimit

from core.i18n import Text
from core.platform import utf16_units

logger = logging.getLogger(__name__)

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


def render_markdown(text: str) -> tuple[str, list[MessageEntity]] | None:
    """The GPT's Markdown as Telegram text + entities, or None when plain text must do."""
    try:
        plain, entities = telegramify_markdown.convert(text)
    except Exception as exc:
        # The type only: a parser's error may quote the answer.
        logger.warning("rendering Markdown failed (%s); sending plain text", type(exc).__name__)
        return None
    if not plain.strip() or utf16_units(plain) > MAX_TEXT_UNITS:
        return None
    return plain, [MessageEntity.de_json(entity.to_dict()) for entity in entities]


# --- what the adapter says ----------------------------------------------------------------------

EMPTY_MENTION = Text(
    "Ask me something after the mention, e.g. @{username} what can you do?",
    "请在 @ 我之后写上问题，例如：@{username} 你能做什么？",
)
