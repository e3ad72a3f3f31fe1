"""The buttons under an answer, as plain data: Stop while it streams, Retry once it has ended.

    core:    `Button(action, label, payload)` rides on the sends and edits the streaming reply
             already makes (`ReplyChannel.send/edit(..., buttons=...)`): Stop on the message still
             being written, Retry (or nothing) on the final edit
    adapter: renders each as the platform's button (a Telegram inline keyboard button, a Discord
             button component) with `data` as its callback data / custom id
    press:   the adapter hands `data` back to `Commands.press` with who pressed where

`data` is `<action>:<answer id>`: the database resolves it, so a button keeps working after a
restart, and it fits both platforms' limits (Telegram's callback data 64 bytes, Discord's custom
id 100 characters).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal, get_args

from core import i18n
from core.i18n import Text

Action = Literal["stop", "retry"]
ACTIONS: Final[tuple[Action, ...]] = get_args(Action)
# Telegram's limit for callback data (Discord allows 100 characters).
MAX_DATA_BYTES: Final = 64


@dataclass(frozen=True, slots=True)
class Button:
    """A button under a message: `label` in the reader's language, `payload` what it acts on."""

    action: Action
    label: Text
    payload: str

    @property
    def data(self) -> str:
        """What the platform gives back when the button is pressed."""
        return f"{self.action}:{self.payload}"


def stop_button(answer_id: int) -> Button:
    return Button("stop", i18n.STOP_BUTTON, str(answer_id))


def retry_button(answer_id: int) -> Button:
    return Button("retry", i18n.RETRY_BUTTON, str(answer_id))


@dataclass(frozen=True, slots=True)
class Pressed:
    """A pressed button's data, read back: what to do to which answer."""

    action: Action
    answer_id: int


def parse_press(data: str | None) -> Pressed | None:
    """The press a button's `data` asks for; None for data this bot never made."""
    if not data or len(data.encode()) > MAX_DATA_BYTES:
        return None
    name, _, payload = data.partition(":")
    if not payload.isascii() or not payload.isdigit():
        return None
    action = next((action for action in ACTIONS if action == name), None)
    return None if action is None else Pressed(action, int(payload))
