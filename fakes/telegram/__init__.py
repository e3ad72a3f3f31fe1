"""A local fake of the Telegram Bot API that the real python-telegram-bot talks to (server.py)."""

from fakes.telegram.markdown import MarkdownV2Error, auto_entities, parse_markdown_v2, utf16_len
from fakes.telegram.protocol import MAX_TEXT_UNITS, Call, Draft, Fault
from fakes.telegram.server import FakeTelegram

__all__ = [
    "MAX_TEXT_UNITS",
    "Call",
    "Draft",
    "FakeTelegram",
    "Fault",
    "MarkdownV2Error",
    "auto_entities",
    "parse_markdown_v2",
    "utf16_len",
]
