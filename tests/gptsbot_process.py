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
from collections.abc import Callable
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
API_KEY = "sk-durable-secret-0123456789"
DEFAULT_GPT = "g-B3hgivKK9"
WAIT_S = 30.0


def write_config(tmp_path: Path, gpts_url: str, **sections: dict[str, Any]) -> Path:
    """config.toml with the fake GPTs endpoint, a database under tmp_path and `sections`
    ({"telegram": {"base_url": ...}, "storage": {"save_interval_s": 0.2}}) merged in."""
    tables: dict[str, dict[str, Any]] = {
        "gpts": {"base_url": gpts_url, "retry_backoff_s": 0.01, "default_gpt": DEFAULT_GPT},
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
