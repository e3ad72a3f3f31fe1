"""`gptsbot chat`: the terminal as one more platform, through the same core and storage.

Answers stream to stdout as they arrive; notices (bindings, errors of commands) go to stderr, so a
piped run's stdout holds only the answers. One line of stdin is one turn; EOF ends the chat.
"""

from __future__ import annotations

import asyncio
import getpass
import os
import sys
from typing import TextIO

from core.conversation import ConversationService
from core.errors import GptsBotError
from core.i18n import language_for
from core.platform import MessageRef
from core.streaming import StreamingReply
from core.turns import Author, Scope, Turn

HELP = """Type a message to talk to the GPT. Commands:
  /gpt bind <GPT link or id>   choose the GPT that answers here
  /gpt info                    show which GPT answers here
  /gpt unbind                  go back to the default GPT
  /reset                       start a new conversation
  /quit                        leave (or press Ctrl-D)"""


class TerminalChannel:
    """A reply channel that can only append: each edit prints what the text gained."""

    max_chars = sys.maxsize

    def __init__(self, out: TextIO) -> None:
        self._out = out
        self._printed = ""

    def measure(self, text: str) -> int:
        return len(text)

    async def send(self, text: str, *, final: bool) -> MessageRef:
        await self.edit(MessageRef("console", "1"), text, final=final)
        return MessageRef("console", "1")

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


def console_scope() -> Scope:
    return Scope("console", getpass.getuser())


async def chat(
    service: ConversationService,
    *,
    gpt: str | None,
    new: bool,
    stdin: TextIO = sys.stdin,
    stdout: TextIO = sys.stdout,
    stderr: TextIO = sys.stderr,
) -> int:
    scope = console_scope()
    me = Author(scope.chat_id, scope.chat_id, is_admin=True)
    if new:
        await service.reset(scope)
    if gpt is not None:
        try:
            info = await service.bind(scope, gpt, me, is_private=True)
        except GptsBotError as exc:
            print(exc, file=stderr)
            return 2
        print(f"Talking to {info.url}", file=stderr)
    # Error lines follow the terminal's locale (LANG=zh_CN.UTF-8 → Chinese) unless configured.
    locale = os.environ.get("LC_ALL") or os.environ.get("LANG")
    language = language_for(locale, service.config.bot.language)
    interactive = stdin.isatty()
    if interactive:
        print(HELP, file=stderr)
    loop = asyncio.get_running_loop()
    while True:
        if interactive:
            print("you> ", end="", file=stderr, flush=True)
        line = await loop.run_in_executor(None, stdin.readline)
        if not line:
            return 0
        text = line.strip()
        if not text:
            continue
        if text.startswith("/"):
            if text in ("/quit", "/exit"):
                return 0
            print(await _command(service, scope, me, text), file=stderr)
            continue
        reply = StreamingReply(TerminalChannel(stdout), edit_interval_s=0)
        await service.answer(Turn(scope, me, text, is_private=True, language=language), reply)


async def _command(service: ConversationService, scope: Scope, me: Author, text: str) -> str:
    command, _, argument = text.partition(" ")
    argument = argument.strip()
    try:
        match command, *argument.split(maxsplit=1):
            case "/reset", *_:
                await service.reset(scope)
                return "Started a new conversation."
            case "/gpt", "bind", name:
                info = await service.bind(scope, name, me, is_private=True)
                return f"Bound {info.gpt_id} ({info.url})."
            case "/gpt", "unbind":
                removed = await service.unbind(scope, me, is_private=True)
                return "Unbound." if removed else "Nothing was bound here."
            case ("/gpt", "info") | ("/gpt",):
                current = await service.binding(scope)
                if current is None:
                    return "No GPT answers here yet: /gpt bind <GPT link or id>."
                source = (
                    "the default GPT"
                    if current.is_default
                    else f"bound {current.bound_at:%Y-%m-%d}"
                )
                return f"{current.gpt_id} ({current.url}), {source}; model {current.model}."
            case _:
                return HELP
    except GptsBotError as exc:
        return str(exc)
