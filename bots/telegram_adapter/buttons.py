"""Presses of the core's buttons on Telegram (the inline keyboard `channels` puts under an
answer): callback queries handed to `Commands.press`.

A press is answered with `answerCallbackQuery`: a refusal or notice as its text (a toast only the
presser sees), nothing when the answer's message shows what happened (a Stop). A Retry streams
the new answer into a new message in the answer's chat and topic, quoting the question in groups.
"""

from __future__ import annotations

import logging
from functools import partial
from typing import TYPE_CHECKING, Any

from telegram import CallbackQuery, Update
from telegram.constants import ChatType
from telegram.error import TelegramError
from telegram.ext import ContextTypes, ExtBot

from bots.telegram_adapter.access import is_chat_admin
from bots.telegram_adapter.channels import Target
from bots.telegram_adapter.settings import NAME as PLATFORM
from core import commands, i18n
from core.i18n import Language, language_for
from core.turns import Author, Scope

if TYPE_CHECKING:
    from bots.telegram_adapter.adapter import TelegramAdapter

logger = logging.getLogger(__name__)


def retry_target(retry: commands.Retry, is_private: bool) -> Target:
    """Where a retried answer goes: the answer's chat and topic, quoting the question in groups."""
    scope = retry.turn.scope
    asked = retry.question_message_ids
    reply_to = int(asked[0]) if asked and not is_private and asked[0].isdigit() else None
    thread_id = int(scope.thread_id) if scope.thread_id else None
    return Target(int(scope.chat_id), thread_id, reply_to, is_private)


class Presses:
    """Callback queries of the adapter's buttons."""

    def __init__(self, adapter: TelegramAdapter) -> None:
        self._adapter = adapter

    def start_retry(self, retry: commands.Retry, target: Target, bot: ExtBot[Any]) -> None:
        """Stream a Retry's new answer into a new message at `target` (a button, /retry)."""
        self._adapter.spawn(self._retry(retry, target, bot))

    async def _retry(self, retry: commands.Retry, target: Target, bot: ExtBot[Any]) -> None:
        adapter, turn = self._adapter, retry.turn
        try:
            await adapter.stream(
                bot, target, turn.language, partial(adapter.service.retry, retry.answer_id, turn)
            )
        except Exception as exc:
            adapter.failures.append(exc)
            logger.exception("retrying answer %s in %s failed", retry.answer_id, turn.scope)
            if adapter.reraise_unexpected:
                raise

    async def on_press(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        """The one place a press is caught broadly: logged, and answered with an apology."""
        query = update.callback_query
        if query is None:
            return
        language = self._language(query)
        try:
            await self._handle(query, context.bot, language)
        except Exception as exc:
            adapter = self._adapter
            adapter.failures.append(exc)
            logger.exception("handling a button press in %s failed", _chat_id(query))
            if not adapter.reraise_unexpected:
                try:
                    await query.answer(i18n.APOLOGY(language))
                except TelegramError as answer_error:
                    logger.info("could not answer the press: %s", answer_error)
            if adapter.reraise_unexpected:
                raise

    def _language(self, query: CallbackQuery) -> Language:
        return language_for(query.from_user.language_code, self._adapter.config.bot.language)

    async def _handle(self, query: CallbackQuery, bot: ExtBot[Any], language: Language) -> None:
        adapter = self._adapter
        message = query.message
        if message is None:
            await query.answer()
            return
        chat = message.chat
        is_private = chat.type == ChatType.PRIVATE
        user = query.from_user
        scope = Scope(PLATFORM, str(chat.id))
        refusal = await adapter.access.refusal_of_press(user.id, chat, scope, bot, language)
        if refusal is not None:
            await query.answer(refusal)
            return
        is_admin = not is_private and await is_chat_admin(bot, chat.id, user.id)
        author = Author(str(user.id), user.full_name, is_admin=is_admin)
        # The chat is enough: the core finds the answer's own scope (its topic) by the answer's
        # id, and checks that the press came from its chat.
        context = commands.Context(scope, author, is_private, language)
        result = await adapter.commands.press(context, query.data)
        if isinstance(result, commands.Reply):
            await query.answer(result.text or None)
            return
        await query.answer()
        self.start_retry(result, retry_target(result, is_private), bot)


def _chat_id(query: CallbackQuery) -> int | None:
    return query.message.chat.id if query.message is not None else None
