"""Chat commands, written once: name, arguments, who may run it, and a handler returning plain data.

    adapter: platform event → `Context` (scope, author with `is_admin`, language) + command + args
    core:    `Commands.run` → permission check → handler → `Reply` (text to show) or `Ask` (a turn)
    adapter: renders the Reply, or streams the Ask as a turn

Adapters translate only: Discord builds its app commands from `REGISTRY`, Telegram its menus and
the terminal its `/name args` parsing (`parse`), and every sentence comes from `core.i18n`. A
command's `name` is its path: `"gpt bind"` is the `bind` subcommand of the `gpt` group.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass

from core import access, i18n, usage
from core.conversation import BindingInfo, ConversationService
from core.errors import BadGptName, user_message
from core.i18n import Language, Text
from core.tables import Table
from core.turns import Author, Scope
from storage import StorageBusy

logger = logging.getLogger(__name__)


class Permission(enum.Enum):
    ANYONE = "anyone"
    ADMIN = "admin"  # admins of the scope (everyone in a private chat) and owners
    OWNER = "owner"  # the bot's owners ([access] owners)


@dataclass(frozen=True, slots=True)
class Context:
    """Who runs a command and where, as the adapter saw it. `group_id`: the server or group the
    scope belongs to; `bot_mention`: how people address the bot in a shared chat ("@mybot")."""

    scope: Scope
    author: Author
    is_private: bool
    language: Language
    group_id: str | None = None
    bot_mention: str = ""


@dataclass(frozen=True, slots=True)
class Reply:
    """What a command answers. `private`: only the person who ran it needs to see it (Discord
    answers ephemerally; chats without that answer as usual). `table`: figures shown under the
    text (a Discord embed, a Telegram `pre` block, aligned columns in the terminal).
    `confidential`: no one else may see it: where the platform can't answer only the asker in
    this chat (a Telegram group), the adapter sends it in a private chat with them instead."""

    text: str
    private: bool = False
    table: Table | None = None
    confidential: bool = False


@dataclass(frozen=True, slots=True)
class Ask:
    """The command is a question for the GPT: the adapter streams `text` as a turn."""

    text: str


Handler = Callable[["Commands", Context, Mapping[str, str]], Awaitable[Reply | Ask]]


@dataclass(frozen=True, slots=True)
class Argument:
    name: str
    placeholder: Text  # in usage lines: /gpt bind <GPT link or id>
    description: Text
    # Offer the GPTs already bound in this server or group as completions.
    suggests_bound_gpts: bool = False


@dataclass(frozen=True, slots=True)
class Command:
    name: str
    description: Text
    handler: Handler
    arguments: tuple[Argument, ...] = ()
    permission: Permission = Permission.ANYONE
    # Anyone may run it, but admins see more (/usage): adapters ask whether the author is one.
    admin_view: bool = False

    @property
    def path(self) -> tuple[str, ...]:
        return tuple(self.name.split())

    @property
    def asks_admin(self) -> bool:
        """Whether adapters must find out if the author is an admin here (`Author.is_admin`)."""
        return self.permission is not Permission.ANYONE or self.admin_view

    def usage(self, language: Language) -> str:
        placeholders = (f"<{argument.placeholder(language)}>" for argument in self.arguments)
        return " ".join([f"/{self.name}", *placeholders])


@dataclass(frozen=True, slots=True)
class Group:
    """Commands under one name (`/gpt bind`, `/gpt info`); `default` runs for the bare name."""

    name: str
    description: Text
    default: str


# --- the handlers --------------------------------------------------------------------------------


async def _help(commands: Commands, ctx: Context, args: Mapping[str, str]) -> Reply:
    language = ctx.language
    how = (
        i18n.HELP_HOW_PRIVATE(language)
        if ctx.is_private
        else i18n.HELP_HOW_GROUP(language, mention=ctx.bot_mention or "@bot")
    )
    info = await commands.service.binding(ctx.scope)
    here = (
        i18n.HELP_HERE(language, gpt_id=info.gpt_id, url=info.url)
        if info
        else i18n.HELP_NONE_HERE(language)
    )
    lines = [i18n.HELP_INTRO(language), how, here, ""]
    for command in REGISTRY:
        line = f"{command.usage(language)} — {command.description(language)}"
        if command.permission is Permission.ADMIN and not ctx.is_private:
            line += i18n.HELP_ADMINS_ONLY(language)
        lines.append(line)
    return Reply("\n".join(lines))


async def _chat(commands: Commands, ctx: Context, args: Mapping[str, str]) -> Ask:
    return Ask(args["prompt"])


async def _reset(commands: Commands, ctx: Context, args: Mapping[str, str]) -> Reply:
    await commands.service.reset(ctx.scope)
    return Reply(i18n.RESET_DONE(ctx.language))


async def _bind(commands: Commands, ctx: Context, args: Mapping[str, str]) -> Reply:
    language = ctx.language
    try:
        info = await commands.service.bind(ctx.scope, args["gpt"], ctx.author, ctx.group_id)
    except BadGptName as exc:
        usage = i18n.USAGE(language, usage=BIND.usage(language))
        return Reply(f"{user_message(exc, language)}\n{usage}", private=True)
    return Reply(
        i18n.BOUND(language, name=ctx.author.display_name, gpt_id=info.gpt_id, url=info.url)
    )


async def _unbind(commands: Commands, ctx: Context, args: Mapping[str, str]) -> Reply:
    if not await commands.service.unbind(ctx.scope):
        return Reply(i18n.NOTHING_BOUND(ctx.language), private=True)
    now = describe_binding(await commands.service.binding(ctx.scope), ctx.language)
    return Reply(i18n.UNBOUND(ctx.language, name=ctx.author.display_name, info=now))


async def _info(commands: Commands, ctx: Context, args: Mapping[str, str]) -> Reply:
    info = await commands.service.binding(ctx.scope)
    return Reply(describe_binding(info, ctx.language), private=True)


async def _usage(commands: Commands, ctx: Context, args: Mapping[str, str]) -> Reply:
    is_owner = ctx.author.is_owner or commands.is_owner(ctx.scope, ctx.author)
    service = commands.service
    text, table = await usage.report(
        service.repo,
        service.quotas.now(),
        ctx.scope,
        ctx.author.id,
        language=ctx.language,
        sees_chat=not ctx.is_private and (ctx.author.is_admin or is_owner),
        sees_bot=is_owner,
    )
    return Reply(text, private=True, table=table, confidential=True)


def describe_binding(info: BindingInfo | None, language: Language) -> str:
    """Which GPT answers in a scope, and where that choice comes from (/gpt info)."""
    if info is None:
        return i18n.NO_GPT_BOUND(language)
    lines = [f"🤖 GPT: {info.gpt_id} — {info.url}", i18n.MODEL(language, model=info.model)]
    on = i18n.ON(language, time=f"{info.bound_at:%Y-%m-%d %H:%M}") if info.bound_at else ""
    by = i18n.BY(language, name=info.bound_by_name) if info.bound_by_name else ""
    if info.is_default:
        lines.append(i18n.DEFAULT_GPT(language))
    elif info.inherited:
        lines.append(i18n.INHERITED(language, by=by, on=on))
    else:
        lines.append(i18n.BOUND_HERE(language, by=by, on=on))
    return "\n".join(lines)


# --- the registry --------------------------------------------------------------------------------

GPT_ARGUMENT = Argument(
    "gpt",
    Text("GPT link or id", "GPT 链接或 id"),
    Text(
        "A GPT link (https://chatgpt.com/g/g-...) or id (g-...)",
        "GPT 链接（https://chatgpt.com/g/g-...）或 id（g-...）",
    ),
    suggests_bound_gpts=True,
)
BIND = Command(
    "gpt bind",
    Text("Choose the GPT that answers here", "选择在这里回答的 GPT"),
    _bind,
    (GPT_ARGUMENT,),
    Permission.ADMIN,
)
REGISTRY: tuple[Command, ...] = (
    Command(
        "help",
        Text(
            "What this bot does and which GPT answers here", "机器人的用法，以及这里由哪个 GPT 回答"
        ),
        _help,
    ),
    Command(
        "chat",
        Text("Ask the GPT", "向 GPT 提问"),
        _chat,
        (Argument("prompt", Text("question", "问题"), Text("What to ask", "要问的问题")),),
    ),
    BIND,
    Command(
        "gpt unbind",
        Text("Remove the GPT bound here", "解除这里绑定的 GPT"),
        _unbind,
        permission=Permission.ADMIN,
    ),
    Command("gpt info", Text("Show which GPT answers here", "查看这里由哪个 GPT 回答"), _info),
    Command("reset", Text("Start a new conversation", "开始新对话"), _reset),
    Command(
        "usage",
        Text("Your turns and tokens today and this month", "你今天和本月的对话轮次与 tokens"),
        _usage,
        admin_view=True,
    ),
)
GROUPS: tuple[Group, ...] = (
    Group("gpt", Text("Show or choose the GPT that answers here", "查看或选择这里的 GPT"), "info"),
)


def top_level() -> list[tuple[str, Text]]:
    """The names people type first, with their descriptions, in registry order (menus)."""
    seen: dict[str, Text] = {}
    groups = {group.name: group for group in GROUPS}
    for command in REGISTRY:
        head = command.path[0]
        if head not in seen:
            seen[head] = groups[head].description if head in groups else command.description
    return list(seen.items())


@dataclass(frozen=True, slots=True)
class Parsed:
    command: Command
    args: Mapping[str, str]


def parse(name: str, rest: str, language: Language) -> Parsed | Reply | None:
    """A typed command (`name` without "/", `rest` the text after it) as a command and its
    arguments, a usage Reply when they don't fit, or None for a name the registry lacks. The last
    argument takes the rest of the line."""
    name = name.lower()
    words = rest.split(maxsplit=1)
    group = next((g for g in GROUPS if g.name == name), None)
    if group is not None:
        sub = words[0].lower() if words else group.default
        rest = words[1] if len(words) > 1 else ""
        command = find(f"{name} {sub}")
        if command is None:
            usages = " · ".join(c.usage(language) for c in REGISTRY if c.path[0] == name)
            return Reply(i18n.USAGE(language, usage=usages), private=True)
    else:
        command = find(name)
        if command is None:
            return None
    if not command.arguments:
        usage = Reply(i18n.USAGE(language, usage=command.usage(language)), private=True)
        return usage if rest.strip() else Parsed(command, {})
    # Missing arguments stay missing: `Commands.run` answers with the usage.
    values = rest.split(maxsplit=len(command.arguments) - 1)
    names = [argument.name for argument in command.arguments]
    return Parsed(command, dict(zip(names, values, strict=False)))


def find(name: str) -> Command | None:
    return next((command for command in REGISTRY if command.name == name), None)


class Commands:
    """Runs registry commands against the conversation service."""

    def __init__(self, service: ConversationService) -> None:
        self.service = service

    def may_run(self, command: Command, ctx: Context) -> bool:
        is_owner = ctx.author.is_owner or self.is_owner(ctx.scope, ctx.author)
        match command.permission:
            case Permission.ANYONE:
                return True
            case Permission.ADMIN:
                return ctx.is_private or ctx.author.is_admin or is_owner
            case Permission.OWNER:
                return is_owner

    def is_owner(self, scope: Scope, author: Author) -> bool:
        return access.is_owner(self.service.config.access, scope.platform, author.id)

    async def run(
        self, ctx: Context, command: Command, args: Mapping[str, str] | None = None
    ) -> Reply | Ask:
        """Check who may run `command` here, then run it."""
        if not self.may_run(command, ctx):
            refusal = i18n.OWNERS_ONLY if command.permission is Permission.OWNER else i18n.NOT_ADMIN
            return Reply(refusal(ctx.language, usage=f"/{command.name}"), private=True)
        args = args or {}
        if any(not args.get(argument.name, "").strip() for argument in command.arguments):
            return Reply(i18n.USAGE(ctx.language, usage=command.usage(ctx.language)), private=True)
        try:
            return await command.handler(self, ctx, args)
        except StorageBusy as exc:
            logger.error("/%s in %s not run: %s", command.name, ctx.scope, exc)
            return Reply(i18n.STORAGE_BUSY(ctx.language), private=True)

    async def suggestions(self, ctx: Context, argument: Argument, current: str) -> list[str]:
        """Completions for an argument being typed (Discord's autocomplete)."""
        if not argument.suggests_bound_gpts or ctx.group_id is None:
            return []
        wanted = current.strip().lower()
        gpt_ids = await self.service.bound_gpts(ctx.scope.platform, ctx.group_id)
        return [gpt_id for gpt_id in gpt_ids if wanted in gpt_id.lower()]
