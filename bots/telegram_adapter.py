"""Telegram: private chats, groups and forum topics; answers streamed in place (PTB 22).

    getUpdates (long poll) → MessageHandler → command, or a Turn for the core
    Turn → ConversationService.answer → StreamingReply → _MessageChannel / _DraftChannel → Bot API

Who is answered: every text in a private chat; in groups a message that mentions the bot, a reply
to one of its messages, or `/chat <text>`. Commands work with the `@botname` suffix.

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
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import re
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

# Opt in to PTB's timedelta durations (the documented switch): without it PTB warns about
# `RetryAfter.retry_after` every time Telegram answers 429.
os.environ.setdefault("PTB_TIMEDELTA", "true")

import telegramify_markdown
from telegram import (
    BotCommand,
    Message,
    MessageEntity,
    ReplyParameters,
    Update,
)
from telegram.constants import (
    ChatAction,
    ChatMemberStatus,
    ChatType,
    FloodLimit,
    MessageEntityType,
    MessageLimit,
)
from telegram.error import BadRequest, RetryAfter, TelegramError
from telegram.ext import (
    AIORateLimiter,
    Application,
    ApplicationBuilder,
    ContextTypes,
    ExtBot,
    MessageHandler,
    filters,
)

from core.config import Config
from core.conversation import BindingInfo, ConversationService
from core.errors import BadGptName, NotAllowed, user_message
from core.pacing import KeyedBudgets, RateBudget
from core.platform import (
    MessageGone,
    MessageRef,
    PlatformRateLimited,
    utf16_units,
)
from core.streaming import StreamingReply
from core.turns import Author, Scope, Turn

logger = logging.getLogger(__name__)

PLATFORM = "telegram"
MAX_TEXT_UNITS = MessageLimit.MAX_TEXT_LENGTH
GROUP_MESSAGES_PER_MINUTE = FloodLimit.MESSAGES_PER_MINUTE_PER_GROUP
TYPING_EVERY_S = 4.0  # Telegram shows a chat action for 5 s
DRAFT_REFRESH_S = 25.0  # drafts vanish 30 s after their last update
POLL_TIMEOUT_S = 10
CONNECTION_POOL_SIZE = 512  # hundreds of answers may stream at once
POOL_TIMEOUT_S = 30.0
RATE_LIMIT_RETRIES = 3  # for calls outside a streamed answer (commands, typing, lookups)
SHUTDOWN_GRACE_S = 10.0
TOKEN_LOGGERS = ("telegram.Bot", "telegram.ext.ExtBot", "httpx")
# rate_limit_args for streamed calls: one attempt, the 429 goes to the core (must be truthy).
ONE_ATTEMPT = -1

COMMANDS = (
    ("help", "What this bot does and which GPT answers here"),
    ("chat", "Ask the GPT: /chat <question>"),
    ("gpt", "Show the GPT, or /gpt bind <link or id> · /gpt unbind"),
    ("reset", "Start a new conversation"),
    ("start", "Start talking to the GPT"),
)
GPT_USAGE = "Usage: /gpt bind <GPT link or id> · /gpt unbind · /gpt info"
CHAT_USAGE = "Usage: /chat <your question>"
NOT_ADMIN = "⛔ Only this group's creator or administrators can change its GPT."
EMPTY_MENTION = "Ask me something after the mention, e.g. @{username} what can you do?"
RESET_DONE = "🧹 Started a new conversation. Earlier messages are forgotten."
APOLOGY = "⚠️ Something went wrong on our side. Please try again."

T = TypeVar("T")


# --- reading messages -------------------------------------------------------------------------


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


def render_markdown(text: str) -> tuple[str, list[MessageEntity]] | None:
    """The GPT's Markdown as Telegram text + entities, or None when plain text must do."""
    try:
        plain, entities = telegramify_markdown.convert(text)
    except Exception:
        logger.warning("rendering Markdown failed; sending plain text", exc_info=True)
        return None
    if not plain.strip() or utf16_units(plain) > MAX_TEXT_UNITS:
        return None
    return plain, [MessageEntity.de_json(entity.to_dict()) for entity in entities]


# --- writing answers --------------------------------------------------------------------------


class _RateLimiter(AIORateLimiter):
    """AIORateLimiter, but calls made with `rate_limit_args=ONE_ATTEMPT` are tried once: their
    RetryAfter goes straight back to the caller instead of being retried here."""

    async def process_request(
        self,
        callback: Callable[..., Coroutine[Any, Any, bool | dict[str, Any] | list[dict[str, Any]]]],
        args: Any,
        kwargs: dict[str, Any],
        endpoint: str,
        data: dict[str, Any],
        rate_limit_args: int | None,
    ) -> bool | dict[str, Any] | list[dict[str, Any]]:
        if rate_limit_args != ONE_ATTEMPT:
            return await super().process_request(
                callback, args, kwargs, endpoint, data, rate_limit_args
            )

        async def once(*a: Any, **kw: Any) -> bool | dict[str, Any] | list[dict[str, Any]]:
            try:
                return await callback(*a, **kw)
            except RetryAfter as exc:
                raise _Flood(exc) from exc

        try:
            return await super().process_request(once, args, kwargs, endpoint, data, None)
        except _Flood as flood:
            raise flood.error from None


class _Flood(Exception):
    """Carries a RetryAfter past AIORateLimiter's retry loop."""

    def __init__(self, error: RetryAfter) -> None:
        super().__init__(str(error))
        self.error = error


def _retry_after_s(exc: RetryAfter) -> float:
    value = exc.retry_after  # a timedelta: PTB_TIMEDELTA is set above
    return value.total_seconds() if hasattr(value, "total_seconds") else float(value)


def _is_entity_error(exc: BadRequest) -> bool:
    return "entit" in exc.message.lower()  # "can't parse entities: ...", "entity ... invalid"


@contextlib.asynccontextmanager
async def _telegram_errors() -> Any:
    """Translate what Telegram answered into what the core's StreamingReply understands."""
    try:
        yield
    except RetryAfter as exc:
        raise PlatformRateLimited(_retry_after_s(exc)) from exc
    except BadRequest as exc:
        problem = exc.message.lower()
        if "message is not modified" in problem:
            return  # the message already shows this text: that is success
        if "message to edit not found" in problem or "message can't be edited" in problem:
            raise MessageGone(exc.message) from exc
        raise


@dataclass(frozen=True, slots=True)
class _Target:
    """Where an answer goes: the chat, its topic, and (in groups) the message it answers."""

    chat_id: int
    thread_id: int | None
    reply_to: int | None  # None in private chats
    is_private: bool


class _MessageChannel:
    """A ReplyChannel that sends real messages and edits them in place."""

    def __init__(self, bot: ExtBot[Any], target: _Target, *, indicator: str = "") -> None:
        # The core appends the streaming indicator after cutting a page to max_chars.
        self.max_chars = MAX_TEXT_UNITS - utf16_units(indicator)
        self._bot = bot
        self._target = target
        self._replied = False

    def measure(self, text: str) -> int:
        return utf16_units(text)

    async def send(self, text: str, *, final: bool) -> MessageRef:
        target = self._target
        reply = None
        if target.reply_to is not None and not self._replied:
            # Only the first message quotes the question; continuations follow it.
            reply = ReplyParameters(target.reply_to, allow_sending_without_reply=True)

        async def call(body: str, entities: list[MessageEntity] | None) -> Message:
            return await self._bot.send_message(
                target.chat_id,
                body,
                entities=entities,
                message_thread_id=target.thread_id,
                reply_parameters=reply,
                rate_limit_args=ONE_ATTEMPT,
            )

        message = await _deliver(call, text, final=final)
        assert message is not None
        self._replied = True
        return MessageRef(str(target.chat_id), str(message.message_id))

    async def edit(self, ref: MessageRef, text: str, *, final: bool) -> None:
        async def call(body: str, entities: list[MessageEntity] | None) -> object:
            return await self._bot.edit_message_text(
                body,
                chat_id=int(ref.chat_id),
                message_id=int(ref.message_id),
                entities=entities,
                rate_limit_args=ONE_ATTEMPT,
            )

        await _deliver(call, text, final=final)

    async def close(self) -> None:
        pass


async def _deliver(
    call: Callable[[str, list[MessageEntity] | None], Awaitable[T]], text: str, *, final: bool
) -> T | None:
    """Send `text` through `call`: rendered from Markdown when final, plain if that is refused.
    Returns None when Telegram said the message already shows exactly this."""
    rendered = render_markdown(text) if final else None
    async with _telegram_errors():
        if rendered is not None:
            try:
                return await call(rendered[0], rendered[1] or None)
            except BadRequest as exc:
                if not _is_entity_error(exc):
                    raise
                logger.warning(
                    "Telegram refused the formatted answer (%s); sent plain", exc.message
                )
        return await call(text, None)
    return None


class _DraftChannel(_MessageChannel):
    """A private-chat ReplyChannel that streams into a draft (sendMessageDraft) and posts the
    final text as one real message per page. Drafts vanish 30 s after their last update, so a
    draft that waits for more text is refreshed every DRAFT_REFRESH_S."""

    def __init__(
        self,
        bot: ExtBot[Any],
        target: _Target,
        *,
        indicator: str = "",
        budgets: Sequence[RateBudget] = (),
    ) -> None:
        super().__init__(bot, target, indicator=indicator)
        self._budgets = tuple(budgets)
        self._draft_text: dict[int, str] = {}
        self._refresher: asyncio.Task[None] | None = None
        self._touched = asyncio.Event()

    async def send(self, text: str, *, final: bool) -> MessageRef:
        if final:
            return await super().send(text, final=True)
        draft_id = random.randint(1, 2**31 - 1)
        await self._draft(draft_id, text)
        return MessageRef(str(self._target.chat_id), f"draft:{draft_id}")

    async def edit(self, ref: MessageRef, text: str, *, final: bool) -> None:
        draft_id = int(ref.message_id.removeprefix("draft:"))
        if not final:
            await self._draft(draft_id, text)
            return
        self._draft_text.pop(draft_id, None)
        await super().send(text, final=True)

    async def _draft(self, draft_id: int, text: str) -> None:
        async with _telegram_errors():
            await self._bot.send_message_draft(
                self._target.chat_id,
                draft_id,
                text,
                message_thread_id=self._target.thread_id,
                rate_limit_args=ONE_ATTEMPT,
            )
        self._draft_text[draft_id] = text
        self._touched.set()
        if self._refresher is None:
            self._refresher = asyncio.create_task(self._keep_drafts_alive())

    async def _keep_drafts_alive(self) -> None:
        while True:
            self._touched.clear()
            try:
                await asyncio.wait_for(self._touched.wait(), DRAFT_REFRESH_S)
                continue  # updated in time: nothing to refresh
            except TimeoutError:
                pass
            for draft_id, text in list(self._draft_text.items()):
                try:
                    for budget in self._budgets:
                        await budget.acquire()
                    await self._bot.send_message_draft(self._target.chat_id, draft_id, text)
                except TelegramError as exc:
                    logger.info("refreshing a draft failed: %s", exc)

    async def close(self) -> None:
        if self._refresher is not None:
            self._refresher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._refresher


class _RedactToken(logging.Filter):
    """Replaces the bot token in log records of libraries that log Bot API URLs."""

    def __init__(self, token: str) -> None:
        super().__init__()
        self._token = token

    def filter(self, record: logging.LogRecord) -> bool:
        if self._token:
            message = record.getMessage()
            if self._token in message:
                record.msg, record.args = message.replace(self._token, "<token>"), None
        return True


# --- the adapter ------------------------------------------------------------------------------


class TelegramAdapter:
    name = PLATFORM

    def __init__(
        self, config: Config, service: ConversationService, *, raise_errors: bool = False
    ) -> None:
        self.config = config
        self.service = service
        # Tests set this: an unexpected error is re-raised (and recorded) instead of apologised for.
        self.raise_errors = raise_errors
        self.failures: list[BaseException] = []
        self.ready = asyncio.Event()  # set once polling runs
        self._bot_budget = RateBudget.per_second(config.telegram.messages_per_second)
        self._group_budgets = KeyedBudgets(GROUP_MESSAGES_PER_MINUTE, 60.0)
        self._answers: set[asyncio.Task[None]] = set()

    def build_application(self) -> Application[Any, Any, Any, Any, Any, Any]:
        telegram = self.config.telegram
        application = (
            ApplicationBuilder()
            .token(telegram.token)
            .base_url(telegram.base_url)
            .rate_limiter(
                # Group pacing is the core's (per-group budgets count only messages);
                # this limiter caps all calls bot-wide and retries after a 429.
                _RateLimiter(
                    overall_max_rate=telegram.messages_per_second,
                    group_max_rate=0,
                    max_retries=RATE_LIMIT_RETRIES,
                )
            )
            .concurrent_updates(True)
            .connection_pool_size(CONNECTION_POOL_SIZE)
            .pool_timeout(POOL_TIMEOUT_S)
            .build()
        )
        application.add_handler(
            MessageHandler(filters.UpdateType.MESSAGE & filters.TEXT, self._on_message)
        )
        return application

    async def run(self) -> None:
        # Bot API URLs contain the token: PTB logs them at DEBUG, httpx every request at INFO.
        httpx_logger = logging.getLogger("httpx")
        httpx_logger.setLevel(max(logging.WARNING, httpx_logger.level))
        redact = _RedactToken(self.config.telegram.token)
        noisy = [logging.getLogger(name) for name in TOKEN_LOGGERS]
        for noisy_logger in noisy:
            noisy_logger.addFilter(redact)
        try:
            await self._run()
        finally:
            for noisy_logger in noisy:
                noisy_logger.removeFilter(redact)

    async def _run(self) -> None:
        application = self.build_application()
        async with application:
            bot = application.bot
            await bot.set_my_commands([BotCommand(name, text) for name, text in COMMANDS])
            updater = application.updater
            assert updater is not None
            await updater.start_polling(timeout=POLL_TIMEOUT_S, allowed_updates=["message"])
            await application.start()
            logger.info("Telegram bot @%s (id %s) is polling", bot.username, bot.id)
            self.ready.set()
            try:
                await asyncio.Event().wait()  # until cancelled
            finally:
                self.ready.clear()
                await updater.stop()
                await application.stop()
                await self._drain_answers()
                logger.info("Telegram bot @%s stopped", bot.username)

    async def _drain_answers(self) -> None:
        if not self._answers:
            return
        _, pending = await asyncio.wait(self._answers, timeout=SHUTDOWN_GRACE_S)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)

    # --- one incoming message: the only place that catches broadly --------------------------

    async def _on_message(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        message = update.message
        if message is None:
            return
        try:
            await self._handle(message, context.bot)
        except Exception as exc:
            await self._failed(exc, message, context.bot)
            if self.raise_errors:
                raise

    async def _failed(self, exc: Exception, message: Message, bot: ExtBot[Any]) -> None:
        """Log an unexpected error and apologise in one short line (tests: record it instead)."""
        self.failures.append(exc)
        logger.exception("handling message %s in chat %s failed", message.id, message.chat.id)
        if not self.raise_errors:
            with contextlib.suppress(TelegramError):
                await self._say(bot, message, APOLOGY)

    async def _handle(self, message: Message, bot: ExtBot[Any]) -> None:
        chat = message.chat
        allowed = self.config.telegram.allowed_chat_ids
        if (allowed and chat.id not in allowed) or message.text is None:
            return
        text = message.text
        is_private = chat.type == ChatType.PRIVATE
        scope = _scope(message)
        command = parse_command(text, message.entities, bot.username)
        if command is not None:
            await self._command(command, message, scope, bot)
            return
        if not is_private:
            spans = bot_mentions(text, message.entities, bot.username, bot.id)
            if spans:
                text = without_spans(text, spans)
                if not text:
                    await self._say(bot, message, EMPTY_MENTION.format(username=bot.username))
                    return
            elif not _is_reply_to(message, bot.id):
                return  # not addressed to the bot
        self._start_answer(message, scope, text, bot)

    # --- commands -----------------------------------------------------------------------------

    async def _command(
        self, command: Command, message: Message, scope: Scope, bot: ExtBot[Any]
    ) -> None:
        is_private = message.chat.type == ChatType.PRIVATE
        match command.name:
            case "start" | "help":
                await self._say(bot, message, await self._help(message, scope, bot))
            case "reset":
                await self.service.reset(scope)
                await self._say(bot, message, RESET_DONE)
            case "chat":
                if not command.args:
                    await self._say(bot, message, CHAT_USAGE)
                else:
                    self._start_answer(message, scope, command.args, bot)
            case "gpt":
                await self._gpt_command(command.args, message, scope, bot)
            case _ if is_private:
                await self._say(bot, message, f"Unknown command /{command.name}. Try /help.")
            case _:
                pass  # in groups, other bots' commands are none of our business

    async def _gpt_command(
        self, args: str, message: Message, scope: Scope, bot: ExtBot[Any]
    ) -> None:
        action, _, rest = args.partition(" ")
        action, rest = action.lower(), rest.strip()
        is_private = message.chat.type == ChatType.PRIVATE
        if action in {"", "info"} and not rest:
            await self._say(bot, message, _describe(await self.service.binding(scope)))
        elif action == "bind" and rest:
            author = await self._author(message, bot, check_admin=True)
            try:
                info = await self.service.bind(
                    scope,
                    rest,
                    author,
                    is_private=is_private,
                    group_id=None if is_private else str(message.chat.id),
                )
            except NotAllowed:
                await self._say(bot, message, NOT_ADMIN)
            except BadGptName as exc:
                await self._say(bot, message, f"{user_message(exc)}\n{GPT_USAGE}")
            else:
                await self._say(bot, message, f"✅ Bound {info.gpt_id} here.\n{info.url}")
        elif action == "unbind" and not rest:
            author = await self._author(message, bot, check_admin=True)
            try:
                removed = await self.service.unbind(scope, author, is_private=is_private)
            except NotAllowed:
                await self._say(bot, message, NOT_ADMIN)
            else:
                await self._say(
                    bot,
                    message,
                    "✅ Unbound. " + _describe(await self.service.binding(scope))
                    if removed
                    else "No GPT was bound here.",
                )
        else:
            await self._say(bot, message, GPT_USAGE)

    async def _help(self, message: Message, scope: Scope, bot: ExtBot[Any]) -> str:
        if message.chat.type == ChatType.PRIVATE:
            how = "Just write to me: every message is a question for the GPT."
            bind = "/gpt bind <GPT link or id> — choose the GPT that answers you"
        else:
            how = (
                f"Mention me (@{bot.username}), reply to one of my messages, "
                "or use /chat <question>."
            )
            bind = "/gpt bind <GPT link or id> — choose the GPT (group admins only)"
        info = await self.service.binding(scope)
        here = f"Answering here: {info.gpt_id} — {info.url}" if info else "No GPT answers here yet."
        return "\n".join(
            [
                "I pass your messages to a ChatGPT GPT and stream its answer back.",
                how,
                here,
                "",
                bind,
                "/gpt info — which GPT answers here · /gpt unbind — remove the binding",
                "/reset — start a new conversation",
            ]
        )

    async def _author(self, message: Message, bot: ExtBot[Any], *, check_admin: bool) -> Author:
        chat = message.chat
        sender_chat = message.sender_chat
        if sender_chat is not None:
            # Anonymous admins post as the group itself; a channel posting here is not an admin.
            name = sender_chat.title or sender_chat.effective_name or "Anonymous admin"
            return Author(str(sender_chat.id), name, is_admin=sender_chat.id == chat.id)
        user = message.from_user
        if user is None:
            return Author(str(chat.id), chat.effective_name or "Unknown")
        is_admin = False
        if check_admin and chat.type != ChatType.PRIVATE:
            # Asked at command time, never cached: admins come and go.
            member = await bot.get_chat_member(chat.id, user.id)
            is_admin = member.status in {ChatMemberStatus.OWNER, ChatMemberStatus.ADMINISTRATOR}
        return Author(str(user.id), user.full_name, is_admin=is_admin)

    async def _say(self, bot: ExtBot[Any], message: Message, text: str) -> None:
        """A short plain-text answer to a command, as a reply in groups."""
        target = _target(message)
        for budget in self._budgets(target):
            await budget.acquire()
        await bot.send_message(
            target.chat_id,
            text,
            message_thread_id=target.thread_id,
            reply_parameters=(
                ReplyParameters(target.reply_to, allow_sending_without_reply=True)
                if target.reply_to
                else None
            ),
        )

    # --- answers ------------------------------------------------------------------------------

    def _budgets(self, target: _Target) -> list[RateBudget]:
        if target.is_private:
            return [self._bot_budget]
        return [self._group_budgets[str(target.chat_id)], self._bot_budget]

    def _start_answer(self, message: Message, scope: Scope, text: str, bot: ExtBot[Any]) -> None:
        # Not awaited: the update loop goes on while the answer streams (the core keeps turns
        # of one scope in order).
        task = asyncio.create_task(self._answer(message, scope, text, bot))
        self._answers.add(task)
        task.add_done_callback(self._answers.discard)

    async def _answer(self, message: Message, scope: Scope, text: str, bot: ExtBot[Any]) -> None:
        try:
            await self._stream_answer(message, scope, text, bot)
        except Exception as exc:
            await self._failed(exc, message, bot)

    async def _stream_answer(
        self, message: Message, scope: Scope, text: str, bot: ExtBot[Any]
    ) -> None:
        telegram = self.config.telegram
        is_private = message.chat.type == ChatType.PRIVATE
        target = _target(message)
        budgets = self._budgets(target)
        indicator = self.config.bot.streaming_indicator
        channel: _MessageChannel
        if is_private and telegram.dm_streaming == "draft":
            channel = _DraftChannel(bot, target, indicator=indicator, budgets=budgets)
        else:
            channel = _MessageChannel(bot, target, indicator=indicator)
        interval = telegram.edit_interval_s if is_private else telegram.group_edit_interval_s
        reply = StreamingReply(
            channel, edit_interval_s=interval, budgets=budgets, indicator=indicator
        )
        author = await self._author(message, bot, check_admin=False)
        turn = Turn(scope, author, text, is_private=is_private, message_id=str(message.id))
        typing = asyncio.create_task(_keep_typing(bot, target, reply.first_sent))
        try:
            await self.service.answer(turn, reply)
        finally:
            typing.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await typing
            await channel.close()


async def _keep_typing(bot: ExtBot[Any], target: _Target, first_sent: asyncio.Event) -> None:
    """Show "typing…" until the answer's first message exists."""
    while not first_sent.is_set():
        try:
            await bot.send_chat_action(
                target.chat_id, ChatAction.TYPING, message_thread_id=target.thread_id
            )
        except TelegramError as exc:
            logger.debug("chat action failed: %s", exc)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(first_sent.wait(), TYPING_EVERY_S)


def _thread_id(message: Message) -> int | None:
    """The forum topic a message is in; None outside forums (reply threads are not topics)."""
    if message.chat.is_forum and message.is_topic_message:
        return message.message_thread_id
    return None


def _scope(message: Message) -> Scope:
    thread_id = _thread_id(message)
    return Scope(PLATFORM, str(message.chat.id), str(thread_id) if thread_id else "")


def _target(message: Message) -> _Target:
    is_private = message.chat.type == ChatType.PRIVATE
    reply_to = None if is_private else message.id
    return _Target(message.chat.id, _thread_id(message), reply_to, is_private)


def _is_reply_to(message: Message, bot_id: int) -> bool:
    replied = message.reply_to_message
    if replied is None or replied.from_user is None or replied.from_user.id != bot_id:
        return False
    # In a forum every topic message "replies" to the topic's first message: not a real reply.
    return replied.forum_topic_created is None and replied.id != _thread_id(message)


def _describe(info: BindingInfo | None) -> str:
    if info is None:
        return "No GPT answers here yet. Bind one with /gpt bind <GPT link or id>."
    lines = [f"🤖 GPT: {info.gpt_id}", f"🔗 {info.url}", f"Model: {info.model}"]
    when = f" on {info.bound_at:%Y-%m-%d %H:%M} UTC" if info.bound_at else ""
    by = f" by {info.bound_by_name}" if info.bound_by_name else ""
    if info.is_default:
        lines.append("This is the bot's default GPT (nothing is bound here).")
    elif info.inherited:
        lines.append(f"Inherited from the group's binding{by}{when}.")
    else:
        lines.append(f"Bound{by}{when}.")
    return "\n".join(lines)


def create_adapter(config: Config, service: ConversationService) -> TelegramAdapter | None:
    """The `gptsbot.adapters` entry point: a Telegram adapter, or None without a bot token."""
    if not config.telegram.token:
        return None
    return TelegramAdapter(config, service)
