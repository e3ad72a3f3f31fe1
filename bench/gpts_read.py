"""CPU of the GPTs read path alone, without sockets: `python -m bench.gpts_read`.

N answers stream at once through `GptsClient.stream_chat` (failover loop, watchdog, SSE parser,
Deltas) from aiohttp `StreamReader`s the benchmark feeds itself, one event per read as the
standard workload's (60 chunks of 20 characters, role chunk first, finish and usage last). No
network and no idle time, so the process CPU time of a round is what the read path costs; on a
shared machine the fastest of several rounds is the figure to compare.

    python -m bench.gpts_read --n 200 --rounds 7 [--profile FILE]
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import json
import time
from typing import Any

import aiohttp
from aiohttp.base_protocol import BaseProtocol

from bench.upstream import answer_text
from core.cli import run_loop
from core.config import GptsConfig
from core.gpts import GptsClient
from core.gpts.wire import ChatMessage
from fakes.gpts_scripts import chunk, event

MODEL = "gpt-4-gizmo-g-bench"


def workload(chars: int = 1200, chunks: int = 60) -> list[bytes]:
    """The reads of one answer, as the fake GPTs endpoint writes them."""
    text = answer_text(chars)
    step = -(-chars // chunks)
    usage = {"prompt_tokens": 50, "completion_tokens": 300, "total_tokens": 350}
    reads = [event(chunk(MODEL, {"role": "assistant", "content": ""}))]
    reads += [event(chunk(MODEL, {"content": text[i : i + step]})) for i in range(0, chars, step)]
    reads.append(event(chunk(MODEL, {}, "stop")))
    reads.append(event({**chunk(MODEL, {}), "choices": [], "usage": usage}) + b"data: [DONE]\n\n")
    return reads


class _Response:
    """What the transport reads of an aiohttp response."""

    status = 200
    content_type = "text/event-stream"
    connection = None  # no socket: between gathered reads there is nothing to pause

    def __init__(self, content: aiohttp.StreamReader) -> None:
        self.content = content

    def release(self) -> None:
        pass


class _Session:
    """Hands out one prepared StreamReader per POST; `all_posted` is set at the N-th."""

    def __init__(self) -> None:
        self.readers: list[aiohttp.StreamReader] = []
        self.expected = 0
        self.all_posted = asyncio.Event()

    async def post(self, url: str, **_: Any) -> _Response:
        loop = asyncio.get_running_loop()
        protocol = BaseProtocol(loop)
        protocol.connection_made(asyncio.Transport())  # a reader waits only while "connected"
        reader = aiohttp.StreamReader(protocol, 2**16, loop=loop)
        self.readers.append(reader)
        if len(self.readers) == self.expected:
            self.all_posted.set()
        return _Response(reader)


async def one_round(client: GptsClient, session: _Session, n: int, reads: list[bytes]) -> float:
    session.readers.clear()
    session.expected = n
    session.all_posted.clear()
    messages: list[ChatMessage] = [{"role": "user", "content": "question"}]

    async def answer() -> int:
        return sum([len(delta.text) async for delta in client.stream_chat("g-bench", messages)])

    started = time.process_time()
    tasks = [asyncio.ensure_future(answer()) for _ in range(n)]
    await session.all_posted.wait()
    for data in reads:
        for reader in session.readers:
            reader.feed_data(data)
        await asyncio.sleep(0)  # each answer reads its event
        await asyncio.sleep(0)
    for reader in session.readers:
        reader.feed_eof()
    lengths = await asyncio.gather(*tasks)
    cpu = time.process_time() - started
    assert set(lengths) == {1200}, set(lengths)
    return cpu


async def measure(n: int, rounds: int, profile: str | None) -> list[float]:
    session = _Session()
    config = GptsConfig(base_url="http://127.0.0.1:9/v1", api_key="bench-key")
    client = GptsClient(config, session=session)  # type: ignore[arg-type]
    reads = workload()
    await one_round(client, session, 10, reads)  # warm up
    profiler = cProfile.Profile() if profile else None
    results = []
    for _ in range(rounds):
        if profiler:
            profiler.enable()
        results.append(await one_round(client, session, n, reads))
        if profiler:
            profiler.disable()
    if profiler and profile:
        profiler.dump_stats(profile)
    return [cpu * 1e6 / (n * len(reads)) for cpu in results]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=200, help="answers at once")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--profile", help="write a cProfile of the measured rounds here")
    args = parser.parse_args()
    per_read = run_loop(measure(args.n, args.rounds, args.profile))
    best, median = min(per_read), sorted(per_read)[len(per_read) // 2]
    print(json.dumps({"n": args.n, "best_us_per_read": round(best, 2),
                      "median_us_per_read": round(median, 2)}))  # fmt: skip


if __name__ == "__main__":
    main()
