"""A table as plain data, for command replies that show figures (`/usage`), and its rendering as
aligned monospaced columns (the terminal; Telegram inside a `pre` block). Discord renders it as
an embed's fields (bots/discord_adapter/tables.py)."""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass

COLUMN_GAP = "  "


@dataclass(frozen=True, slots=True)
class Table:
    """`columns`: the headers; each row has one cell per column, already formatted. The first
    column names the row (left-aligned); the others hold figures (right-aligned)."""

    columns: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]


def width(text: str) -> int:
    """Columns `text` takes in a monospaced font: Chinese characters take two."""
    return sum(2 if unicodedata.east_asian_width(char) in "WF" else 1 for char in text)


def aligned(table: Table) -> str:
    """The table as lines of aligned columns, the headers first."""
    lines = [table.columns, *table.rows]
    widths = [max(width(line[i]) for line in lines) for i in range(len(table.columns))]

    def cell(i: int, text: str) -> str:
        padding = " " * (widths[i] - width(text))
        return text + padding if i == 0 else padding + text

    return "\n".join(
        COLUMN_GAP.join(cell(i, text) for i, text in enumerate(line)).rstrip() for line in lines
    )
