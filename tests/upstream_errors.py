"""Every kind of upstream failure, and what the two rules that read them say of each.

`retried`: the same request may be sent again (`core.gpts.error_mapping.is_retryable`).
`fails_over`: raised before any text, it is the endpoint's failure, so the turn moves to another
endpoint and this one is marked unhealthy (`core.gpts.endpoints.is_endpoint_failure`).
One table for both, so where they differ (a 402, a long Retry-After, a 404 page) is seen.
"""

from __future__ import annotations

from typing import NamedTuple

from core import errors


class Failure(NamedTuple):
    error: errors.UpstreamError
    retried: bool
    fails_over: bool


FAILURES = [
    Failure(errors.UpstreamError("cannot reach the GPTs endpoint: refused"), True, True),
    Failure(errors.UpstreamError("connection refused"), True, True),
    Failure(errors.UpstreamError("HTTP 408", status=408), True, True),
    Failure(errors.UpstreamError("HTTP 502", status=502), True, True),
    Failure(errors.UpstreamError("HTTP 503", status=503), True, True),
    Failure(errors.UpstreamError("insufficient balance", status=402), False, True),
    Failure(errors.UpstreamError("sent no readable answer", status=200), False, True),
    Failure(errors.UpstreamError("context too long", status=400), False, False),
    Failure(errors.RateLimited("wait 2 s", retry_after=2.0), True, True),
    Failure(errors.RateLimited("wait 300 s", retry_after=300.0), False, True),
    Failure(errors.RateLimited("wait an hour", retry_after=3600), False, True),
    Failure(errors.UpstreamTimeout("connect", 10), True, True),
    Failure(errors.UpstreamTimeout("first chunk", 150), True, True),
    Failure(errors.UpstreamTimeout("idle", 1.0), False, False),
    Failure(errors.UpstreamTimeout("total", 600), False, False),
    Failure(errors.AuthError("bad key", status=401), False, True),
    Failure(errors.EndpointNotFound("HTTP 404", status=404), False, True),
    Failure(errors.GptNotFound("no such GPT", status=404), False, False),
    Failure(errors.StreamInterrupted("cut"), False, False),
]


def failure_id(failure: Failure) -> str:
    """A test id naming the error: `RateLimited(429): wait 2 s`."""
    return f"{type(failure.error).__name__}({failure.error.status}): {failure.error}"
