"""The access rules (core.access): each list, blocked over allowed, DMs, owners, membership for
DMs, and how often a refused person is told (with a virtual clock)."""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

import pytest

from core.access import ALLOWED, Gate, Reason, Refused, Who, decide
from core.config import AccessConfig, parse_config
from core.turns import Scope
from fakes.clock import FakeClock

TG_GROUP = Scope("telegram", "-1001")
TG_TOPIC = Scope("telegram", "-1001", "7")
TG_DM = Scope("telegram", "10")
DC_CHANNEL = Scope("discord", "500")
DC_THREAD = Scope("discord", "500", "501")
DC_DM = Scope("discord", "900")


def access(**raw: Any) -> AccessConfig:
    return parse_config({"access": raw}, {}).access


def in_group(user: str = "10", scope: Scope = TG_GROUP, **kw: Any) -> Who:
    return Who(scope, user, is_private=False, **kw)


def in_guild(user: str = "20", scope: Scope = DC_CHANNEL, **kw: Any) -> Who:
    return Who(scope, user, is_private=False, guild_id=kw.pop("guild_id", "1"), **kw)


def dm(user: str = "10", scope: Scope = TG_DM, **kw: Any) -> Who:
    return Who(scope, user, is_private=True, **kw)


def reason(config: AccessConfig, who: Who) -> Reason | None:
    verdict = decide(config, who)
    return verdict.reason if isinstance(verdict, Refused) else None


def test_no_lists_allow_everyone_everywhere() -> None:
    config = access()
    for who in (in_group(), in_guild(role_ids=("3",)), dm(), dm("20", DC_DM)):
        assert decide(config, who) == ALLOWED


def test_user_lists() -> None:
    blocked = access(block={"users": ["telegram:10"]})
    assert reason(blocked, in_group("10")) is Reason.USER_BLOCKED
    assert reason(blocked, dm("10")) is Reason.USER_BLOCKED
    assert reason(blocked, in_group("11")) is None
    # The same id on another platform is another person.
    assert reason(blocked, in_guild("10")) is None
    allowed = access(allow={"users": ["telegram:10", "discord:20"]})
    assert reason(allowed, in_group("10")) is None
    assert reason(allowed, in_guild("20")) is None
    assert reason(allowed, in_group("11")) is Reason.USER_NOT_ALLOWED
    assert reason(allowed, dm("11")) is Reason.USER_NOT_ALLOWED


def test_telegram_chat_lists_cover_the_chat_and_its_topics() -> None:
    blocked = access(block={"telegram_chats": [-1001]})
    assert reason(blocked, in_group()) is Reason.PLACE_BLOCKED
    assert reason(blocked, in_group(scope=TG_TOPIC)) is Reason.PLACE_BLOCKED
    assert reason(blocked, in_group(scope=Scope("telegram", "-1002"))) is None
    allowed = access(allow={"telegram_chats": [-1001]})
    assert reason(allowed, in_group(scope=TG_TOPIC)) is None
    # A topic is not a chat: its id never matches one.
    topic_id_listed = access(allow={"telegram_chats": [7]}, block={"telegram_chats": [7]})
    assert reason(topic_id_listed, in_group(scope=TG_TOPIC)) is Reason.PLACE_NOT_ALLOWED
    assert reason(allowed, in_group(scope=Scope("telegram", "-1002"))) is Reason.PLACE_NOT_ALLOWED
    # Discord's lists say nothing about Telegram, and the other way round.
    assert reason(access(allow={"discord_channels": [1]}), in_group()) is None
    assert reason(allowed, in_guild()) is None


def test_discord_guild_channel_and_thread_lists() -> None:
    assert reason(access(block={"discord_guilds": [1]}), in_guild()) is Reason.PLACE_BLOCKED
    assert reason(access(allow={"discord_guilds": [2]}), in_guild()) is Reason.PLACE_NOT_ALLOWED
    assert reason(access(allow={"discord_guilds": [1]}), in_guild()) is None
    channels = access(allow={"discord_channels": [500]})
    assert reason(channels, in_guild(scope=DC_THREAD)) is None  # a thread of a listed channel
    assert reason(channels, in_guild(scope=Scope("discord", "600"))) is Reason.PLACE_NOT_ALLOWED
    thread_only = access(allow={"discord_channels": [501]})
    assert reason(thread_only, in_guild(scope=DC_THREAD)) is None
    assert reason(thread_only, in_guild()) is Reason.PLACE_NOT_ALLOWED
    blocked_thread = access(block={"discord_channels": [501]})
    assert reason(blocked_thread, in_guild(scope=DC_THREAD)) is Reason.PLACE_BLOCKED
    assert reason(blocked_thread, in_guild()) is None


def test_discord_roles_apply_in_servers_only() -> None:
    blocked = access(block={"discord_roles": [3]})
    assert reason(blocked, in_guild(role_ids=("1", "3"))) is Reason.ROLE_BLOCKED
    assert reason(blocked, in_guild(role_ids=("1",))) is None
    allowed = access(allow={"discord_roles": [4, 5]})
    assert reason(allowed, in_guild(role_ids=("5",))) is None
    assert reason(allowed, in_guild(role_ids=("1",))) is Reason.ROLE_NOT_ALLOWED
    assert reason(allowed, in_guild()) is Reason.ROLE_NOT_ALLOWED
    assert reason(allowed, dm("20", DC_DM)) is None


def test_blocked_wins_over_allowed_and_every_allow_list_must_hold() -> None:
    both = access(
        allow={"users": ["discord:20"], "discord_roles": [4], "discord_guilds": [1]},
        block={"users": ["discord:20"]},
    )
    assert reason(both, in_guild("20", role_ids=("4",))) is Reason.USER_BLOCKED
    config = access(
        allow={"users": ["discord:20"], "discord_roles": [4]}, block={"discord_roles": [9]}
    )
    assert reason(config, in_guild("20", role_ids=("4",))) is None
    assert reason(config, in_guild("20", role_ids=("4", "9"))) is Reason.ROLE_BLOCKED
    assert reason(config, in_guild("20")) is Reason.ROLE_NOT_ALLOWED  # listed user, no role
    assert reason(config, in_guild("21", role_ids=("4",))) is Reason.USER_NOT_ALLOWED
    place = access(allow={"telegram_chats": [-1001]}, block={"telegram_chats": [-1001]})
    assert reason(place, in_group()) is Reason.PLACE_BLOCKED


def test_dms_off_and_dms_while_places_are_allow_listed() -> None:
    off = access(allow_dms=False)
    assert reason(off, dm()) is Reason.DMS_OFF
    assert reason(off, dm("20", DC_DM)) is Reason.DMS_OFF
    assert reason(off, in_group()) is None
    guilds = access(allow={"discord_guilds": [1, 2]})
    assert reason(guilds, dm("20", DC_DM)) is Reason.NOT_A_MEMBER
    assert reason(guilds, dm("20", DC_DM, member_of=("2",))) is None
    assert reason(guilds, dm("20", DC_DM, member_of=("3",))) is Reason.NOT_A_MEMBER
    chats = access(allow={"telegram_chats": [-1001, 10]})
    assert reason(chats, dm("10")) is None  # the private chat is listed itself
    assert reason(chats, dm("11", Scope("telegram", "11"))) is Reason.NOT_A_MEMBER
    assert reason(chats, dm("11", Scope("telegram", "11"), member_of=("-1001",))) is None
    # Channel and role lists belong to servers: DMs don't need them.
    assert reason(access(allow={"discord_channels": [500]}), dm("20", DC_DM)) is None


def test_owners_are_never_refused() -> None:
    config = access(
        owners=["telegram:10", "discord:20"],
        allow_dms=False,
        allow={"users": ["telegram:99"], "discord_roles": [4]},
        block={"users": ["telegram:10"], "telegram_chats": [-1001], "discord_guilds": [1]},
    )
    assert decide(config, in_group("10")) == ALLOWED
    assert decide(config, dm("10")) == ALLOWED
    assert decide(config, in_guild("20")) == ALLOWED
    assert reason(config, in_group("11")) is Reason.PLACE_BLOCKED
    assert reason(config, dm("11", Scope("telegram", "11"))) is Reason.DMS_OFF


@pytest.mark.asyncio
async def test_gate_asks_membership_only_when_it_decides() -> None:
    gate = Gate(access(allow={"discord_guilds": [1, 2]}))
    asked: list[Collection[str]] = []

    async def members(groups: Collection[str]) -> list[str]:
        asked.append(set(groups))
        return ["2"]

    assert await gate.admit(dm("20", DC_DM), members) == ALLOWED
    assert asked == [{"1", "2"}]
    assert await gate.admit(in_guild(), members) == ALLOWED  # in a server: no lookup
    blocked = Gate(access(allow={"discord_guilds": [1]}, block={"users": ["discord:20"]}))
    assert await blocked.admit(dm("20", DC_DM), members) == Refused(Reason.USER_BLOCKED)
    assert len(asked) == 1


def test_a_refused_person_is_told_once_an_hour_in_groups_and_always_in_dms() -> None:
    clock = FakeClock()
    gate = Gate(access(block={"users": ["telegram:10"]}), clock)
    assert gate.should_tell(in_group("10"))
    clock.now += 60
    assert not gate.should_tell(in_group("10"))
    assert not gate.should_tell(in_group("10", scope=Scope("telegram", "-1002")))  # per person
    assert gate.should_tell(in_group("11"))  # someone else
    assert all(gate.should_tell(dm("10")) for _ in range(3))
    clock.now += 3600 - 60
    assert gate.should_tell(in_group("10"))
    assert not gate.should_tell(in_group("10"))


def test_refusal_lines_say_why_in_both_languages() -> None:
    assert Refused(Reason.DMS_OFF).line("en").startswith("⛔ This bot doesn't answer private")
    assert Refused(Reason.PLACE_NOT_ALLOWED).line("zh") == "⛔ 本机器人未在这里启用。"
    assert Refused(Reason.ROLE_NOT_ALLOWED).line("en") == "⛔ You can't use this bot."
