"""The GPTs client: one chat completion, streamed, from an OpenAI-compatible endpoint.

    client = GptsClient(config.gpts)
    async for delta in client.stream_chat("gpt-4-gizmo-g-B3hgivKK9", messages):
        text += delta.text                    # may be "" on the finish / usage deltas
        finish_reason = delta.finish_reason or finish_reason
        usage = delta.usage or usage

Deltas arrive as the endpoint sends them: text pieces, then `finish_reason` (possibly together
with the last text), then `usage` when the endpoint reports it. In non-streaming mode
(`gpts.stream = false`) one Delta carries all three.

Failures raise the typed errors of `core.errors`. Retries (connection errors, 408, 429, 5xx, a
first-chunk timeout) happen only before any text has been yielded: once text may have reached a
user, a broken stream raises `StreamInterrupted` (or `UpstreamTimeout` with phase "idle"/"total").

The wire format is parsed by pure code usable without HTTP: `SseDecoder` (bytes -> event data),
`parse_sse_lines` (lines -> event data), `delta_from_chunk` (one JSON chunk -> Delta) and
`StreamParser` (all three together, for replaying a captured `.sse` body).
"""

from __future__ import annotations

import asyncio
import codecs
import html
import json
import logging
import random
import re
from collections.abc import AsyncGenerator, Iterable, Iterator, Mapping, Sequence
from contextlib import aclosing
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any, TypedDict

import aiohttp

from core.config import GptsConfig
from core.errors import (
    AuthError,
    GptNotFound,
    RateLimited,
    StreamInterrupted,
    UpstreamError,
    UpstreamTimeout,
)

logger = logging.getLogger(__name__)

DONE_MARKER = "[DONE]"
# Longest error text carried into an exception (and so possibly shown to a user).
MAX_ERROR_CHARS = 200
# A Retry-After longer than this is not waited out: the caller gets RateLimited at once.
MAX_RETRY_AFTER_S = 30.0
# Backoff delays are stretched by up to this fraction so parallel retries spread out.
RETRY_JITTER = 0.25
# A malformed SSE line is logged with at most this many of its characters.
MAX_LOGGED_LINE_CHARS = 120
CHECK_PROMPT = "ping"
CHECK_MAX_TOKENS = 1
MODEL_NOT_FOUND = "model_not_found"

_utf8_decode = codecs.utf_8_decode
# json.loads minus its checks: the data is stripped already, and trailing text is caught below.
_json_decode = json.JSONDecoder().raw_decode
_HTML_TITLE = re.compile(r"<title[^>]*>(.*?)</title>", re.IGNORECASE | re.DOTALL)
# Key-shaped words an endpoint might echo back ("invalid token sk-..."): never pass them on.
_KEY_LIKE = re.compile(r"\b(?:sk|key|token)-[A-Za-z0-9_\-]{6,}", re.IGNORECASE)


class ChatMessage(TypedDict):
    role: str  # "system" | "user" | "assistant"
    content: str


@dataclass(frozen=True, slots=True)
class Usage:
    prompt_tokens: int | None
    completion_tokens: int | None
    total_tokens: int | None


@dataclass(frozen=True, slots=True)
class Delta:
    """One piece of an answer: text to show (content or refusal), and/or the finish and usage."""

    text: str = ""
    finish_reason: str | None = None
    usage: Usage | None = None


# --- pure parsing ----------------------------------------------------------------------------


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


def delta_from_chunk(chunk: Mapping[str, Any], *, secret: str = "") -> Delta | None:
    """One decoded `chat.completion.chunk` (or a whole `chat.completion`) as a Delta.

    None when the chunk carries nothing to show (a role chunk, an empty first chunk, content
    filter notes). Raises the mapped `UpstreamError` for an `{"error": ...}` object.
    """
    if chunk.get("error"):
        raise error_from_body(None, chunk, secret=secret)
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

    @property
    def is_stopped(self) -> bool:
        return self.done or self.error is not None

    def feed(self, data: bytes) -> list[Delta]:
        return self._handle(self._sse.feed(data))

    def close(self) -> list[Delta]:
        return self._handle(self._sse.close())

    def _handle(self, events: list[str]) -> list[Delta]:
        deltas: list[Delta] = []
        for data in events:
            if self.done or self.error is not None:
                break
            delta = self._event(data.strip())
            if delta is not None:
                deltas.append(delta)
        return deltas

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
    return delta or Delta()


# --- errors ----------------------------------------------------------------------------------


def _shorten(text: str, secret: str = "") -> str:
    if secret:
        text = text.replace(secret, "***")
    text = _KEY_LIKE.sub("***", text)
    text = " ".join(text.split())
    if len(text) > MAX_ERROR_CHARS:
        text = text[: MAX_ERROR_CHARS - 1] + "…"
    return text


def _error_parts(body: object) -> tuple[str, set[str]]:
    """The message and the code/type words of a JSON error body, in its usual shapes."""
    if not isinstance(body, Mapping):
        return "", set()
    for key in ("error", "detail"):
        value = body.get(key)
        if isinstance(value, str):
            return value, set()
        if isinstance(value, list) and value:  # FastAPI validation errors
            first = value[0]
            value = first if isinstance(first, Mapping) else {"message": str(first)}
        if isinstance(value, Mapping):
            codes = {str(value[k]).lower() for k in ("code", "type") if value.get(k)}
            for text_key in ("message", "msg", "error", "detail"):
                text = value.get(text_key)
                if isinstance(text, str) and text:
                    return text, codes
            return json.dumps(value, ensure_ascii=False), codes
    message = body.get("message")
    return (message if isinstance(message, str) else ""), set()


def error_from_body(
    status: int | None,
    body: str | bytes | Mapping[str, Any],
    *,
    retry_after: float | None = None,
    secret: str = "",
) -> UpstreamError:
    """The typed error for an error answer: JSON in any usual shape, an HTML page, or text.

    `status` is None for an error object inside a 200 stream. The message is one short line
    with `secret` and key-shaped words removed.
    """
    if isinstance(body, bytes):
        body = body.decode("utf-8", errors="replace")
    parsed: object = body
    if isinstance(body, str):
        try:
            parsed = json.loads(body)
        except ValueError:
            parsed = None
    message, codes = _error_parts(parsed)
    if not message and isinstance(body, str):
        stripped = body.strip()
        if stripped[:1] == "<":
            title = _HTML_TITLE.search(stripped)
            page = html.unescape(title.group(1)).strip() if title else ""
            message = f"HTTP {status}: {page}" if page else f"HTTP {status} (HTML page)"
        elif stripped:
            message = stripped.splitlines()[0]
    if not message:
        message = f"HTTP {status}" if status is not None else "error without a message"
    message = _shorten(message, secret)
    if status in (401, 403):
        return AuthError(message, status=status)
    if status == 404 or any(MODEL_NOT_FOUND in code for code in codes):
        return GptNotFound(message, status=status)
    if status == 429:
        return RateLimited(message, status=status, retry_after=retry_after)
    return UpstreamError(message, status=status)


def parse_retry_after(value: str | None) -> float | None:
    """Seconds from a `Retry-After` header (a number of seconds or an HTTP date)."""
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        seconds = (when - datetime.now(UTC)).total_seconds()
    return max(0.0, seconds)


def is_retryable(exc: UpstreamError) -> bool:
    """May the same request be sent again (before any text reached a user)?"""
    match exc:
        case AuthError() | GptNotFound() | StreamInterrupted():
            return False
        case RateLimited(retry_after=retry_after):
            return retry_after is None or retry_after <= MAX_RETRY_AFTER_S
        case UpstreamTimeout(phase=phase):
            return phase in ("connect", "first chunk")
        case _:
            pass
    if exc.status is None:
        return True  # a connection error, or an error object before any text
    return exc.status == 408 or exc.status >= 500


# --- the client ------------------------------------------------------------------------------


class _Progress:
    """What one attempt has yielded: retries stop once any text may have reached a user."""

    __slots__ = ("text_yielded",)

    def __init__(self) -> None:
        self.text_yielded = False


class _Watchdog:
    """The read timeout of one stream: one timer, re-armed only when it fires early.

    Entering and leaving an `asyncio.timeout` around every read costs a timer handle, a heap
    push and a cancellation per chunk. Instead `start` before a read only moves `deadline`
    (and the task to cancel); when the timer fires before the current deadline it sleeps on,
    and when it fires during a read past the deadline it cancels the reading task, as
    `asyncio.timeout` would, and `claim` then tells that CancelledError from any other.
    Between reads (while the consumer holds a Delta) it never cancels anything.
    """

    __slots__ = ("_armed_for", "_cancelling", "_expired", "_handle", "_loop", "_task", "deadline")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._handle: asyncio.TimerHandle | None = None
        self._armed_for = 0.0  # when the pending timer fires
        self._task: asyncio.Task[Any] | None = None  # the reading task, None between reads
        self._cancelling = 0
        self._expired = False
        self.deadline = 0.0

    def start(self, deadline: float) -> None:
        """A read begins, to be cancelled at `deadline`."""
        self.deadline = deadline
        if self._handle is None or deadline < self._armed_for:
            if self._handle is not None:
                self._handle.cancel()
            self._armed_for = deadline
            self._handle = self._loop.call_at(deadline, self._fire)
        task = self._task = asyncio.current_task()
        assert task is not None
        self._cancelling = task.cancelling()

    def stop(self) -> None:
        """The read is over (without a cancellation)."""
        self._task = None

    def claim(self) -> bool:
        """The read was cancelled: True when by this watchdog alone, i.e. it timed out."""
        task, self._task = self._task, None
        if not self._expired or task is None:
            return False
        self._expired = False
        return task.uncancel() <= self._cancelling

    def close(self) -> None:
        self._task = None
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def _fire(self) -> None:
        self._handle = None
        if self.deadline > self._armed_for:  # moved on since this timer was set
            self._armed_for = self.deadline
            self._handle = self._loop.call_at(self.deadline, self._fire)
        elif self._task is not None and not self._expired:
            self._expired = True
            self._task.cancel()


def _merge(deltas: Iterable[Delta]) -> Delta:
    text, finish_reason, usage = "", None, None
    for delta in deltas:
        text += delta.text
        finish_reason = delta.finish_reason or finish_reason
        usage = delta.usage or usage
    return Delta(text, finish_reason, usage)


class GptsClient:
    """Chat completions from the GPTs endpoint over one shared aiohttp session."""

    def __init__(self, config: GptsConfig, *, session: aiohttp.ClientSession | None = None) -> None:
        self._config = config
        self._session = session
        self._owns_session = session is None
        self._url = config.base_url.rstrip("/") + "/chat/completions"
        # Only sock_connect: the other phases are timed here, per read, with their own phase.
        self._http_timeout = aiohttp.ClientTimeout(
            total=None, sock_connect=config.connect_timeout_s
        )

    def __repr__(self) -> str:
        return f"GptsClient(url={self._url!r})"

    async def __aenter__(self) -> GptsClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def close(self) -> None:
        if self._owns_session and self._session is not None:
            await self._session.close()
            self._session = None

    def _get_session(self) -> aiohttp.ClientSession:
        if self._session is None:
            # Each stream holds a connection for the whole answer, so the pool must not be what
            # limits parallel answers (aiohttp's default is 100).
            connector = aiohttp.TCPConnector(limit=0)
            self._session = aiohttp.ClientSession(connector=connector)
        return self._session

    def _headers(self, stream: bool) -> dict[str, str]:
        headers = {"Accept": "text/event-stream" if stream else "application/json"}
        if self._config.api_key:
            headers["Authorization"] = f"Bearer {self._config.api_key}"
        return headers

    def _payload(self, model: str, messages: Sequence[ChatMessage]) -> dict[str, Any]:
        payload: dict[str, Any] = {
            "model": model,
            "messages": [{"role": m["role"], "content": m["content"]} for m in messages],
            "stream": self._config.stream,
        }
        if self._config.temperature is not None:
            payload["temperature"] = self._config.temperature
        return payload

    async def stream_chat(
        self, model: str, messages: Sequence[ChatMessage]
    ) -> AsyncGenerator[Delta, None]:
        """The answer of `model` to `messages`, as Deltas (one Delta in non-streaming mode).

        Raises AuthError, GptNotFound, RateLimited, UpstreamTimeout, StreamInterrupted or
        UpstreamError after the allowed retries.
        """
        async with aclosing(self._request(self._payload(model, messages))) as deltas:
            async for delta in deltas:
                yield delta

    async def check(self, model: str) -> None:
        """Send one tiny request to `model`; return when it starts answering, else raise."""
        payload = self._payload(model, [{"role": "user", "content": CHECK_PROMPT}])
        payload["max_tokens"] = CHECK_MAX_TOKENS
        async with aclosing(self._request(payload)) as deltas:
            async for delta in deltas:
                if delta.text or delta.finish_reason:
                    break

    async def _request(self, payload: dict[str, Any]) -> AsyncGenerator[Delta, None]:
        """Attempts with backoff until one succeeds, fails for good, or text has been yielded."""
        loop = asyncio.get_running_loop()
        started = loop.time()
        total_deadline = started + self._config.total_timeout_s
        model = payload["model"]
        attempts = self._config.max_retries + 1
        for attempt in range(attempts):
            progress = _Progress()
            logger.debug("POST %s model=%s attempt %d/%d", self._url, model, attempt + 1, attempts)
            try:
                async with aclosing(self._attempt(payload, progress, total_deadline)) as deltas:
                    async for delta in deltas:
                        yield delta
            except UpstreamError as exc:
                if progress.text_yielded or attempt + 1 >= attempts or not is_retryable(exc):
                    raise
                delay = self._retry_delay(exc, attempt)
                if loop.time() + delay >= total_deadline:
                    raise
                logger.warning(
                    "GPTs request for %s failed (attempt %d/%d): %s; retrying in %.2f s",
                    model,
                    attempt + 1,
                    attempts,
                    exc,
                    delay,
                )
                await asyncio.sleep(delay)
            else:
                elapsed = loop.time() - started
                logger.info(
                    "GPTs answer from %s done in %.1f s (attempt %d)", model, elapsed, attempt + 1
                )
                return

    def _retry_delay(self, exc: UpstreamError, attempt: int) -> float:
        delay = self._config.retry_backoff_s * 2.0**attempt * (1 + random.random() * RETRY_JITTER)
        if isinstance(exc, RateLimited) and exc.retry_after is not None:
            delay = max(delay, exc.retry_after)
        return delay

    def _deadline(
        self, phase: str, seconds: float, total_deadline: float
    ) -> tuple[float, UpstreamTimeout]:
        """The deadline of the current phase (or the total one, if sooner) and its error."""
        phase_deadline = asyncio.get_running_loop().time() + seconds
        if total_deadline <= phase_deadline:
            return total_deadline, UpstreamTimeout("total", self._config.total_timeout_s)
        return phase_deadline, UpstreamTimeout(phase, seconds)

    async def _attempt(
        self, payload: dict[str, Any], progress: _Progress, total_deadline: float
    ) -> AsyncGenerator[Delta, None]:
        config = self._config
        stream = bool(payload["stream"])
        # Relays send no headers before the GPT's first token: that wait is the first chunk's.
        first_deadline, first_timeout = self._deadline(
            "first chunk", config.first_chunk_timeout_s, total_deadline
        )
        try:
            async with asyncio.timeout_at(first_deadline):
                response = await self._get_session().post(
                    self._url,
                    json=payload,
                    headers=self._headers(stream),
                    timeout=self._http_timeout,
                )
        except aiohttp.ServerTimeoutError as exc:
            raise UpstreamTimeout("connect", config.connect_timeout_s) from exc
        except TimeoutError as exc:
            raise first_timeout from exc
        except aiohttp.ClientError as exc:
            raise UpstreamError(f"cannot reach the GPTs endpoint: {_shorten(str(exc))}") from exc
        try:
            if response.status != 200:
                body = await self._read_body(response, first_deadline, first_timeout)
                retry_after = parse_retry_after(response.headers.get("Retry-After"))
                raise error_from_body(
                    response.status, body, retry_after=retry_after, secret=config.api_key
                )
            if response.content_type == "text/event-stream" or (
                stream and response.content_type not in ("application/json", "text/html")
            ):
                deltas = self._read_sse(response, first_deadline, first_timeout, total_deadline)
                async with aclosing(deltas):
                    if stream:
                        async for delta in deltas:
                            progress.text_yielded = progress.text_yielded or bool(delta.text)
                            yield delta
                        return
                    try:
                        whole = _merge([delta async for delta in deltas])
                    except StreamInterrupted as exc:
                        # Nothing reached a user yet in non-streaming mode: worth a retry.
                        raise UpstreamError(exc.message) from exc
            else:
                body = await self._read_body(response, first_deadline, first_timeout)
                whole = self._parse_completion(body, response.content_type)
            progress.text_yielded = bool(whole.text)
            yield whole
        finally:
            response.release()

    async def _read_body(
        self, response: aiohttp.ClientResponse, deadline: float, late: UpstreamTimeout
    ) -> bytes:
        try:
            async with asyncio.timeout_at(deadline):
                return await response.read()
        except TimeoutError as exc:
            raise late from exc
        except aiohttp.ClientError as exc:
            raise UpstreamError(f"the GPTs endpoint broke the connection: {exc}") from exc

    def _parse_completion(self, body: bytes, content_type: str) -> Delta:
        try:
            parsed = json.loads(body)
        except ValueError:
            parsed = None
        if not isinstance(parsed, dict):
            kind = "an HTML page" if content_type == "text/html" else "not a chat completion"
            raise UpstreamError(
                f"the GPTs endpoint answered with {kind} (is gpts.base_url right?)", status=200
            )
        return delta_from_completion(parsed, secret=self._config.api_key)

    async def _read_sse(
        self,
        response: aiohttp.ClientResponse,
        first_deadline: float,
        first_timeout: UpstreamTimeout,
        total_deadline: float,
    ) -> AsyncGenerator[Delta, None]:
        parser = StreamParser(secret=self._config.api_key)
        has_text = False  # after text, a break is StreamInterrupted and the idle timeout applies
        finished = False  # a finish_reason arrived: only usage and [DONE] may follow
        loop = asyncio.get_running_loop()
        idle_s = self._config.idle_timeout_s
        read = response.content.readany
        watchdog = _Watchdog(loop)
        try:
            while not parser.is_stopped:
                # Per read, only the deadline: the error is built if it is ever reached.
                deadline = min(loop.time() + idle_s, total_deadline) if has_text else first_deadline
                watchdog.start(deadline)
                try:
                    data = await read()
                except asyncio.CancelledError as cancelled:
                    if not watchdog.claim():
                        raise
                    try:  # what `asyncio.timeout` raises, so the causes stay the same
                        raise TimeoutError from cancelled
                    except TimeoutError as exc:
                        if finished:
                            logger.warning("GPTs stream stalled after its finish_reason; ending it")
                            return
                        if not has_text:
                            raise first_timeout from exc
                        if deadline >= total_deadline:
                            raise UpstreamTimeout("total", self._config.total_timeout_s) from exc
                        raise UpstreamTimeout("idle", idle_s) from exc
                except aiohttp.ClientError as exc:
                    if finished:
                        logger.warning("GPTs stream broke after its finish_reason: %s", exc)
                        return
                    reason = _shorten(str(exc)) or type(exc).__name__
                    if has_text:
                        raise StreamInterrupted(
                            f"the GPTs endpoint broke the connection mid-answer: {reason}"
                        ) from exc
                    raise UpstreamError(
                        f"the GPTs endpoint broke the connection: {reason}"
                    ) from exc
                watchdog.stop()
                for delta in parser.feed(data) if data else parser.close():
                    if delta.finish_reason is not None:
                        finished = True
                    if delta.text:
                        has_text = True
                    yield delta
                if parser.error is not None:
                    if has_text:
                        raise StreamInterrupted(parser.error.message)
                    raise parser.error
                if not data:
                    break
        finally:
            watchdog.close()
        if not parser.valid_chunks:
            raise UpstreamError("the GPTs endpoint sent no readable answer", status=200)
        if parser.done or finished:
            return
        if has_text:
            logger.info("GPTs stream ended without [DONE] or finish_reason; keeping the answer")
            return
        raise UpstreamError("the GPTs stream ended before the answer started")
