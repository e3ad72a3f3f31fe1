"""End to end through Telegram: `gptsbot run` (the real CLI, python-telegram-bot's Application)
against the fake Bot API and the fake GPTs endpoint, each in a process of its own.

    python -m bench.run --e2e telegram --n 1,200

N private chats each send one question at once (the fake queues N updates for the bot's long
poll); the run ends when every chat shows a final answer. The bot runs with the default Telegram
settings (edit_interval_s 1.0, 30 messages/s overall), so N answers share 30 calls a second.

CPU is the bot process's own (all its threads), read from /proc/<pid>/stat between the moment the
questions are posted and one second after the last final answer, minus what the idle bot spends in
that time (measured before, while it only long-polls). The fake servers' CPU is not counted.
Peak RSS is the process's VmHWM. Would-be 429s judge the calls where the fake received them:
at most one per chat per second and 30 per second overall.
"""

from __future__ import annotations

import dataclasses
import math
import os
import queue
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.platform import Call
from bench.startup import bot_env, start_telegram, stop
from fakes.rate_window import TELEGRAM, allowance_used, max_in_window, would_be_429s

# Telegram: ~1 message a second in a private chat, ~30 a second overall.
TELEGRAM_PRIVATE = dataclasses.replace(TELEGRAM, chat_calls=1, chat_window_s=1.0)
IDLE_S = 3.0  # how long the idle bot's CPU is sampled before the questions
SETTLE_S = 1.0  # after the last final answer: the answers are stored, the tasks end
TIMEOUT_S = 600.0
CLOCK_TICK_S = 1.0 / os.sysconf("SC_CLK_TCK")


def cpu_s(pid: int) -> float:
    """User + system CPU of the whole process (every thread, also the ones that ended)."""
    with open(f"/proc/{pid}/stat") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) * CLOCK_TICK_S


def thread_cpu_s(pid: int) -> dict[str, float]:
    """CPU of each live thread by name (the main thread is the one named like the process)."""
    out: dict[str, float] = {}
    for task in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{task}/stat") as fh:
                head, _, rest = fh.read().rpartition(")")
        except FileNotFoundError:
            continue
        name = "main" if task == str(pid) else head.partition("(")[2]
        fields = rest.split()
        out[name] = out.get(name, 0.0) + (int(fields[11]) + int(fields[12])) * CLOCK_TICK_S
    return out


def status_kib(pid: int, key: str) -> int:
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return 0


def _py_spy(pid: int, path: str) -> subprocess.Popen[bytes]:
    spy = Path(sys.executable).with_name("py-spy")
    kind = "raw" if path.endswith(".txt") else "speedscope"
    # --gil: only the thread running Python, so an idle event loop is not counted as busy.
    command = [str(spy), "record", "--pid", str(pid), "--rate", "250", "--gil",
               "--format", kind, "--output", path]  # fmt: skip
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(1.0)  # attached
    return process


def percentile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))]


def _wait_for(
    events: queue.Queue[tuple[float, str]], word: str, timeout: float
) -> tuple[float, str]:
    deadline = time.monotonic() + timeout
    while True:
        at, line = events.get(timeout=max(0.01, deadline - time.monotonic()))
        if line.startswith(word):
            return at, line


def measure(
    n: int,
    gpts_url: str,
    *,
    chunks: int = 60,
    chunk_delay: float = 0.1,
    interval: float = 1.0,
    profile: str | None = None,
) -> dict[str, Any]:
    """One end-to-end run with `n` private chats; `gpts_url` is the fake GPTs endpoint.

    `profile`: a file for a py-spy profile of the bot during the turns (py-spy must be
    installed next to this Python; it is a profiling tool, not a dependency)."""
    with tempfile.TemporaryDirectory(prefix="gptsbot-bench-e2e-") as name:
        folder = Path(name)
        server, events, base_url, token = start_telegram(users=n)
        log = folder / "bot.log"
        try:
            env = bot_env(folder, base_url, token, gpts_url, folder / "bot.db")
            with log.open("w") as log_file:
                bot = subprocess.Popen(
                    [sys.executable, "-m", "core.cli", "run"],
                    cwd=folder, env=env, stdout=log_file, stderr=subprocess.STDOUT,
                )  # fmt: skip
            try:
                result = _drive(n, bot, server, events, profile)
            finally:
                stop(bot)
            result["bot_exit_code"] = bot.returncode
        except BaseException:
            sys.stderr.write(log.read_text()[-3000:] if log.exists() else "")
            raise
        finally:
            stop(server)
        text = log.read_text()
    result["log_warnings"] = sum(" WARNING " in line for line in text.splitlines())
    result["log_errors"] = sum(
        " ERROR " in line or "Traceback" in line for line in text.splitlines()
    )
    return _summarize(n, result, chunks=chunks, chunk_delay=chunk_delay, interval=interval)


def _drive(
    n: int,
    bot: subprocess.Popen[str],
    server: subprocess.Popen[str],
    events: queue.Queue[tuple[float, str]],
    profile: str | None = None,
) -> dict[str, Any]:
    import json

    _wait_for(events, "GETUPDATES", 60.0)
    time.sleep(0.5)  # the first long poll is out; start-up work is over
    idle_t0, idle_c0 = time.monotonic(), cpu_s(bot.pid)
    time.sleep(IDLE_S)
    idle_t1, idle_c1 = time.monotonic(), cpu_s(bot.pid)
    idle_rate = (idle_c1 - idle_c0) / (idle_t1 - idle_t0)
    rss_before = status_kib(bot.pid, "VmRSS")
    assert server.stdin is not None
    spy = _py_spy(bot.pid, profile) if profile else None
    t0, c0, threads0 = time.monotonic(), cpu_s(bot.pid), thread_cpu_s(bot.pid)
    server.stdin.write("GO\n")
    server.stdin.flush()
    _, line = _wait_for(events, "DONE", TIMEOUT_S)
    if spy is not None:
        spy.send_signal(signal.SIGINT)
        spy.wait(timeout=30)
    time.sleep(SETTLE_S)
    t1, c1, threads1 = time.monotonic(), cpu_s(bot.pid), thread_cpu_s(bot.pid)
    if bot.poll() is not None:
        raise RuntimeError(f"the bot exited early with {bot.returncode}")
    stats: dict[str, Any] = json.loads(line.split(" ", 1)[1])
    return {
        "stats": stats,
        "cpu_s_gross": c1 - c0,
        "cpu_s_by_thread": {
            name: round(cpu - threads0.get(name, 0.0), 3)
            for name, cpu in sorted(threads1.items())
            if cpu - threads0.get(name, 0.0) > 0
        },
        "cpu_s_idle": idle_rate * (t1 - t0),
        "idle_cpu_ms_per_s": idle_rate * 1000,
        "measured_s": t1 - t0,
        "rss_before_turns_mib": rss_before / 1024,
        "rss_peak_mib": status_kib(bot.pid, "VmHWM") / 1024,
    }


def _summarize(
    n: int, raw: dict[str, Any], *, chunks: int, chunk_delay: float, interval: float
) -> dict[str, Any]:
    stats = raw.pop("stats")
    asked_at = float(stats["asked_at"])
    calls = [
        Call(at, "send" if method.lower() == "sendmessage" else "edit", str(chat),
             f"{chat}:{message_id}", 0, final, at, at)
        for at, method, chat, message_id, _status, final in stats["calls"]
    ]  # fmt: skip
    refused_by_server = sum(1 for *_, status, _final in stats["calls"] if status == 429)
    by_chat: dict[str, list[Call]] = {}
    for call in calls:
        by_chat.setdefault(call.chat, []).append(call)
    finals = [max(c.at for c in own if c.final) for own in by_chat.values()]
    firsts = [own[0].at for own in by_chat.values()]
    per_reply = [len(own) for own in by_chat.values()]
    wall = max(finals) - asked_at
    cpu = max(0.0, raw["cpu_s_gross"] - raw["cpu_s_idle"])
    refused = would_be_429s(calls, TELEGRAM_PRIVATE)
    streaming = (chunks - 1) * chunk_delay
    # The allowance while the answers stream (first message → final edit of each): one call per
    # interval per answer, no more than 30 a second together.
    used = allowance_used(
        [c.at for c in calls],
        [(own[0].at, max(c.at for c in own)) for own in by_chat.values()],
        overall_per_s=TELEGRAM_PRIVATE.global_calls / TELEGRAM_PRIVATE.global_window_s,
        interval_s=interval,
    )
    return {
        "n": n,
        "mode": "e2e-telegram",
        "turns": len(finals),
        "wall_s": round(wall, 3),
        "turns_per_s": round(len(finals) / wall, 2) if wall else None,
        "cpu_ms_per_turn": round(cpu * 1000 / max(1, n), 3),
        "cpu_ms_per_turn_gross": round(raw["cpu_s_gross"] * 1000 / max(1, n), 3),
        "cpu_s": round(cpu, 3),
        "cpu_s_by_thread": raw["cpu_s_by_thread"],
        "idle_cpu_ms_per_s": round(raw["idle_cpu_ms_per_s"], 3),
        "cpu_resolution_ms": round(CLOCK_TICK_S * 1000, 1),
        "measured_s": round(raw["measured_s"], 3),
        "rss_before_turns_mib": round(raw["rss_before_turns_mib"], 1),
        "rss_peak_mib": round(raw["rss_peak_mib"], 1),
        "platform_calls": len(calls),
        "other_calls": stats["other_calls"],
        "other_calls_by_method": stats["other_calls_by_method"],
        "calls_per_reply": round(statistics.fmean(per_reply), 3) if per_reply else 0,
        "calls_per_reply_min": min(per_reply, default=0),
        "calls_per_reply_max": max(per_reply, default=0),
        "ceiling_per_reply": 1 + math.ceil(streaming / interval - 1e-9),
        "fair_share_per_reply": round(
            min(
                1 + math.ceil(streaming / interval - 1e-9),
                TELEGRAM_PRIVATE.global_calls * (streaming + interval) / max(1, n),
            ),
            2,
        ),
        "allowance_used_while_streaming": None if used is None else round(used, 3),
        "peak_calls_per_s": max_in_window((c.at for c in calls), 1.0),
        "would_be_429s": refused,
        "would_be_429s_total": refused["global"] + refused["chat"],
        "message_interval_violations": refused["message_interval"],
        "platform_429s": refused_by_server,
        "first_message_after_question_ms": {
            "p50": round(percentile([(f - asked_at) * 1000 for f in firsts], 50), 1),
            "p99": round(percentile([(f - asked_at) * 1000 for f in firsts], 99), 1),
        },
        "final_answer_after_question_s": {
            "p50": round(percentile([f - asked_at for f in finals], 50), 3),
            "p99": round(percentile([f - asked_at for f in finals], 99), 3),
        },
        "bot_exit_code": raw["bot_exit_code"],
        "log_warnings": raw["log_warnings"],
        "log_errors": raw["log_errors"],
    }
