"""The benchmark harness runs end to end with tiny parameters and reports every figure.

No wall-clock assertions: only that each field is present and sane.
"""

from __future__ import annotations

import json
from pathlib import Path

from bench import run

RUN_FIELDS = {
    "n", "mode", "platform", "turns", "turns_ok", "wall_s", "turns_per_s", "cpu_ms_per_turn",
    "cpu_ms_per_turn_event_loop_thread", "rss_peak_mib", "loop_lag_ms", "bot_added_latency_ms",
    "first_chunk_to_first_message_ms", "platform_calls", "calls_per_reply", "ceiling_per_reply",
    "delivered_per_reply", "fairness_jain", "allowance_used_while_streaming", "would_be_429s",
    "would_be_429s_total", "message_interval_violations", "db_ms_per_turn", "db_calls_per_turn",
}  # fmt: skip


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
