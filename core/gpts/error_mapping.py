"""Error mapping: an error answer of the GPTs endpoint as a typed error of `core.errors`.

Also the `Retry-After` header in seconds, which errors are worth a retry, and how long to wait
before one. Every message is one short line without the API key or anything key-shaped.
"""

from __future__ import annotations

import html
import json
import random
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from core.gpts.endpoints import Endpoint

from core.errors import (
    AuthError,
    EndpointNotFound,
    GptNotFound,
    RateLimited,
    StreamInterrupted,
    UpstreamError,
    UpstreamTimeout,
)

# Longest error text carried into an exception (and so possibly shown to a user).
MAX_ERROR_CHARS = 200
# A Retry-After longer than this is not waited out: the caller gets RateLimited at once.
MAX_RETRY_AFTER_S = 30.0
# Every wait before a retry is stretched by a random part of up to this fraction, so requests
# refused together (one 429 for fifty turns) do not all come back together either.
RETRY_JITTER = 0.5
MODEL_NOT_FOUND = "model_not_found"
BASE_URL_HINT = "is gpts.base_url right?"
# What servers say for a path they do not serve: Starlette/FastAPI and aiohttp ("Not Found"),
# Gin ("404 page not found"), nginx ("404 Not Found"), OpenAI ("Invalid URL (POST /v1/x)").
_NO_SUCH_PATH = re.compile(r"(?:404:? )?(?:page )?not found|invalid url\b.*")

_HTML_TITLE = re.compile(r"<title[^>]*>(.*?)</title>", re.IGNORECASE | re.DOTALL)
# Key-shaped words an endpoint might echo back ("invalid token sk-..."): never pass them on.
_KEY_LIKE = re.compile(r"\b(?:sk|key|token)-[A-Za-z0-9_\-]{6,}", re.IGNORECASE)


def redact_and_shorten(text: str, secret: str = "") -> str:
    """`text` as one line of at most MAX_ERROR_CHARS, `secret` and key-shaped words as ***."""
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
    hint: str = BASE_URL_HINT,
) -> UpstreamError:
    """The typed error for an error answer: JSON in any usual shape, an HTML page, or text.

    `status` is None for an error object inside a 200 stream. The message is one short line
    with `secret` and key-shaped words removed. `hint`: what a 404 page suggests checking.
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
    message = redact_and_shorten(message, secret)
    if status in (401, 403):
        return AuthError(message, status=status)
    if any(MODEL_NOT_FOUND in code for code in codes):
        return GptNotFound(message, status=status)
    if status == 404:
        # An API that does not know the model answers with its own error; a wrong base URL
        # gets the web server's page, nothing, or the framework's plain "Not Found".
        if isinstance(parsed, Mapping) and not _NO_SUCH_PATH.fullmatch(message.strip().lower()):
            return GptNotFound(message, status=status)
        return EndpointNotFound(f"{message} ({hint})", status=status)
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


def retry_delay(exc: UpstreamError, attempt: int, backoff_s: float, rng: random.Random) -> float:
    """Seconds to wait after failed attempt number `attempt` (0 for the first).

    The exponential backoff (`backoff_s`, doubled per attempt), or the endpoint's Retry-After if
    that is longer, plus a random part of up to RETRY_JITTER of it from `rng`: never sooner than
    the endpoint asked, and spread over at least `backoff_s * RETRY_JITTER` seconds.
    """
    delay = backoff_s * 2.0**attempt
    if isinstance(exc, RateLimited) and exc.retry_after is not None:
        delay = max(delay, exc.retry_after)
    return delay * (1.0 + RETRY_JITTER * rng.random())


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


def model_list(status: int, body: bytes, content_type: str, endpoint: Endpoint) -> list[str]:
    """The model ids of a `GET {base_url}/models` answer. Raises the endpoint's error (a 404
    that is not the API's own error as EndpointNotFound), and EndpointNotFound for a 200 that
    is not a model list (a web page: the wrong `base_url`)."""
    if status != 200:
        error = error_from_body(status, body, secret=endpoint.api_key, hint=endpoint.url_hint)
        if status == 404 and not isinstance(error, EndpointNotFound):
            error = EndpointNotFound(f"{error.message} ({endpoint.url_hint})", status=404)
        raise error
    try:
        listing = json.loads(body)
    except ValueError:
        listing = None
    data = listing.get("data") if isinstance(listing, dict) else None
    if not isinstance(data, list):
        kind = "an HTML page" if content_type == "text/html" else "no model list"
        raise EndpointNotFound(f"HTTP 200 with {kind} ({endpoint.url_hint})", status=200)
    return [m["id"] for m in data if isinstance(m, dict) and isinstance(m.get("id"), str)]
