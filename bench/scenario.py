"""One in-process run: N answers at once in N scopes, through the real core, in a fresh process.

    python -m bench.scenario --n 100 --base-url http://127.0.0.1:PORT/v1 --db DIR [--baseline]

Drives `ConversationService.answer` (real SQLite file, real GptsClient over HTTP to the upstream
process, real `StreamingReply` with the platform's budgets) and prints one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import functools
import json
import resource
import statistics
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from bench.baseline import BaselineReply, GlobalThrottle
from bench.platform import Arrivals, Recorder, RecordingChannel, TracingClock
from core.app import open_app
from core.cli import run_loop
from core.config import parse_config
from core.pacing import KeyedBudgets, RateBudget
from core.streaming import StreamingReply
from core.turns import Author, Scope, Turn
from fakes.rate_window import PLATFORMS, Limits, allowance_used, max_in_window, would_be_429s
from storage import MessageStatus

PROBE_INTERVAL_S = 0.01
WARM_UP_TEXT = "warm up"
GPT = "g-B3hgivKK9"
INDICATOR = " ▌"
REPO_METHODS = (
    "start_turn",
    "current_conversation",
    "history",
    "add_message",
    "get_binding",
    "save_answer",
    "finish_answer",
)


def percentile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


def rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def current_rss_mib() -> float:
    with open("/proc/self/statm") as fh:
        pages = int(fh.read().split()[1])
    return pages * resource.getpagesize() / 2**20


class TimedReply(StreamingReply):
    """A StreamingReply that notes when each chunk arrived (for latency only)."""

    def __init__(self, *args: Any, arrivals: Arrivals, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.arrivals = arrivals
        self._length = 0

    def append(self, text: str) -> None:
        if text:
            self._length += len(text)
            self.arrivals.add(self._length)
        super().append(text)


class LagProbe:
    def __init__(self) -> None:
        self.lags_ms: list[float] = []
        self._task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        while True:
            started = time.monotonic()
            await asyncio.sleep(PROBE_INTERVAL_S)
            self.lags_ms.append((time.monotonic() - started - PROBE_INTERVAL_S) * 1000)

    async def calibrate(self, ticks: int = 50) -> float:
        """CPU seconds one probe tick costs on an idle loop (subtracted from the bot's)."""
        started = time.process_time()
        for _ in range(ticks):
            await asyncio.sleep(PROBE_INTERVAL_S)
        return (time.process_time() - started) / ticks

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        assert self._task is not None
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task


def time_db(repo: Any, totals: dict[str, float]) -> None:
    """Wrap the repository calls of a turn to add up their wall time."""
    for name in REPO_METHODS:
        method: Callable[..., Awaitable[Any]] = getattr(repo, name)

        @functools.wraps(method)
        async def timed(*args: Any, _method: Any = method, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return await _method(*args, **kwargs)
            finally:
                totals["s"] += time.perf_counter() - started
                totals["calls"] += 1

        setattr(repo, name, timed)


def start_profiler(path: str | None) -> Any:
    """cProfile over the measured turns only (bench/run.py --profile)."""
    if not path:
        return None
    import cProfile

    profiler = cProfile.Profile()
    profiler.enable()
    return profiler


def stop_profiler(profiler: Any, path: str | None) -> None:
    if profiler is not None and path:
        profiler.disable()
        profiler.dump_stats(path)


def budgets_for(limits: Limits, clock: TracingClock) -> Callable[[str], tuple[RateBudget, ...]]:
    """The shared budgets the adapters give a reply (see bots/*: one bot-wide, one per chat)."""
    overall = RateBudget.per_second(limits.global_calls / limits.global_window_s, clock)
    if limits.chat_calls is None:
        return lambda chat: (overall,)
    per_chat = KeyedBudgets(limits.chat_calls, limits.chat_window_s, clock)
    return lambda chat: (per_chat[chat], overall)


async def run(args: argparse.Namespace) -> dict[str, Any]:
    limits = PLATFORMS[args.platform]
    limits = dataclasses.replace(limits, edit_interval_s=args.interval)
    config = parse_config(
        {
            "gpts": {"base_url": args.base_url, "default_gpt": GPT, "max_retries": 0},
            "storage": {"url": f"sqlite+aiosqlite:///{Path(args.db) / 'bench.db'}"},
        },
        {"GPTS_API_KEY": "sk-bench"},
    )
    clock = TracingClock()
    recorder = Recorder(limits, clock)
    budgets = budgets_for(limits, clock)
    throttle = GlobalThrottle()
    async with open_app(config) as app:
        service = app.service
        service.reraise_unexpected = True
        # Warm up (connection pool, statement caches) on a scope of its own.
        warm = Recorder(limits, TracingClock())
        warm_scope = Scope(limits.name, "warm-up")
        await service.answer(
            Turn(warm_scope, Author("0", "Warm"), WARM_UP_TEXT, is_private=True),
            StreamingReply(RecordingChannel(warm, "w", Arrivals(), ""), edit_interval_s=0),
        )
        db = {"s": 0.0, "calls": 0}
        time_db(app.repo, db)
        rss_before = current_rss_mib()

        arrivals = [Arrivals() for _ in range(args.n)]
        [0.0] * args.n
        outcomes: list[MessageStatus] = []

        async def one(i: int) -> None:
            chat = f"chat-{i}"
            channel = RecordingChannel(recorder, chat, arrivals[i], INDICATOR)
            reply: Any
            if args.baseline:
                reply = BaselineReply(channel, throttle, INDICATOR)
            else:
                reply = TimedReply(
                    channel,
                    edit_interval_s=limits.edit_interval_s,
                    budgets=budgets(chat),
                    indicator=INDICATOR,
                    clock=clock,
                    arrivals=arrivals[i],
                )
            if args.baseline:
                original = reply.append

                def append(text: str, _orig: Any = original, _a: Arrivals = arrivals[i]) -> None:
                    if text:
                        _a.add(len(reply.text) + len(text))
                    _orig(text)

                reply.append = append
            turn = Turn(Scope(limits.name, chat), Author(str(i), f"User {i}"), f"question {i}",
                        is_private=True, message_id=str(i))  # fmt: skip
            outcome = await service.answer(turn, reply)
            outcomes.append(outcome.status)

        probe = LagProbe()
        probe_cpu_per_tick = await probe.calibrate()
        probe.start()
        profiler = start_profiler(args.profile)
        cpu0, wall0, main0 = time.process_time(), time.monotonic(), time.thread_time()
        await asyncio.gather(*(one(i) for i in range(args.n)))
        wall = time.monotonic() - wall0
        cpu = time.process_time() - cpu0
        main_cpu = time.thread_time() - main0
        stop_profiler(profiler, args.profile)
        await probe.stop()
        # The probe's own CPU is not the bot's. (At N=1 it is most of the process time, so
        # the per-turn figure is only as good as this calibration there.)
        probe_cpu = probe_cpu_per_tick * len(probe.lags_ms)
        cpu = max(0.0, cpu - probe_cpu)
        main_cpu = max(0.0, main_cpu - probe_cpu_per_tick * len(probe.lags_ms))
        rss_peak = rss_mib()
    result = summarize(args, limits, recorder, arrivals, outcomes, cpu, wall, db, probe,
                       rss_before, rss_peak)  # fmt: skip
    # The rest of the process time is other threads: aiosqlite runs each connection in one.
    result["probe_cpu_ms_subtracted"] = round(probe_cpu * 1000, 1)
    result["cpu_ms_per_turn_event_loop_thread"] = round(main_cpu * 1000 / max(1, args.n), 3)
    return result


def summarize(
    args: argparse.Namespace,
    limits: Limits,
    recorder: Recorder,
    arrivals: list[Arrivals],
    outcomes: list[MessageStatus],
    cpu: float,
    wall: float,
    db: dict[str, float],
    probe: LagProbe,
    rss_before: float,
    rss_peak: float,
) -> dict[str, Any]:
    n = args.n
    calls = recorder.calls
    by_chat: dict[str, list[Any]] = {}
    for call in calls:
        by_chat.setdefault(call.chat, []).append(call)
    latencies = [max(0.0, (c.at - c.ready) * 1000) for c in calls if c.ready]
    first_raw, first_added, per_reply, ceilings, finals_lag = [], [], [], [], []
    for i, arrival in enumerate(arrivals):
        own = by_chat.get(f"chat-{i}", [])
        if not arrival.times or not own:
            continue
        first = own[0]
        first_raw.append((first.at - arrival.times[0]) * 1000)
        first_added.append(max(0.0, (first.at - first.ready) * 1000))
        per_reply.append(len(own))
        duration = arrival.times[-1] - arrival.times[0]
        ceilings.append(1 + int(-(-duration // limits.edit_interval_s)))
        finals_lag.append((own[-1].at - arrival.times[-1]) * 1000)
    # The allowance while text arrives: every streaming answer may edit once per interval, and
    # all together no faster than the platform's overall rate.
    used = allowance_used(
        [c.at for c in calls],
        [(a.times[0], a.times[-1]) for a in arrivals if a.times],
        overall_per_s=limits.global_calls / limits.global_window_s,
        interval_s=limits.edit_interval_s,
    )
    jain = (
        (sum(per_reply) ** 2) / (len(per_reply) * sum(x * x for x in per_reply)) if per_reply else 0
    )
    refused = would_be_429s(calls, limits)
    return {
        "n": n,
        "mode": "baseline" if args.baseline else "ours",
        "platform": limits.name,
        "turns": len(outcomes),
        "turns_ok": outcomes.count("complete"),
        "wall_s": round(wall, 3),
        "turns_per_s": round(len(outcomes) / wall, 2),
        "cpu_ms_per_turn": round(cpu * 1000 / max(1, len(outcomes)), 3),
        "cpu_s": round(cpu, 3),
        "probe_ticks": len(probe.lags_ms),
        "cpu_bound_turns_per_s": round(len(outcomes) / cpu, 1) if cpu else None,
        "rss_before_turns_mib": round(rss_before, 1),
        "rss_peak_mib": round(rss_peak, 1),
        "loop_lag_ms": {
            "p50": round(percentile(probe.lags_ms, 50), 2),
            "p99": round(percentile(probe.lags_ms, 99), 2),
            "max": round(max(probe.lags_ms, default=0.0), 2),
        },
        "bot_added_latency_ms": {
            "p50": round(percentile(latencies, 50), 2),
            "p99": round(percentile(latencies, 99), 2),
            "calls": len(latencies),
        },
        "first_chunk_to_first_message_ms": {
            "bot_added_p50": round(percentile(first_added, 50), 2),
            "bot_added_p99": round(percentile(first_added, 99), 2),
            "raw_p50": round(percentile(first_raw, 50), 2),
            "raw_p99": round(percentile(first_raw, 99), 2),
        },
        "last_chunk_to_final_edit_ms": {
            "p50": round(percentile(finals_lag, 50), 1),
            "p99": round(percentile(finals_lag, 99), 1),
        },
        "platform_calls": len(calls),
        "calls_per_reply": round(statistics.fmean(per_reply), 3) if per_reply else 0,
        "calls_per_reply_min": min(per_reply, default=0),
        "calls_per_reply_max": max(per_reply, default=0),
        "ceiling_per_reply": round(statistics.fmean(ceilings), 3) if ceilings else 0,
        "edits_per_s_per_reply": round(
            statistics.fmean(
                n_calls / max(1e-9, (a.times[-1] - a.times[0]) + limits.edit_interval_s)
                for n_calls, a in zip(per_reply, [a for a in arrivals if a.times], strict=False)
            ),
            3,
        )
        if per_reply
        else 0,
        "fairness_jain": round(jain, 4),
        "allowance_used_while_streaming": None if used is None else round(used, 3),
        "peak_calls_per_s": max_in_window((c.at for c in calls), 1.0),
        "would_be_429s": refused,
        "would_be_429s_total": refused["global"] + refused["chat"],
        # What a platform enforcing its limits would have shown: refused calls are lost.
        "delivered_per_reply": round(
            (len(calls) - refused["global"] - refused["chat"]) / max(1, len(per_reply)), 3
        ),
        "message_interval_violations": refused["message_interval"],
        "db_ms_per_turn": round(db["s"] * 1000 / max(1, len(outcomes)), 3),
        "db_calls_per_turn": round(db["calls"] / max(1, len(outcomes)), 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, required=True)
    parser.add_argument("--base-url", required=True)
    parser.add_argument("--db", required=True, help="a directory for the SQLite file")
    parser.add_argument("--platform", choices=sorted(PLATFORMS), default="discord")
    parser.add_argument("--interval", type=float, default=1.0, help="edit interval per message")
    parser.add_argument("--baseline", action="store_true", help="llmcord's global throttle")
    parser.add_argument("--profile", help="write a cProfile of the measured turns here")
    args = parser.parse_args()
    result = run_loop(run(args))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
