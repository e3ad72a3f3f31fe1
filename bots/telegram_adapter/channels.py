"""Where answers are written: the core's ReplyChannel on the Bot API, and the rate limiter.

Streamed sends and edits get one attempt (`ONE_ATTEMPT`): a 429 goes back to the core's
StreamingReply, which waits `retry_after` and slows that message. Every other call is retried by
AIORateLimiter.

The core's buttons (Stop, Retry) are an inline keyboard on those same calls: an edit without any
removes the keyboard. Drafts cannot carry one, so an answer streamed as a draft shows no Stop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import warnings
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any, TypeVar

from telegram import (
    InputMediaPhoto,
    Message,
    ReplyParameters,
)
from telegram.constants import ChatType
from telegram.error import (
    BadRequest,
    EndPointNotFound,
    InvalidToken,
    RetryAfter,
    TelegramError,
)
from telegram.ext import AIORateLimiter, ExtBot
from telegram.warnings import PTBUserWarning

from bots.telegram_adapter.rendering import render_markdown
from bots.telegram_adapter.text import MAX_TEXT_UNITS, thread_id_of
from core.buttons import Button
from core.config import BotConfig
from core.i18n import Language
from core.interrupted import settle_for
from core.pacing import Budget
from core.platform import (
    Image,
    MessageGone,
    MessageRef,
    PlatformRateLimited,
    PlatformRefused,
    utf16_units,
)
from storage import InterruptedAnswer

logger = logging.getLogger(__name__)

MAX_ALBUM_PHOTOS = 10  # sendMediaGroup takes 2 to 10
DRAFT_REFRESH_S = 25.0  # drafts vanish 30 s after their last update
# rate_limit_args for streamed calls: one attempt, the 429 goes to the core (must be truthy).
ONE_ATTEMPT = -1

T = TypeVar("T")


class RateLimiter(AIORateLimiter):
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
    except InvalidToken:
        raise PlatformRefused("the Bot API refused the bot token") from None
    except BadRequest as exc:
        problem = exc.message.lower()
        if "message is not modified" in problem:
            return  # the message already shows this text: that is success
        if "message to edit not found" in problem or "message can't be edited" in problem:
            raise MessageGone(exc.message) from exc
        raise


def keyboard(buttons: Sequence[Button], language: Language) -> dict[str, Any] | None:
    """`buttons` in one row under a message, as the Bot API's InlineKeyboardMarkup JSON; None
    (no keyboard: an edit removes it) for none. Plain JSON, not PTB's objects: those were built
    anew for each answer (the buttons carry its id) and turned back into JSON on every call."""
    if not buttons:
        return None
    row = [{"text": b.label(language), "callback_data": b.data} for b in buttons]
    return {"inline_keyboard": [row]}


@dataclass(frozen=True, slots=True)
class Target:
    """Where an answer goes: the chat, its topic, and (in groups) the message it answers."""

    chat_id: int
    thread_id: int | None
    reply_to: int | None  # None in private chats
    is_private: bool


def target_of(message: Message) -> Target:
    """Where the answer to `message` goes: its chat and topic, quoting it in groups."""
    is_private = message.chat.type == ChatType.PRIVATE
    reply_to = None if is_private else message.id
    return Target(message.chat.id, thread_id_of(message), reply_to, is_private)


class MessageChannel:
    """A ReplyChannel that sends real messages and edits them in place; its buttons' labels are
    in `language`."""

    def __init__(self, bot: ExtBot[Any], target: Target, language: Language = "en") -> None:
        self.max_chars = int(MAX_TEXT_UNITS)
        self._bot = bot
        self._target = target
        self._language = language
        self._replied = False

    def measure(self, text: str) -> int:
        return utf16_units(text)

    async def send(self, text: str, *, final: bool, buttons: Sequence[Button] = ()) -> MessageRef:
        target = self._target
        markup = keyboard(buttons, self._language)
        reply = None
        if target.reply_to is not None and not self._replied:
            # Only the first message quotes the question; continuations follow it.
            reply = ReplyParameters(target.reply_to, allow_sending_without_reply=True)

        async def call(body: str, entities: list[dict[str, Any]] | None) -> Any:
            parameters = {
                "chat_id": target.chat_id,
                "text": body,
                "entities": entities,
                "message_thread_id": target.thread_id,
                "reply_parameters": reply,
                "reply_markup": markup,
            }
            return await _streamed_call(self._bot, "sendMessage", parameters)

        sent = await _deliver(call, text, final=final)
        assert isinstance(sent, dict)
        self._replied = True
        return MessageRef(str(target.chat_id), str(sent["message_id"]))

    async def edit(
        self, ref: MessageRef, text: str, *, final: bool, buttons: Sequence[Button] = ()
    ) -> None:
        markup = keyboard(buttons, self._language)

        async def call(body: str, entities: list[dict[str, Any]] | None) -> Any:
            parameters = {
                "chat_id": int(ref.chat_id),
                "message_id": int(ref.message_id),
                "text": body,
                "entities": entities,
                "reply_markup": markup,
            }
            return await _streamed_call(self._bot, "editMessageText", parameters)

        await _deliver(call, text, final=final)

    max_images_per_call = MAX_ALBUM_PHOTOS

    async def send_images(self, images: Sequence[Image]) -> None:
        """One photo, or an album of them, uploaded in the answer's chat and topic."""
        target = self._target
        async with _telegram_errors():
            if len(images) == 1:
                (image,) = images
                await self._bot.send_photo(
                    target.chat_id,
                    image.data,
                    filename=image.file_name,
                    message_thread_id=target.thread_id,
                    rate_limit_args=ONE_ATTEMPT,
                )
                return
            album = [InputMediaPhoto(image.data, filename=image.file_name) for image in images]
            await self._bot.send_media_group(
                target.chat_id,
                album,
                message_thread_id=target.thread_id,
                rate_limit_args=ONE_ATTEMPT,
            )

    async def close(self) -> None:
        pass


# Streamed sends and edits go through `do_api_request`, which returns Telegram's JSON as it
# came: of a sent message only its id is read, and building PTB's Message (a hundred frozen
# attributes) was a third of each call's CPU. PTB warns that send_message exists; we know.
warnings.filterwarnings(
    "ignore",
    message=r"Please use 'Bot\.(sendMessage|editMessageText)' instead",
    category=PTBUserWarning,
)


async def _streamed_call(bot: ExtBot[Any], method: str, parameters: dict[str, Any]) -> Any:
    """`method` with the given parameters (those that are None left out), tried once."""
    api_kwargs = {name: value for name, value in parameters.items() if value is not None}
    try:
        return await bot.do_api_request(method, api_kwargs, rate_limit_args=ONE_ATTEMPT)
    except EndPointNotFound as exc:
        # The method exists: what do_api_request calls a missing endpoint (a 401 or 404) is the
        # token refused, which send_message would have raised as InvalidToken.
        raise InvalidToken(exc.message) from exc


async def _deliver(
    call: Callable[[str, list[dict[str, Any]] | None], Awaitable[T]], text: str, *, final: bool
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


class DraftChannel(MessageChannel):
    """A private-chat ReplyChannel that streams into a draft (sendMessageDraft) and posts the
    final text as one real message per page. Drafts vanish 30 s after their last update, so a
    draft that waits for more text is refreshed every `refresh_s`."""

    def __init__(
        self,
        bot: ExtBot[Any],
        target: Target,
        language: Language = "en",
        *,
        budgets: Sequence[Budget] = (),
        refresh_s: float = DRAFT_REFRESH_S,
    ) -> None:
        super().__init__(bot, target, language)
        self._budgets = tuple(budgets)
        self._refresh_s = refresh_s
        self._draft_text: dict[int, str] = {}
        self._refresher: asyncio.Task[None] | None = None
        self._touched = asyncio.Event()

    async def send(self, text: str, *, final: bool, buttons: Sequence[Button] = ()) -> MessageRef:
        if final:
            return await super().send(text, final=True, buttons=buttons)
        draft_id = random.randint(1, 2**31 - 1)
        await self._draft(draft_id, text)
        return MessageRef(str(self._target.chat_id), f"draft:{draft_id}")

    async def edit(
        self, ref: MessageRef, text: str, *, final: bool, buttons: Sequence[Button] = ()
    ) -> None:
        draft_id = int(ref.message_id.removeprefix("draft:"))
        if not final:
            await self._draft(draft_id, text)
            return
        self._draft_text.pop(draft_id, None)
        await super().send(text, final=True, buttons=buttons)

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
                await asyncio.wait_for(self._touched.wait(), self._refresh_s)
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


async def settle_interrupted(
    bot: ExtBot[Any], answers: Sequence[InterruptedAnswer], settings: BotConfig
) -> None:
    """Each answer a dead process left streaming shows its saved text and the interrupted line,
    without the streaming indicator and Stop, with Retry (see `core.interrupted`)."""
    for answer in answers:
        chat_id = int(answer.scope.chat_id)
        thread_id = int(answer.scope.thread_id) if answer.scope.thread_id else None
        is_private = chat_id > 0  # groups and channels have negative ids
        question = answer.question_message_ids
        reply_to = int(question[0]) if question and not is_private else None
        target = Target(chat_id, thread_id, reply_to, is_private)
        # A draft (sendMessageDraft) vanished by itself: its text is sent anew instead.
        refs = [
            MessageRef(str(chat_id), message_id)
            for message_id in answer.platform_message_ids
            if not message_id.startswith("draft:")
        ]
        try:
            await settle_for(partial(MessageChannel, bot, target), answer, refs, settings)
        except TelegramError as exc:
            logger.warning("interrupted answer %s not settled: %s", answer.id, exc)
