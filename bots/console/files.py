"""`/image PATH [question]` in the terminal: a local file sent to the GPT with the question.

The terminal's user runs the bot, so a path on their disk is theirs to send. The file goes to the
core like any platform's (`core.attachments` decides: an image, a text file, or refused); its
reference is its absolute path, read again when history sends the image once more. `/file` is
the same command, for a text file.
"""

from __future__ import annotations

import asyncio
import mimetypes
from pathlib import Path
from typing import Final

from core.i18n import Language, Text
from core.turns import Attachment

COMMANDS: Final = ("/image", "/file")
UNKNOWN_MIME: Final = "application/octet-stream"
QUOTES: Final = "\"'"

NO_PATH = Text(
    "Usage: /image PATH [question] (an image or a text file; quote a path with spaces).",
    "用法：/image 路径 [问题]（图片或文本文件；含空格的路径请加引号）。",
)
NO_SUCH_FILE = Text("⚠️ No file at {path}.", "⚠️ {path} 不是一个文件。")


def file_command(text: str, language: Language) -> tuple[str, Attachment] | str | None:
    """For `/image PATH [question]`: the question and the file; a line saying what is wrong;
    None for any other line."""
    name, _, rest = text.partition(" ")
    if name not in COMMANDS:
        return None
    path_text, question = _split_path(rest.strip())
    if not path_text:
        return NO_PATH(language)
    path = Path(path_text).expanduser()
    try:
        size = path.stat().st_size if path.is_file() else None
    except OSError:
        size = None
    if size is None:
        return NO_SUCH_FILE(language, path=path_text)
    mime = mimetypes.guess_type(path.name)[0] or UNKNOWN_MIME
    return question, Attachment(path.name, mime, size, str(path.resolve()))


def _split_path(rest: str) -> tuple[str, str]:
    """The path (in quotes if it has spaces) and what follows it."""
    if rest[:1] in QUOTES and rest[:1] and rest.find(rest[0], 1) > 0:
        end = rest.find(rest[0], 1)
        return rest[1:end], rest[end + 1 :].strip()
    path, _, question = rest.partition(" ")
    return path, question.strip()


async def read_file(reference: str) -> bytes:
    """A local file's bytes (a reference is its absolute path)."""
    return await asyncio.to_thread(Path(reference).read_bytes)
