"""A local fake Discord that the real discord.py client accepts (server.py): REST and gateway."""

from fakes.discord.protocol import (
    ADMINISTRATOR,
    APPLICATION_COMMAND,
    AUTOCOMPLETE,
    EPHEMERAL_FLAG,
    MANAGE_CHANNELS,
    MEMBER_PERMISSIONS,
    MESSAGE_COMPONENT,
    Call,
    FakeInteraction,
    FakeMessage,
)
from fakes.discord.server import FakeDiscord

__all__ = [
    "ADMINISTRATOR",
    "APPLICATION_COMMAND",
    "AUTOCOMPLETE",
    "EPHEMERAL_FLAG",
    "MANAGE_CHANNELS",
    "MEMBER_PERMISSIONS",
    "MESSAGE_COMPONENT",
    "Call",
    "FakeDiscord",
    "FakeInteraction",
    "FakeMessage",
]
