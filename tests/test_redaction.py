"""The one log filter both adapters install: what it hides in the lines the libraries write."""

from __future__ import annotations

import logging

from bots.discord_adapter.adapter import INTERACTION_TOKENS
from bots.telegram_adapter.adapter import TOKEN_PATTERNS
from core.redaction import REDACTED, Redact, filtered

BOT_TOKEN = "MTIz.bot-token.xyz"
INTERACTION = "aW50ZXJhY3Rpb246MTIzNDU2Nzg5MDpzZWNyZXQ"


def shown(redact: Redact, msg: str, *args: object, exc: BaseException | None = None) -> str:
    """The line a formatter writes for the record, after `redact` looked at it."""
    record = logging.LogRecord("discord.http", logging.DEBUG, __file__, 1, msg, args, None)
    if exc is not None:
        record.exc_info = (type(exc), exc, exc.__traceback__)
    assert redact.filter(record)
    return logging.Formatter().format(record)


def test_discord_interaction_tokens_are_hidden_where_discord_py_logs_them() -> None:
    redact = Redact([BOT_TOKEN], INTERACTION_TOKENS)
    base = "https://discord.com/api/v10"
    lines = {
        # discord.http / discord.webhook.async_ request lines
        f"POST {base}/interactions/1234/{INTERACTION}/callback?with_response=1 has returned 200": (
            f"POST {base}/interactions/1234/{REDACTED}/callback?with_response=1 has returned 200"
        ),
        f"PATCH {base}/webhooks/42/{INTERACTION}/messages/@original with None": (
            f"PATCH {base}/webhooks/42/{REDACTED}/messages/@original with None"
        ),
        f"POST {base}/webhooks/42/{INTERACTION}?wait=1": (
            f"POST {base}/webhooks/42/{REDACTED}?wait=1"
        ),
        # discord.gateway: the INTERACTION_CREATE event as a dict
        str({"t": "INTERACTION_CREATE", "d": {"id": "1", "token": INTERACTION, "type": 2}}): (
            str({"t": "INTERACTION_CREATE", "d": {"id": "1", "token": REDACTED, "type": 2}})
        ),
        f"login with {BOT_TOKEN}": f"login with {REDACTED}",
    }
    for line, expected in lines.items():
        assert shown(redact, "%s", line) == expected


def test_a_telegram_token_is_hidden_in_any_bot_api_url_and_in_tracebacks() -> None:
    token = "123456:AAE-secret_Token"
    redact = Redact([token], TOKEN_PATTERNS)
    assert shown(redact, "Set Bot API URL: %s", f"http://127.0.0.1/bot{token}") == (
        f"Set Bot API URL: http://127.0.0.1/bot{REDACTED}"
    )
    mistyped = "123456:AAE-secret_Tokn"
    assert shown(redact, "GET /bot%s/getMe", mistyped) == f"GET /bot{REDACTED}/getMe"
    try:
        raise ValueError(f"The token `{token}` was rejected by the server.")
    except ValueError as exc:
        line = shown(redact, "start failed", exc=exc)
    assert token not in line and f"The token `{REDACTED}` was rejected" in line


def test_filtered_installs_the_filter_on_exactly_the_named_loggers_for_the_block() -> None:
    redact = Redact(["s3cr3t-value"])
    named, child = logging.getLogger("tests.redaction"), logging.getLogger("tests.redaction.x")
    with filtered(["tests.redaction"], redact):
        assert redact in named.filters and redact not in child.filters
    assert redact not in named.filters
