"""Start-up time of `gptsbot run`: from the process start until the Telegram adapter's first
long poll (`getUpdates`) reaches the fake Bot API, i.e. until the bot can take turns.

The command is the real CLI (`python -m core.cli run`, what the `gptsbot` script runs) with a
fresh config and SQLite file, so imports, migrations and connections are all counted. The
adapters are the modules `core.app.ADAPTERS` names, found on PYTHONPATH from the source tree.
"""

from __future__ import annotations

import os
import queue
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import IO, Any

ROOT = Path(__file__).resolve().parent.parent
RUNS = 3
TIMEOUT_S = 30.0


def _lines(stream: IO[str], into: queue.Queue[tuple[float, str]]) -> None:
    with stream:  # closed here at EOF, when the process has ended
        for line in stream:
            into.put((time.monotonic(), line))


def start_server(*command: str) -> tuple[subprocess.Popen[str], queue.Queue[tuple[float, str]],
                                        str, str]:  # fmt: skip
    """Start a fake platform server (`python -m <command>`); its first line says where it listens
    and its token. The queue gets its later lines, timed."""
    server = subprocess.Popen(
        [sys.executable, "-m", *command],
        cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    events: queue.Queue[tuple[float, str]] = queue.Queue()
    assert server.stdout is not None
    threading.Thread(target=_lines, args=(server.stdout, events), daemon=True).start()
    _, line = events.get(timeout=TIMEOUT_S)
    _, base_url, token = line.split()
    return server, events, base_url, token


def stop(process: subprocess.Popen[str]) -> None:
    if process.stdin is not None:
        process.stdin.close()
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def bot_env(folder: Path, base_url: str, token: str, gpts_url: str, db: Path) -> dict[str, str]:
    config = folder / "config.toml"
    config.write_text(
        f'[gpts]\nbase_url = "{gpts_url}"\ndefault_gpt = "g-B3hgivKK9"\n'
        f'[storage]\nurl = "sqlite+aiosqlite:///{db}"\n'
        f'[telegram]\nbase_url = "{base_url}"\n'
        '[log]\nlevel = "INFO"\n'
    )
    env = dict(os.environ)
    env.update(GPTSBOT_CONFIG=str(config), TELEGRAM_BOT_TOKEN=token, GPTS_API_KEY="sk-bench")
    env.pop("DISCORD_BOT_TOKEN", None)
    paths = [str(ROOT), env.get("PYTHONPATH", "")]
    env["PYTHONPATH"] = os.pathsep.join(p for p in paths if p)
    return env


def _once(folder: Path, db: Path) -> dict[str, float]:
    server, events, base_url, token = start_server("bench.telegram_server", "--users", "0")
    try:
        env = bot_env(folder, base_url, token, "http://127.0.0.1:9/v1", db)
        started = time.monotonic()
        bot = subprocess.Popen(
            [sys.executable, "-m", "core.cli", "run"],
            cwd=folder, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        logs: queue.Queue[tuple[float, str]] = queue.Queue()
        assert bot.stderr is not None
        threading.Thread(target=_lines, args=(bot.stderr, logs), daemon=True).start()
        try:
            _at, line = events.get(timeout=TIMEOUT_S)
            polled = float(line.split()[1])
            app_ready = migrated = None
            while not logs.empty():
                logged_at, text = logs.get()
                if "database schema up to date" in text and migrated is None:
                    migrated = logged_at - started
                if " running " in text and app_ready is None:
                    app_ready = logged_at - started
        finally:
            stop(bot)
    finally:
        stop(server)
    return {"ready_s": round(polled - started, 3),
            "migrated_s": round(migrated, 3) if migrated else -1.0,
            "app_open_s": round(app_ready, 3) if app_ready else -1.0}  # fmt: skip


def measure() -> dict[str, Any]:
    """Cold (new database: migrations run) once, then warm (database already migrated)."""
    with tempfile.TemporaryDirectory(prefix="gptsbot-bench-startup-") as name:
        folder = Path(name)
        db = folder / "bot.db"
        runs = [_once(folder, db) for _ in range(RUNS)]
    warm = [r["ready_s"] for r in runs[1:]]
    return {
        "until": "first getUpdates from the Telegram adapter (python-telegram-bot) at the fake",
        "new_database": runs[0],
        "migrated_database": runs[1:],
        "ready_s": round(statistics.median(warm), 3) if warm else runs[0]["ready_s"],
    }


if __name__ == "__main__":
    import json

    print(json.dumps(measure(), indent=2))
