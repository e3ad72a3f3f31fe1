"""Where the database lives, decided in the core before storage opens it.

A SQLite path in `[storage] url` that is relative (the default `gptsbot.db` included) is taken
relative to the config file's folder, or to the user's data folder (`$XDG_DATA_HOME/gptsbot`, else
`~/.local/share/gptsbot`) when there is no config file; never to the current folder, so the bot
finds the same database wherever it is started from. `check_usable` tells a path that cannot hold
a database in one line naming it, instead of SQLite's bare "unable to open database file".
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from sqlalchemy.engine import URL, make_url

from core.errors import DatabaseUnusable

APP_FOLDER = "gptsbot"
# The file that was the default database when it lived in the current folder.
OLD_DEFAULT_FILE = "gptsbot.db"


def data_folder(env: Mapping[str, str] | None = None) -> Path:
    """The user's data folder for gptsbot: `$XDG_DATA_HOME/gptsbot` or `~/.local/share/gptsbot`."""
    env = os.environ if env is None else env
    xdg = env.get("XDG_DATA_HOME", "")
    if xdg and Path(xdg).is_absolute():  # the XDG spec: a relative value is to be ignored
        return Path(xdg) / APP_FOLDER
    home = Path(env["HOME"]) if env.get("HOME") else Path.home()
    return home / ".local" / "share" / APP_FOLDER


def resolve_url(url: str, folder: Path) -> str:
    """`url` with a relative (or `~`) SQLite file path made absolute under `folder`; any other
    URL unchanged."""
    parsed = make_url(url)
    path = _sqlite_file(parsed)
    if path is None:
        return url
    resolved = path.expanduser()
    if not resolved.is_absolute():
        resolved = folder / resolved
    if resolved == path:
        return url
    return parsed.set(database=str(resolved)).render_as_string(hide_password=False)


def sqlite_file(url: str) -> Path | None:
    """The SQLite file of `url`; None for another database, in-memory SQLite or a URI filename."""
    return _sqlite_file(make_url(url))


def describe(url: str) -> str:
    """Where the database is, for a person: a SQLite file's path, else the URL without its
    password."""
    path = sqlite_file(url)
    return str(path) if path is not None else make_url(url).render_as_string(hide_password=True)


def check_usable(url: str) -> None:
    """Create a SQLite file's folder if needed; raise DatabaseUnusable naming the path when it
    cannot hold the database (a folder, under a file, no permission)."""
    path = sqlite_file(url)
    if path is None:
        return
    if path.is_dir():
        raise DatabaseUnusable(str(path), "is a folder, not a database file")
    for ancestor in path.parents:
        if ancestor.exists():
            if not ancestor.is_dir():
                raise DatabaseUnusable(str(path), f"{ancestor} is a file, not a folder")
            break
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        problem = f"cannot create the folder {path.parent}: {exc.strerror}"
        raise DatabaseUnusable(str(path), problem) from exc
    # SQLite writes its journal files beside the database: the folder must be writable too.
    if not os.access(path.parent, os.W_OK | os.X_OK):
        raise DatabaseUnusable(str(path), f"no permission to write in {path.parent}")
    if path.exists() and not os.access(path, os.R_OK | os.W_OK):
        raise DatabaseUnusable(str(path), "no permission to read and write it")


def stray_database(url: str, cwd: Path | None = None) -> Path | None:
    """A `gptsbot.db` in the current folder that is not the database in use: where the default
    database used to be, with history the user may want to move over."""
    old = (Path.cwd() if cwd is None else cwd) / OLD_DEFAULT_FILE
    path = sqlite_file(url)
    if not old.is_file() or (path is not None and path.exists() and old.samefile(path)):
        return None
    return old


def _sqlite_file(url: URL) -> Path | None:
    database = url.database or ""
    if url.get_backend_name() != "sqlite" or database in ("", ":memory:"):
        return None
    if database.startswith("file:"):  # a URI filename: SQLite resolves it itself
        return None
    return Path(database)
