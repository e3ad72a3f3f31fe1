"""A command reply's table (`core.tables.Table`) as a Discord embed: the reply's text on top,
one inline field per row, each field listing the row's figures under the column names."""

from __future__ import annotations

from typing import Final

import discord

from core.tables import Table

# Discord's embed limits.
MAX_FIELDS: Final = 25
MAX_FIELD_NAME: Final = 256
MAX_FIELD_VALUE: Final = 1024
EMBED_COLOUR: Final = discord.Colour.blurple()


def as_embed(text: str, table: Table) -> discord.Embed:
    embed = discord.Embed(description=text, colour=EMBED_COLOUR)
    for label, *cells in table.rows[:MAX_FIELDS]:
        lines = (
            f"{column}: **{cell}**" for column, cell in zip(table.columns[1:], cells, strict=True)
        )
        embed.add_field(
            name=discord.utils.escape_markdown(label)[:MAX_FIELD_NAME] or "\u200b",
            value="\n".join(lines)[:MAX_FIELD_VALUE],
            inline=True,
        )
    return embed
