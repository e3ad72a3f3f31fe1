"""The benchmark harness runs end to end with tiny parameters and reports every figure.

No wall-clock assertions: only that each field is present and sane.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from bench import e2e, gpts_read, run, shared, telegram_calls

RUN_FIELDS = {
    "n", "mode", "platform", "turns", "turns_ok", "wall_s", "turns_per_s", "cpu_ms_per_turn",
    "cpu_ms_per_turn_event_loop_thread", "rss_peak_mib", "loop_lag_ms", "bot_added_latency_ms",
    "first_chunk_to_first_message_ms", "platform_calls", "calls_per_reply", "ceiling_per_reply",
    "delivered_per_reply", "fairness_jain", "allowance_used_while_streaming", "would_be_429s",
    "would_be_429s_total", "message_interval_violations", "db_ms_per_turn", "db_calls_per_turn",
}  # fmt: skip


def test_the_read_path_bench_streams_every_answer_whole() -> None:
    """bench.gpts_read checks each answer's length itself; one small round, a figure out."""
    per_read = asyncio.run(gpts_read.measure(5, 1, None))
    assert len(per_read) == 1 and per_read[0] > 0


def test_the_telegram_calls_bench_sends_and_edits_through_the_fake() -> None:
    """bench.telegram_calls: one small round against the fake Bot API in its own process."""
    with telegram_calls.fake_bot_api(3) as (base_url, token):
        per_call = asyncio.run(telegram_calls.measure(3, 1, base_url, token))
    assert len(per_call) == 1 and per_call[0] > 0


def test_a_tiny_run_reports_every_figure(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    code = run.main(
        ["--n", "3", "--chars", "60", "--chunks", "6", "--first-delay", "0.05",
         "--chunk-delay", "0.05", "--interval", "0.1", "--history", "10,100", "--no-startup",
         "--out", str(out)]
    )  # fmt: skip
    assert code == 0
    report = json.loads(out.read_text())
    runs = report["runs"]
    assert [(r["n"], r["mode"]) for r in runs] == [(3, "ours"), (3, "baseline")]
    for result in runs:
        assert result.keys() >= RUN_FIELDS, RUN_FIELDS - result.keys()
        assert result["turns"] == result["turns_ok"] == 3
        assert result["cpu_ms_per_turn"] > 0
        assert result["rss_peak_mib"] > 10
        assert result["calls_per_reply"] >= 1
        assert result["ceiling_per_reply"] >= 1
        assert result["db_calls_per_turn"] > 0
        assert 0 <= result["loop_lag_ms"]["p50"] <= result["loop_lag_ms"]["p99"]
        latency = result["bot_added_latency_ms"]
        assert 0 <= latency["p50"] <= latency["p99"]
        assert latency["calls"] == result["platform_calls"]
    ours = runs[0]
    # Paced by the core: never over the platform's limits, each answer ends in its full text.
    assert ours["would_be_429s_total"] == 0
    assert ours["message_interval_violations"] == 0
    assert ours["calls_per_reply"] <= ours["ceiling_per_reply"]
    assert report["edits_per_reply_vs_baseline"]["3"] > 0
    history = report["history_window"]
    assert [s["messages"] for s in history["sizes"]] == [10, 100]
    assert all(s["median_ms"] > 0 for s in history["sizes"])


E2E_FIELDS = {
    "n", "mode", "turns", "turns_per_s", "cpu_ms_per_turn", "idle_cpu_ms_per_s", "rss_peak_mib",
    "platform_calls", "calls_per_reply", "ceiling_per_reply", "peak_calls_per_s",
    "would_be_429s", "would_be_429s_total", "message_interval_violations", "platform_429s",
}  # fmt: skip


def tiny_e2e_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, platform: str, n: int, workers: int = 1
) -> dict[str, Any]:
    """`python -m bench.run --e2e <platform>` with a short answer; its one run, checked."""
    monkeypatch.setattr(e2e, "IDLE_S", 0.5)
    monkeypatch.setattr(e2e, "SETTLE_S", 0.2)
    out = tmp_path / "e2e.json"
    code = run.main(
        ["--e2e", platform, "--workers", str(workers), "--n", str(n), "--chars", "60",
         "--chunks", "6", "--first-delay", "0.05", "--chunk-delay", "0.05", "--history", "",
         "--no-startup", "--out", str(out)]
    )  # fmt: skip
    assert code == 0
    runs = json.loads(out.read_text())["runs"]
    assert [(r["n"], r["mode"], r["workers"]) for r in runs] == [(n, f"e2e-{platform}", workers)]
    result: dict[str, Any] = runs[0]
    assert result.keys() >= E2E_FIELDS, E2E_FIELDS - result.keys()
    assert result["turns"] == n
    assert result["bot_exit_code"] == 0
    assert result["log_errors"] == 0
    assert result["cpu_ms_per_turn"] >= 0
    assert result["rss_peak_mib"] > 10
    assert 1 <= result["calls_per_reply"] <= result["ceiling_per_reply"]
    assert result["would_be_429s_total"] == result["platform_429s"] == 0
    assert result["peak_calls_per_s"] <= result["overall_ceiling_per_s"]
    return result


def test_a_tiny_end_to_end_run_through_telegram(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`gptsbot run` against the fake Bot API: two private chats, each answered in full."""
    tiny_e2e_run(tmp_path, monkeypatch, "telegram", 2)


def test_a_tiny_end_to_end_run_through_discord(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`gptsbot run` (discord.py) against the fake Discord: one mention, answered in full."""
    tiny_e2e_run(tmp_path, monkeypatch, "discord", 1)


@pytest.mark.parametrize("platform", ["telegram", "discord"])
def test_two_workers_share_the_answers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, platform: str
) -> None:
    """Two `gptsbot run` processes sharing Redis and PostgreSQL (Telegram by webhook, Discord by
    shards): each answers its share, together within the platform's ceilings."""
    if why := shared.reachable():
        pytest.skip(why)
    result = tiny_e2e_run(tmp_path, monkeypatch, platform, 2, workers=2)
    assert len(result["cpu_s_by_worker"]) == len(result["rss_peak_mib_by_worker"]) == 2
