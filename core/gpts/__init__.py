"""The GPTs client: one chat completion, streamed, from an OpenAI-compatible endpoint.

    client = GptsClient(config.gpts)
    async for delta in client.stream_chat("g-B3hgivKK9", messages):   # the GPT's id
        text += delta.text                    # may be "" on the finish / usage deltas
        finish_reason = delta.finish_reason or finish_reason
        usage = delta.usage or usage

Deltas arrive as the endpoint sends them: text pieces, then `finish_reason` (possibly together
with the last text), then `usage` when the endpoint reports it. In non-streaming mode
(`gpts.stream = false`) one Delta carries all three. The model asked is the GPT's id in the
`model_template` of the endpoint the attempt goes to: with `[[gpts.endpoints]]`, a turn goes to a
healthy endpoint and moves to the next one when the first fails before any text.

    wire           ChatMessage (text, or text and image parts), Delta, Usage: what is sent and
                   what comes back
    sse            the pure parser (no I/O): SseDecoder, StreamParser, delta_from_chunk
    error_mapping  error bodies -> typed errors of `core.errors`, Retry-After, retry rules and waits
    transport      GptsClient: HTTP, failover, retries, timeouts
    endpoints      the endpoints: weighted choice, max_concurrent slots, health and back-offs
    watchdog       the per-read timeout of a stream, one timer instead of one per chunk
"""

from core.gpts.error_mapping import error_from_body, is_retryable, parse_retry_after, retry_delay
from core.gpts.sse import (
    SseDecoder,
    StreamParser,
    delta_from_chunk,
    delta_from_completion,
    parse_sse_lines,
)
from core.gpts.transport import GptsClient
from core.gpts.wire import ChatMessage, Delta, Usage

__all__ = [
    "ChatMessage",
    "Delta",
    "GptsClient",
    "SseDecoder",
    "StreamParser",
    "Usage",
    "delta_from_chunk",
    "delta_from_completion",
    "error_from_body",
    "is_retryable",
    "parse_retry_after",
    "parse_sse_lines",
    "retry_delay",
]
