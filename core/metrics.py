"""The service's Prometheus metrics, in a registry of their own (`REGISTRY`, not the library's
global one), served at `/metrics` by `core.ops_server` when `[metrics] listen` is set.

    gptsbot_turns_total{platform, outcome}            core.turn_report (each turn's end)
    gptsbot_tokens_total{platform, kind}              core.turn_report (the answer's usage)
    gptsbot_upstream_first_token_seconds{endpoint}    core.gpts.transport (per attempt)
    gptsbot_upstream_total_seconds{endpoint}          core.gpts.transport (per answer received)
    gptsbot_upstream_errors_total{endpoint, kind}     core.gpts.transport (per failed attempt)
    gptsbot_platform_calls_total{platform, method}    each adapter's HTTP layer
    gptsbot_platform_rate_limited_total{platform}     the same, for HTTP 429 answers
    gptsbot_budget_wait_seconds{platform}             core.pacing (the bot-wide budget)
    gptsbot_active_streams{platform}                  core.conversation (answers under way)
    gptsbot_db_seconds                                storage.Repository (each call)

Labels are bounded: a platform's name, an outcome, an endpoint's configured name or host, an
error kind, an API method or route template. Never a user, a chat or anything anyone wrote.
"""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from core.errors import UpstreamError

REGISTRY = CollectorRegistry()

# Relays send nothing before a GPT's first token, which can take minutes for GPTs that browse.
_UPSTREAM_FIRST_BUCKETS = (0.25, 0.5, 1, 2, 4, 8, 15, 30, 60, 150)
_UPSTREAM_TOTAL_BUCKETS = (1, 2.5, 5, 10, 20, 40, 80, 160, 320, 600)
_BUDGET_BUCKETS = (0.001, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
_DB_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1, 5, 30)

TURNS = Counter(
    "gptsbot_turns",
    "Turns answered, by how they ended (complete, partial, error, stopped, refused).",
    ["platform", "outcome"],
    registry=REGISTRY,
)
TOKENS = Counter(
    "gptsbot_tokens",
    "Tokens the GPTs endpoints reported using (prompt, completion).",
    ["platform", "kind"],
    registry=REGISTRY,
)
UPSTREAM_FIRST_TOKEN = Histogram(
    "gptsbot_upstream_first_token_seconds",
    "From sending a request to an endpoint to the first text of its answer.",
    ["endpoint"],
    buckets=_UPSTREAM_FIRST_BUCKETS,
    registry=REGISTRY,
)
UPSTREAM_TOTAL = Histogram(
    "gptsbot_upstream_total_seconds",
    "From sending a request to an endpoint to the end of its answer (answers received in full).",
    ["endpoint"],
    buckets=_UPSTREAM_TOTAL_BUCKETS,
    registry=REGISTRY,
)
UPSTREAM_ERRORS = Counter(
    "gptsbot_upstream_errors",
    "Failed requests to an endpoint (auth, not_found, rate_limited, server, timeout, cut).",
    ["endpoint", "kind"],
    registry=REGISTRY,
)
PLATFORM_CALLS = Counter(
    "gptsbot_platform_calls",
    "HTTP calls to a platform's API, by method (Telegram) or route (Discord).",
    ["platform", "method"],
    registry=REGISTRY,
)
PLATFORM_RATE_LIMITED = Counter(
    "gptsbot_platform_rate_limited",
    "Platform API calls answered 429 Too Many Requests.",
    ["platform"],
    registry=REGISTRY,
)
BUDGET_WAIT = Histogram(
    "gptsbot_budget_wait_seconds",
    "How long a send or edit waited for the platform's bot-wide rate budget.",
    ["platform"],
    buckets=_BUDGET_BUCKETS,
    registry=REGISTRY,
)
ACTIVE_STREAMS = Gauge(
    "gptsbot_active_streams",
    "Answers being streamed now.",
    ["platform"],
    registry=REGISTRY,
)
DB_SECONDS = Histogram(
    "gptsbot_db_seconds",
    "Database calls, from asking to the answer (lock retries included).",
    buckets=_DB_BUCKETS,
    registry=REGISTRY,
)

TOO_MANY_REQUESTS = 429


# The counter of each (platform, method): `labels()` costs a lock and a lookup of its own.
_platform_calls: dict[tuple[str, str], Counter] = {}


def platform_call(platform: str, method: str, status: int) -> None:
    """One API call a platform answered with HTTP `status`."""
    counter = _platform_calls.get((platform, method))
    if counter is None:
        counter = _platform_calls[platform, method] = PLATFORM_CALLS.labels(platform, method)
    counter.inc()
    if status == TOO_MANY_REQUESTS:
        PLATFORM_RATE_LIMITED.labels(platform).inc()


class UpstreamAttempt:
    """Times one request to one endpoint: `text()` at each piece of text (only the first
    counts), `done()` once the answer ended, `failed(exc)` when the attempt failed."""

    __slots__ = ("_endpoint", "_now", "_seen_text", "_started")

    def __init__(self, endpoint: str, clock: Callable[[], float]) -> None:
        self._endpoint = endpoint
        self._now = clock
        self._started = clock()
        self._seen_text = False

    def text(self) -> None:
        if not self._seen_text:
            self._seen_text = True
            elapsed = self._now() - self._started
            UPSTREAM_FIRST_TOKEN.labels(self._endpoint).observe(elapsed)

    def done(self) -> None:
        UPSTREAM_TOTAL.labels(self._endpoint).observe(self._now() - self._started)

    def failed(self, exc: UpstreamError) -> None:
        UPSTREAM_ERRORS.labels(self._endpoint, exc.kind).inc()
