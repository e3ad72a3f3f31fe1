"""The command registry (core.commands): parsing, who may run what, and the handlers' replies,
against the real conversation service on a SQLite file."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path

import pytest
import pytest_asyncio

from core import commands, i18n
from core.app import open_app
from core.bindings import BindingInfo
from core.commands import Ask, Context, Parsed, Reply, describe_binding
from core.config import parse_config
from core.turns import Author, Scope
from fakes.gpts import FakeGpts

GROUP = Scope("test", "group")
DM = Scope("test", "dm-alice")
MEMBER = Author("1", "Alice")
ADMIN = Author("9", "Admin", is_admin=True)
OWNER = Author("42", "Olga")


@pytest_asyncio.fixture
async def runner(fake_gpts: FakeGpts, tmp_path: Path) -> AsyncIterator[commands.Commands]:
    config = parse_config(
        {
            "gpts": {"base_url": fake_gpts.base_url, "default_gpt": "g-B3hgivKK9"},
            "storage": {"url": f"sqlite+aiosqlite:///{tmp_path / 'bot.db'}"},
            "access": {"owners": ["test:42"]},
        },
        {},
    )
    async with open_app(config) as app:
        yield commands.Commands(app.service)


async def typed(
    runner: commands.Commands, line: str, author: Author, scope: Scope = GROUP
) -> Reply | Ask:
    name, _, rest = line.removeprefix("/").partition(" ")
    context = Context(scope, author, scope == DM, "en", group_id="guild", bot_mention="@bot")
    parsed = commands.parse(name, rest, "en")
    assert parsed is not None
    if isinstance(parsed, Reply):
        return parsed
    return await runner.run(context, parsed.command, parsed.args)


def test_parse_finds_commands_groups_and_arguments() -> None:
    bind = commands.find("gpt bind")
    assert bind is not None
    assert commands.parse("gpt", "bind  https://chatgpt.com/g/g-x y", "en") == Parsed(
        bind, {"gpt": "https://chatgpt.com/g/g-x y"}
    )
    assert commands.parse("GPT", "", "en") == Parsed(commands.find("gpt info"), {})  # type: ignore[arg-type]
    assert commands.parse("chat", "what is   up?", "en") == Parsed(
        commands.find("chat"),  # type: ignore[arg-type]
        {"prompt": "what is   up?"},
    )
    assert commands.parse("nope", "", "en") is None
    assert commands.parse("gpt", "frobnicate", "en") == Reply(
        "Usage: /gpt bind <GPT link or id> · /gpt unbind · /gpt info", private=True
    )
    assert commands.parse("reset", "now please", "zh") == Reply("用法：/reset", private=True)


def test_every_command_is_described_in_both_languages() -> None:
    names = [command.name for command in commands.REGISTRY]
    assert names == [
        "help",
        "chat",
        "gpt bind",
        "gpt unbind",
        "gpt info",
        "reset",
        "usage",
        "retry",
    ]
    for command in commands.REGISTRY:
        assert command.description.en and command.description.zh
        for argument in command.arguments:
            assert argument.description.en and argument.description.zh
    assert [name for name, _ in commands.top_level()] == [
        "help",
        "chat",
        "gpt",
        "reset",
        "usage",
        "retry",
    ]


@pytest.mark.asyncio
async def test_admin_commands_are_refused_to_members_with_the_core_sentence(
    runner: commands.Commands,
) -> None:
    refused = await typed(runner, "/gpt bind g-AAAAAAAAA", MEMBER)
    assert refused == Reply(i18n.NOT_ADMIN("en", usage="/gpt bind"), private=True)
    assert await typed(runner, "/gpt unbind", MEMBER) == Reply(
        i18n.NOT_ADMIN("en", usage="/gpt unbind"), private=True
    )
    assert (await runner.service.binding(GROUP)).is_default  # type: ignore[union-attr]

    bound = await typed(runner, "/gpt bind g-AAAAAAAAA", ADMIN)
    assert bound == Reply("✅ Admin bound g-AAAAAAAAA here.\nhttps://chatgpt.com/g/g-AAAAAAAAA")
    # An owner named in [access] owners is an admin everywhere; anyone binds in their own DM.
    assert isinstance(await typed(runner, "/gpt bind g-BBBBBBBBB", OWNER), Reply)
    assert (await runner.service.binding(GROUP)).gpt_id == "g-BBBBBBBBB"  # type: ignore[union-attr]
    await typed(runner, "/gpt bind g-CCCCCCCCC", MEMBER, scope=DM)
    assert (await runner.service.binding(DM)).gpt_id == "g-CCCCCCCCC"  # type: ignore[union-attr]


@pytest.mark.asyncio
async def test_bind_unbind_info_and_bad_names(runner: commands.Commands) -> None:
    info = await typed(runner, "/gpt info", MEMBER)
    assert isinstance(info, Reply) and info.private
    assert "g-B3hgivKK9" in info.text and "default GPT" in info.text

    bad = await typed(runner, "/gpt bind https://example.com/g/x", ADMIN)
    assert isinstance(bad, Reply) and bad.private
    assert bad.text.endswith("Usage: /gpt bind <GPT link or id>")
    assert "is not a GPT" in bad.text

    await typed(runner, "/gpt bind g-AAAAAAAAA", ADMIN)
    info = await typed(runner, "/gpt info", MEMBER)
    assert isinstance(info, Reply) and "Bound by Admin on " in info.text
    unbound = await typed(runner, "/gpt unbind", ADMIN)
    assert isinstance(unbound, Reply) and unbound.text.startswith("✅ Admin removed the binding.")
    assert "default GPT" in unbound.text
    assert await typed(runner, "/gpt unbind", ADMIN) == Reply(
        i18n.NOTHING_BOUND("en"), private=True
    )


@pytest.mark.asyncio
async def test_chat_asks_and_needs_a_prompt(runner: commands.Commands) -> None:
    assert await typed(runner, "/chat hello there", MEMBER) == Ask("hello there")
    assert await typed(runner, "/chat", MEMBER) == Reply("Usage: /chat <question>", private=True)


@pytest.mark.asyncio
async def test_help_lists_exactly_the_registry(runner: commands.Commands) -> None:
    help_reply = await typed(runner, "/help", MEMBER)
    assert isinstance(help_reply, Reply)
    listed = [line.split(" — ")[0] for line in help_reply.text.splitlines() if line.startswith("/")]
    assert listed == [command.usage("en") for command in commands.REGISTRY]
    assert "Mention me (@bot)" in help_reply.text
    assert "/gpt bind <GPT link or id> — Choose the GPT that answers here (admins only)" in (
        help_reply.text
    )


@pytest.mark.asyncio
async def test_owner_only_commands_need_an_owner(runner: commands.Commands) -> None:
    async def handler(
        runner: commands.Commands, context: Context, args: object
    ) -> Reply:  # pragma: no cover - refused before it runs for others
        return Reply("secret figures")

    command = commands.Command(
        "owners", i18n.Text("x", "x"), handler, permission=commands.Permission.OWNER
    )
    context = Context(GROUP, ADMIN, False, "zh")
    assert await runner.run(context, command) == Reply(
        i18n.OWNERS_ONLY("zh", usage="/owners"), private=True
    )
    assert await runner.run(Context(GROUP, OWNER, False, "en"), command) == Reply("secret figures")


def test_describe_binding() -> None:
    when = datetime(2025, 1, 2, 10, 30)
    own = BindingInfo(
        "g-B3hgivKK9", "gpt-4-gizmo-g-B3hgivKK9", Scope("telegram", "-1"), "Ann", when, False
    )
    text = describe_binding(own, "en")
    assert "g-B3hgivKK9" in text and "https://chatgpt.com/g/g-B3hgivKK9" in text
    assert "Bound by Ann on 2025-01-02 10:30 UTC." in text
    inherited = BindingInfo(
        "g-B3hgivKK9", "gpt-4-gizmo-g-B3hgivKK9", Scope("telegram", "-1"), "Ann", when, True
    )
    assert "Inherited from the parent chat's binding by Ann" in describe_binding(inherited, "en")
    default = BindingInfo("g-B3hgivKK9", "gpt-4-gizmo-g-B3hgivKK9", None, None, None, False)
    assert "default GPT" in describe_binding(default, "en")
    assert "/gpt bind" in describe_binding(None, "en")


def test_describe_binding_in_chinese() -> None:
    when = datetime(2025, 1, 2, 10, 30)
    gpt, model = "g-B3hgivKK9", "gpt-4-gizmo-g-B3hgivKK9"
    own = BindingInfo(gpt, model, Scope("telegram", "-1"), "Ann", when, False)
    assert describe_binding(own, "zh").splitlines() == [
        "🤖 GPT: g-B3hgivKK9 — https://chatgpt.com/g/g-B3hgivKK9",
        "模型：gpt-4-gizmo-g-B3hgivKK9",
        "已由 Ann 于 2025-01-02 10:30 UTC 绑定。",
    ]
    unknown = BindingInfo(gpt, model, Scope("telegram", "-1"), None, None, False)
    assert describe_binding(unknown, "zh").endswith("\n已绑定。")
    inherited = BindingInfo(gpt, model, Scope("telegram", "-1"), "Ann", when, True)
    assert describe_binding(inherited, "zh").endswith(
        "\n沿用上级频道或群组由 Ann 于 2025-01-02 10:30 UTC 设置的绑定。"
    )
    default = BindingInfo(gpt, model, None, None, None, False)
    assert describe_binding(default, "zh").endswith("\n这是机器人的默认 GPT（这里没有绑定）。")
    assert describe_binding(None, "zh").startswith("⚠️ 这里还没有绑定 GPT。")
