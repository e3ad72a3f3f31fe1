"""Who the Telegram adapter answers (`[access]`, decided by `core.access`), and how a command's
reply is shown: its table as a `pre` block, a confidential one in a private chat.

The adapter reports a message's sender (a person, or the chat an anonymous admin or a channel
posts as) and chat; when only membership can admit a private chat, it asks Telegram whether the
person is a member of the allow-listed groups (getChatMember, remembered for a while).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Collection, Sequence
from typing import Any, Final

from telegram import Chat, Message, MessageEntity
from telegram.constants import ChatMemberStatus, ChatType
from telegram.error import BadRequest, Forbidden, TelegramError
from telegram.ext import ExtBot

from bots.telegram_adapter.channels import Target
from core import commands, i18n
from core.access import Gate, MembershipLookup, Refused, Who
from core.config import AccessConfig
from core.i18n import Language
from core.platform import Clock, utf16_units
from core.tables import aligned
from core.turns import Author, Scope

logger = logging.getLogger(__name__)

# How long a person's membership in an allow-listed group is remembered.
MEMBERSHIP_TTL_S: Final = 600.0
_MEMBERS: Final = {ChatMemberStatus.OWNER, ChatMemberStatus.ADMINISTRATOR, ChatMemberStatus.MEMBER}

# The adapter's way to answer `message`: `text` with `entities`, to `target` when given.
Say = Callable[[ExtBot[Any], Message, str, Sequence[MessageEntity], Target | None], Awaitable[None]]


class TelegramAccess:
    def __init__(self, config: AccessConfig, clock: Clock, say: Say) -> None:
        self.gate = Gate(config, clock)
        self._say = say
        self._members: dict[tuple[int, int], tuple[float, bool]] = {}

    async def admits(
        self, message: Message, scope: Scope, bot: ExtBot[Any], language: Language
    ) -> bool:
        """Whether the bot may answer `message`; if not, the sender is told why (always in a
        private chat, once an hour in a group)."""
        chat, sender = message.chat, message.sender_chat or message.from_user
        who = Who(
            scope,
            str(sender.id if sender is not None else chat.id),
            is_private=chat.type == ChatType.PRIVATE,
        )

        user = message.from_user if message.sender_chat is None else None
        verdict = await self.gate.admit(who, self._memberships(bot, user.id if user else None))
        if not isinstance(verdict, Refused):
            return True
        logger.info("refused %s in %s: %s", who.user, scope, verdict.reason.value)
        if self.gate.should_tell(who):
            await self._say(bot, message, verdict.line(language), (), None)
        return False

    async def refusal_of_press(
        self, user_id: int, chat: Chat, scope: Scope, bot: ExtBot[Any], language: Language
    ) -> str | None:
        """The line to show someone pressing a button here whom the bot does not serve (a
        callback answer only they see); None when they may."""
        who = Who(scope, str(user_id), is_private=chat.type == ChatType.PRIVATE)
        verdict = await self.gate.admit(who, self._memberships(bot, user_id))
        if not isinstance(verdict, Refused):
            return None
        logger.info("refused a press of %s in %s: %s", who.user, scope, verdict.reason.value)
        return verdict.line(language)

    def _memberships(self, bot: ExtBot[Any], user_id: int | None) -> MembershipLookup:
        async def lookup(groups: Collection[str]) -> list[str]:
            if user_id is None:  # posted as a chat: no person to look up
                return []
            # A private chat (a positive id) has no other members: only groups are asked.
            for group in sorted(groups):
                if int(group) < 0 and await self._is_member(bot, int(group), user_id):
                    return [group]
            return []

        return lookup

    async def _is_member(self, bot: ExtBot[Any], chat_id: int, user_id: int) -> bool:
        now = time.monotonic()
        cached = self._members.get((chat_id, user_id))
        if cached is not None and cached[0] > now:
            return cached[1]
        try:
            member = await bot.get_chat_member(chat_id, user_id)
        except TelegramError as exc:  # the bot left the group, or the group is gone
            logger.warning("membership in %s not known: %s", chat_id, exc.message)
            return False
        is_member = member.status in _MEMBERS or bool(getattr(member, "is_member", False))
        self._members[(chat_id, user_id)] = (now + MEMBERSHIP_TTL_S, is_member)
        return is_member

    async def show(
        self, reply: commands.Reply, message: Message, bot: ExtBot[Any], language: Language
    ) -> None:
        """A command's reply where it was asked; a confidential one asked in a group goes to a
        private chat with the asker (Telegram has no answer only one member of a group sees),
        and the group only hears that it was sent, or how to let the bot send it."""
        text, entities = with_table(reply)
        if not reply.confidential or message.chat.type == ChatType.PRIVATE:
            await self._say(bot, message, text, entities, None)
            return
        user = message.from_user
        if user is not None and message.sender_chat is None:
            privately = Target(user.id, None, None, is_private=True)
            try:
                await self._say(bot, message, text, entities, privately)
            except (Forbidden, BadRequest) as exc:  # the person never started a chat with the bot
                if isinstance(exc, BadRequest) and "chat not found" not in exc.message.lower():
                    raise
                logger.info("no private chat with %s: %s", user.id, exc.message)
            else:
                await self._say(bot, message, i18n.USAGE_SENT_PRIVATELY(language), (), None)
                return
        refusal = i18n.USAGE_NO_PRIVATE_CHAT(language, mention=f"@{bot.username}")
        await self._say(bot, message, refusal, (), None)


def with_table(reply: commands.Reply) -> tuple[str, list[MessageEntity]]:
    """The reply's text, and its table (if any) below it as aligned columns in a `pre` block."""
    if reply.table is None:
        return reply.text, []
    head = reply.text + "\n\n"
    block = aligned(reply.table)
    return head + block, [MessageEntity(MessageEntity.PRE, utf16_units(head), utf16_units(block))]


async def is_chat_admin(bot: ExtBot[Any], chat_id: int, user_id: int) -> bool:
    # Asked at command (or press) time, never cached: admins come and go.
    member = await bot.get_chat_member(chat_id, user_id)
    return member.status in {ChatMemberStatus.OWNER, ChatMemberStatus.ADMINISTRATOR}


async def author_of(message: Message, bot: ExtBot[Any], *, check_admin: bool) -> Author:
    """Who wrote `message`; with `check_admin`, whether they are an admin of a group (asked)."""
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
        is_admin = await is_chat_admin(bot, chat.id, user.id)
    return Author(str(user.id), user.full_name, is_admin=is_admin)
