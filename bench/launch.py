"""Starting the end-to-end benchmark's processes: a platform's fake (bench/telegram_server.py or
bench/discord_server.py) and one or more `gptsbot run` workers configured against it.

One worker: SQLite in the run's folder, in-memory rate budgets, Telegram by long polling. Two or
more: the workers share a fresh PostgreSQL database and Redis (bench/shared.py); Telegram comes by
webhook (each worker its own port, the fake posts the updates to them in turn), Discord by shards
(shard_count = workers, worker i runs shard i).
"""

from __future__ import annotations

import os
import queue
import random
import secrets
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass, field
from http import HTTPStatus
from pathlib import Path
from typing import Any

from bench.shared import Shared
from bench.startup import ROOT, start_server, stop

WEBHOOK_PATH = "/telegram/updates"
READY_LINE = {"telegram": "GETUPDATES", "discord": "GATEWAY"}


@dataclass
class Fake:
    """A platform's fake in its own process; `events` are its output lines, timed."""

    process: subprocess.Popen[str]
    events: queue.Queue[tuple[float, str]]
    base_url: str
    token: str
    webhooks: list[str] = field(default_factory=list)
    secret: str = ""

    def wait_for(self, word: str, timeout: float) -> tuple[float, str]:
        deadline = time.monotonic() + timeout
        while True:
            remaining = max(0.01, deadline - time.monotonic())
            at, line = self.events.get(timeout=remaining)
            if line.startswith(word):
                return at, line


def free_port() -> int:
    """A port free now, below Linux's ephemeral range (32768-60999): one the kernel hands out
    for port 0 could be taken by another server before the worker binds it."""
    while True:
        port = random.randint(20_000, 32_000)
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port


def start_fake(platform: str, users: int, workers: int) -> Fake:
    webhooks, secret = [], ""
    if platform == "telegram":
        command = ["bench.telegram_server", "--users", str(users)]
        if workers > 1:
            secret = "bench-" + secrets.token_hex(8)
            ports = [free_port() for _ in range(workers)]
            webhooks = [f"http://127.0.0.1:{port}{WEBHOOK_PATH}" for port in ports]
            command += ["--webhooks", ",".join(webhooks), "--secret", secret]
    else:
        command = ["bench.discord_server", "--users", str(users), "--shards", str(workers)]
    process, events, base_url, token = start_server(*command)
    return Fake(process, events, base_url, token, webhooks, secret)


def _toml(value: Any) -> str:
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    return repr(value)


def worker_config(
    platform: str, fake: Fake, gpts_url: str, folder: Path, worker: int, workers: int,
    shared: Shared | None,
) -> Path:  # fmt: skip
    """config.toml of worker `worker` (0-based) of `workers`."""
    tables: dict[str, dict[str, Any]] = {
        "gpts": {"base_url": gpts_url, "default_gpt": "g-B3hgivKK9"},
        "storage": {"url": f"sqlite+aiosqlite:///{folder / 'bot.db'}"},
        "log": {"level": "INFO"},
    }
    if shared is not None:
        tables["storage"]["url"] = shared.storage_url
        tables["limits"] = {
            "backend": "redis",
            "redis_url": shared.redis_url,
            "key_prefix": shared.key_prefix,
            "expected_processes": workers,
        }
    if platform == "telegram":
        tables["telegram"] = {"base_url": fake.base_url}
        if fake.webhooks:
            port = int(fake.webhooks[worker].split(":")[2].split("/")[0])
            tables["telegram"] |= {
                "mode": "webhook",
                "listen": f"127.0.0.1:{port}",
                "webhook_url": f"https://bench.invalid{WEBHOOK_PATH}",
            }
    else:
        tables["discord"] = {"api_base": fake.base_url}
        if workers > 1:
            tables["discord"] |= {"shard_count": workers, "shard_ids": [worker]}
    lines = []
    for name, values in tables.items():
        lines.append(f"[{name}]")
        lines += [f"{key} = {_toml(value)}" for key, value in values.items()]
    path = folder / f"config-{worker}.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def worker_env(platform: str, fake: Fake, config: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.endswith(("_TOKEN", "_API_KEY"))}
    env.pop("TELEGRAM_WEBHOOK_SECRET", None)
    env |= {"GPTSBOT_CONFIG": str(config), "GPTS_API_KEY": "sk-bench"}
    env["TELEGRAM_BOT_TOKEN" if platform == "telegram" else "DISCORD_BOT_TOKEN"] = fake.token
    if fake.secret:
        env["TELEGRAM_WEBHOOK_SECRET"] = fake.secret
    paths = [str(ROOT), env.get("PYTHONPATH", "")]
    env["PYTHONPATH"] = os.pathsep.join(p for p in paths if p)
    return env


def start_workers(
    platform: str, fake: Fake, gpts_url: str, folder: Path, workers: int, shared: Shared | None,
    *, cprofile: str | None = None,
) -> list[subprocess.Popen[str]]:  # fmt: skip
    """`cprofile`: run the first worker under cProfile, writing its profile there at exit."""
    bots: list[subprocess.Popen[str]] = []
    try:
        _start_each(platform, fake, gpts_url, folder, workers, shared, cprofile, bots)
    except BaseException:
        for bot in bots:  # none is left running when one cannot start
            stop(bot)
        raise
    return bots


def _start_each(
    platform: str, fake: Fake, gpts_url: str, folder: Path, workers: int, shared: Shared | None,
    cprofile: str | None, bots: list[subprocess.Popen[str]],
) -> None:  # fmt: skip
    for worker in range(workers):
        config = worker_config(platform, fake, gpts_url, folder, worker, workers, shared)
        env = worker_env(platform, fake, config)
        profiling = ["-m", "cProfile", "-o", cprofile] if cprofile and worker == 0 else []
        with (folder / f"bot-{worker}.log").open("w") as log:
            bot = subprocess.Popen(
                [sys.executable, *profiling, "-m", "core.cli", "run"],
                cwd=folder, env=env, stdout=log, stderr=subprocess.STDOUT,
            )  # fmt: skip
        bots.append(bot)
        if worker == 0 and workers > 1:
            _wait_migrated(bot, folder / "bot-0.log")


def _wait_migrated(bot: subprocess.Popen[str], log: Path) -> None:
    """Until the first worker has brought the fresh database's schema up to date: two
    processes migrating one new PostgreSQL database at once collide on creating its types."""
    deadline = time.monotonic() + 120
    while "database schema up to date" not in log.read_text():
        if bot.poll() is not None:
            raise RuntimeError(f"the first worker exited with {bot.returncode} at start")
        if time.monotonic() > deadline:
            raise TimeoutError("the first worker did not migrate the database")
        time.sleep(0.05)


def wait_ready(platform: str, fake: Fake, bots: Sequence[subprocess.Popen[str]]) -> None:
    """Until every worker can take questions: polled, connected to the gateway, or serving its
    webhook port."""
    deadline = time.monotonic() + 120
    if not fake.webhooks:
        fake.wait_for(READY_LINE[platform], 120)
        return
    for url in fake.webhooks:
        # The worker refuses an update without its secret (403): then it is this worker that
        # serves the path, not something else on the port.
        while _status_without_secret(url) != HTTPStatus.FORBIDDEN:
            if any(bot.poll() is not None for bot in bots):
                raise RuntimeError("a worker exited before it was ready")
            if time.monotonic() > deadline:
                raise TimeoutError(f"no worker serves {url} (see its log)")
            time.sleep(0.1)


def _status_without_secret(url: str) -> int | None:
    request = urllib.request.Request(url, data=b"{}", method="POST")
    direct = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # never a proxy
    try:
        with direct.open(request, timeout=2) as response:
            return int(response.status)
    except urllib.error.HTTPError as refused:
        return refused.code
    except OSError:
        return None
