"""`gptsbot chat` in a terminal: Ctrl-C typed into a real pseudo-terminal, SIGTERM, the terminal's
own lines in both languages. Each test runs the command as a user would, in a subprocess."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import fcntl
import os
import signal
import sys
import termios
from collections.abc import Iterator
from pathlib import Path

import pytest

from fakes.gpts import FakeGpts, Gate
from tests.test_cli import DEFAULT_GPT, environment, gptsbot, start_chat

CTRL_C = "\x03"


class Terminal:
    """A pseudo-terminal holding a `gptsbot` process's stdin, stdout and stderr, the way a
    person's terminal does: its controlling terminal, so Ctrl-C typed here is SIGINT."""

    def __init__(self) -> None:
        self._master, self._slave = os.openpty()
        self.screen = ""  # everything shown so far, "\r\n" read as "\n"
        self._seen = 0

    async def start(self, *args: str, env: dict[str, str]) -> asyncio.subprocess.Process:
        slave = self._slave

        def take_terminal() -> None:  # in the child: a new session, with this terminal
            # Both here, and on the terminal's own descriptor: uvloop runs preexec_fn right
            # after the fork, before it sets up the session and the child's stdin.
            os.setsid()
            fcntl.ioctl(slave, termios.TIOCSCTTY, 0)

        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "core.cli", *args,
            stdin=self._slave, stdout=self._slave, stderr=self._slave, env=env,
            preexec_fn=take_terminal,
        )  # fmt: skip
        os.close(self._slave)
        return process

    def type(self, keys: str) -> None:
        os.write(self._master, keys.encode())

    async def expect(self, text: str, within_s: float = 20) -> str:
        """Wait until `text` is shown after what the last `expect` matched; return what was
        shown up to and including it."""
        async with asyncio.timeout(within_s):
            while (found := self.screen.find(text, self._seen)) < 0:
                if not await self._read():
                    raise AssertionError(f"{text!r} never shown; the screen:\n{self.screen}")
        shown = self.screen[self._seen : found + len(text)]
        self._seen = found + len(text)
        return shown

    async def rest(self, within_s: float = 20) -> str:
        """Everything shown until the process closed the terminal."""
        async with asyncio.timeout(within_s):
            while await self._read():
                pass
        shown, self._seen = self.screen[self._seen :], len(self.screen)
        return shown

    async def _read(self) -> bool:
        loop = asyncio.get_running_loop()
        ready: asyncio.Future[None] = loop.create_future()
        loop.add_reader(self._master, lambda: ready.done() or ready.set_result(None))
        try:
            await ready
        finally:
            loop.remove_reader(self._master)
        try:
            data = os.read(self._master, 65536)
        except OSError as exc:  # EIO: every end of the terminal in the child is closed
            if exc.errno != errno.EIO:
                raise
            data = b""
        self.screen += data.decode(errors="replace").replace("\r\n", "\n")
        return bool(data)

    def close(self) -> None:
        os.close(self._master)


@contextlib.contextmanager
def terminal() -> Iterator[Terminal]:
    term = Terminal()
    try:
        yield term
    finally:
        term.close()


async def ended(process: asyncio.subprocess.Process, within_s: float = 10) -> int:
    try:
        return await asyncio.wait_for(process.wait(), within_s)
    except TimeoutError:
        process.kill()
        await process.wait()
        raise AssertionError(f"still running {within_s} s later") from None


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("lang", "welcome", "database"),
    [
        ("C", "/quit, Ctrl-D or Ctrl-C leaves", "Database: "),
        ("zh_CN.UTF-8", "Ctrl-C 退出", "数据库："),
    ],
)
async def test_ctrl_c_at_the_prompt_ends_the_chat_at_once(
    fake_gpts: FakeGpts, tmp_path: Path, lang: str, welcome: str, database: str
) -> None:
    env = environment(tmp_path, fake_gpts, LANG=lang)
    with terminal() as term:
        process = await term.start("chat", env=env)
        shown = await term.expect("you> ")
        assert f"{database}{tmp_path / 'chat.db'}" in shown and welcome in shown
        term.type(CTRL_C)
        # Before: stdin was read in a thread, and the process waited for Enter.
        assert await ended(process, within_s=5) == 128 + signal.SIGINT
        assert "Traceback" not in await term.rest()


@pytest.mark.asyncio
async def test_ctrl_c_during_an_answer_stops_it_and_keeps_what_arrived(
    fake_gpts: FakeGpts, gate: Gate, tmp_path: Path
) -> None:
    env = environment(tmp_path, fake_gpts)
    with terminal() as term:
        process = await term.start("chat", env=env)
        await term.expect("you> ")
        term.type("tell me a story\n")
        await fake_gpts.wait_requests(1, within_s=30)
        gate.send("Once upon a time, ")
        await term.expect("Once upon a time,")  # its trailing space waits for what follows
        term.type(CTRL_C)
        stopped = await term.expect("you> ")  # back at the prompt: the chat goes on
        assert "⏹️ Stopped." in stopped
        assert "restarting" not in stopped
        term.type("/quit\n")
        assert await ended(process) == 0
    # The partial answer was stored: the next turn sends it upstream.
    after = await gptsbot("chat", env=env, stdin="and then?\n")
    assert after.code == 0, after.err
    messages = fake_gpts.requests[1].messages
    assert messages[0] == {"role": "user", "content": "tell me a story"}
    assert messages[1]["role"] == "assistant"
    assert messages[1]["content"].startswith("Once upon a time,")


async def answer_then_signal(
    fake_gpts: FakeGpts, env: dict[str, str], signum: int
) -> tuple[int, str, str]:
    """Pipe a question, let part of the answer arrive, send `signum`: exit code, stdout, stderr."""
    gate = Gate()
    fake_gpts.enqueue(gate)
    process = await start_chat(env=env, asking="tell me a story")
    assert process.stdout is not None
    await fake_gpts.wait_requests(len(fake_gpts.requests) + 1, within_s=30)
    gate.send("Once upon a time, ")
    assert await asyncio.wait_for(process.stdout.readexactly(17), 10) == b"Once upon a time,"
    process.send_signal(signum)
    out, err = await asyncio.wait_for(process.communicate(), 15)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("signum", "lang", "stopped"),
    [
        (signal.SIGTERM, "C", "⏹️ Stopped."),
        (signal.SIGTERM, "zh_CN.UTF-8", "⏹️ 已停止。"),
        (signal.SIGINT, "C", "⏹️ Stopped."),
    ],
)
async def test_a_signal_during_a_piped_answer_stores_and_shows_what_arrived(
    fake_gpts: FakeGpts, tmp_path: Path, signum: int, lang: str, stopped: str
) -> None:
    env = environment(tmp_path, fake_gpts, LANG=lang)
    code, out, err = await answer_then_signal(fake_gpts, env, signum)
    # Before: SIGTERM killed chat on the spot, the answer neither finished on screen nor stored.
    assert code == 128 + signum, err
    assert out == f"\n\n{stopped}\n"
    assert "Traceback" not in err
    await gptsbot("chat", env=env, stdin="and then?\n")
    assert fake_gpts.requests[1].messages[1]["content"].startswith("Once upon a time,")


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("lang", "sentence"),
    [("C", "No GPT to talk to yet"), ("zh_CN.UTF-8", "还没有可以对话的 GPT")],
)
async def test_without_a_gpt_the_terminal_says_how_to_choose_one(
    fake_gpts: FakeGpts, tmp_path: Path, lang: str, sentence: str
) -> None:
    env = environment(tmp_path, fake_gpts, LANG=lang)
    Path(env["GPTSBOT_CONFIG"]).write_text(
        f'[gpts]\nbase_url = "{fake_gpts.base_url}"\n'
        f'[storage]\nurl = "sqlite+aiosqlite:///{tmp_path / "chat.db"}"\n'
    )
    result = await gptsbot("chat", env=env, stdin="hello\n")
    assert result.code == 0 and result.out == ""
    (line,) = [line for line in result.err.splitlines() if sentence in line]
    assert "gptsbot chat --gpt" in line and "default_gpt" in line and "GPTS_DEFAULT_GPT" in line
    assert fake_gpts.requests == []
    # The next run names the GPT: it is saved, and the run after needs nothing.
    await gptsbot("chat", "--gpt", DEFAULT_GPT, env=env, stdin="")
    again = await gptsbot("chat", env=env, stdin="hello\n")
    assert again.out == "echo: hello\n"


@pytest.mark.asyncio
async def test_the_terminal_lines_follow_lang(fake_gpts: FakeGpts, tmp_path: Path) -> None:
    env = environment(tmp_path, fake_gpts, LANG="zh_CN.UTF-8")
    bad = await gptsbot("chat", "--gpt", "write for me", env=env)
    assert bad.code == 2
    assert bad.err.strip() == (
        "⚠️ 'write for me' 不是有效的 GPT。请使用 GPT id（g-B3hgivKK9）、模型名"
        "（gpt-4-gizmo-g-B3hgivKK9）或 GPT 链接（https://chatgpt.com/g/g-B3hgivKK9-write-for-me）。"
    )
    bound = await gptsbot("chat", "--gpt", DEFAULT_GPT, env=env, stdin="/nope\n")
    assert f"正在和 https://chatgpt.com/g/{DEFAULT_GPT} 对话" in bound.err
    assert f"数据库：{tmp_path / 'chat.db'}" in bound.err
    assert "未知命令 /nope。试试 /help。" in bound.err
    env["LC_MESSAGES"], env["LANG"] = "zh_CN.UTF-8", "C"  # LC_MESSAGES chooses messages' language
    assert "数据库：" in (await gptsbot("chat", env=env)).err


@pytest.mark.asyncio
@pytest.mark.parametrize("source", ["a file", "/dev/null"])
async def test_chat_reads_a_file_or_dev_null_as_stdin(
    fake_gpts: FakeGpts, tmp_path: Path, source: str
) -> None:
    """`gptsbot chat < questions.txt`: a regular file (or /dev/null) cannot be watched by the event
    loop, and needs not be: reading it never blocks."""
    questions = tmp_path / "questions.txt"
    questions.write_text("first\nsecond")  # the last line without its newline
    env = environment(tmp_path, fake_gpts)
    with (questions if source == "a file" else Path(os.devnull)).open("rb") as stdin:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "core.cli", "chat",
            stdin=stdin, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=env,
        )  # fmt: skip
        out, err = await asyncio.wait_for(process.communicate(), 30)
    assert process.returncode == 0, err.decode()
    assert out.decode() == ("echo: first\necho: second\n" if source == "a file" else "")
