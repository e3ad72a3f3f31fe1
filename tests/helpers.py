"""Small builders the in-process tests share: a parsed config over the fake GPTs endpoint and a
SQLite file, the chat messages a request is expected to carry, the bytes of an image it carries,
and a long answer with images."""

from __future__ import annotations

import base64
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core.config import Config, parse_config
from fakes.gpts import FakeGpts
from fakes.images import FakeImageHost

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
            # Every chunk as it comes: the tests step answers piece by piece.
            "gpts": {
                "base_url": fake_gpts.base_url,
                "default_gpt": DEFAULT_GPT,
                "read_interval_s": 0,
            },
            "storage": {"url": f"sqlite+aiosqlite:///{db}", **storage},
        },
        {} if env is None else env,
    )


def alternating(*contents: str) -> list[dict[str, str]]:
    """The messages of a request that alternate user and assistant, the user first."""
    roles = ("user", "assistant")
    return [{"role": roles[n % 2], "content": text} for n, text in enumerate(contents)]


@dataclass(frozen=True)
class LongImageAnswer:
    """An answer longer than two messages: an image first and last, prose, and a code block whose
    lines hold image markup that is code, not an image (never downloaded)."""

    text: str
    code: str
    first: str  # the first image's URL
    last: str  # the last image's URL


def long_image_answer(host: FakeImageHost, *, code_lines: int, prose_words: int) -> LongImageAnswer:
    """Prose of `prose_words` words on both sides of `code_lines` lines of code, between the
    images `/png/first` and `/png/last` of `host`."""
    code = "\n".join(
        f"print({n})  # ![not an image]({host.url('/png/code')})" for n in range(code_lines)
    )
    prose = " ".join(f"word{n}" for n in range(prose_words))
    first, last = host.url("/png/first"), host.url("/png/last")
    text = f"![first]({first})\n\n{prose}\n\n```python\n{code}\n```\n\n{prose}\n\n![last]({last})"
    return LongImageAnswer(text, code, first, last)


def data_url_bytes(url: str, media_types: Collection[str] = ("image/png",)) -> bytes:
    """The bytes of a base64 `data:` URL (an image sent upstream), whose media type must be one
    of `media_types`."""
    head, _, encoded = url.partition(",")
    assert head in {f"data:{media_type};base64" for media_type in media_types}, head
    return base64.b64decode(encoded)
