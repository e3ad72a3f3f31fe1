"""What people see of a GPT's answer: its ChatGPT-only markup cleaned, as it streams.

GPTs served through OpenAI-compatible relays write markup only ChatGPT's own page understands:

- citations: `【4:0†source】` and private-use spans such as `\\ue200cite\\ue202turn0search0\\ue201`
  (removed: they carry no address to show), and `[[1]](https://url "title")` (shown as `[1]`,
  with a numbered list of sources at the end of the answer, one line per address);
- code-interpreter files: `[name](sandbox:/mnt/data/name.csv)` (shown as the file's name and a
  note that it cannot be downloaded here);
- image GPTs: a ```json block holding the image prompt, before the image (folded away unless
  `[bot] image_prompt = "show"`). Image links `![alt](https://...)` are left as they are.

`AnswerMarkup.feed` takes each streamed chunk and returns the text safe to show now: what could
still be the start of a marker (an open `【`, a `[` before its link closes, a ```json line before
its closing fence) is held back, within length caps, so no marker ever flashes half-written. The
output only grows (what was returned never changes), which the streaming reply's page split
relies on. Text without any opener character passes straight through, but for its trailing
spaces: they wait for what follows, so that a removed marker between a space and punctuation
(`text 【4:0†source】.`) shows as `text.`, not `text .` (and `a 【1†x】 b` as `a b`).
"""

from __future__ import annotations

import json
import re
import unicodedata
from dataclasses import dataclass, field
from typing import Final, Literal

from core import i18n
from core.i18n import Language

ImagePrompt = Literal["show", "hide"]

# How far past an opener the filter waits for a marker's end before it calls the opener text.
BRACKET_CAP: Final = 200  # 【4:0†source】
LINK_CAP: Final = 1000  # [[1]](url "title"), [name](sandbox:...): addresses can be long
PRIVATE_USE_CAP: Final = 300  # \ue200cite\ue202turn0search0\ue202turn0news3\ue201
JSON_BLOCK_CAP: Final = 4000  # ```json {"prompt": ...} ```

# A private-use opener and the character that closes its span; the others are stray.
_SPAN_CLOSERS: Final = {"\ue200": "\ue201", "\ue203": "\ue204"}
_OPENERS = re.compile("[【\\[!\ue200-\ue2ff]")
_OPENERS_WITH_FENCE = re.compile("[【\\[!`\ue200-\ue2ff]")

_CITATION = re.compile(r'\[\[(\d{1,4})\]\]\(([^)\s]+)(?:[ \t]+"([^"\n]*)")?\)')
_SANDBOX_LINK = re.compile(r"!?\[([^\]\n]*)\]\(sandbox:([^)\s]*)\)")
# Every beginning of a citation or sandbox link (and of ordinary links, told apart once closed).
_LINK_START = re.compile(r'!?(?:\[[^\]\n]*(?:\]\]?(?:\([^)\s]*(?:[ \t]+(?:"[^"\n]*"?)?)?)?)?)?')
_FENCE_OPENING = "```json"
_JSON_BLOCK = re.compile(r"```json[ \t]*\n(.*?)\n```[ \t]*(?:\n|\Z)", re.DOTALL | re.IGNORECASE)
# A prompt block's beginning: anything but an object is shown at once.
_JSON_BLOCK_START = re.compile(r"```json[ \t]*(?:\n\s*(?:\{.*)?)?", re.DOTALL | re.IGNORECASE)
_SPACES: Final = " \t"
# Closing and other punctuation (`.`, `,`, `)`, `。`): no space before it where a marker went.
_CLOSING_PUNCTUATION: Final = frozenset({"Pe", "Pf", "Po"})


class _Hold:
    """The text from an opener on may still become a marker: wait for more."""


_HOLD: Final = _Hold()


@dataclass(slots=True)
class AnswerMarkup:
    """Cleans one answer's text as it streams; `language` is that of the notes it adds."""

    language: Language = "en"
    image_prompt: ImagePrompt = "hide"
    _pending: str = field(default="", init=False)  # raw text not shown yet
    # The raw character before `_pending` (a line starts after a newline).
    _before_pending: str = field(default="\n", init=False)
    _shown_end: str = field(default="\n\n", init=False)  # the last characters shown
    # Trailing spaces of the display not shown yet, and whether a marker was removed after them.
    _spaces: str = field(default="", init=False)
    _spaces_then_marker: bool = field(default=False, init=False)
    # Cited addresses: their number and title.
    _sources: dict[str, tuple[int, str]] = field(default_factory=dict, init=False)

    def feed(self, chunk: str) -> str:
        """The display text `chunk` adds, now that it arrived (maybe less: see the module)."""
        return self._process(self._pending + chunk, at_end=False)

    def finish(self) -> str:
        """The rest of the display text: what was held back, then the list of sources."""
        shown = self._process(self._pending, at_end=True)
        if not self._sources:
            return shown
        lines = [
            f"[{n}] {title}: {url}" if title else f"[{n}] {url}" for n, title, url in self.sources
        ]
        shown_end = (self._shown_end + shown)[-2:]
        gap = "\n" * (2 - (len(shown_end) - len(shown_end.rstrip("\n"))))
        return f"{shown}{gap}{i18n.SOURCES(self.language)}\n" + "\n".join(lines)

    def clean(self, text: str) -> str:
        """A whole answer at once (e.g. one saved mid-stream), sources included."""
        return self.feed(text) + self.finish()

    @property
    def sources(self) -> list[tuple[int, str, str]]:
        """The cited sources so far: (number, title, address), one per address, numbered in
        order of first appearance."""
        return [(n, title, url) for url, (n, title) in self._sources.items()]

    def _process(self, text: str, *, at_end: bool) -> str:
        openers = _OPENERS_WITH_FENCE if self.image_prompt == "hide" else _OPENERS
        shown: list[str] = []
        pos = 0
        while (found := openers.search(text, pos)) is not None:
            start = found.start()
            self._show(shown, text[pos:start])
            before = text[start - 1] if start else self._before_pending
            outcome = self._marker_at(text, start, before, at_end=at_end)
            if isinstance(outcome, _Hold):
                pos = start
                break
            replacement, pos = outcome
            if replacement:
                self._show(shown, replacement)
            elif self._spaces:
                self._spaces_then_marker = True
        else:
            self._show(shown, text[pos:])
            pos = len(text)
        if pos:
            self._before_pending = text[pos - 1]
        self._pending = text[pos:]
        if at_end and not self._spaces_then_marker:
            shown.append(self._spaces)  # the answer's own trailing spaces
        if at_end:
            self._spaces, self._spaces_then_marker = "", False
        result = "".join(shown)
        if result:
            self._shown_end = (self._shown_end + result)[-2:]
        return result

    def _show(self, shown: list[str], piece: str) -> None:
        """Add `piece` to what is shown, but for its trailing spaces (held for what follows)."""
        if not piece:
            return
        if self._spaces and not (self._spaces_then_marker and _needs_no_space(piece[0])):
            shown.append(self._spaces)
        kept = piece.rstrip(_SPACES)
        shown.append(kept)
        self._spaces, self._spaces_then_marker = piece[len(kept) :], False

    def _marker_at(
        self, text: str, start: int, before: str, *, at_end: bool
    ) -> tuple[str, int] | _Hold:
        """What the text from the opener at `start` shows, and where it ends; or hold it."""
        opener = text[start]
        if opener == "【":
            return self._bracket_citation(text, start, at_end=at_end)
        if opener in "[!":
            return self._link(text, start, at_end=at_end)
        if opener == "`":
            if before != "\n":
                return opener, start + 1
            return self._json_block(text, start, at_end=at_end)
        return self._private_use(text, start, at_end=at_end)

    def _bracket_citation(self, text: str, start: int, *, at_end: bool) -> tuple[str, int] | _Hold:
        end = text.find("】", start, start + BRACKET_CAP)
        if end >= 0:
            inside = text[start : end + 1]
            if "†" in inside and "\n" not in inside:
                return "", end + 1
            return "【", start + 1  # ordinary brackets (common in Chinese text)
        tail = text[start : start + BRACKET_CAP]
        if at_end or "\n" in tail or len(tail) >= BRACKET_CAP:
            return "【", start + 1
        return _HOLD

    def _link(self, text: str, start: int, *, at_end: bool) -> tuple[str, int] | _Hold:
        citation = _CITATION.match(text, start, start + LINK_CAP)
        if citation is not None:
            return f"[{self._source_number(citation[2], citation[3])}]", citation.end()
        sandbox = _SANDBOX_LINK.match(text, start, start + LINK_CAP)
        if sandbox is not None:
            return self._sandbox_file(sandbox[1], sandbox[2]), sandbox.end()
        if not at_end:
            tail = text[start : start + LINK_CAP]
            if len(tail) < LINK_CAP and _LINK_START.fullmatch(tail):
                return _HOLD
        return text[start], start + 1  # an ordinary link, or no link at all

    def _json_block(self, text: str, start: int, *, at_end: bool) -> tuple[str, int] | _Hold:
        block = _JSON_BLOCK.match(text, start, start + JSON_BLOCK_CAP)
        # Closed by its fence's line end (or the answer's end): a fence alone may go on.
        closed = block is not None and (
            block[0].endswith("\n") or (at_end and block.end() == len(text))
        )
        if block is not None and closed and _is_image_prompt(block[1]):
            return "", block.end()
        if not at_end and not closed:
            tail = text[start : start + JSON_BLOCK_CAP]
            if len(tail) < JSON_BLOCK_CAP and (
                _FENCE_OPENING.startswith(tail.lower()) or _JSON_BLOCK_START.fullmatch(tail)
            ):
                return _HOLD
        return "`", start + 1  # another block: shown as written (as text, like the rest)

    def _private_use(self, text: str, start: int, *, at_end: bool) -> tuple[str, int] | _Hold:
        closer = _SPAN_CLOSERS.get(text[start])
        if closer is None:
            return "", start + 1  # a stray private-use character: never shown
        end = text.find(closer, start + 1, start + PRIVATE_USE_CAP)
        tail = text[start : end if end >= 0 else start + PRIVATE_USE_CAP]
        if end >= 0 and "\n" not in tail:
            return "", end + 1
        if at_end or "\n" in tail or len(tail) >= PRIVATE_USE_CAP:
            return "", start + 1  # unclosed: drop the opener, show what follows
        return _HOLD

    def _source_number(self, url: str, title: str | None) -> int:
        known = self._sources.get(url)
        if known is None:
            known = self._sources[url] = (len(self._sources) + 1, (title or "").strip())
        return known[0]

    def _sandbox_file(self, label: str, path: str) -> str:
        name = path.rstrip("/").rsplit("/", 1)[-1] or label.strip()
        label = label.strip()
        if label and label != name:
            name = f"{label}: {name}"
        return i18n.SANDBOX_FILE(self.language, name=name)


def _needs_no_space(char: str) -> bool:
    """Whether `char` wants no space before it where a marker was removed."""
    return char in _SPACES or char == "\n" or unicodedata.category(char) in _CLOSING_PUNCTUATION


def _is_image_prompt(block: str) -> bool:
    try:
        value = json.loads(block)
    except ValueError:
        return False
    return isinstance(value, dict) and "prompt" in value
