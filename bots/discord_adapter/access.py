"""Who the Discord adapter answers (`[access]`, decided by `core.access`).

The adapter reports a message's or a slash command's author, their roles there (from the member
that comes with the message or interaction), the server and the scope (a thread's parent
channel and the thread). While servers are allow-listed, a DM is answered for members of one of
them only: that membership is looked up (GET /guilds/{id}/members/{user}) and remembered a while.
A refused slash command is always told why, ephemerally; a refused message gets a reply, in a
server at most once an hour per person.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Collection
from typing import Any, Final

import discord

from bots.discord_adapter.replies import NO_PINGS
from core import commands
from core.access import Gate, MembershipLookup, Refused, Who
from core.config import AccessConfig
from core.i18n import Language
from core.platform import Clock
from core.turns import Scope

logger = logging.getLogger(__name__)

# How long a DM author's membership in an allow-listed server is remembered.
MEMBERSHIP_TTL_S: Final = 600.0


def _role_ids(user: discord.User | discord.Member) -> tuple[str, ...]:
    if isinstance(user, discord.Member):
        return tuple(str(role.id) for role in user.roles)
    return ()


class DiscordAccess:
    def __init__(self, config: AccessConfig, clock: Clock) -> None:
        self.gate = Gate(config, clock)
        self._members: dict[tuple[int, int], tuple[float, bool]] = {}

    async def admits_message(
        self,
        client: discord.Client,
        message: discord.Message,
        scope: Scope,
        is_private: bool,
        language: Language,
    ) -> bool:
        """Whether to answer `message`; if not, its author may be told why in a reply."""
        guild = message.guild
        who = Who(
            scope,
            str(message.author.id),
            is_private,
            guild_id=str(guild.id) if guild is not None else None,
            role_ids=_role_ids(message.author),
        )
        verdict = await self.gate.admit(who, self._members_of(client, message.author.id))
        if not isinstance(verdict, Refused):
            return True
        logger.info("refused %s in %s: %s", who.user, scope, verdict.reason.value)
        if self.gate.should_tell(who):
            await message.channel.send(
                verdict.line(language),
                reference=message.to_reference(fail_if_not_exists=False),
                allowed_mentions=NO_PINGS,
            )
        return False

    async def admits_interaction(
        self,
        interaction: discord.Interaction[Any],
        context: commands.Context,
        language: Language,
        *,
        tell: bool = True,
    ) -> bool:
        """Whether to run a slash command (or offer completions); if not and `tell`, the
        answer says why, seen by the asker only."""
        user = interaction.user
        guild_id = interaction.guild_id
        who = Who(
            context.scope,
            str(user.id),
            context.is_private,
            guild_id=str(guild_id) if guild_id is not None else None,
            role_ids=_role_ids(user),
        )
        verdict = await self.gate.admit(who, self._members_of(interaction.client, user.id))
        if not isinstance(verdict, Refused):
            return True
        logger.info("refused %s in %s: %s", who.user, context.scope, verdict.reason.value)
        if tell:
            await interaction.response.send_message(
                verdict.line(language), ephemeral=True, allowed_mentions=NO_PINGS
            )
        return False

    def _members_of(self, client: discord.Client, user_id: int) -> MembershipLookup:
        async def lookup(guild_ids: Collection[str]) -> list[str]:
            for guild_id in sorted(guild_ids):
                if await self._is_member(client, int(guild_id), user_id):
                    return [guild_id]
            return []

        return lookup

    async def _is_member(self, client: discord.Client, guild_id: int, user_id: int) -> bool:
        now = time.monotonic()
        cached = self._members.get((guild_id, user_id))
        if cached is not None and cached[0] > now:
            return cached[1]
        guild = client.get_guild(guild_id)
        if guild is None:  # the bot is not in that server: it can't tell
            return False
        is_member = guild.get_member(user_id) is not None
        if not is_member:
            try:
                await guild.fetch_member(user_id)
                is_member = True
            except discord.NotFound:
                pass
        self._members[(guild_id, user_id)] = (now + MEMBERSHIP_TTL_S, is_member)
        return is_member
