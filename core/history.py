"""The messages a turn sends upstream: system prompt, history window, the new message.

The window is built from exchanges (`storage.Exchange`): a user message and the answer it got,
paired in storage by the answer's link to its question. So history always alternates user and
assistant, in the order the questions were asked, whatever order the rows were written in. A
message that got no answer (no GPT bound, refused, upstream failed before any text) is never part
of it; an answer that did not arrive in full goes up marked as cut, never as if complete.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Final

from core.attachments import user_content
from core.gpts import ChatMessage
from core.gpts.wire import IMAGE_CHARS, ImagePart, content_chars
from storage import Exchange

_NO_IMAGES: Final[Mapping[int, list[ImagePart]]] = {}

# Appended to an answer that was cut (partial, interrupted, stopped) when it goes upstream.
CUT_MARK: Final = "\n[answer cut off]"


def upstream_messages(
    history: Sequence[Exchange],
    question: str,
    *,
    author_name: str | None,
    shared: bool,
    history_chars: int,
    system_prompt: str | None,
    images: Sequence[ImagePart] = (),
    history_images: Mapping[int, list[ImagePart]] = _NO_IMAGES,
) -> list[ChatMessage]:
    """System prompt, then the newest exchanges that fit `history_chars` together with the new
    message (whole exchanges only), then the new message. In a `shared` chat each user message
    carries its author's name. `images` go with the new message, `history_images` (by question
    id) with earlier ones; each counts `IMAGE_CHARS` against the budget."""
    current = ChatMessage(
        role="user", content=user_content(speaker(author_name, question, shared), images)
    )
    budget = history_chars - content_chars(current["content"])
    window: list[ChatMessage] = []
    for exchange in reversed(history):
        asked = speaker(exchange.author_name, exchange.question, shared)
        answered = exchange.answer
        if exchange.answer_status != "complete":
            answered += CUT_MARK
        pictures = history_images.get(exchange.question_id, ()) if history_images else ()
        budget -= len(asked) + len(answered) + IMAGE_CHARS * len(pictures)
        if budget < 0:
            break
        window.append(ChatMessage(role="assistant", content=answered))
        window.append(ChatMessage(role="user", content=user_content(asked, pictures)))
    window.reverse()
    system = [ChatMessage(role="system", content=system_prompt)] if system_prompt else []
    return [*system, *window, current]


def speaker(name: str | None, text: str, shared: bool) -> str:
    # In a shared chat the GPT sees who said what.
    return f"{name}: {text}" if shared and name else text
