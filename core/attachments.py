"""Images and text files a user sends, made ready for the GPT.

An adapter puts what came with a message on the turn (`core.turns.Attachment`: name, mime type,
size and the platform's reference) and registers a *fetcher* for its platform with the
conversation service: `reference -> bytes`, the same one for the turn's own files and for images
sent again with history. Before a turn is stored or counted:

- an image (PNG, JPEG, GIF, WebP) is fetched and goes upstream as an `image_url` part holding a
  data: URL of its bytes (never a platform URL: a Telegram one carries the bot token). More than
  `[gpts] max_images_per_turn`, or one over `max_image_bytes`, refuses the whole message.
- a text file (.txt, .md, .csv, .json, source code) is decoded (UTF-8, UTF-16 with a BOM, then
  GB18030) and put into the message's text under its name, fenced. It is part of what the user
  wrote: stored in the message, so history sends it again like any text.
- any other file (PDF, archives, ...) refuses the message.

A refused message goes nowhere upstream and counts against no quota. Images are stored by
reference (`storage.AttachmentRecord`), never their bytes; `history_images` fetches those of the
last `[gpts] history_images` questions that had any again, for the history window.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import logging
import re
from collections.abc import Awaitable, Callable, Mapping, Sequence
from pathlib import PurePosixPath
from typing import Final, Literal

from core import i18n
from core.config import GptsConfig
from core.errors import AttachmentRefused
from core.gpts.wire import ContentPart, ImagePart, TextPart
from core.turns import Attachment, Turn
from storage import AttachmentRecord, Exchange

logger = logging.getLogger(__name__)

# reference -> the file's bytes; raises anything when the platform can't give them.
Fetcher = Callable[[str], Awaitable[bytes]]
Kind = Literal["image", "text"]

# What the GPTs take: OpenAI's vision input formats.
IMAGE_TYPES: Final = frozenset({"image/png", "image/jpeg", "image/gif", "image/webp"})
# The first bytes of each, which decide the data: URL's type whatever the platform said.
_SIGNATURES: Final = (
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"GIF87a", "image/gif"),
    (b"GIF89a", "image/gif"),
)
TEXT_TYPES: Final = frozenset(
    {"application/json", "application/xml", "application/x-yaml", "application/toml",
     "application/javascript", "application/x-sh", "application/sql"}
)  # fmt: skip
TEXT_SUFFIXES: Final = frozenset(
    {".txt", ".md", ".markdown", ".csv", ".tsv", ".json", ".jsonl", ".xml", ".yaml", ".yml",
     ".toml", ".ini", ".cfg", ".conf", ".log", ".rst", ".tex", ".html", ".htm", ".css", ".scss",
     ".py", ".pyi", ".js", ".mjs", ".ts", ".tsx", ".jsx", ".vue", ".java", ".kt", ".kts",
     ".scala", ".go", ".rs", ".c", ".h", ".cc", ".cpp", ".hpp", ".cs", ".m", ".swift", ".rb",
     ".php", ".pl", ".lua", ".r", ".sh", ".bash", ".zsh", ".ps1", ".bat", ".sql", ".dart",
     ".ex", ".exs", ".erl", ".hs", ".clj", ".el", ".vim", ".proto", ".graphql", ".diff",
     ".patch", ".srt", ".vtt"}
)  # fmt: skip
# Tried in order on a text file's bytes; GB18030 (a superset of GBK) for Chinese-speaking users.
_BOMS: Final = ((b"\xff\xfe", "utf-16"), (b"\xfe\xff", "utf-16"))
_ENCODINGS: Final = ("utf-8-sig", "gb18030")
_BACKTICKS: Final = re.compile("`+")
FENCE_MIN: Final = 3


def kind_of(name: str, mime: str) -> Kind | None:
    """What a file is to the GPT: an image, a text file, or (None) something it can't take."""
    mime = mime.split(";")[0].strip().lower()
    if mime in IMAGE_TYPES:
        return "image"
    suffix = PurePosixPath(name.lower()).suffix
    if suffix in TEXT_SUFFIXES or mime.startswith("text/") or mime in TEXT_TYPES:
        return "text"
    return None


async def prepare(
    turn: Turn, gpts: GptsConfig, fetch: Fetcher | None
) -> tuple[Turn, AttachmentRefused | None]:
    """The turn as it goes to the GPT: text files folded into its text, images fetched (only
    images left in `attachments`, each with its bytes). Or why it can't go: nothing is fetched
    past the first refusal. A turn without attachments comes back as it is."""
    if not turn.attachments:
        return turn, None
    kinds = [kind_of(file.name, file.mime) for file in turn.attachments]
    for file, kind in zip(turn.attachments, kinds, strict=True):
        if kind is None:
            return turn, AttachmentRefused(i18n.FILE_NOT_SUPPORTED, name=file.name)
    count = kinds.count("image")
    if count and gpts.max_images_per_turn == 0:
        return turn, AttachmentRefused(i18n.NO_IMAGES)
    if count > gpts.max_images_per_turn:
        return turn, AttachmentRefused(
            i18n.TOO_MANY_IMAGES, count=count, limit=gpts.max_images_per_turn
        )
    images: list[Attachment] = []
    texts: list[str] = []
    for file, kind in zip(turn.attachments, kinds, strict=True):
        if kind == "image" and _too_large(file.size, gpts):
            return turn, _image_too_large(file, file.size or 0, gpts)
        data = file.data
        if data is None:
            try:
                if fetch is None:
                    raise LookupError(f"no fetcher for {turn.scope.platform}")
                data = await fetch(file.reference)
            except Exception as exc:
                logger.warning("a file in %s was not fetched: %s", turn.scope, type(exc).__name__)
                return turn, AttachmentRefused(i18n.FILE_UNREADABLE, name=file.name)
        if kind == "image":
            if _too_large(len(data), gpts):
                return turn, _image_too_large(file, len(data), gpts)
            images.append(dataclasses.replace(file, data=data, size=len(data)))
            continue
        text = decode_text(data)
        if text is None:
            return turn, AttachmentRefused(i18n.FILE_NOT_SUPPORTED, name=file.name)
        if len(text) > gpts.max_file_chars:
            return turn, AttachmentRefused(
                i18n.FILE_TOO_LONG, name=file.name, length=len(text), limit=gpts.max_file_chars
            )
        texts.append(fenced(file.name, text))
    text = "\n\n".join(part for part in (turn.text, *texts) if part)
    return dataclasses.replace(turn, text=text, attachments=tuple(images)), None


async def fetched_again(turn: Turn, fetch: Fetcher | None) -> Turn:
    """A retried question with its images fetched again by reference; one that can't be is
    left out (logged at INFO), as in history."""
    images: list[Attachment] = []
    for file in turn.attachments:
        try:
            if fetch is None:
                raise LookupError(f"no fetcher for {turn.scope.platform}")
            images.append(dataclasses.replace(file, data=await fetch(file.reference)))
        except Exception as exc:
            logger.info("an image in %s was not fetched again: %s", turn.scope, type(exc).__name__)
    return dataclasses.replace(turn, attachments=tuple(images))


def _too_large(size: int | None, gpts: GptsConfig) -> bool:
    return size is not None and size > gpts.max_image_bytes


def _image_too_large(file: Attachment, size: int, gpts: GptsConfig) -> AttachmentRefused:
    return AttachmentRefused(
        i18n.SENT_IMAGE_TOO_LARGE,
        name=file.name,
        size=_megabytes(size),
        limit=_megabytes(gpts.max_image_bytes),
    )


def _megabytes(size: int) -> str:
    return f"{size / (1024 * 1024):.1f} MB"


def decode_text(data: bytes) -> str | None:
    """A text file's characters: UTF-16 when it starts with its BOM, else UTF-8 (with or without
    a BOM), else GB18030. None: not text in any of them (or binary: it holds NUL characters)."""
    candidates = [encoding for bom, encoding in _BOMS if data.startswith(bom)] or _ENCODINGS
    for encoding in candidates:
        try:
            text = data.decode(encoding)
        except UnicodeDecodeError:
            continue
        return None if "\x00" in text else text.removeprefix("\ufeff")
    return None


def fenced(name: str, text: str) -> str:
    """`text` under a line with its file name, in a fence longer than any backtick run inside."""
    longest = max((len(run) for run in _BACKTICKS.findall(text)), default=0)
    fence = "`" * max(FENCE_MIN, longest + 1)
    language = PurePosixPath(name).suffix.lstrip(".")
    return f"{name}:\n{fence}{language}\n{text.rstrip(chr(10))}\n{fence}"


def records_of(turn: Turn) -> tuple[AttachmentRecord, ...]:
    """The turn's images as storage keeps them: by reference, never their bytes."""
    return tuple(
        AttachmentRecord("image", file.name, file.mime, file.size, file.reference)
        for file in turn.attachments
    )


def image_part(data: bytes, mime: str) -> ImagePart:
    """An `image_url` part holding the image's bytes as a data: URL."""
    kind = next((kind for magic, kind in _SIGNATURES if data.startswith(magic)), None)
    if kind is None and data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        kind = "image/webp"
    encoded = base64.b64encode(data).decode("ascii")
    return {"type": "image_url", "image_url": {"url": f"data:{kind or mime};base64,{encoded}"}}


def user_content(text: str, images: Sequence[ImagePart]) -> str | list[ContentPart]:
    """A user message's content: its text alone, or (with images) its text then its images."""
    if not images:
        return text
    parts: list[ContentPart] = [TextPart(type="text", text=text)] if text else []
    parts.extend(images)
    return parts


def turn_images(turn: Turn) -> list[ImagePart]:
    """The image parts of a prepared turn (`prepare` fetched their bytes)."""
    return [image_part(file.data or b"", file.mime) for file in turn.attachments]


async def history_images(
    history: Sequence[Exchange], keep: int, fetch: Fetcher | None
) -> Mapping[int, list[ImagePart]]:
    """The images of the last `keep` questions in `history` that had any, fetched again from
    their platform, by question id. An image that can't be fetched is left out (the question
    goes without it), logged at INFO. Nothing is fetched, or allocated, without such questions."""
    if keep <= 0 or fetch is None:
        return {}
    wanted: list[tuple[int, AttachmentRecord]] = []
    questions = 0
    for exchange in reversed(history):
        if not exchange.question_attachments:
            continue
        images = [file for file in exchange.question_attachments if file.kind == "image"]
        if not images:
            continue
        wanted.extend((exchange.question_id, file) for file in images)
        questions += 1
        if questions == keep:
            break
    if not wanted:
        return {}
    fetched = await asyncio.gather(
        *(fetch(file.reference) for _, file in wanted), return_exceptions=True
    )
    found: dict[int, list[ImagePart]] = {}
    for (question_id, file), data in zip(wanted, fetched, strict=True):
        if isinstance(data, BaseException):
            logger.info(
                "an image of message %s was not fetched again: %s",
                question_id,
                type(data).__name__,
            )
            continue
        found.setdefault(question_id, []).append(image_part(data, file.mime))
    return found
