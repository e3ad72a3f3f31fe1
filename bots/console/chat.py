"""`gptsbot chat`: the terminal's reply channel, its command loop and its CLI subcommand."""

from __future__ import annotations

import argparse
import asyncio
import getpass
import os
import sys
from typing import TextIO

from core import commands, i18n
from core.app import open_app
from core.config import Config
from core.conversation import ConversationService
from core.errors import GptsBotError, user_message
from core.i18n import Language, Text, language_for
from core.interrupted import interrupted_answers
from core.platform import MessageRef
from core.platforms import AddCommand, Platform
from core.streaming import StreamingReply
from core.turns import Author, Scope, Turn
from storage import StorageBusy

NAME = "console"
QUIT_COMMANDS = ("/quit", "/exit")

# What only the terminal says.
WELCOME = Text(
    "Type a message to talk to the GPT. /help lists the commands; /quit or Ctrl-D leaves.",
    "输入消息即可和 GPT 对话。/help 列出命令；/quit 或 Ctrl-D 退出。",
)
TALKING_TO = Text("Talking to {url}", "正在和 {url} 对话")


class TerminalChannel:
    """A reply channel that can only append: each edit prints what the text gained."""

    max_chars = sys.maxsize

    def __init__(self, out: TextIO) -> None:
        self._out = out
        self._printed = ""

    def measure(self, text: str) -> int:
        return len(text)

    async def send(self, text: str, *, final: bool) -> MessageRef:
        await self.edit(MessageRef(NAME, "1"), text, final=final)
        return MessageRef(NAME, "1")

    async def edit(self, ref: MessageRef, text: str, *, final: bool) -> None:
        shared = _common_prefix_length(self._printed, text)
        gained = text[shared:]
        if shared < len(self._printed):
            gained = "\n" + gained  # the end changed (an error line): start it on its own line
        self._out.write(gained + ("\n" if final else ""))
        self._out.flush()
        self._printed = text


def _common_prefix_length(a: str, b: str) -> int:
    for index, (x, y) in enumerate(zip(a, b, strict=False)):
        if x != y:
            return index
    return min(len(a), len(b))


async def chat(
    service: ConversationService,
    *,
    gpt: str | None,
    new: bool,
    stdin: TextIO = sys.stdin,
    stdout: TextIO = sys.stdout,
    stderr: TextIO = sys.stderr,
) -> int:
    user = getpass.getuser()
    # The person at the terminal runs the bot: an owner, in their own private chat.
    context = commands.Context(
        Scope(NAME, user),
        Author(user, user, is_admin=True, is_owner=True),
        is_private=True,
        # The bot's lines follow the terminal's locale (LANG=zh_CN.UTF-8 → Chinese).
        language=_language(service),
    )
    command_runner = commands.Commands(service)
    # An answer a killed `chat` left streaming here is kept as interrupted (sent on as cut).
    await interrupted_answers(service.repo, NAME, chat_id=user)
    try:
        if new:
            await service.reset(context.scope)
        if gpt is not None:
            info = await service.bind(context.scope, gpt, context.author)
            print(TALKING_TO(context.language, url=info.url), file=stderr)
    except GptsBotError as exc:
        print(exc, file=stderr)
        return 2
    except StorageBusy as exc:
        print(user_message(exc, context.language), file=stderr)
        return 1
    interactive = stdin.isatty()
    if interactive:
        print(WELCOME(context.language), file=stderr)
    loop = asyncio.get_running_loop()
    while True:
        if interactive:
            print("you> ", end="", file=stderr, flush=True)
        line = await loop.run_in_executor(None, stdin.readline)
        if not line:
            return 0
        text = line.strip()
        if text in QUIT_COMMANDS:
            return 0
        if text.startswith("/"):
            result = await _command(command_runner, context, text)
            if isinstance(result, commands.Reply):
                print(result.text, file=stderr)
                continue
            text = result.text
        if text:
            reply = StreamingReply(TerminalChannel(stdout), edit_interval_s=0)
            turn = Turn(context.scope, context.author, text, True, language=context.language)
            await service.answer(turn, reply)


async def _command(
    runner: commands.Commands, context: commands.Context, text: str
) -> commands.Reply | commands.Ask:
    name, _, rest = text[1:].partition(" ")
    parsed = commands.parse(name, rest, context.language)
    if parsed is None:
        return commands.Reply(i18n.UNKNOWN_COMMAND(context.language, name=name))
    if isinstance(parsed, commands.Reply):
        return parsed
    return await runner.run(context, parsed.command, parsed.args)


def _language(service: ConversationService) -> Language:
    locale = os.environ.get("LC_ALL") or os.environ.get("LANG")
    return language_for(locale, service.config.bot.language)


async def _run_chat(config: Config, args: argparse.Namespace) -> int:
    async with open_app(config) as app:
        return await chat(app.service, gpt=args.gpt, new=args.new)


def add_commands(add: AddCommand) -> None:
    parser = add("chat", "chat with a GPT in the terminal")
    parser.add_argument("--gpt", help="GPT link, id or model name to talk to (saved for next time)")
    parser.add_argument("--new", action="store_true", help="start a new conversation")
    # The terminal is the conversation: only problems interrupt it.
    parser.set_defaults(handler=_run_chat, quiet_logs=True)


PLATFORM = Platform(NAME, add_commands=add_commands)
