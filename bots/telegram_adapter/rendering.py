"""A final answer's Markdown as Telegram text + entities, keeping every character the GPT wrote.

telegramify-markdown walks pulldown-cmark's events and writes what each means in Telegram. It
drops raw HTML (`List<String>` parses as an inline tag `<String>`, `a<b and c>d` as `<b and c>`,
a line that starts with `<div>` as an HTML block), decodes entity references (`&lt;` becomes
`<`), reads `$...$` as math and `||...||` as a spoiler (losing the delimiters), and makes every
link destination a `text_link`, whatever its scheme. ChatGPT shows raw HTML as the text it is, so
before converting we ask the same parser where it sees those constructs and backslash-escape
them, which makes them literal text; code spans and blocks are never touched, since the parser
reports no HTML, entities or math inside them. Links whose scheme is not `http`, `https` or
`mailto`, and every link in a table (a table renders as monospaced text, which cannot carry
links), are rewritten as `text (url)`. Entities that still point anywhere else are dropped.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from typing import Any

import pyromark
import telegramify_markdown
from telegram.constants import MessageEntityType

from bots.telegram_adapter.text import MAX_TEXT_UNITS
from core.links import is_safe_url
from core.platform import utf16_units

logger = logging.getLogger(__name__)

# The parser options telegramify-markdown converts with (a test checks they stay the same): the
# escaping below must see the document exactly as the converter will.
PARSE_OPTIONS = (
    pyromark.Options.ENABLE_TABLES
    | pyromark.Options.ENABLE_STRIKETHROUGH
    | pyromark.Options.ENABLE_TASKLISTS
    | pyromark.Options.ENABLE_MATH
)
# Each pass makes at least one construct literal; real answers need two or three (an escaped HTML
# block turns into a paragraph whose inline tags the next pass finds).
MAX_PASSES = 50

# ASCII punctuation, backslash-escaped when a URL is shown as text; parentheses stay as they are
# (they mean nothing outside a link, and "\(" would look like LaTeX to the converter).
_URL_PUNCTUATION = re.compile(r"([!-'*-/:-@\[-`{-~])")
_PIPE_RUN = re.compile(rb"\|{2,}")
# What every construct we escape or rewrite needs: HTML and autolinks "<", entities "&", math
# "$", spoilers "||", links "](", "][" or a reference definition's "]:".
_MAY_NEED_ESCAPING = re.compile(r"[<&$]|\|\||\][(\[:]")


def render_markdown(text: str) -> tuple[str, list[dict[str, Any]]] | None:
    """The GPT's Markdown as Telegram text + entities (the Bot API's MessageEntity JSON), or
    None when plain text must do. JSON rather than PTB's MessageEntity: building those and
    turning them back into JSON for the call cost about 0.7 ms per 50 entities, where a
    formatted answer's page easily has that many."""
    try:
        plain, entities = telegramify_markdown.convert(literal_markdown(text))
    except Exception as exc:
        # The type only: a parser's error may quote the answer.
        logger.warning("rendering Markdown failed (%s); sending plain text", type(exc).__name__)
        return None
    if not plain.strip() or utf16_units(plain) > MAX_TEXT_UNITS:
        return None
    return plain, [entity.to_dict() for entity in entities if _is_allowed(entity.type, entity.url)]


def _is_allowed(kind: str, url: str | None) -> bool:
    if kind == MessageEntityType.CUSTOM_EMOJI:
        return False  # only tg://emoji links make these, and they are shown as text
    return kind != MessageEntityType.TEXT_LINK or is_safe_url(url or "")


# --- making the GPT's text literal where the parser would hide it -------------------------------


@dataclass(frozen=True, slots=True)
class _Edit:
    """Replace source bytes [start, end) with `new` (an insertion when start == end)."""

    start: int
    end: int
    new: bytes


def literal_markdown(text: str) -> str:
    """`text` with raw HTML, entity references, `$` math and `||` spoilers escaped into literal
    text, and links that must not be clickable rewritten as `text (url)`."""
    if not _MAY_NEED_ESCAPING.search(text):
        return text  # nothing to escape or rewrite: skip the parse
    for _ in range(MAX_PASSES):
        source = text.encode("utf-8")
        edits = _edits(source, list(pyromark.events_with_range(text, options=PARSE_OPTIONS)))
        if not edits:
            return text
        text = _apply(source, edits).decode("utf-8")
    logger.warning("Markdown still not literal after %d passes; rendering it as it is", MAX_PASSES)
    return text


def _edits(source: bytes, events: list[tuple[Any, Any]]) -> list[_Edit]:
    edits: list[_Edit] = []
    tables = 0
    code_blocks = 0
    for index, (event, span) in enumerate(events):
        if not isinstance(event, dict):
            continue  # "SoftBreak", "HardBreak", "Rule"
        start, end = span["start"], span["end"]
        if "Text" in event:  # the most common event first
            if not code_blocks:
                edits += _text_edits(source, start, end, event["Text"])
            continue
        opened = event.get("Start")
        closed = event.get("End")
        if isinstance(opened, dict):
            if "Table" in opened:
                tables += 1
            elif "CodeBlock" in opened:
                code_blocks += 1
            elif "Link" in opened or "Image" in opened:
                link = opened["Link"] if "Link" in opened else opened["Image"]
                if tables or not is_safe_url(link["dest_url"]):
                    edits.append(_link_as_text(source, events, index, link))
        elif closed == "Table":
            tables -= 1
        elif closed == "CodeBlock":
            code_blocks -= 1
        elif opened == "HtmlBlock" or "InlineHtml" in event:
            at = source.find(b"<", start, end)
            if at >= 0:
                edits.append(_Edit(at, at, b"\\"))
        elif "InlineMath" in event:
            # A single `$` is a dollar sign in chat text ($HOME, $5 or $10); ChatGPT does not read
            # it as math either. `$$...$$` stays math.
            edits += (_Edit(start, start, b"\\"), _Edit(end - 1, end - 1, b"\\"))
    return edits


def _text_edits(source: bytes, start: int, end: int, text: str) -> list[_Edit]:
    raw = source[start:end]
    if raw[:1] == b"&" and raw.decode("utf-8") != text:
        return [_Edit(start, start, b"\\")]  # an entity reference such as &lt; stays as written
    if b"||" not in raw:
        return []
    # `||` would become a spoiler, losing the bars: escape each bar of a run.
    return [
        _Edit(at, at, b"\\")
        for run in _PIPE_RUN.finditer(raw)
        for at in range(start + run.start(), start + run.end())
        if not _is_escaped(source, at)
    ]


def _is_escaped(source: bytes, at: int) -> bool:
    backslashes = 0
    while at > backslashes and source[at - backslashes - 1] == ord("\\"):
        backslashes += 1
    return backslashes % 2 == 1


def _link_as_text(source: bytes, events: list[tuple[Any, Any]], index: int, link: Any) -> _Edit:
    """The link at events[index] as its text followed by its URL in parentheses."""
    start, end = events[index][1]["start"], events[index][1]["end"]
    inner_start, inner_end = end, start
    depth = 0
    for event, span in events[index + 1 :]:
        if isinstance(event, dict) and "Start" in event:
            depth += 1
        elif isinstance(event, dict) and "End" in event:
            if depth == 0:
                break
            depth -= 1
        inner_start, inner_end = min(inner_start, span["start"]), max(inner_end, span["end"])
    inner = source[inner_start:inner_end] if inner_start < inner_end else b""
    url = link["dest_url"]
    shown = _URL_PUNCTUATION.sub(r"\\\1", url).encode("utf-8")
    if link["link_type"] in ("Autolink", "Email") or inner.decode("utf-8") == url:
        return _Edit(start, end, shown)
    return _Edit(start, end, (inner + b" (" if inner else b"(") + shown + b")")


def _apply(source: bytes, edits: list[_Edit]) -> bytes:
    """`source` with `edits` made; an edit inside a replaced range waits for the next pass."""
    out: list[bytes] = []
    cursor = 0
    inserted_at = -1
    for edit in sorted(edits, key=lambda e: (e.start, -e.end)):
        if edit.start < cursor:
            continue
        if edit.start == edit.end:
            if edit.start == inserted_at:
                continue  # one backslash escapes; a second would escape the first
            inserted_at = edit.start
        out += (source[cursor : edit.start], edit.new)
        cursor = edit.end
    out.append(source[cursor:])
    return b"".join(out)
