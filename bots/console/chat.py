"""`gptsbot chat`: the terminal's reply channel, its command loop and its CLI subcommand."""

from __future__ import annotations

import argparse
import asyncio
import codecs
import getpass
import os
import signal
import stat
import sys
from collections.abc import Coroutine, Sequence
from typing import Any, TextIO, TypeVar

from bots.console.files import file_command, read_file
from core import commands, i18n
from core.app import open_app
from core.buttons import Button
from core.config import Config
from core.conversation import ConversationService
from core.database import describe
from core.errors import STOP_REQUESTED, GptsBotError, user_message
from core.i18n import STOPPED, Language, Text, language_for
from core.interrupted import interrupted_answers
from core.platform import MessageRef
from core.platforms import AddCommand, Platform
from core.streaming import StreamingReply
from core.tables import aligned
from core.turns import Attachment, Author, Scope, Turn
from storage import StorageBusy

NAME = "console"
QUIT_COMMANDS = ("/quit", "/exit")
PROMPT = "you> "
EXIT_USAGE = 2
# Ended by a signal: 128 + its number, as shells report it (130 for Ctrl-C, 143 for SIGTERM).
EXIT_SIGNALLED = 128
HANDLED_SIGNALS = (signal.SIGINT, signal.SIGTERM)
READ_BYTES = 65536

_T = TypeVar("_T")

# What only the terminal says.
WELCOME = Text(
    "Type a message to talk to the GPT. /help lists the commands; /image PATH [question] sends "
    "an image or a text file; /quit, Ctrl-D or Ctrl-C leaves; Ctrl-C during an answer stops it.",
    "输入消息即可和 GPT 对话。/help 列出命令；/image 路径 [问题] 发送图片或文本文件；"
    "/quit、Ctrl-D 或 Ctrl-C 退出；回答时按 Ctrl-C 停止回答。",
)
TALKING_TO = Text("Talking to {url}", "正在和 {url} 对话")
DATABASE = Text("Database: {location}", "数据库：{location}")
NO_GPT = Text(
    "⚠️ No GPT to talk to yet. Choose one with `gptsbot chat --gpt <GPT link or id>` (saved for "
    "next time) or /gpt bind <GPT link or id>, or set default_gpt in [gpts] of the config (or "
    "GPTS_DEFAULT_GPT).",
    "⚠️ 还没有可以对话的 GPT。用 `gptsbot chat --gpt <GPT 链接或 id>`（会保存，下次无需再指定）或 "
    "/gpt bind <GPT 链接或 id> 选择一个，或在配置文件的 [gpts] 中设置 default_gpt（或环境变量 "
    "GPTS_DEFAULT_GPT）。",
)


class TerminalChannel:
    """A reply channel that can only append: each edit prints what the text gained. It shows no
    buttons: Ctrl-C stops an answer, /retry asks the last question again."""

    max_chars = sys.maxsize

    def __init__(self, out: TextIO) -> None:
        self._out = out
        self._printed = ""

    def measure(self, text: str) -> int:
        return len(text)

    async def send(self, text: str, *, final: bool, buttons: Sequence[Button] = ()) -> MessageRef:
        await self.edit(MessageRef(NAME, "1"), text, final=final)
        return MessageRef(NAME, "1")

    async def edit(
        self, ref: MessageRef, text: str, *, final: bool, buttons: Sequence[Button] = ()
    ) -> None:
        shared = _common_prefix_length(self._printed, text)
        gained = text[shared:]
        if self._printed[shared:].strip():
            # The end changed (an error line): start it on its own line. Only trailing spaces
            # trimmed before an error line need no extra line.
            gained = "\n" + gained
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
    """Talk with the GPT until EOF, /quit, or Ctrl-C (SIGINT) or SIGTERM at the prompt.

    A signal during an answer stops it: what arrived is shown and stored, with a "stopped" line.
    At a terminal, Ctrl-C then returns to the prompt; SIGTERM, or a signal when stdin is not a
    terminal, ends the chat. Ended by a signal, the exit code is 128 + its number.
    """
    user = getpass.getuser()
    # The person at the terminal runs the bot: an owner, in their own private chat.
    context = commands.Context(
        Scope(NAME, user),
        Author(user, user, is_admin=True, is_owner=True),
        is_private=True,
        # The bot's lines follow the terminal's locale (LANG=zh_CN.UTF-8 → Chinese).
        language=_language(service),
    )
    language = context.language
    command_runner = commands.Commands(service)
    service.register_fetcher(NAME, read_file)
    # An answer a killed `chat` left streaming here is kept as interrupted (sent on as cut).
    await interrupted_answers(service.repo, NAME, chat_id=user)
    try:
        if new:
            await service.reset(context.scope)
        if gpt is not None:
            info = await service.bind(context.scope, gpt, context.author)
            print(TALKING_TO(language, url=info.url), file=stderr)
    except StorageBusy as exc:
        print(user_message(exc, language), file=stderr)
        return 1
    except GptsBotError as exc:
        print(user_message(exc, language), file=stderr)
        return EXIT_USAGE
    print(DATABASE(language, location=describe(service.config.storage.url)), file=stderr)
    interactive = stdin.isatty()
    if interactive:
        print(WELCOME(language), file=stderr)
        if await service.binding(context.scope) is None:
            print(NO_GPT(language), file=stderr)
    lines = _Lines(stdin)
    with _Signals() as signals:
        while True:
            if interactive:
                print(PROMPT, end="", file=stderr, flush=True)
            line = await signals.unless_signalled(lines.readline())
            if signals.received is not None:
                if interactive:
                    print(file=stderr)  # after the echoed ^C: the shell's prompt on a new line
                return EXIT_SIGNALLED + signals.received
            if line is None:
                return 0
            text = line.strip()
            if text in QUIT_COMMANDS:
                return 0
            retry: commands.Retry | None = None
            files: tuple[Attachment, ...] = ()
            attached = file_command(text, language)
            if isinstance(attached, str):
                print(attached, file=stderr)
                continue
            if attached is not None:
                text, files = attached[0], (attached[1],)
            elif text.startswith("/"):
                result = await _command(command_runner, context, text)
                if isinstance(result, commands.Reply):
                    print(result.text, file=stderr)
                    if result.table is not None:
                        print(aligned(result.table), file=stderr)
                    continue
                if isinstance(result, commands.Retry):
                    retry, text = result, result.turn.text
                else:
                    text = result.text
            if not text and not files:
                continue
            if await service.binding(context.scope) is None:
                # The core's sentence tells chat admins about /gpt bind; here it is the command
                # line and the config that choose the GPT.
                print(NO_GPT(language), file=stderr)
                continue
            reply = StreamingReply(TerminalChannel(stdout), edit_interval_s=0)
            if retry is None:
                turn = Turn(
                    context.scope, context.author, text, True, language=language, attachments=files
                )
                answering = service.answer(turn, reply)
            else:  # /retry: the last question again, its earlier answer replaced
                answering = service.retry(retry.answer_id, retry.turn, reply)
            await signals.stopping_on_signal(answering)
            if signals.received is None:
                continue
            if not reply.messages:  # stopped before the answer began: nothing said so yet
                print(STOPPED(language), file=stdout, flush=True)
            if signals.received == signal.SIGTERM or not interactive or signals.repeated:
                return EXIT_SIGNALLED + signals.received
            signals.received = None


class _Lines:
    """stdin's lines, read without a thread: the event loop watches the descriptor, so a signal
    ends the wait at the prompt at once (a thread blocked in readline() held the exit until
    Enter)."""

    def __init__(self, stdin: TextIO) -> None:
        self._fd = stdin.fileno()
        self._decoder = codecs.getincrementaldecoder(stdin.encoding or "utf-8")(errors="replace")
        self._buffer = ""
        self._eof = False
        # A regular file (`chat < questions.txt`) is always readable, and epoll refuses it.
        self._watch = not stat.S_ISREG(os.fstat(self._fd).st_mode)

    async def readline(self) -> str | None:
        """The next line, without its line end; None at the end of the input."""
        while "\n" not in self._buffer and not self._eof:
            if self._watch:
                await self._readable()
            data = os.read(self._fd, READ_BYTES)
            self._eof = not data
            self._buffer += self._decoder.decode(data, final=self._eof)
        line, newline, self._buffer = self._buffer.partition("\n")
        return None if not line and not newline else line

    async def _readable(self) -> None:
        loop = asyncio.get_running_loop()
        ready: asyncio.Future[None] = loop.create_future()

        def on_readable() -> None:
            if not ready.done():
                ready.set_result(None)

        try:
            loop.add_reader(self._fd, on_readable)
        except PermissionError:  # a descriptor epoll cannot watch (/dev/null): reads never block
            self._watch = False
            return
        try:
            await ready
        finally:
            loop.remove_reader(self._fd)


class _Signals:
    """SIGINT (Ctrl-C) and SIGTERM during a chat: they end a wait, or stop an answer."""

    def __init__(self) -> None:
        self.received: int | None = None  # the signal being handled, until the loop resets it
        self.repeated = False  # a second signal arrived while an answer was being stopped
        self._task: asyncio.Task[Any] | None = None
        self._stop_answer = False

    def __enter__(self) -> _Signals:
        loop = asyncio.get_running_loop()
        for signum in HANDLED_SIGNALS:
            loop.add_signal_handler(signum, self._on_signal, signum)
        return self

    def __exit__(self, *_exc: object) -> None:
        loop = asyncio.get_running_loop()
        for signum in HANDLED_SIGNALS:
            loop.remove_signal_handler(signum)

    async def unless_signalled(self, waiting: Coroutine[Any, Any, _T]) -> _T | None:
        """`waiting`'s result; None if a signal ended the wait."""
        task = await self._run(waiting, stop_answer=False)
        return None if task is None or task.cancelled() else task.result()

    async def stopping_on_signal(self, answering: Coroutine[Any, Any, object]) -> None:
        """Run `answering`; a signal stops it, as a person's request (`STOP_REQUESTED`)."""
        task = await self._run(answering, stop_answer=True)
        if task is not None and not task.cancelled():
            task.result()

    async def _run(
        self, work: Coroutine[Any, Any, _T], *, stop_answer: bool
    ) -> asyncio.Task[_T] | None:
        if self.received is not None:  # a signal came in between: don't start
            work.close()
            return None
        task = asyncio.create_task(work)
        self._task, self._stop_answer = task, stop_answer
        try:
            await asyncio.wait({task})  # unlike `await task`, no CancelledError to tell apart
        finally:
            self._task = None
            task.cancel()  # only if this coroutine itself was cancelled: no orphan left
        return task

    def _on_signal(self, signum: int) -> None:
        if self.received is not None:
            self.repeated = True  # the answer is already stopping: let it store what arrived
            return
        self.received = signum
        if self._task is not None:
            self._task.cancel(STOP_REQUESTED if self._stop_answer else None)


async def _command(
    runner: commands.Commands, context: commands.Context, text: str
) -> commands.Reply | commands.Ask | commands.Retry:
    name, _, rest = text[1:].partition(" ")
    parsed = commands.parse(name, rest, context.language)
    if parsed is None:
        return commands.Reply(i18n.UNKNOWN_COMMAND(context.language, name=name))
    if isinstance(parsed, commands.Reply):
        return parsed
    return await runner.run(context, parsed.command, parsed.args)


def _language(service: ConversationService) -> Language:
    locale = os.environ.get("LC_ALL") or os.environ.get("LC_MESSAGES") or os.environ.get("LANG")
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
