"""Several GPTs endpoints: which one an attempt goes to, and which are healthy.

    pool = EndpointPool(endpoints_of(config.gpts), backoff_s=15, max_backoff_s=300)
    async with pool.slot(exclude=tried) as endpoint:      # waits while every candidate is full
        ...                                               # pool.succeeded / pool.failed

Choosing, among the endpoints this turn has not tried yet (all of them once each was tried):
- the healthy ones with room (fewer turns in flight than `max_concurrent`) are drawn by weight,
  from the injected random source; a full one is skipped while another has room;
- if every healthy candidate is full, the turn waits for a slot rather than failing;
- if none is healthy, the one whose back-off ends first is used rather than refusing the turn.

Health: a failure before any text that is about the endpoint (`is_endpoint_failure`) makes it
unhealthy for `backoff_s`, doubled per failure in a row up to `max_backoff_s` (a longer
Retry-After wins). Attempts that were already under way when it was marked do not double it again:
fifty turns cut by one outage are one failure. After its back-off it is chosen again like any
healthy endpoint, and its first answer makes it healthy. Both changes are logged in one line,
naming the endpoint by its `name` or host, never by its key.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Collection, Sequence
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from core import errors
from core.config import GptsConfig
from core.gpt_names import model_name

logger = logging.getLogger(__name__)

# Doubling stops growing here long before a float would overflow (the cap applies anyway).
_MAX_DOUBLINGS = 30
# Payment Required: relays answer it when the account behind this endpoint has no credit left.
_PAYMENT_REQUIRED = 402


def is_endpoint_failure(exc: errors.UpstreamError) -> bool:
    """Does `exc`, raised before any text, say the *endpoint* failed (so the turn moves to another
    endpoint and this one is marked unhealthy), rather than the request or the GPT?"""
    match exc:
        case errors.AuthError() | errors.EndpointNotFound():
            # A refused key or a wrong base_url is this endpoint's misconfiguration: another
            # endpoint has its own key and URL, so the turn fails over.
            return True
        case errors.GptNotFound():
            # Not failed over: a missing GPT (deleted, private, a typo in the binding) is missing
            # on every endpoint, so trying each would only multiply the requests, and a chat bound
            # to it would knock every endpoint out in turn. The endpoint stays healthy.
            return False
        case errors.StreamInterrupted():
            return False  # text had arrived: never failed over
        case errors.RateLimited():
            return True  # even with a long Retry-After: another endpoint has its own quota
        case errors.UpstreamTimeout(phase=phase):
            return phase in ("connect", "first chunk")
        case _:
            pass
    if exc.status is None:
        return True  # a connection error, or an error object before any text
    # 200: an answer that is not a chat completion at all; other 4xx: the request itself.
    return exc.status in (200, 408, _PAYMENT_REQUIRED) or exc.status >= 500


@dataclass(eq=False, slots=True)
class Endpoint:
    """One upstream, its settings resolved, and its health and load (changed by the pool)."""

    label: str  # for logs: its `name`, else its host
    key: str  # its config table: "gpts" or "gpts.endpoints[1]"
    base_url: str
    api_key: str = field(repr=False)
    model_template: str
    weight: float = 1.0
    max_concurrent: int = 0  # 0: no limit
    # Where its key is set, for `gptsbot check`'s advice.
    key_setting: str = "GPTS_API_KEY or gpts.api_key"
    name: str = ""  # as configured; "" if none
    failures: int = 0  # failures in a row
    unhealthy_until: float = 0.0  # on the pool's clock
    failed_at: float | None = None
    in_flight: int = 0

    @property
    def chat_url(self) -> str:
        return self.base_url.rstrip("/") + "/chat/completions"

    @property
    def url_hint(self) -> str:
        """What a 404 page on its path suggests."""
        return f"is {self.key}.base_url right?"

    def model(self, gpt_id: str) -> str:
        """The model name this endpoint serves the GPT `gpt_id` as."""
        return model_name(self.model_template, gpt_id)

    def has_room(self) -> bool:
        return not self.max_concurrent or self.in_flight < self.max_concurrent

    def is_healthy(self, now: float) -> bool:
        """Not in a back-off (one that ended makes it a candidate again)."""
        return now >= self.unhealthy_until


def _host(base_url: str) -> str:
    parts = urlsplit(base_url)
    host = parts.hostname or base_url
    return f"{host}:{parts.port}" if parts.port else host


def endpoints_of(gpts: GptsConfig) -> list[Endpoint]:
    """The endpoints of `[gpts]`: its `[[gpts.endpoints]]`, or `base_url`/`api_key` as the one
    endpoint. An endpoint without its own key or template uses `[gpts]`'s."""
    if not gpts.endpoints:
        return [Endpoint(_host(gpts.base_url), "gpts", gpts.base_url, gpts.api_key,
                         gpts.model_template)]  # fmt: skip
    hosts = Counter(_host(e.base_url) for e in gpts.endpoints)
    endpoints = []
    for i, table in enumerate(gpts.endpoints):
        key = f"gpts.endpoints[{i}]"
        label = table.name or _host(table.base_url)
        if not table.name and hosts[label] > 1:
            label = f"{label} ({key})"
        if table.api_key_env:
            key_setting = f"{table.api_key_env} (named by {key}.api_key_env)"
        elif table.api_key:
            key_setting = f"{key}.api_key"
        else:
            key_setting = "GPTS_API_KEY or gpts.api_key"
        endpoint = Endpoint(
            label,
            key,
            table.base_url,
            table.api_key or gpts.api_key,
            table.model_template or gpts.model_template,
            table.weight,
            table.max_concurrent,
            key_setting,
            table.name,
        )
        endpoints.append(endpoint)
    return endpoints


class EndpointPool:
    """The endpoints, their health and their slots. `rng` draws the weighted choice and `clock`
    (seconds, monotonic) times the back-offs; tests inject both."""

    def __init__(
        self,
        endpoints: Sequence[Endpoint],
        *,
        backoff_s: float,
        max_backoff_s: float,
        rng: random.Random | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not endpoints:
            raise ValueError("no endpoints")
        self.endpoints = tuple(endpoints)
        self._backoff_s = backoff_s
        self._max_backoff_s = max_backoff_s
        self._rng = rng or random.Random()
        self.now = clock
        self._waiters: list[asyncio.Future[None]] = []

    def choose(self, exclude: Collection[Endpoint] = ()) -> Endpoint | None:
        """The endpoint for the next attempt, or None when every candidate is full."""
        now = self.now()
        candidates = [e for e in self.endpoints if e not in exclude] or list(self.endpoints)
        healthy = [e for e in candidates if e.is_healthy(now)]
        if healthy:
            return self._draw([e for e in healthy if e.has_room()])
        # None is healthy: the one back soonest, rather than refusing the turn.
        with_room = [e for e in candidates if e.has_room()]
        return min(with_room, key=lambda e: e.unhealthy_until) if with_room else None

    def _draw(self, endpoints: list[Endpoint]) -> Endpoint | None:
        if len(endpoints) <= 1:
            return endpoints[0] if endpoints else None
        point = self._rng.random() * sum(e.weight for e in endpoints)
        for endpoint in endpoints:
            point -= endpoint.weight
            if point < 0:
                return endpoint
        return endpoints[-1]  # rounding

    @contextlib.asynccontextmanager
    async def slot(self, exclude: Collection[Endpoint] = ()) -> AsyncIterator[Endpoint]:
        """Hold a slot of the chosen endpoint (see `choose`) for one attempt, waiting for one
        while every candidate is full."""
        endpoint = await self._acquire(exclude)
        try:
            yield endpoint
        finally:
            endpoint.in_flight -= 1
            waiters, self._waiters = self._waiters, []
            for waiter in waiters:
                if not waiter.done():
                    waiter.set_result(None)

    async def _acquire(self, exclude: Collection[Endpoint]) -> Endpoint:
        waited = False
        while (endpoint := self.choose(exclude)) is None:
            if not waited:
                waited = True
                logger.info(
                    "the GPTs endpoints left to this turn are all full (max_concurrent): waiting"
                )
            waiter = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            # Until a slot frees up, or a back-off ends and an endpoint with room is healthy again.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._next_recovery_in(exclude)):
                    await waiter
        endpoint.in_flight += 1
        return endpoint

    def _next_recovery_in(self, exclude: Collection[Endpoint]) -> float | None:
        now = self.now()
        ends = [
            e.unhealthy_until - now
            for e in self.endpoints
            if e not in exclude and not e.is_healthy(now) and e.has_room()
        ]
        return min(ends) if ends else None

    def failed(self, endpoint: Endpoint, exc: errors.UpstreamError, since: float) -> None:
        """An attempt that began at `since` failed before any text with `exc`, an endpoint
        failure: the endpoint is unhealthy for its next back-off."""
        if len(self.endpoints) == 1:
            return  # nothing to fail over to: the one endpoint is always used
        if endpoint.failed_at is not None and since < endpoint.failed_at:
            return  # under way before the failure that marked it: the same outage
        now = self.now()
        doublings = min(endpoint.failures, _MAX_DOUBLINGS)
        backoff = min(self._backoff_s * 2.0**doublings, self._max_backoff_s)
        if isinstance(exc, errors.RateLimited) and exc.retry_after is not None:
            backoff = max(backoff, exc.retry_after)
        endpoint.failures += 1
        endpoint.failed_at = now
        endpoint.unhealthy_until = now + backoff
        if endpoint.failures == 1:
            logger.warning(
                "GPTs endpoint %s is unhealthy (%s); skipped for %.0f s",
                endpoint.label,
                exc,
                backoff,
            )
        else:
            logger.info(
                "GPTs endpoint %s failed again (%s, %d in a row); skipped for %.0f s",
                endpoint.label,
                exc,
                endpoint.failures,
                backoff,
            )

    def succeeded(self, endpoint: Endpoint) -> None:
        """The endpoint answered: healthy again."""
        if endpoint.failures:
            logger.info(
                "GPTs endpoint %s recovered after %d failures in a row",
                endpoint.label,
                endpoint.failures,
            )
        endpoint.failures = 0
        endpoint.unhealthy_until = 0.0
