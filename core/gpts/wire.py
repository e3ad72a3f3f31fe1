"""Wire types of the GPTs client: ChatMessage goes up; Delta (with its Usage) comes back."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypedDict


class ChatMessage(TypedDict):
    role: str  # "system" | "user" | "assistant"
    content: str


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
