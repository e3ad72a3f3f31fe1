"""What chat commands are made of, as plain data: who may run one (`Permission`), where it runs
(`Context`), what it answers (`Reply`, `Ask`, `Retry`) and how it is declared (`Command` with its
`Argument`s, `Group`). The registry and the running of commands are in `core.commands`, which
exports these too.
"""

from __future__ import annotations

import enum
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from core.i18n import Language, Text
from core.tables import Table
from core.turns import Author, Scope, Turn

if TYPE_CHECKING:
    from core.commands import Commands


class Permission(enum.Enum):
    ANYONE = "anyone"
    ADMIN = "admin"  # admins of the scope (everyone in a private chat) and owners
    OWNER = "owner"  # the bot's owners ([access] owners)


@dataclass(frozen=True, slots=True)
class Context:
    """Who runs a command and where, as the adapter saw it. `group_id`: the server or group the
    scope belongs to; `bot_mention`: how people address the bot in a shared chat ("@mybot")."""

    scope: Scope
    author: Author
    is_private: bool
    language: Language
    group_id: str | None = None
    bot_mention: str = ""


@dataclass(frozen=True, slots=True)
class Reply:
    """What a command answers. `private`: only the person who ran it needs to see it (Discord
    answers ephemerally; chats without that answer as usual). `table`: figures shown under the
    text (a Discord embed, a Telegram `pre` block, aligned columns in the terminal).
    `confidential`: no one else may see it: where the platform can't answer only the asker in
    this chat (a Telegram group), the adapter sends it in a private chat with them instead."""

    text: str
    private: bool = False
    table: Table | None = None
    confidential: bool = False


@dataclass(frozen=True, slots=True)
class Ask:
    """The command is a question for the GPT: the adapter streams `text` as a turn."""

    text: str


@dataclass(frozen=True, slots=True)
class Retry:
    """Ask a stored question again (a Retry button, /retry): the adapter opens a new message and
    streams `service.retry(answer_id, turn, reply)` into it. `turn` is the question as it was
    asked (its author, its text); `question_message_ids` are the platform messages that asked it
    (a reply may quote them)."""

    answer_id: int
    turn: Turn
    question_message_ids: tuple[str, ...]


Handler = Callable[["Commands", Context, Mapping[str, str]], Awaitable[Reply | Ask | Retry]]


@dataclass(frozen=True, slots=True)
class Argument:
    name: str
    placeholder: Text  # in usage lines: /gpt bind <GPT link or id>
    description: Text
    # Offer the GPTs already bound in this server or group as completions.
    suggests_bound_gpts: bool = False


@dataclass(frozen=True, slots=True)
class Command:
    name: str
    description: Text
    handler: Handler
    arguments: tuple[Argument, ...] = ()
    permission: Permission = Permission.ANYONE
    # The handler itself looks at `Author.is_admin` (admins see more of /usage; /retry of
    # someone else's question), so the adapter must find it out even for a command anyone may run.
    reads_admin: bool = False
    # An optional file the command takes where a command can carry one (a Discord slash
    # command's attachment option); elsewhere files come with the message itself.
    attachment: Argument | None = None

    @property
    def needs_admin_check(self) -> bool:
        """Whether the adapter must tell whether the author is an admin here."""
        return self.permission is not Permission.ANYONE or self.reads_admin

    @property
    def path(self) -> tuple[str, ...]:
        return tuple(self.name.split())

    def usage(self, language: Language) -> str:
        placeholders = (f"<{argument.placeholder(language)}>" for argument in self.arguments)
        return " ".join([f"/{self.name}", *placeholders])


@dataclass(frozen=True, slots=True)
class Group:
    """Commands under one name (`/gpt bind`, `/gpt info`); `default` runs for the bare name."""

    name: str
    description: Text
    default: str
