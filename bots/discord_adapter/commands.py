"""The core's command registry as Discord app commands: names, options, descriptions (with Chinese
localisations through `CommandTranslator`), default member permissions and autocomplete.

Each app command's callback hands the interaction, the registry command and the option values to
one function of the adapter; nothing here decides what a command does.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Coroutine, Mapping, Sequence
from typing import Any, Literal

import discord
from discord import app_commands

from bots.discord_adapter.text import described
from core import commands
from core.i18n import Language

# Discord takes default_member_permissions only on a top-level command, so a group with any
# admin-only subcommand (/gpt bind) is hidden as a whole from members without Manage Channels;
# server admins can widen that under Server Settings → Integrations. Discord does not enforce it
# everywhere (DMs, overrides), so the core checks each invocation again (`Author.is_admin`).
ADMIN_PERMISSIONS = discord.Permissions(manage_channels=True)
AUTOCOMPLETE_LIMIT = 25  # Discord shows at most 25 choices

# The interaction, the command, its text options, and the files of its attachment option.
Run = Callable[
    [discord.Interaction, commands.Command, Mapping[str, str], Sequence[discord.Attachment]],
    Awaitable[None],
]
Suggest = Callable[
    [discord.Interaction, commands.Argument, str], Awaitable[list[app_commands.Choice[str]]]
]


Install = Literal["guild", "user", "both"]
# Where a command installed to a server may run: the server's channels and DMs with the bot.
GUILD_CONTEXTS = app_commands.AppCommandContext(guild=True, dm_channel=True)
GUILD_INSTALL = app_commands.AppInstallationType(guild=True)


def reach(
    install: Install,
) -> tuple[app_commands.AppInstallationType, app_commands.AppCommandContext]:
    """Who can add the bot's everyday commands and where they run. A user install lets a person
    use them in any server, DM or group DM, even where the bot is not a member."""
    user = install in ("user", "both")
    installs = app_commands.AppInstallationType(guild=install in ("guild", "both"), user=user)
    contexts = app_commands.AppCommandContext(guild=True, dm_channel=True, private_channel=user)
    return installs, contexts


def install(
    tree: app_commands.CommandTree[Any],
    run: Run,
    suggest: Suggest,
    language: Language,
    installs: Install = "both",
) -> None:
    """Add every registry command to `tree`; `language` is the descriptions' own language.
    Groups and admin-only commands (bindings) stay with the server install: only a server's
    admins can be checked, and a binding belongs to a server's channel."""
    everyday = reach(installs)
    groups: dict[str, app_commands.Group] = {}
    for command in commands.REGISTRY:
        parent: app_commands.Group | None = None
        if len(command.path) > 1:
            parent = groups.get(command.path[0]) or _group(command.path[0], language)
            groups[parent.name] = parent
        app_command = _app_command(command, parent, run, suggest, language)
        if parent is None and command.permission is commands.Permission.ANYONE:
            app_command.allowed_installs, app_command.allowed_contexts = everyday
        if command.permission is not commands.Permission.ANYONE:
            if parent is None:
                app_command.default_permissions = ADMIN_PERMISSIONS
            else:
                parent.default_permissions = ADMIN_PERMISSIONS
        if parent is None:
            tree.add_command(app_command)
        else:
            parent.add_command(app_command)
    for group in groups.values():
        tree.add_command(group)


def _group(name: str, language: Language) -> app_commands.Group:
    (group,) = [group for group in commands.GROUPS if group.name == name]
    return app_commands.Group(
        name=name,
        description=described(group.description, language),
        allowed_installs=GUILD_INSTALL,
        allowed_contexts=GUILD_CONTEXTS,
    )


def _app_command(
    command: commands.Command,
    parent: app_commands.Group | None,
    run: Run,
    suggest: Suggest,
    language: Language,
) -> app_commands.Command[Any, ..., None]:
    attachment = command.attachment

    async def callback(
        interaction: discord.Interaction[Any], /, **values: str | discord.Attachment | None
    ) -> None:
        texts = {name: value for name, value in values.items() if isinstance(value, str)}
        files = [value for value in values.values() if isinstance(value, discord.Attachment)]
        await run(interaction, command, texts, files)

    # discord.py reads the options from the callback's signature: one string per argument, and
    # an optional attachment for the command's file.
    parameters = [
        inspect.Parameter("interaction", inspect.Parameter.POSITIONAL_OR_KEYWORD),
        *(
            inspect.Parameter(
                argument.name, inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=str
            )
            for argument in command.arguments
        ),
    ]
    described_options = [*command.arguments]
    if attachment is not None:
        parameters.append(
            inspect.Parameter(
                attachment.name,
                inspect.Parameter.POSITIONAL_OR_KEYWORD,
                annotation=discord.Attachment | None,
                default=None,
            )
        )
        described_options.append(attachment)
    callback.__signature__ = inspect.Signature(parameters)  # type: ignore[attr-defined]
    callback.__discord_app_commands_param_description__ = {  # type: ignore[attr-defined]
        argument.name: described(argument.description, language) for argument in described_options
    }
    app_command: app_commands.Command[Any, ..., None] = app_commands.Command(
        name=command.path[-1],
        description=described(command.description, language),
        callback=callback,
        parent=parent,
    )
    for argument in command.arguments:
        if argument.suggests_bound_gpts:
            app_command.autocomplete(argument.name)(_completer(argument, suggest))
    return app_command


def _completer(
    argument: commands.Argument, suggest: Suggest
) -> Callable[[discord.Interaction[Any], str], Coroutine[Any, Any, list[app_commands.Choice[str]]]]:
    async def complete(
        interaction: discord.Interaction[Any], current: str
    ) -> list[app_commands.Choice[str]]:
        return (await suggest(interaction, argument, current))[:AUTOCOMPLETE_LIMIT]

    return complete
