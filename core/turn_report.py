"""One line per turn at INFO, and the turn's metrics: how it ended, how long it took, what it cost.

    turn scope=telegram:501 platform=telegram gpt=g-B3hgivKK9 outcome=complete first_token_ms=840
    total_ms=5120 prompt_tokens=310 completion_tokens=122 messages=1 edits=5

The same fields go to a JSON log line as keys (`core.log_format`). Never the message's or the
answer's text: that is in the database, not in logs.
"""

from __future__ import annotations

import logging

from core import metrics
from core.streaming import StreamingReply
from core.turns import Turn
from storage import NewMessage

logger = logging.getLogger(__name__)


def report_turn(
    turn: Turn,
    outcome: str,
    reply: StreamingReply,
    answer: NewMessage | None = None,
    gpt_id: str | None = None,
) -> None:
    """Count the turn that ended with `outcome` (complete, partial, error, stopped, refused) and
    log its line, with the timings and token counts of its stored `answer` (estimated counts are
    not reported). `edits`: the platform calls made to show it beyond each message's first send
    (retries after a 429 included)."""
    platform = turn.scope.platform
    metrics.TURNS.labels(platform, outcome).inc()
    usage = answer.usage if answer is not None and not answer.tokens_estimated else None
    prompt = usage.prompt_tokens if usage is not None else None
    completion = usage.completion_tokens if usage is not None else None
    if prompt:
        metrics.TOKENS.labels(platform, "prompt").inc(prompt)
    if completion:
        metrics.TOKENS.labels(platform, "completion").inc(completion)
    if not logger.isEnabledFor(logging.INFO):
        return
    messages = len(reply.messages)
    fields = {
        "scope": str(turn.scope),
        "platform": platform,
        "gpt": gpt_id,
        "outcome": outcome,
        "first_token_ms": answer.first_chunk_ms if answer is not None else None,
        "total_ms": answer.total_ms if answer is not None else None,
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "messages": messages,
        "edits": max(reply.calls - messages, 0),
    }
    shown = " ".join(f"{key}={'-' if value is None else value}" for key, value in fields.items())
    logger.info("turn %s", shown, extra={"fields": fields})
