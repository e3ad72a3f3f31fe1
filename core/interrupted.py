"""Answers a dead process left `streaming`: marked `interrupted` at start, their messages settled.

A process killed mid-answer (`kill -9`, a crash, a power cut) leaves the answer's row `streaming`
with the text saved last (`core.saving`), and its platform messages frozen with the streaming
indicator. At the next start, `gptsbot run` (for the platforms it runs) and `gptsbot chat` (for
its terminal scope) mark those rows `interrupted`, so the next turn sends them upstream as cut.
Then each platform adapter, once connected, edits the messages to the saved text plus a short
"interrupted" line, without the indicator and the Stop button, with a Retry button instead
(`settle`, called from the adapter's `settle_interrupted`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

from core import i18n
from core.answer_markup import AnswerMarkup, ImagePrompt
from core.buttons import retry_button
from core.config import BotConfig
from core.i18n import Language, LanguageSetting, language_of_text
from core.platform import MessageRef, ReplyChannel
from core.streaming import StreamingReply
from storage import InterruptedAnswer, Repository, StorageBusy

logger = logging.getLogger(__name__)


async def interrupted_answers(
    repo: Repository, platform: str, *, chat_id: str | None = None
) -> list[InterruptedAnswer]:
    """Mark `interrupted` the answers of `platform` (or of one of its chats) that a dead process
    left streaming; returns them. Call it only where no live process answers those scopes."""
    try:
        found = await repo.interrupt_streaming(platform, chat_id=chat_id)
    except StorageBusy as exc:
        logger.warning("interrupted %s answers not settled: %s", platform, exc)
        return []
    if found:
        logger.info(
            "%d %s answer(s) were cut off by an earlier stop: marked interrupted",
            len(found),
            platform,
        )
    return found


async def settle(
    channel: ReplyChannel,
    answer: InterruptedAnswer,
    refs: Sequence[MessageRef],
    *,
    indicator: str,
    language: LanguageSetting = "auto",
    image_prompt: ImagePrompt = "hide",
) -> None:
    """Show `answer`'s saved text plus the interrupted line in the messages `refs` (those it was
    streamed in), no indicator, and a Retry button. Without messages to edit the text is sent
    anew (e.g. a Telegram draft, which vanished by itself). `indicator`: the one it streamed
    with, so the text splits into the same messages. `channel` shows its button labels in
    `settling_language(answer, language)`, the language the text is cleaned in too."""
    if not refs and not answer.content.strip():
        return  # nothing was shown, nothing was saved
    shown_in = settling_language(answer, language)
    line = i18n.INTERRUPTED(shown_in)
    markup = AnswerMarkup(shown_in, image_prompt)
    reply = StreamingReply(channel, edit_interval_s=0, indicator=indicator, markup=markup)
    reply.resume(refs, answer.content)
    await reply.finish(line, (retry_button(answer.id),))


async def settle_for(
    open_channel: Callable[[Language], ReplyChannel],
    answer: InterruptedAnswer,
    refs: Sequence[MessageRef],
    bot: BotConfig,
) -> None:
    """`settle` through the channel `open_channel` opens for the answer's language, with the
    `[bot]` indicator and language: what each adapter does for each answer."""
    channel = open_channel(settling_language(answer, bot.language))
    await settle(
        channel,
        answer,
        refs,
        indicator=bot.streaming_indicator,
        language=bot.language,
        image_prompt=bot.image_prompt,
    )


def settling_language(answer: InterruptedAnswer, language: LanguageSetting) -> Language:
    """No one's locale is known at start: the configured language, or the question's."""
    return language_of_text(answer.question or answer.content, language)
