"""`/image PATH [question]` in the terminal: the file goes to the GPT (an image as a data: URL,
a text file in the message), a missing or unsupported one gets a line, and history reads the
image again from its path."""

from __future__ import annotations

import base64
import io
from pathlib import Path

import pytest

from bots.console.chat import chat
from core.app import open_app
from fakes.gpts import FakeGpts, image_urls, text_of
from tests.helpers import sqlite_config
from tests.test_console_commands import speaking

PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(200))


@pytest.mark.asyncio
async def test_image_sends_a_local_file_to_the_gpt(
    fake_gpts: FakeGpts, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    speaking(monkeypatch, "C")
    (tmp_path / "my chart.png").write_bytes(PNG)
    (tmp_path / "notes.md").write_text("# Plan\n- ship it\n")
    (tmp_path / "paper.pdf").write_bytes(b"%PDF-1.7\n")
    typed = tmp_path / "typed.txt"
    typed.write_text(
        f"/image '{tmp_path / 'my chart.png'}' what does it show?\n"
        f"/file {tmp_path / 'notes.md'} summarise\n"
        f"/image {tmp_path / 'paper.pdf'}\n"
        f"/image {tmp_path / 'gone.png'} hello?\n"
        "/image\n"
        "and now?\n"
    )
    stdout, stderr = io.StringIO(), io.StringIO()
    async with open_app(sqlite_config(fake_gpts, tmp_path / "bot.db")) as app:
        with typed.open() as stdin:
            code = await chat(
                app.service, gpt=None, new=False, stdin=stdin, stdout=stdout, stderr=stderr
            )
    assert code == 0
    assert stdout.getvalue().splitlines() == [
        "echo: what does it show? (+1 images)",
        "echo: summarise",
        "",
        "notes.md:",
        "```md",
        "# Plan",
        "- ship it",
        "```",
        "⚠️ paper.pdf: this file type isn't supported, nothing was sent to the GPT. Send an "
        "image or a text file (.txt, .md, .csv, .json, source code).",
        "echo: and now?",
    ]
    said = stderr.getvalue()
    assert f"⚠️ No file at {tmp_path / 'gone.png'}." in said
    assert "Usage: /image PATH [question]" in said

    first = fake_gpts.requests[0].messages[-1]["content"]
    assert text_of(first) == "what does it show?"
    assert image_urls(first) == [f"data:image/png;base64,{base64.b64encode(PNG).decode()}"]
    # History reads the image again from its path.
    last = fake_gpts.requests[-1].messages
    assert [len(image_urls(m["content"])) for m in last if m["role"] == "user"] == [1, 0, 0]
    assert len(fake_gpts.requests) == 3
