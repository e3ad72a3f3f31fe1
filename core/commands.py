"""Chat commands, written once: name, arguments, who may run it, and a handler returning plain data.

    adapter: platform event → `Context` (scope, author with `is_admin`, language) + command + args
    core:    `Commands.run` → permission check → handler → `Reply` (text to show), `Ask` (a turn)
             or `Retry` (a question asked again)
    adapter: renders the Reply, or streams the Ask or the Retry as a turn

Buttons are written here too (`core.buttons`): the adapter hands a press's data to
`Commands.press` with who pressed where; Stop and Retry each check, here, that the presser asked
the question or is an admin, and answer with a `Reply` for the presser alone or a `Retry`.

Adapters translate only: Discord builds its app commands from `REGISTRY`, Telegram its menus and
the terminal its `/name args` parsing (`parse`), and every sentence comes from `core.i18n`. A
command's `name` is its path: `"gpt bind"` is the `bind` subcommand of the `gpt` group. The
types a command is made of are in `core.command_types`, and exported here too.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass

from core import access, i18n, usage
from core.bindings import BindingInfo
from core.buttons import parse_press
from core.command_types import (
    Argument,
    Ask,
    Command,
    Context,
    Group,
    Handler,
    Permission,
    Reply,
    Retry,
)
from core.conversation import ConversationService
from core.errors import BadGptName, user_message
from core.i18n import Language, Text
from core.turns import Attachment, Author, Scope, Turn
from storage import StorageBusy, StoredAnswer

# The command types are used through this module too (`commands.Reply`, `commands.Command`).
__all__ = [
    "BIND", "GPT_ARGUMENT", "GROUPS", "REGISTRY", "Argument", "Ask", "Command", "Commands",
    "Context", "Group", "Handler", "Parsed", "Permission", "Reply", "Retry", "describe_binding",
    "find", "parse", "top_level",
]  # fmt: skip

logger = logging.getLogger(__name__)


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


async def _retry(commands: Commands, ctx: Context, args: Mapping[str, str]) -> Reply | Retry:
    return await commands.retry(ctx, None)


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
        attachment=Argument(
            "file",
            Text("file", "文件"),
            Text("A picture or file to ask about", "要一起发送的图片或文件"),
        ),
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
        reads_admin=True,
    ),
    Command(
        "retry",
        Text("Ask the last question here again", "重新回答这里的上一个问题"),
        _retry,
        reads_admin=True,
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
    ) -> Reply | Ask | Retry:
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

    def may_control(self, ctx: Context, asker_id: str | None) -> bool:
        """Stop and Retry: the person who asked, an admin of the scope, or an owner."""
        author = ctx.author
        return author.id == asker_id or author.is_admin or self.is_owner(ctx.scope, author)

    async def press(self, ctx: Context, data: str | None) -> Reply | Retry:
        """A button pressed: `data` as the platform gave it back. A `Reply` is for the presser
        alone (empty: nothing to say, the message itself shows what happened)."""
        pressed = parse_press(data)
        if pressed is None:
            return Reply(i18n.CANNOT_RETRY(ctx.language), private=True)
        try:
            if pressed.action == "stop":
                return await self.stop(ctx, pressed.answer_id)
            return await self.retry(ctx, pressed.answer_id)
        except StorageBusy as exc:
            logger.error("a %s press in %s not handled: %s", pressed.action, ctx.scope, exc)
            return Reply(i18n.STORAGE_BUSY(ctx.language), private=True)

    async def stop(self, ctx: Context, answer_id: int) -> Reply:
        """Stop an answer streaming in this process: its upstream request is cancelled at once,
        and the turn shows and stores what arrived as `stopped`."""
        running = self.service.running.get(answer_id)
        if running is None or not _same_chat(running.scope, ctx.scope):
            return Reply(i18n.ANSWER_ENDED(ctx.language), private=True)
        if not self.may_control(ctx, running.asker_id):
            return Reply(i18n.NOT_YOURS_TO_STOP(ctx.language), private=True)
        running.stop()
        logger.info("%s stopped answer %s in %s", ctx.author.id, answer_id, running.scope)
        return Reply("", private=True)

    async def retry(self, ctx: Context, answer_id: int | None) -> Reply | Retry:
        """Ask again the question answer `answer_id` answered (None: the scope's latest)."""
        repo = self.service.repo
        if answer_id is None:
            answer = await repo.latest_answer(ctx.scope)
            if answer is None:
                return Reply(i18n.NOTHING_TO_RETRY(ctx.language), private=True)
        else:
            answer = await repo.stored_answer(answer_id)
        if answer is None or not _same_chat(answer.scope, ctx.scope):
            return Reply(i18n.CANNOT_RETRY(ctx.language), private=True)
        if not self.may_control(ctx, answer.asker_id):
            return Reply(i18n.NOT_YOURS_TO_RETRY(ctx.language), private=True)
        # One still being stored (or a /retry while it streams) is retried once it has ended:
        # a retry waits for the scope's lock, and checks again then.
        if not answer.can_retry and answer.status != "streaming":
            return Reply(i18n.CANNOT_RETRY(ctx.language), private=True)
        return _retry_of(answer, ctx)

    async def suggestions(self, ctx: Context, argument: Argument, current: str) -> list[str]:
        """Completions for an argument being typed (Discord's autocomplete)."""
        if not argument.suggests_bound_gpts or ctx.group_id is None:
            return []
        wanted = current.strip().lower()
        gpt_ids = await self.service.bound_gpts(ctx.scope.platform, ctx.group_id)
        return [gpt_id for gpt_id in gpt_ids if wanted in gpt_id.lower()]


def _same_chat(stored: Scope, pressed: Scope) -> bool:
    """A button belongs to its chat; its topic or thread is the stored one (a Telegram message
    too old to be read no longer says which topic it is in)."""
    return (stored.platform, stored.chat_id) == (pressed.platform, pressed.chat_id)


def _retry_of(answer: StoredAnswer, ctx: Context) -> Retry:
    asker = Author(answer.asker_id or "", answer.asker_name or "")
    files = tuple(
        Attachment(file.name, file.mime, file.size, file.reference)
        for file in answer.question_attachments
    )
    turn = Turn(
        answer.scope,
        asker,
        answer.question,
        ctx.is_private,
        language=ctx.language,
        attachments=files,
    )
    return Retry(answer.id, turn, answer.question_message_ids)
