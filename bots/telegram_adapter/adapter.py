"""The Telegram adapter: updates, who gets answered, commands, binding rights, answers."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from functools import partial
from typing import Any

from telegram import Message, MessageEntity, ReplyParameters, Update
from telegram.constants import ChatAction, ChatType, FloodLimit
from telegram.error import InvalidToken, TelegramError
from telegram.ext import (
    Application,
    ApplicationBuilder,
    CallbackQueryHandler,
    ContextTypes,
    ExtBot,
    MessageHandler,
    filters,
)

from bots.telegram_adapter import text as say
from bots.telegram_adapter.access import TelegramAccess, author_of
from bots.telegram_adapter.albums import Albums
from bots.telegram_adapter.buttons import Presses, retry_target
from bots.telegram_adapter.channels import (
    DRAFT_REFRESH_S,
    DraftChannel,
    MessageChannel,
    RateLimiter,
    Target,
    settle_interrupted,
    target_of,
)
from bots.telegram_adapter.files import attachments_of, fetch_file, file_base_url
from bots.telegram_adapter.request import AiohttpRequest
from bots.telegram_adapter.settings import NAME as PLATFORM
from bots.telegram_adapter.settings import TelegramConfig
from bots.telegram_adapter.text import (
    Command,
    bot_mentions,
    is_reply_to,
    language_of,
    parse_command,
    register_commands,
    scope_of,
    without_spans,
)
from bots.telegram_adapter.webhook import WebhookServer, receiving
from core import commands, i18n
from core.config import Config
from core.conversation import ConversationService
from core.i18n import Language
from core.pacing import Budget, make_budgets
from core.platform import Clock, PlatformRefused, SystemClock
from core.redaction import Redact, filtered
from core.streaming import StreamingReply, typing_until_first_message
from core.turns import Attachment, Scope, Turn
from storage import InterruptedAnswer

logger = logging.getLogger(__name__)

GROUP_MESSAGES_PER_MINUTE = FloodLimit.MESSAGES_PER_MINUTE_PER_GROUP
TYPING_EVERY_S = 4.0  # Telegram shows a chat action for 5 s
CONNECTION_POOL_SIZE = 512  # hundreds of answers may stream at once
POOL_TIMEOUT_S = 30.0
RATE_LIMIT_RETRIES = 3  # for calls outside a streamed answer (commands, typing, lookups)
SHUTDOWN_GRACE_S = 10.0  # unless [bot] shutdown_grace_s says otherwise
TOKEN_LOGGERS = ("telegram.Bot", "telegram.ext.ExtBot", "httpx")
# Any token in a Bot API URL (a mistyped one is someone's secret too), besides the token itself.
TOKEN_PATTERNS = (r"(/bot)\d+:[A-Za-z0-9_-]+",)
# Where the InvalidToken that ends polling gets logged: PTB's network loop, the Updater's stop, and
# asyncio ("Task exception was never retrieved": stopping the Updater can abandon a poll's task).
REFUSAL_LOGGERS = ("telegram.ext", "telegram.ext.Updater", "asyncio")
REFUSED = "Telegram refused the bot token: check TELEGRAM_BOT_TOKEN"
# What the bot reads: text, and photos and documents (with their captions).
INCOMING = filters.UpdateType.MESSAGE & (filters.TEXT | filters.PHOTO | filters.Document.ALL)


class _WithoutRefusedToken(logging.Filter):
    """Drops the tracebacks of a refused token (only PTB raises InvalidToken): the adapter says
    it once, in the line `gptsbot run` prints."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.exc_info and isinstance(record.exc_info[1], InvalidToken))


class TelegramAdapter:
    """Takes updates (polled, or posted to its webhook) until cancelled. Tests may inject the
    `clock` the budgets and replies pace with, shorten `typing_every_s`, `draft_refresh_s` and
    `shutdown_grace_s`, and set `reraise_unexpected`."""

    name = PLATFORM

    def __init__(
        self,
        config: Config,
        service: ConversationService,
        *,
        clock: Clock | None = None,
        typing_every_s: float = TYPING_EVERY_S,
        draft_refresh_s: float = DRAFT_REFRESH_S,
        shutdown_grace_s: float | None = None,
    ) -> None:
        self.config = config
        self.settings = config.platform(PLATFORM, TelegramConfig)
        self.service = service
        self.commands = commands.Commands(service)
        self._clock = clock or SystemClock()
        self.access = TelegramAccess(config.access, self._clock, self._say)
        self.typing_every_s = typing_every_s
        self.draft_refresh_s = draft_refresh_s
        grace = config.bot.shutdown_grace_s if shutdown_grace_s is None else shutdown_grace_s
        self.shutdown_grace_s = SHUTDOWN_GRACE_S if grace is None else grace
        # Tests set this: an unexpected error is re-raised (and recorded) instead of apologised for.
        self.reraise_unexpected = False
        self.failures: list[BaseException] = []
        self.ready = asyncio.Event()  # set once polling runs
        # Here or in Redis ([limits]); closed whenever run() ends, reconnected by the next run.
        self.budgets = make_budgets(config.limits, self._clock)
        self._bot_budget = self.budgets.bot_wide(PLATFORM, self.settings.messages_per_second)
        self._group_budgets = self.budgets.keyed(
            f"{PLATFORM}:group", GROUP_MESSAGES_PER_MINUTE, 60.0
        )
        self._answers: set[asyncio.Task[None]] = set()
        self._bot: ExtBot[Any] | None = None  # while polling
        self.webhook: WebhookServer | None = None  # in webhook mode: the server, once up
        self._refused = asyncio.Event()  # a Bot API call answered 401: the token was revoked
        self.presses = Presses(self)
        self.albums = Albums(self._clock, self.settings.album_wait_s)
        service.register_fetcher(PLATFORM, lambda file_id: fetch_file(self._bot, file_id))

    def build_application(self) -> Application[Any, Any, Any, Any, Any, Any]:
        telegram = self.settings
        application = (
            ApplicationBuilder()
            .token(telegram.token)
            .base_url(telegram.base_url)
            .base_file_url(file_base_url(telegram.base_url))
            .rate_limiter(
                # Group pacing is the core's (per-group budgets count only messages);
                # this limiter caps all calls bot-wide and retries after a 429.
                RateLimiter(
                    overall_max_rate=telegram.messages_per_second,
                    group_max_rate=0,
                    max_retries=RATE_LIMIT_RETRIES,
                )
            )
            .concurrent_updates(True)
            # aiohttp instead of PTB's httpx: a fraction of the CPU per call (see request.py).
            .request(
                AiohttpRequest(
                    connection_pool_size=CONNECTION_POOL_SIZE,
                    pool_timeout=POOL_TIMEOUT_S,
                    refused=self._refused,
                )
            )
            .get_updates_request(AiohttpRequest(connection_pool_size=1, refused=self._refused))
            .build()
        )
        application.add_handler(MessageHandler(INCOMING, self._on_message))
        application.add_handler(CallbackQueryHandler(self.presses.on_press))
        return application

    async def run(self) -> None:
        # Bot API URLs contain the token: PTB logs them at DEBUG, httpx every request at INFO.
        httpx_logger = logging.getLogger("httpx")
        httpx_logger.setLevel(max(logging.WARNING, httpx_logger.level))
        try:
            with (
                filtered(TOKEN_LOGGERS, Redact([self.settings.token], TOKEN_PATTERNS)),
                filtered(REFUSAL_LOGGERS, _WithoutRefusedToken()),
            ):
                await self._run()
        finally:  # every answer has ended: nothing paces any more
            await self.budgets.aclose()

    async def _run(self) -> None:
        self._refused.clear()
        application = self.build_application()
        try:
            await self._serve(application)
        except InvalidToken:
            pass  # PTB's own message quotes the token: none of it goes on
        finally:
            # When getMe fails at start, PTB leaves the bot's HTTP sessions open.
            await application.bot.shutdown()
        raise PlatformRefused(REFUSED) from None

    async def _serve(self, application: Application[Any, Any, Any, Any, Any, Any]) -> None:
        async with application:
            bot = application.bot
            await register_commands(bot, self.config.bot.language)
            try:
                async with receiving(application, self.settings) as self.webhook:
                    await application.start()
                    how = f"on port {self.webhook.port}" if self.webhook else "by polling"
                    logger.info(
                        "Telegram bot @%s (id %s) takes updates %s", bot.username, bot.id, how
                    )
                    self._bot = bot
                    self.ready.set()
                    await self._refused.wait()  # until cancelled, or a call answers 401
                    logger.debug("the Bot API refused the token: stopping")
            finally:
                self.ready.clear()
                if application.running:  # a webhook that could not listen never ran
                    await application.stop()
                await self.albums.close()
                await self._drain_answers()
                logger.info("Telegram bot @%s stopped", bot.username)

    async def _drain_answers(self) -> None:
        if not self._answers:
            return
        _, pending = await asyncio.wait(self._answers, timeout=self.shutdown_grace_s)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)

    async def settle_interrupted(self, answers: Sequence[InterruptedAnswer]) -> None:
        """Once polling: fix the messages of answers a dead process left streaming."""
        assert self._bot is not None
        await settle_interrupted(self._bot, answers, self.config.bot)

    # --- one incoming message: the only place that catches broadly --------------------------

    async def _on_message(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        message = update.message
        if message is None:
            return
        if message.media_group_id is not None:  # one item of an album: all of it is one message
            self.albums.add(message, partial(self._on_items, bot=context.bot))
            return
        await self._on_items([message], context.bot)

    async def _on_items(self, items: Sequence[Message], bot: ExtBot[Any]) -> None:
        """One message, or an album's items (answered at the first) handled as one."""
        message = items[0]
        language = language_of(items, self.config.bot.language)
        try:
            await self._handle(items, bot, language)
        except (InvalidToken, PlatformRefused):
            return  # the token was revoked: run() stops the adapter and says so
        except Exception as exc:
            await self._failed(exc, message, bot, language)
            if self.reraise_unexpected:
                raise

    async def _failed(
        self, exc: Exception, message: Message, bot: ExtBot[Any], language: Language
    ) -> None:
        """Log an unexpected error and apologise in one short line (tests: record it instead)."""
        self.failures.append(exc)
        logger.exception("handling message %s in chat %s failed", message.id, message.chat.id)
        if not self.reraise_unexpected:
            with contextlib.suppress(TelegramError):
                await self._say(bot, message, i18n.APOLOGY(language))

    async def _handle(self, items: Sequence[Message], bot: ExtBot[Any], language: Language) -> None:
        message = items[0]
        files = tuple(file for item in items for file in attachments_of(item))
        if message.text is None and not files:
            return
        # A photo or document's text is its caption (in an album, whichever item has one).
        captioned = next((item for item in items if item.caption), message)
        text = message.text or captioned.caption or ""
        entities = message.entities if message.text is not None else captioned.caption_entities
        is_private = message.chat.type == ChatType.PRIVATE
        scope = scope_of(message)
        command = parse_command(text, entities, bot.username) if not files else None
        if command is not None:
            await self._command(command, message, scope, bot, language)
            return
        if not is_private:
            spans = bot_mentions(text, entities, bot.username, bot.id)
            if not spans and not any(is_reply_to(item, bot.id) for item in items):
                return  # not addressed to the bot
            text = without_spans(text, spans) if spans else text
        if not await self.access.admits(message, scope, bot, language):
            return
        if not text and not files:
            await self._say(bot, message, say.EMPTY_MENTION(language, username=bot.username))
            return
        self.spawn(self._answer(message, scope, text, bot, language, files))

    # --- commands ---------------------------------------------------------------------------

    async def _command(
        self,
        command: Command,
        message: Message,
        scope: Scope,
        bot: ExtBot[Any],
        language: Language,
    ) -> None:
        is_private = message.chat.type == ChatType.PRIVATE
        # /start is what Telegram sends when someone opens the bot: the help.
        name = "help" if command.name == "start" else command.name
        parsed = commands.parse(name, command.args, language)
        if parsed is None and not is_private:
            return  # in groups, other bots' commands are none of our business
        if not await self.access.admits(message, scope, bot, language):
            return
        if parsed is None:
            await self._say(bot, message, i18n.UNKNOWN_COMMAND(language, name=command.name))
            return
        if isinstance(parsed, commands.Reply):
            await self._say(bot, message, parsed.text)
            return
        needs_admin = parsed.command.needs_admin_check and not is_private
        author = await author_of(message, bot, check_admin=needs_admin)
        context = commands.Context(
            scope,
            author,
            is_private,
            language,
            group_id=None if is_private else str(message.chat.id),
            bot_mention=f"@{bot.username}",
        )
        result = await self.commands.run(context, parsed.command, parsed.args)
        if isinstance(result, commands.Ask):
            self.spawn(self._answer(message, scope, result.text, bot, language))
        elif isinstance(result, commands.Retry):
            self.presses.start_retry(result, retry_target(result, is_private), bot)
        else:
            await self.access.show(result, message, bot, language)

    async def _say(
        self,
        bot: ExtBot[Any],
        message: Message,
        text: str,
        entities: Sequence[MessageEntity] = (),
        target: Target | None = None,
    ) -> None:
        """A short answer to a command, as a reply in groups (or sent to `target`)."""
        target = target or target_of(message)
        for budget in self._budgets(target):
            await budget.acquire()
        await bot.send_message(
            target.chat_id,
            text,
            entities=entities or None,
            message_thread_id=target.thread_id,
            reply_parameters=(
                ReplyParameters(target.reply_to, allow_sending_without_reply=True)
                if target.reply_to
                else None
            ),
        )

    # --- answers ------------------------------------------------------------------------------

    def _budgets(self, target: Target) -> list[Budget]:
        if target.is_private:
            return [self._bot_budget]
        return [self._group_budgets[str(target.chat_id)], self._bot_budget]

    def spawn(self, answering: Coroutine[Any, Any, None]) -> None:
        # Not awaited: the update loop goes on while the answer streams (the core keeps turns
        # of one scope in order).
        task = asyncio.create_task(answering)
        self._answers.add(task)
        task.add_done_callback(self._answers.discard)

    async def _answer(
        self,
        message: Message,
        scope: Scope,
        text: str,
        bot: ExtBot[Any],
        language: Language,
        files: tuple[Attachment, ...] = (),
    ) -> None:
        """Answer `message` (`text`, `files`) in a task of its own: see `spawn`."""
        is_private = message.chat.type == ChatType.PRIVATE
        try:
            author = await author_of(message, bot, check_admin=False)
            turn = Turn(
                scope,
                author,
                text,
                is_private=is_private,
                message_id=str(message.id),
                language=language,
                # Message ids count per chat: with the chat's, unique for the bot.
                update_id=f"{message.chat.id}:{message.id}",
                attachments=files,
            )
            answer = partial(self.service.answer, turn)
            await self.stream(bot, target_of(message), language, answer)
        except (InvalidToken, PlatformRefused):
            return  # the token was revoked: run() stops the adapter and says so
        except Exception as exc:
            await self._failed(exc, message, bot, language)

    async def stream(
        self,
        bot: ExtBot[Any],
        target: Target,
        language: Language,
        answer: Callable[[StreamingReply], Awaitable[object]],
    ) -> None:
        """Open a reply at `target` and let `answer` (a turn of the core) stream into it."""
        telegram = self.settings
        is_private = target.is_private
        budgets = self._budgets(target)
        indicator = self.config.bot.streaming_indicator
        channel: MessageChannel
        if is_private and telegram.dm_streaming == "draft":
            channel = DraftChannel(
                bot, target, language, budgets=budgets, refresh_s=self.draft_refresh_s
            )
        else:
            channel = MessageChannel(bot, target, language)
        interval = telegram.edit_interval_s if is_private else telegram.group_edit_interval_s
        reply = StreamingReply(
            channel,
            edit_interval_s=interval,
            budgets=budgets,
            indicator=indicator,
            clock=self._clock,
        )
        typing = partial(
            bot.send_chat_action,
            target.chat_id,
            ChatAction.TYPING,
            message_thread_id=target.thread_id,
        )
        try:
            async with typing_until_first_message(
                reply, typing, self._bot_budget, self.typing_every_s
            ):
                await answer(reply)
        finally:
            await channel.close()
