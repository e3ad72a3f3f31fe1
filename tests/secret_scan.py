"""A pytest plugin (conftest.py loads it): no log record of any test may carry a secret.

While every test runs (setup, call and teardown) the root logger is at DEBUG, so every library
logs all it would, and a handler keeps each record's text (message and traceback). After the
test, the texts are checked against every secret the fakes issued or received during it
(`fakes.issued`: bot tokens, tokens presented to them, GPTs API keys, Discord interaction
tokens); a hit fails the test, naming the logger and showing the line with each secret replaced
by `<SECRET>`.

Loggers given a level of their own (httpx at WARNING, which the Telegram adapter sets because
httpx logs every URL) keep it: the scan checks what the bot really logs.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterable, Iterator

import pytest

from fakes import issued

SHOWN = "<SECRET>"

_formatter = logging.Formatter()


class KeepText(logging.Handler):
    """Keeps (logger, level, text) of every record, the text made when the record is logged."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.texts: list[tuple[str, str, str]] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.texts.append((record.name, record.levelname, record_text(record)))


def record_text(record: logging.LogRecord) -> str:
    """What any formatter could show of a record: the message, its traceback, its stack."""
    try:
        text = record.getMessage()
    except Exception:  # a bad format string: logging reports it; show its parts
        text = f"{record.msg} {record.args}"
    if record.exc_info:
        text += "\n" + (record.exc_text or _formatter.formatException(record.exc_info))
    if record.stack_info:
        text += "\n" + record.stack_info
    return text


def leaks(texts: Iterable[tuple[str, str, str]], secrets: Iterable[str]) -> list[str]:
    """The kept records that carry one of `secrets`, each as "logger LEVEL: text" with every
    secret in it replaced by `<SECRET>` (the report must not repeat the leak)."""
    secrets = sorted(set(secrets), key=len, reverse=True)  # a longer secret may hold a shorter
    found = []
    for name, level, text in texts:
        if any(secret in text for secret in secrets):
            for secret in secrets:
                text = text.replace(secret, SHOWN)
            found.append(f"{name} {level}: {text}")
    return found


_kept = pytest.StashKey[KeepText]()


@contextlib.contextmanager
def _everything_into(keep: KeepText) -> Iterator[None]:
    """The root logger at DEBUG, its records kept by `keep`. pytest's own handlers stay at
    `log_level` (WARNING, in pyproject.toml): they need not format every DEBUG line too."""
    root = logging.getLogger()
    level = root.level
    root.addHandler(keep)
    root.setLevel(logging.DEBUG)
    try:
        yield
    finally:
        root.removeHandler(keep)
        root.setLevel(level)


# Inside pytest's logging wrappers (trylast), which set the root level for each phase.
@pytest.hookimpl(wrapper=True, trylast=True)
def pytest_runtest_setup(item: pytest.Item) -> Iterator[None]:
    issued.forget()
    keep = item.stash[_kept] = KeepText()
    with _everything_into(keep):
        return (yield)


@pytest.hookimpl(wrapper=True, trylast=True)
def pytest_runtest_call(item: pytest.Item) -> Iterator[None]:
    with _everything_into(item.stash[_kept]):
        return (yield)


@pytest.hookimpl(wrapper=True, trylast=True)
def pytest_runtest_teardown(item: pytest.Item) -> Iterator[None]:
    keep = item.stash[_kept]
    with _everything_into(keep):
        result = yield
    found = leaks(keep.texts, issued.known())
    if found:
        shown = "\n".join(line[:2000] for line in found[:20])
        pytest.fail(f"{len(found)} log record(s) carry a secret:\n{shown}", pytrace=False)
    return result
