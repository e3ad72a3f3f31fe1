"""Counting calls against a platform's limits (fakes.rate_window), as tests and the bench do."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from fakes.rate_window import Limits, allowance_used, max_in_window, would_be_429s

LIMITS = Limits("test", 100, 1.0, 3, 1.0, 2, 2.0)


@dataclass
class Sent:
    at: float
    kind: str
    chat: str
    message_id: str


def test_max_in_window_counts_half_open_windows() -> None:
    assert max_in_window([0.0, 0.5, 1.0, 1.2], 1.0) == 3
    assert max_in_window([0.0, 0.999, 1.0], 1.0) == 2
    assert max_in_window([], 1.0) == 0


def test_would_be_429s_counts_each_limit_and_refused_calls_use_no_allowance() -> None:
    calls = [
        Sent(0.0, "send", "a", "1"),
        Sent(0.5, "edit", "a", "1"),  # too soon after the send on message 1
        Sent(0.6, "send", "a", "2"),  # a's third call in 2 s
        Sent(0.7, "send", "b", "3"),
        Sent(0.8, "send", "c", "4"),  # the fourth call in 1 s: over the global limit
        Sent(1.05, "send", "c", "5"),  # 0.0 left the window: allowed
    ]
    assert would_be_429s(calls, LIMITS) == {"global": 1, "chat": 1, "message_interval": 1}
    spaced = [Sent(float(i), "edit", "a", "1") for i in range(4)]
    assert would_be_429s(spaced, LIMITS) == {"global": 0, "chat": 0, "message_interval": 0}


def test_allowance_used_is_the_share_of_what_the_platform_allowed_while_streaming() -> None:
    # Two answers stream over [0, 1) and [0, 2): one call a second each, so 3 calls allowed.
    spans = [(0.0, 1.0), (0.0, 2.0)]
    used = allowance_used([0.0, 0.5, 1.5, 2.5], spans, overall_per_s=10, interval_s=1.0)
    assert used == pytest.approx(3 / 3)
    assert allowance_used([0.0], [], overall_per_s=10, interval_s=1.0) is None
