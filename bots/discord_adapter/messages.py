"""Messages: a guild message that addresses the bot, or any DM, becomes a turn answered in its
channel, replying to it."""

from __future__ import annotations

import mimetypes
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, Final

import discord

from bots.discord_adapter.replies import ChannelReplies
from bots.discord_adapter.text import turn_text
from core.i18n import Language
from core.streaming import typing_until_first_message
from core.turns import Attachment, Author, Turn

if TYPE_CHECKING:
    from bots.discord_adapter.adapter import DiscordAdapter

# A typing indicator shows for about 10 s per call.
TYPING_REFRESH_S = 8.0
UNKNOWN_MIME: Final = "application/octet-stream"


async def answer_message(
    adapter: DiscordAdapter, client: discord.Client, message: discord.Message, language: Language
) -> None:
    me = client.user
    if me is None or message.author.bot or message.webhook_id is not None:
        return
    if message.type not in (discord.MessageType.default, discord.MessageType.reply):
        return
    guild = message.guild
    if guild is not None and not addresses_bot(message, me.id):
        return
    bot_role = guild.self_role if guild is not None else None
    text = turn_text(
        message.content,
        me.id,
        bot_role_id=bot_role.id if bot_role is not None else None,
        user_names={user.id: user.display_name for user in message.mentions},
        role_names={role.id: role.name for role in message.role_mentions},
    )
    files = attachments_of(message)
    if not text and not files:
        return  # an empty mention, or content withheld without the message-content intent
    channel: Any = message.channel
    if guild is not None and not isinstance(channel, discord.abc.GuildChannel | discord.Thread):
        channel = await client.fetch_channel(message.channel.id)  # a thread not yet cached
    scope, is_private = adapter._scope(channel, message.channel.id, guild.id if guild else None)
    if not await adapter.access.admits_message(client, message, scope, is_private, language):
        return
    author = Author(str(message.author.id), message.author.display_name)
    turn = Turn(
        scope,
        author,
        text,
        is_private,
        message_id=str(message.id),
        language=language,
        update_id=str(message.id),  # snowflakes are unique across Discord
        attachments=files,
    )
    target = client.get_partial_messageable(
        message.channel.id, guild_id=guild.id if guild else None
    )
    replies = ChannelReplies(target, client.http, reply_to=message, language=language)
    reply = adapter._streaming_reply(replies, target.id)
    async with typing_until_first_message(
        reply, target.typing, adapter.global_budget, TYPING_REFRESH_S
    ):
        await adapter.service.answer(turn, reply)


def addresses_bot(message: discord.Message, bot_id: int) -> bool:
    """A guild message is a turn when it @mentions the bot (or its role) or replies to it."""
    if any(user.id == bot_id for user in message.mentions):
        return True
    guild = message.guild
    bot_role = guild.self_role if guild is not None else None
    if bot_role is not None and bot_role.id in message.raw_role_mentions:
        return True
    reference = message.reference
    if reference is None:
        return False
    replied = reference.resolved or reference.cached_message
    return isinstance(replied, discord.Message) and replied.author.id == bot_id


def attachments_of(message: discord.Message) -> tuple[Attachment, ...]:
    """The message's attachments (see `attachments_from`)."""
    return attachments_from(message.attachments)


def attachments_from(files: Iterable[discord.Attachment]) -> tuple[Attachment, ...]:
    """Discord's attachments by their CDN URL (signed by Discord, no bot token in it; it
    expires after about a day, after which history goes without the image)."""
    return tuple(
        Attachment(
            file.filename,
            file.content_type or mimetypes.guess_type(file.filename)[0] or UNKNOWN_MIME,
            file.size,
            file.url,
        )
        for file in files
    )


async def fetch_attachment(client: discord.Client | None, url: str) -> bytes:
    """An attachment's bytes from the CDN."""
    if client is None:
        raise ConnectionError("the Discord client is not connected")
    return await client.http.get_from_cdn(url)
