"""Slash commands: the core's registry (installed by `commands.install`) run for an interaction,
and /chat's answer streamed into the deferred response."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import discord
from discord import app_commands

from bots.discord_adapter.messages import attachments_from
from bots.discord_adapter.replies import InteractionReplies
from bots.discord_adapter.text import quote_files, quote_prompt
from core import commands
from core.turns import Turn

if TYPE_CHECKING:
    from bots.discord_adapter.adapter import DiscordAdapter


async def run_command(
    adapter: DiscordAdapter,
    interaction: discord.Interaction,
    command: commands.Command,
    values: Mapping[str, str],
    files: Sequence[discord.Attachment] = (),
) -> None:
    language = adapter._interaction_language(interaction)

    async def run() -> None:
        context = adapter._context(interaction, language)
        if not await adapter.access.admits_interaction(interaction, context, language):
            return
        result = await adapter.commands.run(context, command, values)
        if isinstance(result, commands.Ask):
            await ask(adapter, interaction, context, result.text, files)
        elif isinstance(result, commands.Retry):
            await adapter.presses.retry(interaction, result)
        else:
            # Ephemeral: also what keeps a confidential reply to the asker.
            private = result.private or result.confidential
            await adapter._respond(interaction, result.text, ephemeral=private, table=result.table)

    await adapter._guarded(run(), language, interaction=interaction)


async def suggest(
    adapter: DiscordAdapter,
    interaction: discord.Interaction,
    argument: commands.Argument,
    current: str,
) -> list[app_commands.Choice[str]]:
    language = adapter._interaction_language(interaction)
    context = adapter._context(interaction, language)
    if not await adapter.access.admits_interaction(interaction, context, language, tell=False):
        return []
    found = await adapter.commands.suggestions(context, argument, current)
    return [app_commands.Choice(name=name, value=name) for name in found]


async def ask(
    adapter: DiscordAdapter,
    interaction: discord.Interaction,
    context: commands.Context,
    prompt: str,
    files: Sequence[discord.Attachment] = (),
) -> None:
    """/chat: the prompt (and the names of its files) quoted above an answer streamed into the
    deferred response."""
    await interaction.response.defer(thinking=True)  # first: Discord's 3-second deadline
    started = adapter._clock.monotonic()
    client = interaction.client
    language = context.language
    channel_id = interaction.channel_id
    assert channel_id is not None
    target = client.get_partial_messageable(channel_id, guild_id=interaction.guild_id)
    replies = InteractionReplies(
        interaction,
        target,
        header=quote_prompt(prompt) + quote_files(file.filename for file in files),
        deadline=started + adapter.interaction_window_s,
        clock=adapter._clock,
        language=language,
    )
    turn = Turn(
        context.scope,
        context.author,
        prompt,
        context.is_private,
        language=language,
        update_id=str(interaction.id),
        attachments=attachments_from(files),
    )
    await adapter.service.answer(turn, adapter._streaming_reply(replies, channel_id))
