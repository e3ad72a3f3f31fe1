"""`gptsbot run` / `gptsbot chat` as real processes, for tests that send them signals.

The process runs this checkout's code (cwd and PYTHONPATH), against the fake servers the test
started, with a config written under tmp_path. `Bot.stored()` reads the SQLite file from outside.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import sys
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Self

from fakes.discord import FakeDiscord
from fakes.telegram import FakeTelegram

ROOT = Path(__file__).resolve().parents[1]
API_KEY = "sk-durable-secret-0123456789"
DEFAULT_GPT = "g-B3hgivKK9"
WAIT_S = 30.0


def write_config(tmp_path: Path, gpts_url: str, **sections: dict[str, Any]) -> Path:
    """config.toml with the fake GPTs endpoint, a database under tmp_path and `sections`
    ({"telegram": {"base_url": ...}, "storage": {"save_interval_s": 0.2}}) merged in."""
    tables: dict[str, dict[str, Any]] = {
        # Every chunk as it comes: the tests step answers piece by piece.
        "gpts": {
            "base_url": gpts_url,
            "retry_backoff_s": 0.01,
            "default_gpt": DEFAULT_GPT,
            "read_interval_s": 0,
        },
        "storage": {"url": f"sqlite+aiosqlite:///{tmp_path / 'bot.db'}"},
    }
    for name, values in sections.items():
        tables.setdefault(name, {}).update(values)
    lines = []
    for name, values in tables.items():
        lines.append(f"[{name}]")
        lines += [f"{key} = {_toml(value)}" for key, value in values.items()]
    path = tmp_path / "config.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def _toml(value: Any) -> str:
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, bool):
        return "true" if value else "false"
    return repr(value)


def environment(config: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.endswith(("_TOKEN", "_API_KEY"))}
    env = {k: v for k, v in env.items() if not k.startswith("LC_")}
    env |= {
        "GPTSBOT_CONFIG": str(config),
        "GPTS_API_KEY": API_KEY,
        "USER": "alice",
        "LANG": "C",
        "PYTHONPATH": str(ROOT),
    }
    return env | extra


@dataclass
class Bot:
    """One `gptsbot` process; its output is collected as it comes."""

    process: asyncio.subprocess.Process
    database: Path | None  # the SQLite file `stored` reads
    out: bytearray = field(default_factory=bytearray)
    err: bytearray = field(default_factory=bytearray)
    _readers: list[asyncio.Task[None]] = field(default_factory=list)

    @classmethod
    async def start(
        cls, *args: str, env: dict[str, str], database: Path | None = None, stdin: bool = False
    ) -> Bot:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "core.cli", *args,
            stdin=asyncio.subprocess.PIPE if stdin else asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
            env=env, cwd=ROOT,
        )  # fmt: skip
        bot = cls(process, database)
        assert process.stdout is not None and process.stderr is not None
        bot._readers = [
            asyncio.create_task(_collect(process.stdout, bot.out)),
            asyncio.create_task(_collect(process.stderr, bot.err)),
        ]
        return bot

    @property
    def log(self) -> str:
        return self.out.decode(errors="replace") + self.err.decode(errors="replace")

    async def say(self, line: str) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(line.encode() + b"\n")
        await self.process.stdin.drain()

    async def wait_output(self, text: str, within_s: float = WAIT_S) -> None:
        await wait_for(lambda: text in self.out.decode(errors="replace"), within_s)

    async def kill(self) -> None:
        """`kill -9`: no cleanup of any kind."""
        self.process.send_signal(signal.SIGKILL)
        await self.wait()

    async def terminate(self, within_s: float = WAIT_S) -> int:
        self.process.send_signal(signal.SIGTERM)
        return await self.wait(within_s)

    async def wait(self, within_s: float = WAIT_S) -> int:
        if self.process.stdin is not None and not self.process.stdin.is_closing():
            self.process.stdin.close()
        code = await asyncio.wait_for(self.process.wait(), within_s)
        await asyncio.gather(*self._readers)
        return code

    def stored(self) -> list[tuple[str, str, str]]:
        """(role, content, status) of every stored message, oldest first."""
        assert self.database is not None, "stored() reads an SQLite file"
        with closing(sqlite3.connect(self.database)) as connection:
            rows = connection.execute("SELECT role, content, status FROM messages ORDER BY id")
            return [tuple(row) for row in rows]

    async def wait_stored(
        self, predicate: Callable[[list[tuple[str, str, str]]], bool], within_s: float = WAIT_S
    ) -> list[tuple[str, str, str]]:
        def check() -> bool:
            try:
                return predicate(self.stored())
            except sqlite3.OperationalError:  # no table yet, or locked for a moment
                return False

        await wait_for(check, within_s)
        return self.stored()


async def _collect(stream: asyncio.StreamReader, into: bytearray) -> None:
    while chunk := await stream.read(4096):
        into.extend(chunk)


async def wait_for(condition: Callable[[], bool], within_s: float = WAIT_S) -> None:
    """Poll `condition` until it holds (AssertionError after `within_s`)."""
    deadline = time.monotonic() + within_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.05)


class _PlatformChat(ABC):
    """A chat with the bot on a fake platform, for a `gptsbot run`: the fake is started and
    closed with `async with`."""

    fake: FakeTelegram | FakeDiscord

    async def __aenter__(self) -> Self:
        await self.fake.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.fake.close()

    async def start_run(self, env: dict[str, str], database: Path) -> Bot:
        """`gptsbot run`, once it is connected to the fake."""
        bot = await Bot.start("run", env=env, database=database)
        await self.connected()
        return bot

    @abstractmethod
    def environment(
        self, tmp_path: Path, gpts_url: str, **sections: dict[str, Any]
    ) -> dict[str, str]:
        """For a `gptsbot` that answers here: its config (`write_config` with `sections`) and
        its bot token."""

    @abstractmethod
    async def connected(self) -> None:
        """Until the bot is connected to the fake."""

    @abstractmethod
    async def ask(self, text: str) -> None:
        """The user writes `text` to the bot."""

    @abstractmethod
    def shown(self) -> list[str]:
        """The bot's messages in the chat, as they read now."""

    async def wait_shown(self, condition: Callable[[list[str]], object]) -> None:
        """Until `condition` holds of the bot's messages here."""
        await wait_for(lambda: bool(condition(self.shown())))


class TelegramChat(_PlatformChat):
    """The fake Telegram, `async with`, and Mei (user 501) writing to the bot in their private
    chat; `fake` for anything else."""

    fake: FakeTelegram

    def __init__(self) -> None:
        self.fake = FakeTelegram()
        self.mei = self.fake.user(501, "Mei")
        self.chat = self.fake.private_chat(self.mei)

    def environment(
        self, tmp_path: Path, gpts_url: str, **sections: dict[str, Any]
    ) -> dict[str, str]:
        config = write_config(
            tmp_path, gpts_url, telegram={"base_url": self.fake.base_url}, **sections
        )
        return environment(config, TELEGRAM_BOT_TOKEN=self.fake.token)

    async def connected(self) -> None:  # it polls for updates
        await self.fake.wait_for_call("getUpdates", timeout=WAIT_S)

    async def ask(self, text: str) -> None:
        self.fake.user_message(self.chat, self.mei, text)

    def shown(self) -> list[str]:
        return [message["text"] for message in self.fake.bot_messages(self.chat["id"])]


class DiscordChannel(_PlatformChat):
    """The fake Discord, `async with`, and Mia mentioning the bot in a channel of a guild; add
    more to `fake` before entering it."""

    fake: FakeDiscord

    def __init__(self) -> None:
        self.fake = FakeDiscord()
        self.guild_id = self.fake.add_guild()
        self.channel_id = self.fake.add_channel(self.guild_id, "a")
        self.mia = self.fake.make_user("mia")
        self.fake.add_member(self.guild_id, self.mia)

    def environment(
        self, tmp_path: Path, gpts_url: str, **sections: dict[str, Any]
    ) -> dict[str, str]:
        # Edits paced at 0.1 s, so that tests see them soon.
        discord = {"api_base": self.fake.api_base, "edit_interval_s": 0.1}
        config = write_config(tmp_path, gpts_url, discord=discord, **sections)
        return environment(config, DISCORD_BOT_TOKEN=self.fake.token)

    async def connected(self) -> None:  # its gateway connection is ready
        await self.fake.wait_ready(within_s=WAIT_S)

    async def ask(self, text: str) -> None:
        await self.fake.user_says(self.channel_id, self.mia, text, mention_bot=True)

    def shown(self) -> list[str]:
        return [message.content for message in self.fake.bot_messages(self.channel_id)]
