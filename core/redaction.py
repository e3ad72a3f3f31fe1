"""Secrets kept out of log records.

Platform libraries log what they send: python-telegram-bot the Bot API URL (the bot token is part
of it), discord.py the interaction and webhook URLs (an interaction token is part of them) and
every gateway event (INTERACTION_CREATE carries the token). An adapter installs one `Redact`
filter, with its secrets and patterns, on the loggers that do, for as long as it runs:

    with filtered(["discord.http", "discord.gateway"], Redact([token], INTERACTION_TOKENS)):
        ...

A filter on a logger sees only the records logged to that very logger (not to its children), so
the names must be the libraries' exact logger names.
"""

from __future__ import annotations

import contextlib
import logging
import re
from collections.abc import Iterable, Iterator

REDACTED = "<redacted>"

_FORMATTER = logging.Formatter()


class Redact(logging.Filter):
    """Replaces every one of `secrets` (exact strings) and every match of `patterns` in a record's
    message and traceback text with `<redacted>`. A pattern's first group, if it has one, is kept:
    `r"(/interactions/\\d+/)[^/]+"` keeps the path and hides the token after it."""

    def __init__(self, secrets: Iterable[str] = (), patterns: Iterable[str] = ()) -> None:
        super().__init__()
        self._secrets = [secret for secret in secrets if secret]
        self._patterns = [re.compile(pattern) for pattern in patterns]

    def redact(self, text: str) -> str:
        for secret in self._secrets:
            if secret in text:
                text = text.replace(secret, REDACTED)
        for pattern in self._patterns:
            text = pattern.sub(_keep_first_group, text)
        return text

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        redacted = self.redact(message)
        if redacted != message:
            record.msg, record.args = redacted, None
        if record.exc_info:
            # Formatters reuse `exc_text` once it is set: set it to the redacted traceback.
            text = record.exc_text or _FORMATTER.formatException(record.exc_info)
            record.exc_text = self.redact(text)
        return True


def _keep_first_group(match: re.Match[str]) -> str:
    kept = match.group(1) if match.re.groups else ""
    return f"{kept}{REDACTED}"


@contextlib.contextmanager
def filtered(logger_names: Iterable[str], log_filter: logging.Filter) -> Iterator[None]:
    """`log_filter` (e.g. a `Redact`) installed on the named loggers for the block."""
    loggers = [logging.getLogger(name) for name in logger_names]
    for logger in loggers:
        logger.addFilter(log_filter)
    try:
        yield
    finally:
        for logger in loggers:
            logger.removeFilter(log_filter)
