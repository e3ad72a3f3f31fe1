"""The fake GPTs endpoint in its own process, so its CPU is not counted as the bot's.

    python -m bench.upstream --chars 1200 --chunks 60 --first-delay 0.5 --chunk-delay 0.1

Prints `READY <base_url>` on stdout once listening, then serves every request the same answer
until stdin closes (the parent exits or closes the pipe).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys

from fakes.gpts import FakeGpts, RecordedRequest, Reply

WARM_UP_TEXT = "warm up"  # answered at once: warms the bot's caches before measuring


def answer_text(chars: int) -> str:
    """Deterministic filler with words and sentences, `chars` characters long."""
    words = [
        "the",
        "quick",
        "brown",
        "fox",
        "jumps",
        "over",
        "a",
        "lazy",
        "dog",
        "while",
        "GPTs",
        "stream",
        "answers",
    ]
    out: list[str] = []
    size = 0
    index = 0
    while size < chars:
        word = words[index % len(words)]
        index += 1
        piece = word + ("." if index % 11 == 0 else "") + " "
        out.append(piece)
        size += len(piece)
    return "".join(out)[:chars]


class BenchGpts(FakeGpts):
    """Every request gets the standard workload, and requests are not kept (memory)."""

    def __init__(self, reply: Reply) -> None:
        super().__init__()
        self._reply = reply

    def _echo(self, record: RecordedRequest) -> Reply:
        self.requests.clear()
        users = [m for m in record.messages if m.get("role") == "user"]
        if users and users[-1].get("content") == WARM_UP_TEXT:
            return Reply("ok")
        return self._reply


async def serve(reply: Reply) -> None:
    async with BenchGpts(reply) as fake:
        print(f"READY {fake.base_url}", flush=True)
        loop = asyncio.get_running_loop()
        # Ends when the parent closes our stdin (or dies).
        await loop.run_in_executor(None, sys.stdin.read)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--chars", type=int, default=1200)
    parser.add_argument("--chunks", type=int, default=60)
    parser.add_argument("--first-delay", type=float, default=0.5)
    parser.add_argument("--chunk-delay", type=float, default=0.1)
    args = parser.parse_args()
    chunk_chars = max(1, -(-args.chars // args.chunks))
    reply = Reply(
        answer_text(args.chars),
        chunk_chars=chunk_chars,
        first_delay_s=args.first_delay,
        chunk_delay_s=args.chunk_delay,
        usage={"prompt_tokens": 50, "completion_tokens": 300, "total_tokens": 350},
    )
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(reply))


if __name__ == "__main__":
    main()
