"""The SSE parser: the wire format parsed by pure code, no I/O, usable without HTTP.

`SseDecoder` (bytes -> event data), `parse_sse_lines` (lines -> event data), `delta_from_chunk`
(one JSON chunk -> Delta), `delta_from_completion` (a non-streaming body -> Delta) and
`StreamParser` (all together, for replaying a captured `.sse` body).
"""

from __future__ import annotations

import codecs
import json
import logging
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from core.errors import UpstreamError
from core.gpts.error_mapping import error_from_body
from core.gpts.wire import Delta, Usage
from core.turns import UNSTORABLE, storable_text

logger = logging.getLogger(__name__)

DONE_MARKER = "[DONE]"
# A malformed SSE line is logged with at most this many of its characters.
MAX_LOGGED_LINE_CHARS = 120

_utf8_decode = codecs.utf_8_decode
# json.loads minus its checks: the data is stripped already, and trailing text is caught below.
_json_decode = json.JSONDecoder().raw_decode
_HIGH_SURROGATES = ("\ud800", "\udbff")


class SseDecoder:
    """Incremental `text/event-stream` decoder: feed bytes, get each event's data string.

    Handles CRLF, CR or LF line ends (also split across feeds), `:` comments (keep-alives),
    `data:` with or without the space, and multi-line data (joined with "\\n"). Fields other
    than `data` (`event`, `id`, `retry`) are ignored: chat streams do not use them.

    Each feed splits all its complete lines at once with `str.split("\\n")`; text with a CR in
    it is first rewritten to LF line ends (a CR at the very end is held back: it may be the
    first half of a CRLF still in flight).
    """

    __slots__ = ("_buffer", "_data", "_started", "_undecoded")

    def __init__(self) -> None:
        self._undecoded = b""  # the start of a UTF-8 sequence split across feeds
        self._buffer = ""  # text after the last complete line (LF line ends only)
        self._data: list[str] = []
        self._started = False

    def feed(self, data: bytes) -> list[str]:
        if self._undecoded:
            data = self._undecoded + data
        text, used = _utf8_decode(data, "replace", False)
        self._undecoded = data[used:] if used < len(data) else b""
        return self._drain(self._buffer + text if self._buffer else text, final=False)

    def feed_whole_events(self, data: bytes) -> list[str] | None:
        """`feed` for the usual read, else None (and nothing fed): whole events of one `data:`
        line each, LF line ends, valid UTF-8, with nothing pending. The same events as `feed`,
        found with bytes methods on the whole read instead of decoding and splitting it."""
        if self._buffer or self._data or self._undecoded or not self._started:
            return None
        last = len(data) - 2
        if data.find(b"\n") == last and data[-1:] == b"\n":  # one event, the usual read
            parts = [data[:last]]
        elif data[last:] == b"\n\n":
            parts = data[:last].split(b"\n\n")
            if data.count(b"\n") != 2 * len(parts):  # a part of several lines, a blank line more
                return None
        else:
            return None
        events: list[str] = []
        for part in parts:
            if not part.startswith(b"data:") or b"\r" in part:
                return None
            try:
                line = part.decode()
            except UnicodeDecodeError:
                return None
            events.append(line[6:] if line[5:6] == " " else line[5:])
        return events

    def close(self) -> list[str]:
        """End of stream: dispatch what is pending, even without the closing blank line."""
        text = _utf8_decode(self._undecoded, "replace", True)[0] if self._undecoded else ""
        self._undecoded = b""
        events = self._drain(self._buffer + text, final=True)
        if self._buffer:
            events.extend(self._lines([self._first_line(self._buffer)]))
            self._buffer = ""
        if self._data:
            events.append("\n".join(self._data))
            self._data = []
        return events

    def _first_line(self, text: str) -> str:
        if self._started:
            return text
        self._started = True
        return text.removeprefix("\ufeff")

    def _drain(self, text: str, *, final: bool) -> list[str]:
        held = ""
        if "\r" in text:
            if text[-1] == "\r" and not final:
                text, held = text[:-1], "\r"
            text = text.replace("\r\n", "\n").replace("\r", "\n")
        end = text.rfind("\n")
        if end < 0:
            self._buffer = text + held
            return []
        self._buffer = text[end + 1 :] + held
        return self._lines(self._first_line(text[:end]).split("\n"))

    def _lines(self, lines: list[str]) -> list[str]:
        events: list[str] = []
        data = self._data
        for line in lines:
            if not line:
                if data:
                    events.append(data[0] if len(data) == 1 else "\n".join(data))
                    data = []
            elif line.startswith("data:"):
                data.append(line[6:] if line[5:6] == " " else line[5:])
            elif line == "data":
                data.append("")
            # else: a `:` comment or another field
        self._data = data
        return events


def parse_sse_lines(lines: Iterable[str]) -> Iterator[str]:
    """Event data strings from already split lines (line ends may be left on)."""
    decoder = SseDecoder()
    for line in lines:
        yield from decoder.feed((line.rstrip("\r\n") + "\n").encode())
    yield from decoder.close()


def _usage(raw: object) -> Usage | None:
    if raw is None or not isinstance(raw, Mapping):
        return None

    def count(key: str) -> int | None:
        value = raw.get(key)
        return value if isinstance(value, int) and not isinstance(value, bool) else None

    return Usage(count("prompt_tokens"), count("completion_tokens"), count("total_tokens"))


def _message_text(message: object) -> str:
    """Content plus refusal text of a `delta` (streaming) or `message` (non-streaming)."""
    if message is None or not isinstance(message, Mapping):
        return ""
    content, refusal = message.get("content"), message.get("refusal")
    if refusal is None:  # the usual streamed chunk
        return content if isinstance(content, str) else ""
    return "".join(part for part in (content, refusal) if isinstance(part, str))


def _first_choice(chunk: Mapping[str, Any]) -> Mapping[str, Any] | None:
    choices = chunk.get("choices")
    if not isinstance(choices, list) or not choices:
        return None
    first = choices[0]
    if isinstance(first, Mapping) and first.get("index", 0) == 0:  # the usual single choice
        return first
    mappings = [c for c in choices if isinstance(c, Mapping)]
    for choice in mappings:
        if choice.get("index", 0) == 0:
            return choice
    return mappings[0] if mappings else None


def _plain_content(chunk: Mapping[str, Any]) -> str | None:
    """The text of a plain content chunk, almost every chunk of an answer: one choice with a
    content delta (maybe empty), no finish_reason, usage, refusal or error. None for any other
    chunk (`delta_from_chunk`'s general path reads those); for these it gives the same."""
    choices = chunk.get("choices")
    if type(choices) is not list or len(choices) != 1 or chunk.get("usage") is not None:
        return None
    choice = choices[0]
    if type(choice) is not dict or choice.get("index", 0) != 0:
        return None
    delta = choice.get("delta")
    if type(delta) is not dict or delta.get("refusal") is not None:
        return None
    content = delta.get("content")
    if type(content) is not str or choice.get("finish_reason") is not None:
        return None
    return None if chunk.get("error") else content


def delta_from_chunk(chunk: Mapping[str, Any], *, secret: str = "") -> Delta | None:
    """One decoded `chat.completion.chunk` (or a whole `chat.completion`) as a Delta.

    None when the chunk carries nothing to show (a role chunk, an empty first chunk, content
    filter notes). Raises the mapped `UpstreamError` for an `{"error": ...}` object.
    """
    if chunk.get("error"):
        raise error_from_body(None, chunk, secret=secret)
    content = _plain_content(chunk)
    if content:
        return Delta(content)
    text, finish_reason = "", None
    choice = _first_choice(chunk)
    if choice is not None:
        text = _message_text(choice.get("delta")) or _message_text(choice.get("message"))
        reason = choice.get("finish_reason")
        finish_reason = reason if isinstance(reason, str) and reason else None
    usage = _usage(chunk.get("usage"))
    if not text and finish_reason is None and usage is None:
        return None
    return Delta(text, finish_reason, usage)


class StreamParser:
    """A chat completion SSE body in, Deltas out; no I/O.

    Stops at `[DONE]` or at an `{"error": ...}` object, which it keeps in `error` (the Deltas
    before it are still returned). A data line that is not JSON is skipped with a warning.
    """

    def __init__(self, *, secret: str = "") -> None:
        self._sse = SseDecoder()
        self._secret = secret
        self.done = False
        self.error: UpstreamError | None = None
        self.valid_chunks = 0
        self.malformed_chunks = 0
        # A high surrogate that ended a chunk's text: the low half may start the next chunk's.
        self._high = ""

    @property
    def is_stopped(self) -> bool:
        return self.done or self.error is not None

    def feed(self, data: bytes) -> list[Delta]:
        events = self._sse.feed_whole_events(data)
        if events is None:
            return self._handle(self._sse.feed(data))
        plain = self._plain_text(events)
        return self._handle(events) if plain is None else plain

    def close(self) -> list[Delta]:
        deltas = self._handle(self._sse.close())
        if self._high:  # the stream ended between the halves
            deltas.append(self._mended(Delta(), last=True))
        return deltas

    def _handle(self, events: list[str]) -> list[Delta]:
        deltas: list[Delta] = []
        for data in events:
            if self.done or self.error is not None:
                break
            delta = self._event(data.strip())
            if delta is not None:
                if self._high or UNSTORABLE.search(delta.text):
                    delta = self._mended(delta)
                deltas.append(delta)
        if self._high and self.is_stopped:
            deltas.append(self._mended(Delta(), last=True))
        return deltas

    def _plain_text(self, events: list[str]) -> list[Delta] | None:
        """What `_handle` makes of the usual read, for less: when every event is a plain
        content chunk, their text as one Delta (none if empty). None, having changed nothing,
        for any other read: `_handle` then looks at each event (a [DONE], an error, a finish,
        a malformed line, a half emoji pending from the last read)."""
        if self._high or self.is_stopped:
            return None
        texts: list[str] = []
        for data in events:
            try:
                chunk, end = _json_decode(data)
            except ValueError:
                return None
            content = _plain_content(chunk) if type(chunk) is dict else None
            if content is None or end != len(data):
                return None
            texts.append(content)
        self.valid_chunks += len(events)
        text = "".join(texts)
        if not text:
            return []
        delta = Delta(text)
        return [self._mended(delta) if UNSTORABLE.search(text) else delta]

    def _mended(self, delta: Delta, *, last: bool = False) -> Delta:
        """`delta` as `storable_text` makes it, across chunks too: a relay that cuts text by
        UTF-16 units (JavaScript's `slice`) can split an emoji's pair between two chunks, each
        half a lone escape in its JSON. `last`: no text can follow."""
        text = self._high + delta.text
        self._high = ""
        end = text[-1:]
        if _HIGH_SURROGATES[0] <= end <= _HIGH_SURROGATES[1] and not (last or delta.finish_reason):
            text, self._high = text[:-1], end
        return Delta(storable_text(text), delta.finish_reason, delta.usage)

    def _event(self, data: str) -> Delta | None:
        if data == DONE_MARKER:
            self.done = True
            return None
        chunk: object = None
        try:
            chunk, end = _json_decode(data)
        except ValueError:
            pass
        else:
            if end != len(data):  # "Extra data"
                chunk = None
        if not isinstance(chunk, dict):
            self.malformed_chunks += 1
            logger.warning("skipping a malformed SSE data line: %r", data[:MAX_LOGGED_LINE_CHARS])
            return None
        self.valid_chunks += 1
        try:
            return delta_from_chunk(chunk, secret=self._secret)
        except UpstreamError as exc:
            self.error = exc
            return None


def delta_from_completion(body: Mapping[str, Any], *, secret: str = "") -> Delta:
    """A non-streaming `chat.completion` body as one Delta (raises for an error body)."""
    delta = delta_from_chunk(body, secret=secret)
    if delta is None and _first_choice(body) is None:
        raise UpstreamError("the GPTs endpoint answered without any choices", status=200)
    if delta is None:
        return Delta()
    return Delta(storable_text(delta.text), delta.finish_reason, delta.usage)
