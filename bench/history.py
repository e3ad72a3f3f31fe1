"""History-window load time with 10 … 100,000 messages stored in the conversation.

Each size gets its own SQLite file: the repository creates the scope and conversation, the
messages (questions, each answered by the next row) are bulk-inserted with the stdlib `sqlite3`
(only to fill the table quickly), then `Repository.exchanges(conversation,
limit=history_messages // 2)` is timed: the window of question/answer pairs each turn reads.
"""

from __future__ import annotations

import asyncio
import sqlite3
import statistics
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from core.config import GptsConfig
from storage import Repository, ScopeKey

REPEATS = 200
MESSAGE_CHARS = 300


def _fill(db: Path, conversation: int, count: int) -> None:
    now = datetime.now(UTC).isoformat(sep=" ")
    with sqlite3.connect(db) as connection:
        # Ids follow on from the largest: each answer (odd row) answers the row before it.
        first = (connection.execute("SELECT MAX(id) FROM messages").fetchone()[0] or 0) + 1
        rows = (
            (conversation, "user" if i % 2 == 0 else "assistant", "x" * MESSAGE_CHARS,
             "complete", "[]", now, first + i - 1 if i % 2 else None)
            for i in range(count)
        )  # fmt: skip
        connection.executemany(
            "INSERT INTO messages (conversation_id, role, content, status, platform_message_ids,"
            " created_at, answers_id) VALUES (?, ?, ?, ?, ?, ?, ?)",
            rows,
        )


async def _measure_one(count: int, limit: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="gptsbot-bench-history-") as folder:
        db = Path(folder) / "history.db"
        repo = await Repository.open(f"sqlite+aiosqlite:///{db}")
        try:
            await repo.upgrade()
            # Another conversation's messages too, so the index has to pick this one's.
            other = await repo.current_conversation(ScopeKey("bench", "other"))
            conversation = await repo.current_conversation(ScopeKey("bench", "history"))
            await asyncio.to_thread(_fill, db, other, min(count, 1000))
            await asyncio.to_thread(_fill, db, conversation, count)
            assert await repo.count_messages(conversation) == count
            pairs = limit // 2
            for _ in range(10):
                await repo.exchanges(conversation, limit=pairs)
            times = []
            for _ in range(REPEATS):
                started = time.perf_counter()
                window = await repo.exchanges(conversation, limit=pairs)
                times.append((time.perf_counter() - started) * 1000)
            assert len(window) == min(pairs, count // 2)
        finally:
            await repo.close()
    times.sort()
    return {
        "messages": count,
        "median_ms": round(statistics.median(times), 3),
        "p99_ms": round(times[int(0.99 * (len(times) - 1))], 3),
    }


def measure(sizes: list[int], limit: int | None = None) -> dict[str, Any]:
    limit = limit or GptsConfig().history_messages
    results = [asyncio.run(_measure_one(count, limit)) for count in sizes]
    smallest, largest = results[0]["median_ms"], results[-1]["median_ms"]
    return {
        "limit": limit,
        "sizes": results,
        "ratio_largest_to_smallest": round(largest / smallest, 2) if smallest else None,
    }


if __name__ == "__main__":
    import json

    print(json.dumps(measure([10, 1000, 100_000]), indent=2))
