"""The SQLite file's own thread: calls run there one at a time, in the order they were queued.

What `ThreadPoolExecutor(1)` and `loop.run_in_executor` did, for less: their hand-off (a
concurrent Future with its lock and condition, an asyncio Future chained to it, and checks that
the call is not a coroutine) cost about 80 µs of CPU per call, where a queue and one
`call_soon_threadsafe` for the result cost about 30 µs; a turn makes four or five calls.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import threading
from collections.abc import Callable
from typing import Any, Generic, TypeVar

_T = TypeVar("_T")


class _Job(Generic[_T]):
    __slots__ = ("call", "future", "loop")

    def __init__(
        self,
        call: Callable[[], _T],
        loop: asyncio.AbstractEventLoop | None,
        future: asyncio.Future[_T] | None,
    ) -> None:
        self.call = call
        self.loop = loop
        self.future = future


class DbThread:
    """One thread that runs the calls given to `run` and `submit`, in order."""

    def __init__(self, name: str) -> None:
        self._jobs: queue.SimpleQueue[_Job[Any] | None] = queue.SimpleQueue()
        # A daemon: `stop` ends it after the calls queued before; an exit without `stop` has no
        # caller left waiting, and SQLite rolls back a transaction cut short.
        self._thread = threading.Thread(target=self._serve, name=name, daemon=True)
        self._thread.start()

    def run(self, call: Callable[[], _T]) -> asyncio.Future[_T]:
        """`call()` in the thread after every call queued before it: its result, or what it
        raised. Cancelled before the thread gets to it, it does not run."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[_T] = loop.create_future()
        self._jobs.put(_Job(call, loop, future))
        return future

    def submit(self, call: Callable[[], object]) -> None:
        """`call()` in the thread, in order, without waiting for it: it handles its own errors."""
        self._jobs.put(_Job(call, None, None))

    def stop(self) -> None:
        """End the thread once the calls queued so far have run."""
        self._jobs.put(None)

    def _serve(self) -> None:
        while (job := self._jobs.get()) is not None:
            future = job.future
            if future is not None and future.cancelled():
                continue
            try:
                result = job.call()
            except BaseException as exc:  # as run_in_executor: the caller gets what was raised
                self._settle(job, _set_exception, exc)
            else:
                self._settle(job, _set_result, result)

    @staticmethod
    def _settle(
        job: _Job[Any], settle: Callable[[asyncio.Future[Any], Any], None], value: object
    ) -> None:
        if job.future is None or job.loop is None:
            return
        with contextlib.suppress(RuntimeError):  # a closed loop: nobody waits any more
            job.loop.call_soon_threadsafe(settle, job.future, value)


def _set_result(future: asyncio.Future[Any], result: object) -> None:
    if not future.cancelled():
        future.set_result(result)


def _set_exception(future: asyncio.Future[Any], exc: BaseException) -> None:
    if not future.cancelled():
        future.set_exception(exc)
