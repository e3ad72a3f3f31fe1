"""Typed errors of the core. Adapters turn them into short user-facing text with `user_message`.

    GptsBotError
    ├── ConfigError              a config key is missing, unknown, mistyped or malformed
    ├── DatabaseUnusable         the database cannot be opened or created where the config says
    ├── BadGptName               text that is not a GPT id, model name or GPT URL
    ├── NoGptBound               no binding here and no default GPT
    ├── EmptyMessage             nothing to send the GPT
    ├── MessageTooLong           more than the GPT may be sent at once (`length`, `limit`)
    ├── AttachmentRefused        a file the GPT can't be sent (too many, too large, wrong type)
    ├── QuotaReached             a `[quota]` limit is used up (`limit`, `value`, `resets_at`)
    └── UpstreamError            the GPTs endpoint failed (with its HTTP status, if any)
        ├── AuthError            401/403: the endpoint refused the key
        ├── EndpointNotFound     404 with no API error, or an HTML page: gpts.base_url is wrong
        ├── GptNotFound          404 API error or model_not_found: the GPT does not exist there
        ├── RateLimited          429 after retries (retry_after in seconds, when the endpoint said)
        ├── UpstreamTimeout      connect, first chunk, idle or total timeout (phase names which)
        │   └── TurnTimedOut     the whole turn, retries included, outlasted gpts.turn_timeout_s
        └── StreamInterrupted    the stream broke (or ended unfinished) after text had arrived

`storage.StorageBusy` (the database stayed locked by another process) is not one of these, but
`user_message` has a sentence for it too.

Third-party exceptions are translated at the boundary with ``raise ... from exc``. No message built
here ever contains a secret: callers pass only what the endpoint said, already shortened.
"""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import ClassVar

from core import i18n
from core.i18n import Language
from storage import StorageBusy


class GptsBotError(Exception):
    """Base of every error the core raises on purpose."""


class ConfigError(GptsBotError):
    def __init__(self, key: str, problem: str) -> None:
        super().__init__(f"config: {key}: {problem}")
        self.key = key
        self.problem = problem


class DatabaseUnusable(GptsBotError):
    def __init__(self, location: str, problem: str) -> None:
        super().__init__(f"database {location}: {problem}")
        self.location = location
        self.problem = problem


GPT_NAME_FORMS = (
    "a GPT id (g-B3hgivKK9), a model name (gpt-4-gizmo-g-B3hgivKK9) "
    "or a GPT link (https://chatgpt.com/g/g-B3hgivKK9-write-for-me)"
)


class BadGptName(GptsBotError):
    def __init__(self, text: str) -> None:
        self.shown = text if len(text) <= 60 else text[:57] + "..."
        super().__init__(f"{self.shown!r} is not a GPT. Use {GPT_NAME_FORMS}.")
        self.text = text


class NoGptBound(GptsBotError):
    def __init__(self) -> None:
        super().__init__(
            "No GPT answers here yet. An admin can bind one with /gpt bind <GPT link or id>."
        )


class EmptyMessage(GptsBotError):
    def __init__(self) -> None:
        super().__init__("the message is empty")


class MessageTooLong(GptsBotError):
    def __init__(self, length: int, limit: int) -> None:
        super().__init__(f"the message has {length} characters; the limit is {limit}")
        self.length = length
        self.limit = limit


class AttachmentRefused(GptsBotError):
    """A file sent with a message can't go to the GPT: `line` says why, with `facts` (the file's
    name, sizes and limits) filled in. Nothing of the message goes upstream."""

    def __init__(self, line: i18n.Text, **facts: object) -> None:
        super().__init__(line("en", **facts))
        self.line = line
        self.facts = facts


class QuotaReached(GptsBotError):
    """A `[quota]` limit is used up: `limit` is its key (`tokens_per_user_per_day`...), `value` its
    setting; one more turn is allowed at `resets_at` (UTC), `wait_s` from now."""

    def __init__(self, limit: str, value: int, resets_at: datetime, wait_s: float) -> None:
        super().__init__(f"quota {limit} = {value} reached until {resets_at:%Y-%m-%d %H:%M:%S} UTC")
        self.limit = limit
        self.value = value
        self.resets_at = resets_at
        self.wait_s = wait_s


_QUOTA_LINES = {
    "turns_per_user_per_minute": i18n.QUOTA_TURNS,
    "tokens_per_user_per_day": i18n.QUOTA_USER_TOKENS,
    "tokens_per_scope_per_day": i18n.QUOTA_SCOPE_TOKENS,
}


class UpstreamError(GptsBotError):
    # The `kind` label of gptsbot_upstream_errors_total (core.metrics): a 5xx, a broken connection,
    # an answer that is not one; each subclass names its own.
    kind: ClassVar[str] = "server"

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


class AuthError(UpstreamError):
    kind = "auth"


class EndpointNotFound(UpstreamError):
    kind = "not_found"


class GptNotFound(UpstreamError):
    kind = "not_found"


class RateLimited(UpstreamError):
    kind = "rate_limited"

    def __init__(
        self, message: str, *, status: int | None = 429, retry_after: float | None = None
    ) -> None:
        super().__init__(message, status=status)
        self.retry_after = retry_after


class UpstreamTimeout(UpstreamError):
    kind = "timeout"

    def __init__(self, phase: str, seconds: float, message: str | None = None) -> None:
        super().__init__(message or f"no {phase} from the GPTs endpoint within {seconds:g} s")
        self.phase = phase
        self.seconds = seconds


class TurnTimedOut(UpstreamTimeout):
    def __init__(self, seconds: float) -> None:
        message = f"the turn took longer than {seconds:g} s (gpts.turn_timeout_s)"
        super().__init__("turn", seconds, message)


class StreamInterrupted(UpstreamError):
    kind = "cut"


# A turn's task cancelled with this message was stopped by the person who asked (Ctrl-C in the
# terminal): its error line says "stopped". Any other cancellation is the bot shutting down.
STOP_REQUESTED = "stop requested"


def user_message(exc: BaseException, language: Language = "en") -> str:
    """One short sentence for the person who asked; never a stack trace or a secret."""
    match exc:
        case AuthError():
            text = i18n.AUTH_FAILED
        case GptNotFound():
            text = i18n.GPT_NOT_FOUND
        case RateLimited(retry_after=float() | int() as seconds):
            return i18n.RATE_LIMITED_FOR(language, seconds=max(1, round(seconds)))
        case RateLimited():
            text = i18n.RATE_LIMITED
        case TurnTimedOut(seconds=seconds):
            return i18n.TURN_TIMED_OUT(language, seconds=f"{seconds:g}")
        case UpstreamTimeout(phase="first chunk"):
            text = i18n.TOO_SLOW
        case UpstreamTimeout():
            text = i18n.STALLED
        case StreamInterrupted():
            text = i18n.CUT_OFF
        case UpstreamError(message=message):
            return i18n.UPSTREAM_FAILED(language, message=message)
        case BadGptName(shown=shown):
            return i18n.BAD_GPT_NAME(language, text=shown)
        case NoGptBound():
            text = i18n.NO_GPT_BOUND
        case EmptyMessage():
            text = i18n.EMPTY_MESSAGE
        case MessageTooLong(length=length, limit=limit):
            return i18n.MESSAGE_TOO_LONG(language, length=length, limit=limit)
        case AttachmentRefused(line=line, facts=facts):
            return line(language, **facts)
        case QuotaReached():
            return _QUOTA_LINES[exc.limit](
                language,
                limit=f"{exc.value:,}",
                wait=i18n.duration(exc.wait_s, language),
                time=f"{exc.resets_at:%H:%M:%S}",
            )
        case GptsBotError():
            return f"⚠️ {exc}"
        case asyncio.CancelledError() if exc.args == (STOP_REQUESTED,):
            text = i18n.STOPPED
        case asyncio.CancelledError():
            text = i18n.RESTARTING
        case StorageBusy():
            text = i18n.STORAGE_BUSY
        case _:
            text = i18n.APOLOGY
    return text(language)
