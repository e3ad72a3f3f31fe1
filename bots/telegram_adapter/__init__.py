"""Telegram: private chats, groups and forum topics; answers streamed in place (PTB 22).

    getUpdates (long poll) or a webhook → MessageHandler → command, or a Turn for the core
    Turn → ConversationService.answer → StreamingReply → MessageChannel / DraftChannel → Bot API

Who is answered: every text in a private chat; in groups a message that mentions the bot, a reply
to one of its messages, or `/chat <text>`. Commands work with the `@botname` suffix.

Commands: parsed with `core.commands` (the registry), which also writes the command menus; the
adapter only finds out whether the sender is a group admin (getChatMember) when a command needs it.

Formatting: intermediate edits are plain text; the final text of each message is rendered from the
GPT's Markdown to Telegram *entities* with telegramify-markdown, not to a MarkdownV2 string. The
rendered text is what Telegram measures against its 4096 UTF-16 limit, and with entities it is
the visible text itself (the Markdown syntax removed, no escaping added), so a page the core cut
to 4096 still fits once rendered; a page whose rendering would not fit, or that Telegram refuses
("can't parse entities"), is sent as plain text instead.

Flood control: the core's budgets pace streamed sends and edits (one bot-wide 30/s, one per group
20/min, granted in arrival order so hundreds of streams share them fairly). PTB's AIORateLimiter
sits underneath as a safety net for every call and retries other calls after a 429; streamed calls
get one attempt, so a 429 reaches the core's StreamingReply, which waits `retry_after` and slows
that message.

Language: each message is answered in its sender's app language (`from_user.language_code`, any
`zh*` → Simplified Chinese, else English); a message posted as a chat (anonymous admins,
channels) has no person behind it, so Chinese text gets Chinese. `[bot] language` fixes one for
all. The command menu is registered twice, for every app and for Chinese apps. The sentences live
in text.py.
"""

import os

# Opt in to PTB's timedelta durations (the documented switch) before PTB is imported: without it
# PTB warns about `RetryAfter.retry_after` every time Telegram answers 429.
os.environ.setdefault("PTB_TIMEDELTA", "true")

from bots.telegram_adapter.settings import PLATFORM, TelegramConfig

__all__ = ["PLATFORM", "TelegramConfig"]
