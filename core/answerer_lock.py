"""One answerer per database: `gptsbot run` holds an operating-system lock beside the SQLite file.

Two `gptsbot run` on one database would both answer every chat (each turn twice, histories
interleaved) and each would settle the other's streaming answers as interrupted. The lock is a
`flock` on `<database>.lock`: the kernel drops it with its process, so a start after `kill -9`
takes it at once, and the file left behind means nothing by itself. It holds the pid of the
process answering, for the refusal's message.

Only SQLite files are locked; PostgreSQL deployments will use advisory locks.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator
from pathlib import Path

from core.database import check_usable
from core.errors import DatabaseUnusable
from storage import sqlite_file

try:
    import fcntl
except ImportError:  # not on this operating system: no lock, as before
    fcntl = None  # type: ignore[assignment]

logger = logging.getLogger(__name__)


class AlreadyAnswering(Exception):
    """Another process holds the database's answerer lock."""

    def __init__(self, database: Path, pid: str) -> None:
        holder = f"(pid {pid}) " if pid else ""
        super().__init__(
            f"another gptsbot run {holder}is already answering from {database}; "
            "stop it first (two would answer every message)"
        )
        self.database = database
        self.pid = pid


def lock_path(database: Path) -> Path:
    return database.with_name(database.name + ".lock")


@contextlib.contextmanager
def answerer_lock(url: str) -> Iterator[Path | None]:
    """Hold the answerer lock of the database at `url` (yields the lock file; None when the URL
    is not an SQLite file). Raises `AlreadyAnswering` at once when another process holds it."""
    database = sqlite_file(url)
    if database is None or fcntl is None:
        yield None
        return
    check_usable(url)  # one line naming the path, not a traceback, when it cannot be used
    path = lock_path(database)
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        raise DatabaseUnusable(str(database), f"cannot create {path}: {exc.strerror}") from exc
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise AlreadyAnswering(database, os.pread(fd, 32, 0).decode().strip()) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield path
    finally:
        os.close(fd)  # releases the lock
