"""Who may use the bot where: `[access]` decided once, in the core, over plain data.

    adapter: a message or command addressed to the bot → `Who` (scope, user, guild, roles, DM?)
    core:    `decide(config.access, who)` → `Allowed` or `Refused(reason)`
    adapter: refused → one short line (`Refused.line`), when `Gate.should_tell` says so; nothing
             is stored and nothing goes upstream

The rules, in order:

1. Owners (`[access] owners`) are never refused.
2. A blocked user, chat, guild, channel or role is refused (blocked wins over allowed).
3. A DM is refused when `allow_dms` is false.
4. Each allow list that is not empty must list the message's user / chat / guild / channel /
   role; an empty one allows everyone. A thread counts as its channel (either may be listed).
5. In a DM only the user lists and `allow_dms` apply, and, while chats or guilds are
   allow-listed, only a member of one of them is answered (the adapter looks that up, see
   `Gate.admit`); a Telegram private chat that is listed itself is allowed too. Channel, guild
   and role lists belong to servers and groups.

Which list applies to which platform is the one table `_LISTS` below (the config names them per
platform: `telegram_chats`, `discord_guilds`...). A platform without lists there (the terminal)
has only the user lists and `allow_dms`.
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Awaitable, Callable, Collection
from dataclasses import dataclass
from typing import Final

from core import i18n
from core.config import AccessConfig, AccessList
from core.i18n import Language
from core.platform import Clock, SystemClock
from core.turns import Scope

# In a group, a refused person is told at most this often (a DM is always answered).
NOTICE_INTERVAL_S: Final = 3600.0
# How many people's last notice are remembered before the old ones are dropped.
NOTICES_KEPT: Final = 10_000


@dataclass(frozen=True, slots=True)
class Who:
    """Who wrote to the bot and where, as the adapter saw it.

    `scope`: where (its `chat_id` is the Telegram chat or the Discord channel, a thread's parent
    channel for a thread, whose id is `thread_id`). `guild_id`: the Discord server, if any.
    `role_ids`: the member's Discord roles there. `member_of`: for a DM, the allow-listed groups
    the person is a member of (filled by `Gate.admit` when needed)."""

    scope: Scope
    user_id: str
    is_private: bool
    guild_id: str | None = None
    role_ids: tuple[str, ...] = ()
    member_of: tuple[str, ...] = ()

    @property
    def platform(self) -> str:
        return self.scope.platform

    @property
    def user(self) -> str:
        """The person as `[access]` writes them: "telegram:123"."""
        return f"{self.scope.platform}:{self.user_id}"


class Reason(enum.Enum):
    USER_BLOCKED = "user blocked"
    PLACE_BLOCKED = "chat, guild or channel blocked"
    ROLE_BLOCKED = "role blocked"
    DMS_OFF = "DMs off"
    USER_NOT_ALLOWED = "user not allowed"
    PLACE_NOT_ALLOWED = "chat, guild or channel not allowed"
    ROLE_NOT_ALLOWED = "no allowed role"
    NOT_A_MEMBER = "DM from no member of an allowed chat or guild"


@dataclass(frozen=True, slots=True)
class Allowed:
    pass


ALLOWED: Final = Allowed()


@dataclass(frozen=True, slots=True)
class Refused:
    reason: Reason

    def line(self, language: Language) -> str:
        """The one short line the refused person gets."""
        match self.reason:
            case Reason.DMS_OFF:
                return i18n.ACCESS_NO_DMS(language)
            case Reason.PLACE_BLOCKED | Reason.PLACE_NOT_ALLOWED:
                return i18n.ACCESS_NOT_HERE(language)
            case _:
                return i18n.ACCESS_NOT_YOU(language)


@dataclass(frozen=True, slots=True)
class _Lists:
    """The ids of one allow or block list that apply on one platform, as strings."""

    chats: frozenset[str]  # the scope's chat (Telegram) or channel and thread (Discord)
    groups: frozenset[str]  # Discord guilds
    roles: frozenset[str]


# The config's lists per platform: (chats or channels, groups, roles).
_LISTS: Final[dict[str, tuple[str | None, str | None, str | None]]] = {
    "telegram": ("telegram_chats", None, None),
    "discord": ("discord_channels", "discord_guilds", "discord_roles"),
}
# Platforms whose threads are channels of their own (a Telegram forum topic is not a chat).
_THREADS_ARE_CHANNELS: Final = frozenset({"discord"})


def _lists(rules: AccessList, platform: str) -> _Lists:
    def ids(name: str | None) -> frozenset[str]:
        return frozenset(str(i) for i in getattr(rules, name)) if name else frozenset()

    chats, groups, roles = _LISTS.get(platform, (None, None, None))
    return _Lists(ids(chats), ids(groups), ids(roles))


def _places(scope: Scope) -> set[str]:
    """The ids a chat or channel list may name for `scope`."""
    if scope.thread_id and scope.platform in _THREADS_ARE_CHANNELS:
        return {scope.chat_id, scope.thread_id}
    return {scope.chat_id}


def is_owner(config: AccessConfig, platform: str, user_id: str) -> bool:
    return f"{platform}:{user_id}" in config.owners


def allowed_groups(config: AccessConfig, platform: str) -> frozenset[str]:
    """The allow-listed groups a DM's author must be a member of (none: no such rule): Discord
    guilds, Telegram chats."""
    lists = _lists(config.allow, platform)
    return lists.groups or (lists.chats if platform == "telegram" else frozenset())


def decide(config: AccessConfig, who: Who) -> Allowed | Refused:
    """Whether `who` may use the bot here (the rules are in the module's docstring)."""
    if is_owner(config, who.platform, who.user_id):
        return ALLOWED
    blocked, allowed = _lists(config.block, who.platform), _lists(config.allow, who.platform)
    places = _places(who.scope)
    roles = set(who.role_ids)
    if who.user in config.block.users:
        return Refused(Reason.USER_BLOCKED)
    if not who.is_private:
        if places & blocked.chats or (who.guild_id in blocked.groups):
            return Refused(Reason.PLACE_BLOCKED)
        if roles & blocked.roles:
            return Refused(Reason.ROLE_BLOCKED)
    elif not config.allow_dms:
        return Refused(Reason.DMS_OFF)
    if config.allow.users and who.user not in config.allow.users:
        return Refused(Reason.USER_NOT_ALLOWED)
    if who.is_private:
        groups = allowed_groups(config, who.platform)
        if groups and who.scope.chat_id not in groups and not groups & set(who.member_of):
            return Refused(Reason.NOT_A_MEMBER)
        return ALLOWED
    if _misses(allowed.chats, places) or _misses(allowed.groups, {who.guild_id or ""}):
        return Refused(Reason.PLACE_NOT_ALLOWED)
    if _misses(allowed.roles, roles):
        return Refused(Reason.ROLE_NOT_ALLOWED)
    return ALLOWED


def _misses(allowed: frozenset[str], present: Collection[str]) -> bool:
    """An allow list that is set and lists none of `present`."""
    return bool(allowed) and not allowed.intersection(present)


# Looks up which of the given groups (guild or chat ids) the DM's author is a member of.
MembershipLookup = Callable[[frozenset[str]], Awaitable[Collection[str]]]


class Gate:
    """`decide` for one adapter, plus what it needs around it: the membership lookup for DMs and
    the memory of who was told they are refused (in groups, once per `notice_interval_s`)."""

    def __init__(
        self,
        config: AccessConfig,
        clock: Clock | None = None,
        *,
        notice_interval_s: float = NOTICE_INTERVAL_S,
    ) -> None:
        self.config = config
        self._clock = clock or SystemClock()
        self._interval = notice_interval_s
        self._told: dict[tuple[str, str], float] = {}

    async def admit(self, who: Who, members: MembershipLookup | None = None) -> Allowed | Refused:
        """`decide`; a DM that only membership can allow asks `members` first."""
        verdict = decide(self.config, who)
        if isinstance(verdict, Refused) and verdict.reason is Reason.NOT_A_MEMBER and members:
            found = await members(allowed_groups(self.config, who.platform))
            verdict = decide(self.config, dataclasses.replace(who, member_of=tuple(found)))
        return verdict

    def should_tell(self, who: Who) -> bool:
        """Whether to say why `who` is refused: always in a DM; in a group once an interval per
        person, so a blocked person can't make the bot spam the chat."""
        if who.is_private:
            return True
        now = self._clock.monotonic()
        key = (who.platform, who.user_id)
        last = self._told.get(key)
        if last is not None and now - last < self._interval:
            return False
        if len(self._told) >= NOTICES_KEPT:
            self._told = {k: t for k, t in self._told.items() if now - t < self._interval}
        self._told[key] = now
        return True
