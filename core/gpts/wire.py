"""Wire types of the GPTs client: ChatMessage goes up; Delta (with its Usage) comes back."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal, TypedDict

# What an image counts for where the length of what goes upstream is measured (the history
# budget, token estimates): about what a GPT charges for one, not the length of its base64.
IMAGE_CHARS: Final = 1000


class TextPart(TypedDict):
    type: Literal["text"]
    text: str


class ImageUrl(TypedDict):
    url: str  # a data: URL (never a platform URL: a Telegram one carries the bot token)


class ImagePart(TypedDict):
    type: Literal["image_url"]
    image_url: ImageUrl


ContentPart = TextPart | ImagePart


class ChatMessage(TypedDict):
    role: str  # "system" | "user" | "assistant"
    # A plain string, or (a user message with images) text and image parts.
    content: str | list[ContentPart]


def content_chars(content: str | list[ContentPart]) -> int:
    """How long `content` counts as: its text, plus `IMAGE_CHARS` per image."""
    if isinstance(content, str):
        return len(content)
    return sum(len(part["text"]) if part["type"] == "text" else IMAGE_CHARS for part in content)


def content_text(content: str | list[ContentPart]) -> str:
    """The text of `content`, without its images."""
    if isinstance(content, str):
        return content
    return "".join(part["text"] for part in content if part["type"] == "text")


@dataclass(frozen=True, slots=True)
class Usage:
    prompt_tokens: int | None
    completion_tokens: int | None
    total_tokens: int | None


@dataclass(frozen=True, slots=True)
class Delta:
    """One piece of an answer: text to show (content or refusal), and/or the finish and usage."""

    text: str = ""
    finish_reason: str | None = None
    usage: Usage | None = None
