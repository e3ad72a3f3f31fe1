"""The benchmark: `python -m bench.run` prints a one-line summary and writes JSON.

    python -m bench.run                       # N = 1,100,1000, ours and llmcord-style baseline
    python -m bench.run --n 1,200 --platform telegram --no-baseline
    python -m bench.run --quick               # N = 1,10: a smoke run in ~20 s
    python -m bench.run --e2e telegram --n 1,200   # `gptsbot run` through the fake Bot API
    python -m bench.run --e2e discord --workers 2  # two `gptsbot run`, Redis and PostgreSQL

Each measurement runs in a fresh child process (so peak RSS is per N) against the fake GPTs
endpoint in a process of its own (so the upstream's CPU is not counted as the bot's). The
standard workload is a 1,200-character answer in 60 chunks over 6.4 s (0.5 s to the first chunk,
then one chunk every 0.1 s), one answer per scope, N scopes at once. See bench/scenario.py for
what each figure means. With `--e2e telegram` or `--e2e discord` the N sizes run end to end
instead: the real `gptsbot run` process (python-telegram-bot, discord.py) against the platform's
fake (with `--workers 2`: two processes sharing Redis and a fresh PostgreSQL database), see
bench/e2e.py.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from bench import e2e, history, shared, startup

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = ROOT / "bench" / "results" / "latest.json"


@contextlib.contextmanager
def upstream(chars: int, chunks: int, first_delay: float, chunk_delay: float) -> Iterator[str]:
    """The fake GPTs endpoint in a child process; yields its base URL."""
    command = [sys.executable, "-m", "bench.upstream", "--chars", str(chars),
               "--chunks", str(chunks), "--first-delay", str(first_delay),
               "--chunk-delay", str(chunk_delay)]  # fmt: skip
    process = subprocess.Popen(
        command, cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        if not line.startswith("READY "):
            raise RuntimeError(f"the fake GPTs endpoint did not start: {line!r}")
        yield line.split()[1]
    finally:
        assert process.stdin is not None
        process.stdin.close()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        if process.stdout is not None:
            process.stdout.close()


def scenario(base_url: str, n: int, platform: str, interval: float, baseline: bool,
             profile: str | None = None) -> dict[str, Any]:  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="gptsbot-bench-") as db:
        command = [sys.executable, "-m", "bench.scenario", "--n", str(n), "--base-url", base_url,
                   "--db", db, "--platform", platform, "--interval", str(interval)]  # fmt: skip
        if baseline:
            command.append("--baseline")
        if profile:
            command += ["--profile", profile]
        done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"scenario n={n} failed:\n{done.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def ratio(ours: float, theirs: float) -> float | None:
    return round(ours / theirs, 2) if theirs else None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.run", description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )  # fmt: skip
    parser.add_argument("--n", help="concurrent scopes, comma-separated (default 1,100,1000; "
                        "with --e2e 1,200)")  # fmt: skip
    parser.add_argument("--e2e", choices=["telegram", "discord"],
                        help="run `gptsbot run` end to end through this platform's fake instead "
                        "of the in-process core")  # fmt: skip
    parser.add_argument("--workers", type=int, default=1,
                        help="with --e2e: `gptsbot run` processes sharing the work (2 or more: "
                        "Redis and PostgreSQL, see bench/shared.py)")  # fmt: skip
    parser.add_argument("--platform", default="discord", choices=["discord", "telegram"],
                        help="whose published limits pace and judge the calls")  # fmt: skip
    parser.add_argument("--no-baseline", dest="baseline", action="store_false",
                        help="skip the llmcord-style global-throttle runs")  # fmt: skip
    parser.add_argument("--chars", type=int, default=1200, help="answer length")
    parser.add_argument("--chunks", type=int, default=60, help="chunks per answer")
    parser.add_argument("--first-delay", type=float, default=0.5, help="s to the first chunk")
    parser.add_argument("--chunk-delay", type=float, default=0.1, help="s between chunks")
    parser.add_argument("--interval", type=float, default=1.0, help="s between edits per message")
    parser.add_argument("--history", default="10,1000,100000",
                        help="stored messages for the history timing ('' to skip)")  # fmt: skip
    parser.add_argument("--no-startup", dest="startup", action="store_false",
                        help="skip timing `gptsbot run` start-up")  # fmt: skip
    parser.add_argument("--quick", action="store_true", help="N=1,10, small history: ~20 s")
    parser.add_argument("--profile", help="directory: write a cProfile per scenario run (with "
                        "--e2e: a py-spy profile of the bot, if py-spy is installed)")  # fmt: skip
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="JSON output file")
    args = parser.parse_args(argv)
    if args.workers != 1 and not args.e2e:
        parser.error("--workers needs --e2e")
    if args.workers > 1 and (why := shared.reachable()):
        parser.error(f"--workers {args.workers}: {why}")
    if args.quick:
        args.n, args.history = "1,10", "10,1000"
    if args.n is None:
        args.n = "1,200" if args.e2e else "1,100,1000"
    sizes = [int(x) for x in args.n.split(",") if x]
    started = time.monotonic()
    report: dict[str, Any] = {
        "workload": {
            "chars": args.chars,
            "chunks": args.chunks,
            "first_delay_s": args.first_delay,
            "chunk_delay_s": args.chunk_delay,
            "edit_interval_s": args.interval,
            "platform": args.platform,
        },
        "machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0]},
        "runs": [],
    }
    with upstream(args.chars, args.chunks, args.first_delay, args.chunk_delay) as base_url:
        for n in sizes if args.e2e else []:
            profile = None
            if args.profile:
                Path(args.profile).mkdir(parents=True, exist_ok=True)
                profile = str(Path(args.profile) / f"e2e-{args.e2e}-{n}.txt")
            result = e2e.measure(n, base_url, platform=args.e2e, workers=args.workers,
                                 chunks=args.chunks, chunk_delay=args.chunk_delay,
                                 interval=args.interval, profile=profile)  # fmt: skip
            report["runs"].append(result)
            print(f"  n={n:<5} {result['mode']} x{args.workers} "
                  f"cpu {result['cpu_ms_per_turn']:.2f} ms/turn, "
                  f"rss {result['rss_peak_mib']:.0f} MiB, {result['turns_per_s']} turns/s, "
                  f"calls/reply {result['calls_per_reply']:.2f}, "
                  f"429s {result['would_be_429s_total']}", file=sys.stderr, flush=True)  # fmt: skip
        for n in [] if args.e2e else sizes:
            modes = [False, True] if args.baseline else [False]
            for baseline in modes:
                profile = None
                if args.profile:
                    Path(args.profile).mkdir(parents=True, exist_ok=True)
                    kind = "baseline" if baseline else "ours"
                    profile = str(Path(args.profile) / f"{kind}-{n}.prof")
                run = scenario(base_url, n, args.platform, args.interval, baseline, profile)
                report["runs"].append(run)
                print(f"  n={n:<5} {run['mode']:<8} cpu {run['cpu_ms_per_turn']:.2f} ms/turn, "
                      f"rss {run['rss_peak_mib']:.0f} MiB, lag p99 "
                      f"{run['loop_lag_ms']['p99']:.1f} ms, calls/reply "
                      f"{run['calls_per_reply']:.2f}, 429s {run['would_be_429s_total']}",
                      file=sys.stderr, flush=True)  # fmt: skip
    report["edits_per_reply_vs_baseline"] = {
        str(n): ratio(
            *[
                next(
                    r["delivered_per_reply"]
                    for r in report["runs"]
                    if r["n"] == n and r["mode"] == m
                )
                for m in ("ours", "baseline")
            ]
        )
        for n in sizes
        if args.baseline and not args.e2e
    }
    history_sizes = [int(x) for x in args.history.split(",") if x]
    if history_sizes:
        report["history_window"] = history.measure(history_sizes)
    if args.startup:
        report["startup"] = startup.measure()
    report["bench_wall_s"] = round(time.monotonic() - started, 1)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(summary_line(report))
    print(f"wrote {args.out}", file=sys.stderr)
    return 0


def summary_line(report: dict[str, Any]) -> str:
    parts = []
    for run in report["runs"]:
        if run["mode"].startswith("e2e-"):
            parts.append(
                f"e2e {run['mode'][4:]} x{run['workers']} N={run['n']}: "
                f"{run['turns_per_s']} turns/s, "
                f"{run['cpu_ms_per_turn']:.2f} ms CPU/turn, {run['rss_peak_mib']:.0f} MiB, "
                f"{run['calls_per_reply']:.1f} calls/reply, peak {run['peak_calls_per_s']}/s, "
                f"429s {run['would_be_429s_total']}"
            )
        if run["mode"] != "ours":
            continue
        parts.append(
            f"N={run['n']}: {run['turns_per_s']:.1f} turns/s, {run['cpu_ms_per_turn']:.2f} ms "
            f"CPU/turn, {run['rss_peak_mib']:.0f} MiB, lag p99 {run['loop_lag_ms']['p99']:.1f} "
            f"ms, added p99 {run['bot_added_latency_ms']['p99']:.1f} ms, "
            f"{run['calls_per_reply']:.1f} calls/reply, 429s {run['would_be_429s_total']}"
        )
    ratios = report.get("edits_per_reply_vs_baseline") or {}
    if ratios:
        parts.append("edits vs llmcord " + " ".join(f"N={n}:{r}x" for n, r in ratios.items()))
    if "history_window" in report:
        h = report["history_window"]
        parts.append(f"history {h['ratio_largest_to_smallest']}x")
    if "startup" in report:
        parts.append(f"startup {report['startup']['ready_s']:.2f} s")
    return "bench: " + " | ".join(parts)


if __name__ == "__main__":
    sys.exit(main())
