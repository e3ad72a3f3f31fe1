"""`/usage`: turns and tokens today and this month, as a table for the person who asks.

Everyone sees their own figures (on the platform they ask from). An admin of a group or channel
(or an owner) asking there also sees that chat's figures (its threads and topics included) and
its top users; an owner also sees the whole bot's. Nobody else's figures reach a member: the reply
is `confidential` (see `core.commands.Reply`). Figures count turns that went to the GPT and their
answers' tokens; "~" marks tokens that are partly estimated (`core.quota.estimate`).
"""

from __future__ import annotations

from datetime import datetime
from typing import Final

from core import i18n
from core.i18n import Language
from core.quota import Windows
from core.tables import Table
from core.turns import Scope
from storage import Repository, UsageFigures

# How many of a chat's people its admins see, by tokens this month.
TOP_USERS: Final = 5
# A person's name is cut to this many characters in the table.
NAME_CHARS: Final = 24


async def report(
    repo: Repository,
    now: datetime,
    scope: Scope,
    user_id: str,
    *,
    language: Language,
    sees_chat: bool,
    sees_bot: bool,
) -> tuple[str, Table]:
    """The reply's text (title, and a note when tokens are estimated) and its table: the person,
    then with `sees_chat` the scope's chat and its top users, then with `sees_bot` the whole
    bot."""
    windows = Windows.around(now)
    found = await repo.usage(
        scope,
        user_id,
        day_since=windows.day_start,
        month_since=windows.month_start,
        chat_top=TOP_USERS if sees_chat else None,
        whole_bot=sees_bot,
    )
    rows = [(i18n.USAGE_YOU(language), found.own)]
    if found.chat is not None:
        rows.append((i18n.USAGE_HERE(language), found.chat))
        rows += [
            (f"· {_name(user.name or user.user_id)}", user.figures) for user in found.top_users
        ]
    if found.bot is not None:
        rows.append((i18n.USAGE_BOT(language), found.bot))
    columns = (
        "",
        i18n.USAGE_TURNS_TODAY(language),
        i18n.USAGE_TOKENS_TODAY(language),
        i18n.USAGE_TURNS_MONTH(language),
        i18n.USAGE_TOKENS_MONTH(language),
    )
    table = Table(columns, tuple((label, *_cells(figures)) for label, figures in rows))
    day = windows.day_start
    lines = [i18n.USAGE_TITLE(language, day=f"{day:%Y-%m-%d}", month=f"{day:%Y-%m}")]
    if any(figures.estimated for _, figures in rows):
        lines.append(i18n.USAGE_ESTIMATED(language))
    return "\n".join(lines), table


def _cells(figures: UsageFigures) -> tuple[str, str, str, str]:
    mark = "~" if figures.estimated else ""
    return (
        f"{figures.turns_today:,}",
        f"{mark}{figures.tokens_today:,}" if figures.tokens_today else "0",
        f"{figures.turns_month:,}",
        f"{mark}{figures.tokens_month:,}" if figures.tokens_month else "0",
    )


def _name(name: str) -> str:
    name = " ".join(name.split())
    return name if len(name) <= NAME_CHARS else name[: NAME_CHARS - 1] + "…"
