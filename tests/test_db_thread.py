"""The SQLite file's own thread (storage/db_thread.py): order, results, errors, cancellation."""

from __future__ import annotations

import asyncio
import threading

import pytest

from storage.db_thread import DbThread


@pytest.mark.asyncio
async def test_calls_run_in_order_on_the_thread_and_give_back_results_and_errors() -> None:
    db = DbThread("gptsbot-db-test")
    ran: list[str] = []
    release = threading.Event()

    def blocked() -> str:
        release.wait(5)
        ran.append("blocked")
        return threading.current_thread().name

    def fails() -> None:
        ran.append("fails")
        raise KeyError("why")

    first = db.run(blocked)
    failing = db.run(fails)
    db.submit(lambda: ran.append("submitted"))
    cancelled = db.run(lambda: ran.append("cancelled"))
    last = db.run(lambda: ran.append("last") or len(ran))
    cancelled.cancel()  # before the thread gets to it: it never runs
    release.set()
    assert await first == "gptsbot-db-test"
    with pytest.raises(KeyError, match="why"):
        await failing
    assert await last == 4
    assert ran == ["blocked", "fails", "submitted", "last"]
    db.stop()


@pytest.mark.asyncio
async def test_stop_ends_the_thread_after_the_calls_queued_before() -> None:
    db = DbThread("gptsbot-db-test")
    done = db.run(lambda: "done")
    db.stop()
    assert await asyncio.wait_for(done, 5) == "done"
    db._thread.join(5)
    assert not db._thread.is_alive()
