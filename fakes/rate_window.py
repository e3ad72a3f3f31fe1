"""Counting calls against a platform's rate limits, the way the platform would.

`max_in_window` is the most calls in any window of a length; `would_be_429s` replays recorded
calls against a platform's published `Limits` and counts those it would refuse; `LiveLimit`
refuses them as they come, for a fake server that answers 429 the way the platform would.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True, slots=True)
class Limits:
    """A platform's published limits (what a real server would answer 429 to)."""

    name: str
    max_chars: int
    edit_interval_s: float  # per message
    global_calls: int  # per global_window_s, the whole bot
    global_window_s: float
    chat_calls: int | None  # per chat_window_s, one chat/channel (None: no such limit)
    chat_window_s: float


DISCORD = Limits("discord", 2000, 1.0, 50, 1.0, 5, 5.0)
# Private chats: ~1 message a second per chat, ~30 a second overall.
TELEGRAM = Limits("telegram", 4096, 1.0, 30, 1.0, None, 60.0)
PLATFORMS = {limits.name: limits for limits in (DISCORD, TELEGRAM)}
# Two calls this close to a limit's edge are not counted as over it (timer granularity).
TOLERANCE_S = 0.002


class PlatformCall(Protocol):
    """What `would_be_429s` needs of a recorded call."""

    @property
    def at(self) -> float: ...

    @property
    def kind(self) -> str: ...  # "send" | "edit"

    @property
    def chat(self) -> str: ...

    @property
    def message_id(self) -> str: ...


def max_in_window(times: Iterable[float], window_s: float) -> int:
    """The most events in any half-open window [t, t + window_s)."""
    ordered = sorted(times)
    best, start = 0, 0
    for end, at in enumerate(ordered):
        while ordered[start] <= at - window_s:
            start += 1
        best = max(best, end - start + 1)
    return best


class LiveLimit:
    """At most `max_calls` in any `window_s`, enforced as calls arrive: `admits(at)` says whether
    a call at `at` fits, and counts it only if it does (a refused call uses no allowance)."""

    def __init__(self, max_calls: int, window_s: float) -> None:
        self.max_calls = max_calls
        self.window_s = window_s
        self._admitted: deque[float] = deque()

    def admits(self, at: float) -> bool:
        while self._admitted and self._admitted[0] <= at - self.window_s + TOLERANCE_S:
            self._admitted.popleft()
        if len(self._admitted) >= self.max_calls:
            return False
        self._admitted.append(at)
        return True


def would_be_429s(calls: Sequence[PlatformCall], limits: Limits) -> dict[str, int]:
    """Calls a platform enforcing `limits` would refuse (refused calls use no allowance)."""
    ordered = sorted(calls, key=lambda c: c.at)
    overall: deque[float] = deque()
    per_chat: dict[str, deque[float]] = {}
    last_on_message: dict[str, float] = {}
    refused = {"global": 0, "chat": 0, "message_interval": 0}
    for call in ordered:
        while overall and overall[0] <= call.at - limits.global_window_s + TOLERANCE_S:
            overall.popleft()
        if len(overall) >= limits.global_calls:
            refused["global"] += 1
            continue
        if limits.chat_calls is not None:
            window = per_chat.setdefault(call.chat, deque())
            while window and window[0] <= call.at - limits.chat_window_s + TOLERANCE_S:
                window.popleft()
            if len(window) >= limits.chat_calls:
                refused["chat"] += 1
                continue
            window.append(call.at)
        previous = last_on_message.get(call.message_id)
        if (
            call.kind == "edit"
            and previous is not None
            and call.at - previous < limits.edit_interval_s - TOLERANCE_S
        ):
            refused["message_interval"] += 1
        last_on_message[call.message_id] = call.at
        overall.append(call.at)
    return refused


def allowance_used(
    times: Iterable[float],
    spans: Sequence[tuple[float, float]],
    *,
    overall_per_s: float,
    interval_s: float,
    step_s: float = 0.05,
) -> float | None:
    """The share of the platform's allowance that calls at `times` used while answers streamed.

    Each answer streams over a (start, end) span in `spans` and may make one call per
    `interval_s` meanwhile; all together no more than `overall_per_s`. None without spans.
    """
    if not spans:
        return None
    start, end = min(s for s, _ in spans), max(e for _, e in spans)
    allowance, t = 0.0, start
    while t < end:
        active = sum(1 for s, e in spans if s <= t < e)
        allowance += min(overall_per_s, active / interval_s) * step_s
        t += step_s
    used = sum(1 for at in times if start <= at < end)
    return used / allowance if allowance else None
