"""End to end: `gptsbot run` (the real CLI: python-telegram-bot's Application, or discord.py's
client) against the platform's fake and the fake GPTs endpoint, each in a process of its own.

    python -m bench.run --e2e telegram --n 1,200
    python -m bench.run --e2e discord --n 1,200 --workers 2

N chats (Telegram private chats; Discord text channels where the bot is mentioned) each ask one
question at once; the run ends when every chat shows a final answer. The bot runs with the
platform's default settings (edit_interval_s 1.0; Telegram 30 messages a second overall, Discord
50 requests a second and 5 edits per 5 s in a channel), so N answers share those ceilings. With
`--workers 2` two processes share them, through Redis, and one PostgreSQL database (bench/
launch.py says how each platform's work is split).

CPU is the bot processes' own (all their threads, summed), read from /proc/<pid>/stat between
the moment the questions are posted and one second after the last final answer, minus what the
idle bots spend in that time (measured before, while they only wait). The fakes' CPU is not
counted. Peak RSS is each process's VmHWM. Would-be 429s judge the calls where the fake received
them, from every worker together: on Telegram at most one per chat per second and 30 a second
overall; on Discord 5 per channel in 5 s and 50 requests a second overall (every request counts).
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import os
import queue
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench import launch, shared
from bench.platform import Call
from bench.startup import stop
from fakes.rate_window import DISCORD, TELEGRAM, allowance_used, max_in_window, would_be_429s

# Telegram: ~1 message a second in a private chat, ~30 a second overall.
TELEGRAM_PRIVATE = dataclasses.replace(TELEGRAM, chat_calls=1, chat_window_s=1.0)
LIMITS = {"telegram": TELEGRAM_PRIVATE, "discord": DISCORD}
# Whether the overall ceiling counts every call (Discord's 50 requests a second) or only the
# messages sent and edited (Telegram's 30 messages a second).
EVERY_CALL_COUNTS = {"telegram": False, "discord": True}
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


def _py_spy_path() -> Path:
    """py-spy next to this Python, else on PATH."""
    beside = Path(sys.executable).with_name("py-spy")
    return beside if beside.exists() else Path(shutil.which("py-spy") or beside)


def _py_spy(pid: int, path: str) -> subprocess.Popen[bytes]:
    spy = _py_spy_path()
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


def measure(
    n: int,
    gpts_url: str,
    *,
    platform: str = "telegram",
    workers: int = 1,
    chunks: int = 60,
    chunk_delay: float = 0.1,
    interval: float = 1.0,
    profile: str | None = None,
) -> dict[str, Any]:
    """One end-to-end run with `n` chats (Telegram private chats, Discord channels) answered by
    `workers` `gptsbot run` processes; `gpts_url` is the fake GPTs endpoint.

    `profile`: a file for a py-spy profile of the (first) bot during the turns, if py-spy is
    installed next to this Python or on PATH (a profiling tool, not a dependency); else a
    cProfile of its whole run (start-up included) in `profile` + ".prof", which slows it."""
    cprofile = None
    if profile and not _py_spy_path().exists():
        cprofile, profile = profile + ".prof", None
    with contextlib.ExitStack() as stack:
        folder = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="gptsbot-bench-")))
        the_shared = stack.enter_context(shared.backends()) if workers > 1 else None
        fake = launch.start_fake(platform, n, workers)
        bots: list[subprocess.Popen[str]] = []
        try:
            bots = launch.start_workers(
                platform, fake, gpts_url, folder, workers, the_shared, cprofile=cprofile
            )
            try:
                launch.wait_ready(platform, fake, bots)
                result = _drive(bots, fake, profile)
            finally:
                for bot in bots:
                    stop(bot)
            result["bot_exit_code"] = max(abs(bot.returncode or 0) for bot in bots)
        except BaseException:
            for log in sorted(folder.glob("bot-*.log")):
                sys.stderr.write(f"{log.name}:\n{log.read_text()[-3000:]}")
            raise
        finally:
            stop(fake.process)
        lines = [line for log in folder.glob("bot-*.log") for line in log.read_text().splitlines()]
    warnings = [line for line in lines if " WARNING " in line]
    result["log_warnings"] = len(warnings)
    # What they said, without the time stamps (the first few kinds).
    result["log_warning_kinds"] = sorted({w.split(" WARNING ", 1)[1][:160] for w in warnings})[:5]
    result["log_errors"] = sum(" ERROR " in line or "Traceback" in line for line in lines)
    return _summarize(n, platform, workers, result, chunks=chunks, chunk_delay=chunk_delay,
                      interval=interval)  # fmt: skip


def _drive(
    bots: list[subprocess.Popen[str]], fake: launch.Fake, profile: str | None = None
) -> dict[str, Any]:
    import json

    time.sleep(0.5)  # every worker is ready (polling, connected or listening): start-up is over
    idle_t0, idle_c0 = time.monotonic(), _cpu(bots)
    time.sleep(IDLE_S)
    idle_t1, idle_c1 = time.monotonic(), _cpu(bots)
    idle_rate = (sum(idle_c1) - sum(idle_c0)) / (idle_t1 - idle_t0)
    rss_before = [status_kib(bot.pid, "VmRSS") for bot in bots]
    assert fake.process.stdin is not None
    spy = _py_spy(bots[0].pid, profile) if profile else None
    t0, c0 = time.monotonic(), _cpu(bots)
    threads0 = thread_cpu_s(bots[0].pid)
    fake.process.stdin.write("GO\n")
    fake.process.stdin.flush()
    line = _wait_done(bots, fake)
    if spy is not None:
        spy.send_signal(signal.SIGINT)
        spy.wait(timeout=30)
    time.sleep(SETTLE_S)
    t1, c1, threads1 = time.monotonic(), _cpu(bots), thread_cpu_s(bots[0].pid)
    for bot in bots:
        if bot.poll() is not None:
            raise RuntimeError(f"a bot exited early with {bot.returncode}")
    stats: dict[str, Any] = json.loads(line.split(" ", 1)[1])
    return {
        "stats": stats,
        "cpu_s_gross": sum(c1) - sum(c0),
        "cpu_s_by_worker": [round(b - a, 3) for a, b in zip(c0, c1, strict=True)],
        "cpu_s_by_thread": {
            name: round(cpu - threads0.get(name, 0.0), 3)
            for name, cpu in sorted(threads1.items())
            if cpu - threads0.get(name, 0.0) > 0
        },
        "cpu_s_idle": idle_rate * (t1 - t0),
        "idle_cpu_ms_per_s": idle_rate * 1000,
        "measured_s": t1 - t0,
        "rss_before_turns_mib": max(rss_before) / 1024,
        "rss_peak_mib_by_worker": [status_kib(bot.pid, "VmHWM") / 1024 for bot in bots],
    }


def _wait_done(bots: list[subprocess.Popen[str]], fake: launch.Fake) -> str:
    """The fake's DONE line; a worker that exits meanwhile ends the wait at once."""
    deadline = time.monotonic() + TIMEOUT_S
    while True:
        try:
            return fake.wait_for("DONE", 5.0)[1]
        except queue.Empty:
            if any(bot.poll() is not None for bot in bots):
                raise RuntimeError("a worker exited before every answer was final") from None
            if time.monotonic() > deadline:
                raise


def _cpu(bots: list[subprocess.Popen[str]]) -> list[float]:
    """Each worker's CPU so far."""
    return [cpu_s(bot.pid) for bot in bots]


def _summarize(
    n: int, platform: str, workers: int, raw: dict[str, Any], *, chunks: int,
    chunk_delay: float, interval: float,
) -> dict[str, Any]:  # fmt: skip
    stats = raw.pop("stats")
    asked_at = float(stats["asked_at"])
    limits = LIMITS[platform]
    calls = [
        Call(at, kind, str(chat), f"{chat}:{message_id}", 0, final, at, at)
        for at, kind, chat, message_id, _status, final in stats["calls"]
    ]  # fmt: skip
    # Other calls (typing, ...): in the overall ceiling only, each its own chat and message.
    others = [Call(at, "other", f"other-{i}", f"other-{i}", 0, False, at, at)
              for i, at in enumerate(stats["other_call_times"])]  # fmt: skip
    counted = calls + others if EVERY_CALL_COUNTS[platform] else calls
    refused_by_server = sum(1 for *_, status, _final in stats["calls"] if status == 429)
    by_chat: dict[str, list[Call]] = {}
    for call in calls:
        by_chat.setdefault(call.chat, []).append(call)
    finals = [max(c.at for c in own if c.final) for own in by_chat.values()]
    firsts = [own[0].at for own in by_chat.values()]
    per_reply = [len(own) for own in by_chat.values()]
    wall = max(finals) - asked_at
    cpu = max(0.0, raw["cpu_s_gross"] - raw["cpu_s_idle"])
    refused = would_be_429s(counted, limits)
    streaming = (chunks - 1) * chunk_delay
    # The allowance while the answers stream (first message → final edit of each): one call per
    # interval per answer, no more than the overall ceiling together.
    used = allowance_used(
        [c.at for c in calls],
        [(own[0].at, max(c.at for c in own)) for own in by_chat.values()],
        overall_per_s=limits.global_calls / limits.global_window_s,
        interval_s=interval,
    )
    return {
        "n": n,
        "mode": f"e2e-{platform}",
        "workers": workers,
        "turns": len(finals),
        "wall_s": round(wall, 3),
        "turns_per_s": round(len(finals) / wall, 2) if wall else None,
        "cpu_ms_per_turn": round(cpu * 1000 / max(1, n), 3),
        "cpu_ms_per_turn_gross": round(raw["cpu_s_gross"] * 1000 / max(1, n), 3),
        "cpu_s": round(cpu, 3),
        "cpu_s_by_worker": raw["cpu_s_by_worker"],
        "cpu_s_by_thread": raw["cpu_s_by_thread"],  # of the first worker
        "idle_cpu_ms_per_s": round(raw["idle_cpu_ms_per_s"], 3),
        "cpu_resolution_ms": round(CLOCK_TICK_S * 1000, 1),
        "measured_s": round(raw["measured_s"], 3),
        "rss_before_turns_mib": round(raw["rss_before_turns_mib"], 1),
        "rss_peak_mib": round(max(raw["rss_peak_mib_by_worker"]), 1),
        "rss_peak_mib_by_worker": [round(r, 1) for r in raw["rss_peak_mib_by_worker"]],
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
                limits.global_calls * (streaming + interval) / max(1, n),
            ),
            2,
        ),
        "allowance_used_while_streaming": None if used is None else round(used, 3),
        # Across every worker, as the platform counts them.
        "peak_calls_per_s": max_in_window((c.at for c in counted), 1.0),
        "overall_ceiling_per_s": limits.global_calls / limits.global_window_s,
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
        "log_warning_kinds": raw["log_warning_kinds"],
        "log_errors": raw["log_errors"],
    }
