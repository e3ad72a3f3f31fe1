"""The terminal as a platform: every registry command works there, in English and Chinese, and
`/help` lists exactly the registry (the terminal's user runs the bot, so nothing is refused)."""

from __future__ import annotations

import getpass
import io
from pathlib import Path

import pytest

from bots.console.chat import chat
from core import commands, i18n
from core.app import open_app
from core.gpts import Usage
from core.turns import Scope
from fakes.gpts import FakeGpts, Reply
from storage import NewMessage
from tests.helpers import alternating, sqlite_config

SAMPLE_ARGUMENTS = {"prompt": "hello", "gpt": "g-AnnsGpt01"}


def speaking(monkeypatch: pytest.MonkeyPatch, lang: str) -> None:
    """The terminal's locale is LANG alone: no LC_ALL or LC_MESSAGES from the test's shell."""
    monkeypatch.setenv("LANG", lang)
    monkeypatch.delenv("LC_ALL", raising=False)
    monkeypatch.delenv("LC_MESSAGES", raising=False)


@pytest.mark.asyncio
@pytest.mark.parametrize("language", ["en", "zh"])
async def test_every_registry_command_works_in_the_terminal(
    fake_gpts: FakeGpts, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, language: str
) -> None:
    speaking(monkeypatch, "zh_CN.UTF-8" if language == "zh" else "C")
    config = sqlite_config(fake_gpts, tmp_path / "bot.db")
    lines = []
    for command in commands.REGISTRY:
        args = " ".join(SAMPLE_ARGUMENTS[argument.name] for argument in command.arguments)
        lines.append(f"/{command.name} {args}".strip())
    typed = tmp_path / "typed.txt"  # chat reads a real file descriptor, as from a pipe
    typed.write_text("\n".join(lines) + "\n/nope\n")
    stdout, stderr = io.StringIO(), io.StringIO()
    async with open_app(config) as app:
        with typed.open() as stdin:
            code = await chat(
                app.service, gpt=None, new=False, stdin=stdin, stdout=stdout, stderr=stderr
            )
    assert code == 0
    said = stderr.getvalue()
    listed = [line.split(" — ")[0] for line in said.splitlines() if line.startswith("/")]
    assert listed == [command.usage(language) for command in commands.REGISTRY]  # type: ignore[arg-type]
    for command in commands.REGISTRY:
        assert f"{command.description(language)}" in said  # type: ignore[arg-type]
    assert i18n.RESET_DONE(language) in said  # type: ignore[arg-type]
    assert "g-AnnsGpt01" in said
    assert i18n.UNKNOWN_COMMAND(language, name="nope") in said  # type: ignore[arg-type]
    assert "Usage:" not in said and "用法：" not in said and "⛔" not in said
    assert stdout.getvalue() == "echo: hello\n"  # /chat asked the GPT


@pytest.mark.asyncio
async def test_usage_in_the_terminal_is_aligned_columns_of_the_turns_made(
    fake_gpts: FakeGpts, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    speaking(monkeypatch, "C")
    counted = {"prompt_tokens": 400, "completion_tokens": 834, "total_tokens": 1234}
    fake_gpts.enqueue(Reply("counted", usage=counted))
    config = sqlite_config(fake_gpts, tmp_path / "bot.db")
    typed = tmp_path / "typed.txt"
    typed.write_text("first\nsecond\n/usage\n")
    stdout, stderr = io.StringIO(), io.StringIO()
    async with open_app(config) as app:
        # Someone on another platform talked to the bot too: only the whole bot's row counts it.
        await app.repo.start_turn(
            Scope("telegram", "-100"),
            NewMessage("user", "elsewhere", author_id="7"),
            history_limit=0,
            answer=NewMessage("assistant", "x", usage=Usage(1, 1, 2)),
        )
        with typed.open() as stdin:
            code = await chat(
                app.service, gpt=None, new=False, stdin=stdin, stdout=stdout, stderr=stderr
            )
    assert code == 0
    said = stderr.getvalue().splitlines()
    title = next(i for i, line in enumerate(said) if line.startswith("📊 Usage today ("))
    # The second answer's tokens are an estimate: the table marks them, the text says so.
    assert said[title + 1] == i18n.USAGE_ESTIMATED("en")
    header, you, bot = said[title + 2 : title + 5]
    assert header.split("  ")[-1].strip() == "Tokens this month"
    assert you.split() == ["You", "2", "~1,242", "2", "~1,242"]
    assert bot.split() == ["Whole", "bot", "3", "~1,244", "3", "~1,244"]
    # Aligned: every figure ends where its header does.
    assert len({len(line) for line in (header, you, bot)}) == 1


@pytest.mark.asyncio
async def test_retry_in_the_terminal_asks_the_last_question_again(
    fake_gpts: FakeGpts, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    speaking(monkeypatch, "C")
    config = sqlite_config(fake_gpts, tmp_path / "bot.db")
    fake_gpts.enqueue(Reply("first answer"), Reply("second answer"))
    typed = tmp_path / "typed.txt"
    typed.write_text("/retry\nhello\n/retry\nand then?\n")
    stdout, stderr = io.StringIO(), io.StringIO()
    async with open_app(config) as app:
        with typed.open() as stdin:
            code = await chat(
                app.service, gpt=None, new=False, stdin=stdin, stdout=stdout, stderr=stderr
            )
        conversation = await app.repo.current_conversation(Scope("console", getpass.getuser()))
        stored = [(r.content, r.status) for r in await app.repo.history(conversation, limit=9)]
    assert code == 0
    assert i18n.NOTHING_TO_RETRY("en") in stderr.getvalue()  # nothing asked yet
    assert stdout.getvalue() == "first answer\nsecond answer\necho: and then?\n"
    assert [request.messages for request in fake_gpts.requests[1:]] == [
        [{"role": "user", "content": "hello"}],  # asked again, the first answer not sent
        alternating("hello", "second answer", "and then?"),
    ]
    assert stored == [
        ("hello", "complete"),
        ("first answer", "superseded"),
        ("second answer", "complete"),
        ("and then?", "complete"),
        ("echo: and then?", "complete"),
    ]
