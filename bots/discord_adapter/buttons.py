"""Presses of the core's buttons on Discord (the button components `replies.Buttons` puts under
an answer): component interactions handed to `Commands.press`.

A refusal or notice is an ephemeral reply only the presser sees; a Stop is acknowledged without
a message (the answer's own message shows it stopped). A Retry, pressed or typed as /retry,
streams the new answer into the interaction's response: a new message, which opens under the
quoted question when that question was a /chat (it has no message of its own to reply to).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import discord

from bots.discord_adapter.replies import InteractionReplies
from bots.discord_adapter.text import quote_prompt
from core import commands
from core.buttons import parse_press
from core.i18n import Language

if TYPE_CHECKING:
    from bots.discord_adapter.adapter import DiscordAdapter

logger = logging.getLogger(__name__)


class Presses:
    """The adapter's part that takes presses; split out of adapter.py for its size, it uses the
    adapter's own helpers (the catch-all, the command context, the streaming reply)."""

    def __init__(self, adapter: DiscordAdapter) -> None:
        self._adapter = adapter

    async def on_interaction(self, interaction: discord.Interaction) -> None:
        """Every interaction passes here (discord.py's `on_interaction`); only presses of the
        core's buttons are taken. Slash commands are the command tree's."""
        if interaction.type is not discord.InteractionType.component:
            return
        data: Any = interaction.data or {}
        custom_id = data.get("custom_id")
        if parse_press(custom_id) is None:
            return  # not a button of ours
        adapter = self._adapter
        language = adapter._interaction_language(interaction)
        await adapter._guarded(
            self._press(interaction, custom_id, language), language, interaction=interaction
        )

    async def _press(
        self, interaction: discord.Interaction, custom_id: str, language: Language
    ) -> None:
        adapter = self._adapter
        context = adapter._context(interaction, language)
        if not await adapter.access.admits_interaction(interaction, context, language):
            return
        result = await adapter.commands.press(context, custom_id)
        if isinstance(result, commands.Retry):
            await self.retry(interaction, result)
        elif result.text:
            await adapter._respond(interaction, result.text, ephemeral=True)
        else:
            await interaction.response.defer()  # acknowledged: the message shows what happened

    async def retry(self, interaction: discord.Interaction, retry: commands.Retry) -> None:
        """Stream a Retry's new answer into the interaction's (deferred) response."""
        await interaction.response.defer(thinking=True)  # first: Discord's 3-second deadline
        adapter = self._adapter
        started = adapter._clock.monotonic()
        channel_id = interaction.channel_id
        assert channel_id is not None
        client = interaction.client
        target = client.get_partial_messageable(channel_id, guild_id=interaction.guild_id)
        turn = retry.turn
        # As settling an interrupted answer assumes: a /chat question (no message of its own)
        # is quoted above its answer.
        header = "" if retry.question_message_ids else quote_prompt(turn.text)
        replies = InteractionReplies(
            interaction,
            target,
            header=header,
            deadline=started + adapter.interaction_window_s,
            clock=adapter._clock,
            language=turn.language,
        )
        reply = adapter._streaming_reply(replies, channel_id)
        await adapter.service.retry(retry.answer_id, turn, reply)
