"""Rendering final Telegram answers: every character the GPT wrote stays visible, only http(s) and
mailto links are clickable, and code stays verbatim. Checked on `tests.rendering_corpus` page by
page, split exactly as the streaming reply splits an answer."""

from __future__ import annotations

import re
from collections.abc import Sequence

import pytest
import telegramify_markdown
from telegram import MessageEntity
from telegramify_markdown.config import get_runtime_config
from telegramify_markdown.converter import STANDARD_OPTIONS

from bots.telegram_adapter import rendering
from bots.telegram_adapter.rendering import PARSE_OPTIONS, literal_markdown
from bots.telegram_adapter.text import MAX_TEXT_UNITS, utf16_slice
from core.config import parse_config
from core.links import is_safe_url
from core.platform import utf16_units
from core.splitting import open_fence, split_message
from tests.rendering_corpus import CORPUS, Answer

INDICATOR = parse_config({}, env={}).bot.streaming_indicator


def render_markdown(text: str) -> tuple[str, list[MessageEntity]] | None:
    """`rendering.render_markdown`, its entities (Bot API JSON) read as PTB's MessageEntity."""
    result = rendering.render_markdown(text)
    if result is None:
        return None
    return result[0], [MessageEntity.de_json(entity, None) for entity in result[1]]


# --- what counts as visible ---------------------------------------------------------------------
#
# Markdown syntax (removed from both sides before comparing): these characters, whitespace,
# backslashes that escape ASCII punctuation, list markers (a rendered list renumbers and uses "⦁"),
# and, from the source only, fence lines (their info string becomes the entity's language), table
# delimiter rows, the angle brackets of autolinks, the "!" of images and the destination of every
# clickable link (it moves into the entity; links in tables and unsafe links show it as text).
# What the renderer adds (heading, image and task symbols, the horizontal rule) is removed from
# both sides. Everything else must be the same characters in the same order.
SYNTAX = frozenset("*_`#>~|-+=[]()")
_FENCE_LINE = re.compile(r"^[ \t]*(?:>[ \t]?)*(?:```|~~~).*$", re.MULTILINE)
_DELIMITER_ROW = re.compile(
    r"^[ \t]*\|?[ \t]*:?-+:?[ \t]*(?:\|[ \t]*:?-+:?[ \t]*)*\|?[ \t]*$", re.MULTILINE
)
_LINK_TARGET = re.compile(r'\]\((<[^>\n]*>|(?:[^()\s]|\([^()\s]*\))*)(?:\s+"[^"\n]*")?\)')
_IMAGE = re.compile(r"!\[(?=[^\]]*\]\()")
_AUTOLINK = re.compile(r"<([A-Za-z][A-Za-z0-9+.-]{1,31}:[^\s<>]*|[^\s<>@]+@[^\s<>@]+)>")
_ESCAPE = re.compile(r"\\([!-/:-@\[-`{-~])")
_LIST_MARKER = re.compile(
    r"^([ \t]*(?:>[ \t]?)*)(?:\d{1,9}[.)]|[-*+\u2981])[ \t]+(?:\[[ xX]\][ \t]+)?", re.MULTILINE
)


def _decorations() -> tuple[str, ...]:
    symbol = get_runtime_config().markdown_symbol
    names = (
        "horizontal_rule", "heading_level_1", "heading_level_2", "heading_level_3",
        "heading_level_4", "heading_level_5", "heading_level_6", "image", "task_completed",
        "task_uncompleted", "unordered_list_item",
    )  # fmt: skip
    return tuple(s for s in (getattr(symbol, name) for name in names) if s)


DECORATIONS = _decorations()


def _safe_target(match: re.Match[str]) -> str:
    url = match.group(1).removeprefix("<").removesuffix(">")
    return "]" if is_safe_url(url) else match.group(0)


def _visible(text: str) -> str:
    text = _ESCAPE.sub(r"\1", text)
    text = _LIST_MARKER.sub(r"\1", text)
    for decoration in DECORATIONS:
        text = text.replace(decoration, "")
    return "".join(c for c in text if not c.isspace() and c not in SYNTAX)


def source_visible(markdown: str) -> str:
    text = _FENCE_LINE.sub("", markdown)
    text = _DELIMITER_ROW.sub("", text)
    text = _IMAGE.sub("[", text)
    # Links in tables stay text (a table is monospaced text): their URL is shown.
    text = "\n".join(
        line if line.lstrip().startswith("|") else _LINK_TARGET.sub(_safe_target, line)
        for line in text.split("\n")
    )
    text = _AUTOLINK.sub(r"\1", text)
    return _visible(text)


def pages(text: str) -> list[str]:
    """The pages the streaming reply shows for `text` (room left for the indicator)."""
    return split_message(text, MAX_TEXT_UNITS - utf16_units(INDICATOR), utf16_units)


# --- checks shared with the end-to-end tests --------------------------------------------------


def check_page(source: str, text: str, entities: Sequence[MessageEntity], *, visible: bool) -> None:
    """One final message against the page of Markdown it was rendered from."""
    if visible:
        assert _visible(text) == source_visible(source), (source, text)
    size = utf16_units(text)
    for entity in entities:
        assert entity.offset >= 0 and entity.length > 0, entity
        assert entity.offset + entity.length <= size, entity
        assert entity.type != MessageEntity.CUSTOM_EMOJI, entity
        if entity.type == MessageEntity.TEXT_LINK:
            assert entity.url is not None and is_safe_url(entity.url), entity


def check_answer(answer: Answer, rendered: Sequence[tuple[str, Sequence[MessageEntity]]]) -> None:
    """The whole answer, once every page is final."""
    joined = "".join(text for text, _ in rendered)
    for kept in answer.keep:
        assert kept in joined, (kept, joined)
    pieces = {
        utf16_slice(text, e.offset, e.length)
        for text, entities in rendered
        for e in entities
        if e.type in (MessageEntity.CODE, MessageEntity.PRE)
    }
    for code in answer.code:
        assert code in pieces, (code, pieces)
    links = {
        e.url for _, entities in rendered for e in entities if e.type == MessageEntity.TEXT_LINK
    }
    assert links == answer.links


# --- the corpus ---------------------------------------------------------------------------------


def test_corpus_is_big_and_names_are_unique() -> None:
    assert len(CORPUS) >= 30
    assert len({a.name for a in CORPUS}) == len(CORPUS)


@pytest.mark.parametrize("answer", CORPUS, ids=[a.name for a in CORPUS])
def test_rendering_keeps_every_character(answer: Answer) -> None:
    rendered = []
    for page in pages(answer.text):
        result = render_markdown(page)
        assert result is not None, page  # every corpus page renders: no fallback needed
        text, entities = result
        check_page(page, text, entities, visible=answer.visible)
        rendered.append(result)
    check_answer(answer, rendered)


def test_the_checker_sees_what_the_library_alone_loses() -> None:
    """Without our escaping, telegramify-markdown drops the HTML-looking text: the check fails."""
    for name in ("java_generics", "comparisons", "br_inline", "html_block", "entities"):
        answer = next(a for a in CORPUS if a.name == name)
        text, _ = telegramify_markdown.convert(answer.text)
        assert _visible(text) != source_visible(answer.text), name


def test_split_answers_really_span_pages() -> None:
    by_name = {a.name: a for a in CORPUS}
    assert len(pages(by_name["very_long_line"].text)) >= 2
    assert len(pages(by_name["long_code_fence_split"].text)) >= 2


def test_code_fence_cut_into_pages_stays_verbatim() -> None:
    answer = next(a for a in CORPUS if a.name == "long_code_fence_split")
    code = answer.text.split("```cpp\n", 1)[1].split("```", 1)[0]
    blocks = []
    for page in pages(answer.text):
        result = render_markdown(page)
        assert result is not None
        text, entities = result
        (pre,) = [e for e in entities if e.type == MessageEntity.PRE]
        assert pre.language == "cpp"
        blocks.append(utf16_slice(text, pre.offset, pre.length))
    assert len(blocks) >= 2
    assert "\n".join(blocks) + "\n" == code


@pytest.mark.parametrize("fence", ["```", "~~~", "````", "~~~~~"])
def test_a_cut_fence_is_closed_with_its_own_marker(fence: str) -> None:
    # A ``` line does not close a ~~~ or ```` fence: it would show inside the code.
    code = "".join(f"line {i} < {fence} x\n" for i in range(400))
    text = f"{fence}py\n{code}{fence}\n\nAfter <it>."
    blocks = []
    for page in pages(text):
        assert open_fence(page) == ""
        result = render_markdown(page)
        assert result is not None
        plain, entities = result
        check_page(page, plain, entities, visible=True)
        blocks += [utf16_slice(plain, e.offset, e.length) for e in entities if e.type == "pre"]
    assert len(blocks) >= 2
    assert "\n".join(blocks) + "\n" == code


# --- the pieces ---------------------------------------------------------------------------------


def test_parser_options_match_the_converter() -> None:
    # Escaping is decided on our parse; it must see the document as the converter will.
    assert PARSE_OPTIONS == STANDARD_OPTIONS


@pytest.mark.parametrize(
    ("url", "safe"),
    [
        ("https://example.com/a?b=c", True),
        ("HTTP://EXAMPLE.COM", True),
        ("mailto:someone@example.com", True),
        ("https://", False),
        ("http:example.com", False),
        ("mailto:", False),
        ("tg://resolve?domain=x", False),
        ("javascript:alert(1)", False),
        ("JavaScript:alert(1)", False),
        ("file:///etc/passwd", False),
        ("data:text/html,<b>x</b>", False),
        ("ftp://example.com", False),
        ("/relative", False),
        ("#top", False),
        ("www.example.com", False),
        ("https://exa mple.com", False),
        ("https://example.com/\nx", False),
        ("", False),
    ],
)
def test_only_http_https_and_mailto_are_safe(url: str, safe: bool) -> None:
    assert is_safe_url(url) is safe


@pytest.mark.parametrize(
    "markdown",
    [
        "plain text with a < b",
        "`inline <b> &amp; $x$ || y`",
        "```html\n<div>&amp; $x$ a || b [l](tg://x)</div>\n```",
        "    <indented code> &amp;",
        "[safe](https://example.com) and <https://example.com>",
        "$$x^2$$",
    ],
)
def test_nothing_to_escape_is_left_alone(markdown: str) -> None:
    assert literal_markdown(markdown) == markdown


def test_escaping_is_idempotent() -> None:
    for answer in CORPUS:
        once = literal_markdown(answer.text)
        assert literal_markdown(once) == once, answer.name


def test_a_page_that_grows_past_the_limit_falls_back_to_plain_text() -> None:
    # Each heading gains a symbol and a space: a full page of them cannot be rendered.
    page = "# <h>\n\n" * (MAX_TEXT_UNITS // 7)
    assert utf16_units(page) <= MAX_TEXT_UNITS
    assert render_markdown(page) is None


def test_unsafe_entities_are_dropped_even_when_not_escaped() -> None:
    # Deeper nesting than the escaping passes allow still yields no unsafe link.
    nested = "[x](https://example.com)"
    for depth in range(60):
        nested = f"![{nested}](tg://level{depth})"
    result = render_markdown(nested)
    assert result is not None
    assert all(e.type != MessageEntity.TEXT_LINK or is_safe_url(e.url or "") for e in result[1])
