"""Small builders the in-process tests share: a parsed config over the fake GPTs endpoint and a
SQLite file, and the chat messages a request is expected to carry."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from core.config import Config, parse_config
from fakes.gpts import FakeGpts

DEFAULT_GPT = "g-B3hgivKK9"


def sqlite_config(
    fake_gpts: FakeGpts,
    db: Path,
    env: dict[str, str] | None = None,
    **storage: Any,
) -> Config:
    """The config of a bot that asks `fake_gpts` (its default GPT: DEFAULT_GPT) and keeps its
    state in the SQLite file `db`; `storage` adds keys to the [storage] table."""
    return parse_config(
        {
            "gpts": {"base_url": fake_gpts.base_url, "default_gpt": DEFAULT_GPT},
            "storage": {"url": f"sqlite+aiosqlite:///{db}", **storage},
        },
        {} if env is None else env,
    )


def alternating(*contents: str) -> list[dict[str, str]]:
    """The messages of a request that alternate user and assistant, the user first."""
    roles = ("user", "assistant")
    return [{"role": roles[n % 2], "content": text} for n, text in enumerate(contents)]
