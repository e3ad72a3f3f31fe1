"""Reading one answer's server-sent events: the read timeouts (one `Watchdog` per stream rather
than an `asyncio.timeout` per chunk), reads gathered once text flows, and what a broken or cut
stream raises."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncGenerator, Awaitable, Callable
from dataclasses import dataclass

import aiohttp

from core.config import GptsConfig
from core.errors import StreamInterrupted, UpstreamError, UpstreamTimeout
from core.gpts.error_mapping import redact_and_shorten
from core.gpts.sse import StreamParser
from core.gpts.watchdog import Watchdog
from core.gpts.wire import Delta

logger = logging.getLogger(__name__)

# A read for a reply about to show the text starts this long before: time for the loop to take
# in the socket's data and the reply to get it.
READ_AHEAD_S = 0.02


@dataclass(frozen=True, slots=True)
class Gathering:
    """How often a stream is read once text flows: on the ticks of `interval_s` on the loop's
    clock (every stream in the same loop iteration), or sooner, just before the reader's
    consumer shows the text: `shown_in()` says in how many seconds it will (None: it is not
    waiting to). 0: every chunk as it comes."""

    interval_s: float
    shown_in: Callable[[], float | None] | None = None

    def wait_s(self, now: float) -> float:
        """Seconds from `now` (on the loop's clock) to the next read."""
        tick = self.interval_s - now % self.interval_s
        shown_in = self.shown_in() if self.shown_in is not None else None
        if shown_in is None:
            return tick
        early = shown_in - READ_AHEAD_S
        # Past that point the reply reads what the last read brought: wait for the tick.
        return early if 0 < early < tick else tick


async def read_sse(
    response: aiohttp.ClientResponse,
    config: GptsConfig,
    sleep: Callable[[float], Awaitable[None]],
    *,
    gathering: Gathering,
    secret: str,
    first_deadline: float,
    first_timeout: UpstreamTimeout,
    total_deadline: float,
) -> AsyncGenerator[Delta, None]:
    """The Deltas of `response`'s body. Until the first text, a read may take until
    `first_deadline` (then `first_timeout`); after it, `config.idle_timeout_s` per read, all
    within `total_deadline`. Once text flows, reads are paced by `gathering` (`sleep`).
    `secret` is redacted from error messages."""
    parser = StreamParser(secret=secret)
    has_text = False  # after text, a break is StreamInterrupted and the idle timeout applies
    finished = False  # a finish_reason arrived: only usage and [DONE] may follow
    loop = asyncio.get_running_loop()
    idle_s = config.idle_timeout_s
    read = response.content.readany
    watchdog = Watchdog(loop)
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
                        raise UpstreamTimeout("total", config.total_timeout_s) from exc
                    raise UpstreamTimeout("idle", idle_s) from exc
            except aiohttp.ClientError as exc:
                if finished:
                    logger.warning("GPTs stream broke after its finish_reason: %s", exc)
                    return
                reason = redact_and_shorten(str(exc)) or type(exc).__name__
                if has_text:
                    raise StreamInterrupted(
                        f"the GPTs endpoint broke the connection mid-answer: {reason}"
                    ) from exc
                raise UpstreamError(f"the GPTs endpoint broke the connection: {reason}") from exc
            watchdog.stop()
            for delta in _joined(parser.feed(data) if data else parser.close()):
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
            if has_text and not finished and gathering.interval_s:
                # The next chunks gather meanwhile and come in one read: one task wake-up
                # and one pass through the generators for all of them.
                await sleep_unread(response, sleep, gathering.wait_s(loop.time()))
    finally:
        watchdog.close()
    if not parser.valid_chunks:
        raise UpstreamError("the GPTs endpoint sent no readable answer", status=200)
    if parser.done or finished:
        return  # relays send either marker without the other: each one ends an answer
    if has_text:
        # Neither marker: the relay closed mid-answer. What arrived is kept, marked as cut.
        raise StreamInterrupted(
            "the GPTs stream ended without finish_reason or [DONE]: the answer was cut"
        )
    raise UpstreamError("the GPTs stream ended before the answer started")


def _joined(deltas: list[Delta]) -> list[Delta]:
    """One read's Deltas with each run of text-only ones joined into one: text that arrived
    together is shown together anyway, and each Delta costs a pass through the generators
    and the reply above."""
    if len(deltas) < 2:
        return deltas
    joined: list[Delta] = []
    texts: list[str] = []
    for delta in deltas:
        if delta.finish_reason is None and delta.usage is None:
            texts.append(delta.text)
            continue
        if texts:
            joined.append(Delta("".join(texts)))
            texts = []
        joined.append(delta)
    if texts:
        joined.append(Delta("".join(texts)))
    return joined


async def sleep_unread(
    response: aiohttp.ClientResponse, sleep: Callable[[float], Awaitable[None]], seconds: float
) -> None:
    """Sleep with the response's socket unread: what arrives meanwhile waits in the kernel and
    comes in one receive, not one receive (and one loop wake-up) per chunk. A socket aiohttp
    has stopped reading itself (its buffer full) is left to aiohttp."""
    connection = response.connection
    transport = connection.transport if connection is not None else None
    if transport is None or not transport.is_reading():
        await sleep(seconds)
        return
    transport.pause_reading()
    try:
        await sleep(seconds)
    finally:
        if not transport.is_closing():
            transport.resume_reading()
