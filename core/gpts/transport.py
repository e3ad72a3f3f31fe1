"""The transport: `GptsClient` posts one chat completion over aiohttp and yields its Deltas.

Failures raise the typed errors of `core.errors`. Failover and retries happen only before any
text has been yielded: once text may have reached a user, a broken stream raises
`StreamInterrupted` (or `UpstreamTimeout` with phase "idle"/"total"), and so does one that ends
with neither `finish_reason` nor `[DONE]` (a cut answer).

Each attempt goes to an endpoint the pool chooses (`core.gpts.endpoints`). An attempt that fails
before any text for a reason about the endpoint (connection error, 5xx, 429, first-chunk timeout,
refused key...) marks it unhealthy, and the turn moves at once to an endpoint it has not tried
yet. Once each was tried, retryable failures (connection errors, 408, 429, 5xx, a first-chunk
timeout) are retried with backoff, at most `max_retries` times, on the endpoints that did not
refuse the turn for good. With one endpoint this is plain retrying. An answer's stream is read by
`core.gpts.stream_reading`.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import time
from collections.abc import AsyncGenerator, Awaitable, Callable, Collection, Iterable, Sequence
from contextlib import aclosing
from typing import Any

import aiohttp

from core import metrics
from core.config import GptsConfig
from core.errors import EndpointNotFound, StreamInterrupted, UpstreamError, UpstreamTimeout
from core.gpts.endpoints import Endpoint, EndpointPool, endpoints_of, is_endpoint_failure
from core.gpts.error_mapping import (
    error_from_body,
    is_retryable,
    model_list,
    parse_retry_after,
    redact_and_shorten,
    retry_delay,
)
from core.gpts.sse import delta_from_completion
from core.gpts.stream_reading import Gathering, read_sse
from core.gpts.wire import ChatMessage, Delta

logger = logging.getLogger(__name__)

CHECK_PROMPT = "ping"
CHECK_MAX_TOKENS = 1


class _Progress:
    """What one attempt has yielded: retries stop once any text may have reached a user."""

    __slots__ = ("answered", "text_yielded")

    def __init__(self) -> None:
        self.answered = False  # any Delta: the endpoint works
        self.text_yielded = False


def _merge(deltas: Iterable[Delta]) -> Delta:
    text, finish_reason, usage = "", None, None
    for delta in deltas:
        text += delta.text
        finish_reason = delta.finish_reason or finish_reason
        usage = delta.usage or usage
    return Delta(text, finish_reason, usage)


class GptsClient:
    """Chat completions from the GPTs endpoints over one shared aiohttp session."""

    def __init__(
        self,
        config: GptsConfig,
        *,
        session: aiohttp.ClientSession | None = None,
        rng: random.Random | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        """`rng` draws the jitter of retry waits and the weighted choice of an endpoint; `clock`
        times the endpoints' back-offs; `sleep` waits out the read interval between reads.
        Tests pass a seeded or scripted one and a fake clock."""
        self._config = config
        self._rng = rng or random.Random()
        self._session = session
        self._owns_session = session is None
        self._sleep = sleep
        self._pool = EndpointPool(
            endpoints_of(config),
            backoff_s=config.endpoint_backoff_s,
            max_backoff_s=config.endpoint_max_backoff_s,
            rng=self._rng,
            clock=clock,
        )
        # Only sock_connect: the other phases are timed here, per read, with their own phase.
        self._http_timeout = aiohttp.ClientTimeout(
            total=None, sock_connect=config.connect_timeout_s
        )

    def __repr__(self) -> str:
        return f"GptsClient(urls={[e.chat_url for e in self.endpoints]!r})"

    @property
    def endpoints(self) -> tuple[Endpoint, ...]:
        """The endpoints, in config order, with their health."""
        return self._pool.endpoints

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

    def _headers(self, endpoint: Endpoint, stream: bool) -> dict[str, str]:
        headers = {"Accept": "text/event-stream" if stream else "application/json"}
        if endpoint.api_key:
            headers["Authorization"] = f"Bearer {endpoint.api_key}"
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

    def stream_chat(
        self,
        gpt_id: str,
        messages: Sequence[ChatMessage],
        *,
        read_interval_s: float | None = None,
        shown_in: Callable[[], float | None] | None = None,
    ) -> AsyncGenerator[Delta, None]:
        """The answer of the GPT `gpt_id` to `messages`, as Deltas (one Delta in non-streaming
        mode). The model asked is the chosen endpoint's `model_template` with `gpt_id`. Once
        text flows, the stream is read every `read_interval_s` (default: the config's; a reply
        that shows the text more often than that asks for less), and just before the moment
        `shown_in()` names, in seconds from now, when the caller will show the text.

        Raises AuthError, GptNotFound, RateLimited, UpstreamTimeout, StreamInterrupted or
        UpstreamError after failover and the allowed retries.
        """
        # The generator itself, not one wrapping it: a layer less to resume twice per chunk.
        interval_s = self._config.read_interval_s if read_interval_s is None else read_interval_s
        return self._request(gpt_id, messages, gathering=Gathering(interval_s, shown_in))

    async def check(self, gpt_id: str, endpoint: Endpoint | None = None) -> None:
        """Send one tiny request for the GPT `gpt_id` to `endpoint` (default: the first), with
        its retries but no failover; return when it starts answering, else raise."""
        prompt: list[ChatMessage] = [{"role": "user", "content": CHECK_PROMPT}]
        pinned = endpoint or self.endpoints[0]
        extra = {"max_tokens": CHECK_MAX_TOKENS}
        async with aclosing(self._request(gpt_id, prompt, extra, pinned)) as deltas:
            async for delta in deltas:
                if delta.text or delta.finish_reason:
                    break

    async def list_models(self, endpoint: Endpoint | None = None) -> list[str]:
        """The model ids `GET {base_url}/models` lists for the key of `endpoint` (default: the
        first; one attempt, no retry).

        Raises AuthError for a refused key and EndpointNotFound when the path is not there or
        answers with something other than a model list; other failures as `stream_chat`.
        """
        endpoint = endpoint or self.endpoints[0]
        url = endpoint.base_url.rstrip("/") + "/models"
        seconds = self._config.first_chunk_timeout_s
        try:
            async with asyncio.timeout(seconds):
                response = await self._get_session().get(
                    url, headers=self._headers(endpoint, False), timeout=self._http_timeout
                )
                async with response:
                    body = await response.read()
        except aiohttp.ServerTimeoutError as exc:
            raise UpstreamTimeout("connect", self._config.connect_timeout_s) from exc
        except TimeoutError as exc:
            raise UpstreamTimeout("answer", seconds) from exc
        except aiohttp.ClientError as exc:
            reason = redact_and_shorten(str(exc)) or type(exc).__name__
            raise UpstreamError(f"cannot reach the GPTs endpoint: {reason}") from exc
        return model_list(response.status, body, response.content_type, endpoint)

    async def _request(
        self,
        gpt_id: str,
        messages: Sequence[ChatMessage],
        extra: dict[str, Any] | None = None,
        pinned: Endpoint | None = None,
        *,
        gathering: Gathering | None = None,
    ) -> AsyncGenerator[Delta, None]:
        """Attempts until one succeeds, fails for good, or text has been yielded: on another
        endpoint at once after an endpoint failure, else after a backoff (see the module's
        docstring). `pinned`: only that endpoint, no failover, its health left alone."""
        loop = asyncio.get_running_loop()
        pool, endpoints = self._pool, self._pool.endpoints
        started = loop.time()
        total_deadline = started + self._config.total_timeout_s
        tried: set[Endpoint] = set()
        refused: set[Endpoint] = set()  # failed in a way a retry would not change
        retries = 0
        gathering = gathering or Gathering(self._config.read_interval_s)
        while True:
            progress = _Progress()
            if pinned is not None:
                exclude: Collection[Endpoint] = [e for e in endpoints if e is not pinned]
            else:
                exclude = tried if len(tried) < len(endpoints) else refused
            async with pool.slot(exclude) as endpoint:
                since = pool.now()
                payload = self._payload(endpoint.model(gpt_id), messages) | (extra or {})
                model = payload["model"]
                logger.debug("POST %s model=%s (retry %d)", endpoint.chat_url, model, retries)
                timing = metrics.UpstreamAttempt(endpoint.label, loop.time)
                try:
                    response, deltas = await self._attempt(
                        endpoint, payload, total_deadline, gathering
                    )
                    try:
                        async with aclosing(deltas):
                            async for delta in deltas:
                                if not progress.answered and pinned is None:
                                    progress.answered = True
                                    pool.succeeded(endpoint)
                                if delta.text:
                                    progress.text_yielded = True
                                    timing.text()
                                yield delta
                    finally:
                        response.release()
                except UpstreamError as exc:
                    timing.failed(exc)
                    if progress.text_yielded or not is_endpoint_failure(exc):
                        raise
                    if pinned is None:  # a check of one endpoint says so itself
                        pool.failed(endpoint, exc, since)
                    tried.add(endpoint)
                    if not is_retryable(exc):
                        refused.add(endpoint)
                    untried = pinned is None and len(tried) < len(endpoints)
                    if untried and loop.time() < total_deadline:
                        logger.warning("GPTs request for %s failed on %s: %s; trying another "
                                       "endpoint", model, endpoint.label, exc)  # fmt: skip
                        continue
                    left = [e for e in ([pinned] if pinned else endpoints) if e not in refused]
                    if retries >= self._config.max_retries or not left:
                        raise
                    delay = retry_delay(exc, retries, self._config.retry_backoff_s, self._rng)
                    if loop.time() + delay >= total_deadline:
                        raise
                    retries += 1
                    logger.warning("GPTs request for %s failed on %s: %s; retry %d/%d in %.2f s",
                                   model, endpoint.label, exc, retries, self._config.max_retries,
                                   delay)  # fmt: skip
                else:
                    timing.done()
                    elapsed = loop.time() - started
                    # DEBUG: the turn's line (core.turn_report) is the one at INFO, and a log
                    # record costs about 0.2 ms of a turn's CPU (its hop to the writing thread).
                    logger.debug("GPTs answer from %s on %s done in %.1f s", model,
                                 endpoint.label, elapsed)  # fmt: skip
                    return
            await asyncio.sleep(delay)  # holding no slot

    def _deadline(
        self, phase: str, seconds: float, total_deadline: float
    ) -> tuple[float, UpstreamTimeout]:
        """The deadline of the current phase (or the total one, if sooner) and its error."""
        phase_deadline = asyncio.get_running_loop().time() + seconds
        if total_deadline <= phase_deadline:
            return total_deadline, UpstreamTimeout("total", self._config.total_timeout_s)
        return phase_deadline, UpstreamTimeout(phase, seconds)

    async def _attempt(
        self,
        endpoint: Endpoint,
        payload: dict[str, Any],
        total_deadline: float,
        gathering: Gathering,
    ) -> tuple[aiohttp.ClientResponse, AsyncGenerator[Delta, None]]:
        """Post the request; its answer's response (the caller releases it) and Deltas, read as
        `gathering` paces them once text flows. Not a generator wrapping the stream's, so a chunk
        passes through one generator less."""
        config = self._config
        stream = bool(payload["stream"])
        # Relays send no headers before the GPT's first token: that wait is the first chunk's.
        first_deadline, first_timeout = self._deadline(
            "first chunk", config.first_chunk_timeout_s, total_deadline
        )
        try:
            async with asyncio.timeout_at(first_deadline):
                response = await self._get_session().post(
                    endpoint.chat_url,
                    json=payload,
                    headers=self._headers(endpoint, stream),
                    timeout=self._http_timeout,
                )
        except aiohttp.ServerTimeoutError as exc:
            raise UpstreamTimeout("connect", config.connect_timeout_s) from exc
        except TimeoutError as exc:
            raise first_timeout from exc
        except aiohttp.ClientError as exc:
            raise UpstreamError(
                f"cannot reach the GPTs endpoint: {redact_and_shorten(str(exc))}"
            ) from exc
        try:
            if response.status != 200:
                body = await self._read_body(response, first_deadline, first_timeout)
                retry_after = parse_retry_after(response.headers.get("Retry-After"))
                raise error_from_body(
                    response.status,
                    body,
                    retry_after=retry_after,
                    secret=endpoint.api_key,
                    hint=endpoint.url_hint,
                )
            if response.content_type == "text/event-stream" or (
                stream and response.content_type not in ("application/json", "text/html")
            ):
                deltas = read_sse(
                    response,
                    config,
                    self._sleep,
                    gathering=gathering,
                    secret=endpoint.api_key,
                    first_deadline=first_deadline,
                    first_timeout=first_timeout,
                    total_deadline=total_deadline,
                )
                return response, deltas if stream else self._merged(deltas)
            body = await self._read_body(response, first_deadline, first_timeout)
            whole = self._parse_completion(endpoint, body, response.content_type)
            return response, self._one(whole)
        except BaseException:
            response.release()
            raise

    @staticmethod
    async def _merged(deltas: AsyncGenerator[Delta, None]) -> AsyncGenerator[Delta, None]:
        """A stream asked not to stream (a relay that streams anyway) as one Delta."""
        async with aclosing(deltas):
            try:
                whole = _merge([delta async for delta in deltas])
            except StreamInterrupted as exc:
                # Nothing reached a user yet in non-streaming mode: worth a retry.
                raise UpstreamError(exc.message) from exc
        yield whole

    @staticmethod
    async def _one(whole: Delta) -> AsyncGenerator[Delta, None]:
        yield whole

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

    def _parse_completion(self, endpoint: Endpoint, body: bytes, content_type: str) -> Delta:
        try:
            parsed = json.loads(body)
        except ValueError:
            parsed = None
        if not isinstance(parsed, dict):
            if content_type == "text/html":
                raise EndpointNotFound(
                    f"the GPTs endpoint answered with an HTML page ({endpoint.url_hint})",
                    status=200,
                )
            raise UpstreamError(
                f"the GPTs endpoint answered with not a chat completion ({endpoint.url_hint})",
                status=200,
            )
        return delta_from_completion(parsed, secret=endpoint.api_key)
