"""Masked links Discord must not make clickable.

Discord renders an answer's Markdown itself, masked links `[text](url)` included. Only `http`,
`https` and `mailto` links stay as written; any other masked link (`tg://`, `javascript:`,
`file:`, a relative path) gets its two brackets backslash-escaped, so Discord shows `[text](url)`
exactly as the GPT wrote it and nothing in it is clickable. Code spans and blocks are left alone:
Discord shows them verbatim, backslashes included.
"""

from __future__ import annotations

import re

from core.links import is_safe_url

# Discord's own code rules: a closed ``` block, a `` span, a ` span.
_CODE = re.compile(r"```[\s\S]*?```|``[\s\S]*?``|`[^`]*`")
# A masked link: [text](url), [text](<url>), optionally with a quoted title; the text may hold one
# level of brackets. Every repetition below has one way to match, so no input backtracks badly.
_MASKED_LINK = re.compile(
    r"\[([^\[\]]*(?:\[[^\[\]]*\][^\[\]]*)*)\]"
    r"\(\s*(<[^<>\n]*>|(?:[^\s()\\]|\\.|\([^\s()]*\))*)(?:\s+(?:\"[^\"\n]*\"|'[^'\n]*'))?\s*\)"
)


def shown_chars_bound(text: str) -> int:
    """At least the code points of `without_unsafe_links(text)`, and never less for a longer text:
    the splitter searches page ends by bisection, so its measure must not shrink as text grows
    (the exact count can: closing a code span un-escapes the link inside it). Each escaped link
    adds two backslashes and owns one "](" of the text."""
    return len(text) + 2 * text.count("](")


def without_unsafe_links(text: str) -> str:
    """`text` with every masked link to anything but http(s) or mailto shown as plain text."""
    if "](" not in text:
        return text
    out: list[str] = []
    cursor = 0
    for code in _CODE.finditer(text):
        out += (_neutralized(text[cursor : code.start()]), code.group(0))
        cursor = code.end()
    out.append(_neutralized(text[cursor:]))
    return "".join(out)


def _neutralized(prose: str) -> str:
    def escape(link: re.Match[str]) -> str:
        whole, inner = link.group(0), link.group(1)
        rest = whole[len(inner) + 1 :]  # from the "]" before "("
        if is_safe_url(link.group(2).removeprefix("<").removesuffix(">")):
            return "[" + _neutralized(inner) + rest  # a link inside its text, too
        return "\\[" + _neutralized(inner) + "\\" + rest

    return _MASKED_LINK.sub(escape, prose)
