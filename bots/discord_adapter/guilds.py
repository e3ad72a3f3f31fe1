"""Which servers the bot serves (`[discord] allowed_guild_ids`), and whose DMs it answers then."""

from __future__ import annotations

import time
from collections.abc import Sequence

import discord

# How long a DM author's membership in an allowed guild is remembered.
MEMBERSHIP_TTL_S = 600.0


class AllowedGuilds:
    """Empty `allowed`: every server and every DM."""

    def __init__(self, allowed: Sequence[int]) -> None:
        self._allowed = tuple(allowed)
        self._members: dict[int, tuple[float, bool]] = {}

    def allows_guild(self, guild_id: int | None) -> bool:
        return not self._allowed or guild_id is None or guild_id in self._allowed

    async def allows_dm(self, client: discord.Client, user_id: int) -> bool:
        """With allowed guilds set, a DM is answered only for a member of one of them (else
        anyone who can reach the bot could spend the operator's GPT quota)."""
        if not self._allowed:
            return True
        now = time.monotonic()
        cached = self._members.get(user_id)
        if cached is not None and cached[0] > now:
            return cached[1]
        is_member = False
        for guild_id in self._allowed:
            guild = client.get_guild(guild_id)
            if guild is None:
                continue
            if guild.get_member(user_id) is not None:
                is_member = True
                break
            try:
                await guild.fetch_member(user_id)
            except discord.NotFound:
                continue
            is_member = True
            break
        self._members[user_id] = (now + MEMBERSHIP_TTL_S, is_member)
        return is_member
