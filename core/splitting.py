"""Splitting a long answer into platform-sized messages.

Cuts at a paragraph, then a line, then a word boundary in the second half of the window, and only
cuts mid-word when a single word fills the whole window. A ``` code fence the cut leaves open is
closed at the end of the page and reopened (with its language) at the start of the next, so every
page renders as the writer meant. Each page depends only on the text before its end, so while an
answer streams, every page but the last is already final.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

Measure = Callable[[str], int]

_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})", re.MULTILINE)
_BOUNDARIES = ("\n\n", "\n", " ")


@dataclass(frozen=True, slots=True)
class Page:
    """text[start:end] with the fence lines the split added around it."""

    start: int
    end: int
    prefix: str  # a reopened fence, e.g. "```python\n"
    suffix: str  # "\n```" (the opener's marker) when this page closes a fence the cut left open
    reopen: str  # the fence line the next page must reopen, or ""

    def render(self, text: str) -> str:
        return self.prefix + text[self.start : self.end] + self.suffix


def open_fence(text: str, opener: str = "") -> str:
    """The fence line still open at the end of `text` ("" if none), given one open before it."""
    for match in _FENCE.finditer(text):
        line_end = text.find("\n", match.start())
        line = text[match.start() : line_end if line_end >= 0 else len(text)].strip()
        marker = match.group(1)
        if not opener:
            opener = line
        elif line == marker and marker[0] == opener[0] and len(marker) >= _marker_length(opener):
            opener = ""
    return opener


def _marker_length(fence_line: str) -> int:
    return len(fence_line) - len(fence_line.lstrip(fence_line[0]))


def _closer(fence_line: str) -> str:
    """What closes the fence `fence_line` opened: its marker (``` or ~~~, as long), on a new line.
    A shorter or different marker would not close it and would show inside the code."""
    return "\n" + fence_line[: _marker_length(fence_line)] if fence_line else ""


def _fitting_length(text: str, budget: int, measure: Measure) -> int:
    """The longest prefix of `text` (in code points) whose measure is at most `budget`."""
    if measure(text) <= budget:
        return len(text)
    if measure is len:
        return budget
    low, high = 0, min(len(text), budget)  # every code point measures at least 1
    while low < high:
        mid = (low + high + 1) // 2
        if measure(text[:mid]) <= budget:
            low = mid
        else:
            high = mid - 1
    return low


def _cut(window: str) -> int:
    for boundary in _BOUNDARIES:
        at = window.rfind(boundary, len(window) // 2)
        if at > 0:
            return at + len(boundary)
    return len(window)


def _page_end(text: str, start: int, budget: int, reopen: str, measure: Measure) -> tuple[int, str]:
    if budget <= 0:
        raise ValueError("the platform's message limit is too small for a fenced page")
    rest = text[start:]
    size = _fitting_length(rest, budget, measure)
    end = start + (size if size == len(rest) else _cut(rest[:size]))
    return end, open_fence(text[start:end], reopen)


def split_pages(
    text: str, limit: int, measure: Measure = len, *, start: int = 0, reopen: str = ""
) -> list[Page]:
    """Pages of text[start:] that each render within `limit`; `reopen` continues an open fence."""
    pages: list[Page] = []
    while True:
        prefix = reopen + "\n" if reopen else ""
        budget = limit - measure(prefix)
        room = 0  # for closing the fence the cut leaves open; a shorter page may leave another
        while True:
            end, still_open = _page_end(text, start, budget - room, reopen, measure)
            needed = measure(_closer(still_open))
            if needed <= room:
                break
            room = needed
        suffix = _closer(still_open)
        if text[start:end].endswith("\n"):
            suffix = suffix.removeprefix("\n")
        pages.append(Page(start, end, prefix, suffix, still_open))
        if end == len(text):
            return pages
        start, reopen = end, still_open


def split_message(text: str, limit: int, measure: Measure = len) -> list[str]:
    """`text` as messages of at most `limit` (by `measure`), fences balanced in each."""
    return [page.render(text) for page in split_pages(text, limit, measure)]
