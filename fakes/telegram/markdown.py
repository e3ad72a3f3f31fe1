"""Telegram's text rules the fake Bot API applies: MarkdownV2 parsing (with Telegram's error
words), UTF-16 lengths, and the entities Telegram adds to what users write."""

from __future__ import annotations

import re
from typing import Any

_RESERVED = set("_*[]()~`>#+-=|{}.!")
_MENTION = re.compile(r"@[A-Za-z0-9_]{3,32}")
_COMMAND = re.compile(r"/[A-Za-z0-9_]{1,32}(?:@[A-Za-z0-9_]{3,32})?")


def utf16_len(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


class MarkdownV2Error(ValueError):
    pass


_TOGGLES = ("||", "__", "*", "_", "~")
_TOGGLE_TYPES = {
    "||": "spoiler",
    "__": "underline",
    "*": "bold",
    "_": "italic",
    "~": "strikethrough",
}


def _escaped_until(source: str, start: int, stop: str) -> tuple[str, int]:
    """The text from `start` up to the next unescaped `stop` (escapes resolved), and the index of
    that `stop` (len(source) when there is none)."""
    body: list[str] = []
    i, n = start, len(source)
    while i < n and not source.startswith(stop, i):
        if source[i] == "\\" and i + 1 < n:
            body.append(source[i + 1])
            i += 2
        else:
            body.append(source[i])
            i += 1
    return "".join(body), i


def parse_markdown_v2(source: str) -> tuple[str, list[dict[str, Any]]]:
    """Plain text and entities of a MarkdownV2 text, or MarkdownV2Error with Telegram's words.

    Covers what bots send: escapes, bold/italic/underline/strike/spoiler, inline code, pre
    blocks, links, blockquotes. Good enough to reject what real Telegram rejects most often.
    """
    out: list[str] = []
    entities: list[dict[str, Any]] = []
    stack: list[
        tuple[str, int, int]
    ] = []  # (marker, utf-16 start in output, byte offset in source)

    def offset() -> int:
        return utf16_len("".join(out))

    def byte_at(index: int) -> int:
        return len(source[:index].encode("utf-8"))

    def unclosed(index: int) -> MarkdownV2Error:
        return MarkdownV2Error(
            f"Can't find end of the entity starting at byte offset {byte_at(index)}"
        )

    i, n = 0, len(source)
    while i < n:
        ch = source[i]
        at_line_start = i == 0 or source[i - 1] == "\n"
        if ch == "\\":
            if i + 1 < n and 0 < ord(source[i + 1]) < 127:
                out.append(source[i + 1])
                i += 2
                continue
            raise MarkdownV2Error(
                "Character '\\' is reserved and must be escaped with the preceding '\\'"
            )
        if source.startswith("```", i):
            end = i + 3
            newline = source.find("\n", end)
            language = ""
            if newline != -1 and re.fullmatch(r"[A-Za-z0-9_+#-]*", source[end:newline]):
                language, end = source[end:newline], newline + 1
            body, j = _escaped_until(source, end, "```")
            if j >= n:
                raise unclosed(i)
            start = offset()
            out.append(body)
            entity: dict[str, Any] = {"type": "pre", "offset": start, "length": offset() - start}
            if language:
                entity["language"] = language
            if entity["length"]:
                entities.append(entity)
            i = j + 3
            continue
        if ch == "`":
            body, close = _escaped_until(source, i + 1, "`")
            if close >= n:
                raise unclosed(i)
            start = offset()
            out.append(body)
            entities.append({"type": "code", "offset": start, "length": offset() - start})
            i = close + 1
            continue
        if ch == ">" and at_line_start:
            i += 1
            continue
        if ch == "!" and source.startswith("![", i):
            i += 1  # custom emoji: ![👍](tg://emoji?id=...) parses like a link
            continue
        if ch == "[":
            stack.append(("[", offset(), i))
            i += 1
            continue
        if ch == "]" and stack and stack[-1][0] == "[":
            if not source.startswith("](", i):
                raise MarkdownV2Error(
                    "Character ']' is reserved and must be escaped with the preceding '\\'"
                )
            url, close = _escaped_until(source, i + 2, ")")
            if close >= n:
                raise unclosed(stack[-1][2])
            _, start, _ = stack.pop()
            entities.append(
                {
                    "type": "text_link",
                    "offset": start,
                    "length": offset() - start,
                    "url": url,
                }
            )
            i = close + 1
            continue
        toggle = next((t for t in _TOGGLES if source.startswith(t, i)), None)
        if toggle is not None:
            if stack and stack[-1][0] == toggle:
                _, start, _ = stack.pop()
                if offset() > start:
                    entities.append(
                        {"type": _TOGGLE_TYPES[toggle], "offset": start, "length": offset() - start}
                    )
            else:
                stack.append((toggle, offset(), i))
            i += len(toggle)
            continue
        if ch in _RESERVED:
            raise MarkdownV2Error(
                f"Character '{ch}' is reserved and must be escaped with the preceding '\\'"
            )
        out.append(ch)
        i += 1
    if stack:
        raise unclosed(stack[0][2])
    return "".join(out), sorted(entities, key=lambda e: e["offset"])


def auto_entities(text: str) -> list[dict[str, Any]]:
    """The `bot_command` and `mention` entities Telegram adds to a user's text (UTF-16 offsets)."""
    entities: list[dict[str, Any]] = []
    command = _COMMAND.match(text)
    if command:
        entities.append({"type": "bot_command", "offset": 0, "length": utf16_len(command.group())})
    for match in _MENTION.finditer(text):
        if command and match.start() < command.end():
            continue
        if match.start() > 0 and (
            text[match.start() - 1].isalnum() or text[match.start() - 1] == "_"
        ):
            continue  # an e-mail address, not a mention
        entities.append(
            {
                "type": "mention",
                "offset": utf16_len(text[: match.start()]),
                "length": utf16_len(match.group()),
            }
        )
    return entities
