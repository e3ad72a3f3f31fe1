"""Where Discord answers are written: core `ReplyChannel`s over discord.py.

The core's `StreamingReply` decides when to send and edit and where to split; these classes only
perform the calls, with `allowed_mentions` that ping no one and masked links to anything but
http(s)/mailto escaped (`links`; `measure` leaves room for the escapes); what Discord refuses
becomes the core's errors (`failures`).

The core's buttons (Stop, Retry) are button components on those same calls (`components`, or
`Buttons` where discord.py takes a view); an edit without any sends an empty component list, which
removes them. Their presses are `buttons.py`'s.

Channel messages are sent and edited through discord.py's HTTP client (its rate limits, its
retries, its errors) with the message's JSON: of what Discord returns only the new message's id
is read, and building a `Message` from every answer (and a `View` for its buttons) was about a
tenth of a call's CPU.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Awaitable, Sequence
from functools import partial
from typing import Any

import discord
from discord.http import HTTPClient, MultipartParameters
from discord.utils import MISSING

from bots.discord_adapter.failures import INVALID_WEBHOOK_TOKEN, translated
from bots.discord_adapter.links import shown_chars_bound, without_unsafe_links
from bots.discord_adapter.text import MAX_MESSAGE_CHARS, quote_prompt
from core.buttons import Button
from core.config import BotConfig
from core.i18n import Language
from core.interrupted import settle_for
from core.platform import Clock, Image, MessageRef, code_points
from storage import InterruptedAnswer

logger = logging.getLogger(__name__)

NO_PINGS = discord.AllowedMentions.none()
_NO_PINGS_JSON = NO_PINGS.to_dict()
BUTTON_STYLES = {"stop": discord.ButtonStyle.danger, "retry": discord.ButtonStyle.secondary}
MAX_FILES_PER_MESSAGE = 10
MAX_DESCRIPTION_CHARS = 1024  # an attachment's alt text


def image_files(images: Sequence[Image]) -> list[discord.File]:
    """The images as attachments of one message, their alt text as each one's description.
    Made anew for every attempt: a sent File is spent."""
    return [
        discord.File(
            io.BytesIO(image.data),
            filename=image.file_name,
            description=image.alt[:MAX_DESCRIPTION_CHARS] or None,
        )
        for image in images
    ]


class Buttons(discord.ui.View):
    """The core's buttons as components of one message. discord.py never dispatches their
    presses to this view (it is not stored): the adapter's `on_interaction` hands them to the
    core, so they keep working after a restart."""

    def __init__(self, buttons: Sequence[Button], language: Language) -> None:
        super().__init__(timeout=None)
        for button in buttons:
            style = BUTTON_STYLES.get(button.action, discord.ButtonStyle.secondary)
            label = button.label(language)
            self.add_item(discord.ui.Button(label=label, custom_id=button.data, style=style))

    def is_dispatchable(self) -> bool:
        return False


def components(buttons: Sequence[Button], language: Language) -> list[dict[str, Any]]:
    """`buttons` as one action row of a message's JSON, as discord.py writes a `Buttons` view;
    an empty list (an edit with it removes the buttons) for none."""
    if not buttons:
        return []
    row = [
        {
            "type": discord.ComponentType.button.value,
            "style": BUTTON_STYLES.get(button.action, discord.ButtonStyle.secondary).value,
            "disabled": False,
            "label": button.label(language),
            "custom_id": button.data,
        }
        for button in buttons
    ]
    return [{"type": discord.ComponentType.action_row.value, "components": row}]


def _json_body(payload: dict[str, Any]) -> MultipartParameters:
    return MultipartParameters(payload=payload, multipart=None, files=None)


class _Views:
    """One `Buttons` view per set of buttons an answer shows (its edits repeat them)."""

    def __init__(self, language: Language) -> None:
        self._language = language
        self._views: dict[tuple[Button, ...], Buttons] = {}

    def __call__(self, buttons: Sequence[Button]) -> Buttons | None:
        """The view of `buttons`; None for none (an edit with None removes the components)."""
        if not buttons:
            return None
        key = tuple(buttons)
        if key not in self._views:
            self._views[key] = Buttons(key, self._language)
        return self._views[key]


class ChannelReplies:
    """An answer written as ordinary channel messages; the first replies to `reply_to`. Button
    labels are in `language`."""

    max_chars = MAX_MESSAGE_CHARS

    def __init__(
        self,
        channel: discord.PartialMessageable,
        http: HTTPClient,
        reply_to: discord.Message | None = None,
        language: Language = "en",
    ) -> None:
        self._channel = channel
        self._http = http
        self._reply_to = reply_to
        self._language = language

    def measure(self, text: str) -> int:
        return shown_chars_bound(text)

    async def send(self, text: str, *, final: bool, buttons: Sequence[Button] = ()) -> MessageRef:
        payload = self._message(text, buttons)
        payload["tts"] = False
        if self._reply_to is not None:
            # Only the first message replies; without fail_if_not_exists a deleted question
            # would make Discord refuse the answer.
            reference = self._reply_to.to_reference(fail_if_not_exists=False)
            payload["message_reference"] = reference.to_message_reference_dict()
            self._reply_to = None
        body = _json_body(payload)
        sent = await translated(self._http.send_message(self._channel.id, params=body))
        return MessageRef(str(self._channel.id), str(sent["id"]))

    async def edit(
        self, ref: MessageRef, text: str, *, final: bool, buttons: Sequence[Button] = ()
    ) -> None:
        body = _json_body(self._message(text, buttons))
        await translated(
            self._http.edit_message(self._channel.id, int(ref.message_id), params=body),
            editing=True,
        )

    def _message(self, text: str, buttons: Sequence[Button]) -> dict[str, Any]:
        return {
            "content": without_unsafe_links(text),
            "components": components(buttons, self._language),
            "allowed_mentions": _NO_PINGS_JSON,
        }

    max_images_per_call = MAX_FILES_PER_MESSAGE

    async def send_images(self, images: Sequence[Image]) -> None:
        """One message of attachments under the answer."""
        await translated(self._channel.send(files=image_files(images), allowed_mentions=NO_PINGS))


class InteractionReplies:
    """A /chat answer: the deferred original response shows the quoted prompt and the first page;
    further pages are follow-ups. An interaction token lives 15 minutes: past `deadline` (a
    minute before that, on `clock`) new pages become channel messages and edits go through the
    channel's message route, which works for a bot's non-ephemeral interaction messages."""

    def __init__(
        self,
        interaction: discord.Interaction,
        channel: discord.PartialMessageable,
        *,
        header: str,
        deadline: float,
        clock: Clock,
        language: Language = "en",
    ) -> None:
        self._view = _Views(language)
        self._interaction = interaction
        self._channel = channel
        self._header = header
        self._deadline = deadline
        self._clock = clock
        self._token_dead = False
        self._original: str | None = None  # message id of the original response, once shown
        self.max_chars = MAX_MESSAGE_CHARS - code_points(header)

    def measure(self, text: str) -> int:
        return shown_chars_bound(text)

    @property
    def token_alive(self) -> bool:
        return not self._token_dead and self._clock.monotonic() < self._deadline

    def _expire(self, exc: discord.HTTPException) -> bool:
        if exc.status == 401 and exc.code == INVALID_WEBHOOK_TOKEN:
            logger.info("interaction token expired; continuing with channel messages")
            self._token_dead = True
            return True
        return False

    async def send(self, text: str, *, final: bool, buttons: Sequence[Button] = ()) -> MessageRef:
        text = without_unsafe_links(text)
        view = self._view(buttons)
        if self._original is None:
            content = self._header + text
            if self.token_alive:
                try:
                    message = await translated(
                        self._interaction.edit_original_response(
                            content=content, allowed_mentions=NO_PINGS, view=view
                        )
                    )
                    self._original = str(message.id)
                    return MessageRef(str(self._channel.id), self._original)
                except discord.HTTPException as exc:
                    if not self._expire(exc):
                        raise
            ref = await self._channel_send(content, view)
            self._original = ref.message_id  # it carries the header: edits keep it
            return ref
        if self.token_alive:
            try:
                # A follow-up takes no view at all when it has no buttons (None is refused).
                with_view: Any = MISSING if view is None else view
                followup = await translated(
                    self._interaction.followup.send(
                        text, wait=True, allowed_mentions=NO_PINGS, view=with_view
                    )
                )
                return MessageRef(str(self._channel.id), str(followup.id))
            except discord.HTTPException as exc:
                if not self._expire(exc):
                    raise
        return await self._channel_send(text, view)

    max_images_per_call = MAX_FILES_PER_MESSAGE

    async def send_images(self, images: Sequence[Image]) -> None:
        """A follow-up of attachments (a channel message once the token is too old)."""
        if self.token_alive:
            try:
                await translated(
                    self._interaction.followup.send(
                        files=image_files(images), wait=True, allowed_mentions=NO_PINGS
                    )
                )
                return
            except discord.HTTPException as exc:
                if not self._expire(exc):
                    raise
        await translated(self._channel.send(files=image_files(images), allowed_mentions=NO_PINGS))

    async def _channel_send(self, text: str, view: Buttons | None) -> MessageRef:
        message = await translated(self._channel.send(text, allowed_mentions=NO_PINGS, view=view))  # type: ignore[arg-type]
        return MessageRef(str(self._channel.id), str(message.id))

    async def edit(
        self, ref: MessageRef, text: str, *, final: bool, buttons: Sequence[Button] = ()
    ) -> None:
        is_original = ref.message_id == self._original
        text = without_unsafe_links(text)
        content = self._header + text if is_original else text
        view = self._view(buttons)
        if self.token_alive:
            try:
                call: Awaitable[discord.Message]
                if is_original:
                    call = self._interaction.edit_original_response(
                        content=content, allowed_mentions=NO_PINGS, view=view
                    )
                else:
                    call = self._interaction.followup.edit_message(
                        int(ref.message_id), content=content, allowed_mentions=NO_PINGS, view=view
                    )
                await translated(call, editing=True)
                return
            except discord.HTTPException as exc:
                if not self._expire(exc):
                    raise
        partial = self._channel.get_partial_message(int(ref.message_id))
        await translated(
            partial.edit(content=content, allowed_mentions=NO_PINGS, view=view), editing=True
        )


class SettlingReplies(ChannelReplies):
    """Channel messages of an answer streamed by a process that died, edited once more. A /chat
    answer's first message (the interaction's original response) keeps its quoted prompt
    `header`, and every page is as long as it was while streaming."""

    def __init__(
        self,
        channel: discord.PartialMessageable,
        http: HTTPClient,
        header: str,
        language: Language = "en",
    ) -> None:
        super().__init__(channel, http, language=language)
        self._header = header
        self._first: str | None = None
        self.max_chars = MAX_MESSAGE_CHARS - code_points(header)

    async def send(self, text: str, *, final: bool, buttons: Sequence[Button] = ()) -> MessageRef:
        first = self._first is None
        shown = self._header + text if first else text
        ref = await super().send(shown, final=final, buttons=buttons)
        if first:
            self._first = ref.message_id
        return ref

    async def edit(
        self, ref: MessageRef, text: str, *, final: bool, buttons: Sequence[Button] = ()
    ) -> None:
        if self._first is None:
            self._first = ref.message_id
        header = self._header if ref.message_id == self._first else ""
        await super().edit(ref, header + text, final=final, buttons=buttons)


async def settle_interrupted(
    client: discord.Client, answers: Sequence[InterruptedAnswer], bot: BotConfig
) -> None:
    """Each answer a dead process left streaming shows its saved text and the interrupted line,
    without the streaming indicator and Stop, with Retry (see `core.interrupted`). Edited through
    the channel's message route: the interaction token of a /chat answer died with its process,
    so a response Discord does not let the bot edit that way (an ephemeral one) is left as it
    is."""
    for answer in answers:
        scope = answer.scope
        channel_id = int(scope.thread_id or scope.chat_id)
        target = client.get_partial_messageable(channel_id)
        # A /chat answer (its question is no channel message) opened under the quoted prompt.
        header = "" if answer.question_message_ids else quote_prompt(answer.question)
        refs = [MessageRef(str(channel_id), m) for m in answer.platform_message_ids]
        try:
            replies = partial(SettlingReplies, target, client.http, header)
            await settle_for(replies, answer, refs, bot)
        except discord.HTTPException as exc:
            logger.warning("interrupted answer %s not settled: HTTP %s", answer.id, exc.status)
