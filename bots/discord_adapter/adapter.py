"""The Discord adapter: discord.py events and slash commands in, core turns out, answers streamed
back through `replies`.

Scopes: a guild channel is `Scope("discord", channel_id)`, a thread `Scope("discord", parent_id,
thread_id)` (it inherits the channel's binding unless bound itself), a DM `Scope("discord",
dm_channel_id)` with `is_private`.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import Coroutine, Sequence
from typing import Any

import discord
import discord.gateway
import discord.http
from discord import app_commands

from bots.discord_adapter import commands as commands_module
from bots.discord_adapter import interactions
from bots.discord_adapter.access import DiscordAccess
from bots.discord_adapter.buttons import Presses
from bots.discord_adapter.calls import call_trace
from bots.discord_adapter.connection import REFUSED, intents, point_at_api
from bots.discord_adapter.failures import is_bot_refused
from bots.discord_adapter.messages import answer_message, fetch_attachment
from bots.discord_adapter.replies import NO_PINGS, settle_interrupted
from bots.discord_adapter.settings import NAME as PLATFORM
from bots.discord_adapter.settings import DiscordConfig
from bots.discord_adapter.shards import ShardReadiness, shard_options
from bots.discord_adapter.tables import as_embed
from bots.discord_adapter.text import CommandTranslator
from core import commands, i18n
from core.config import Config
from core.conversation import ConversationService
from core.i18n import Language, language_for
from core.pacing import make_budgets
from core.platform import Clock, PlatformRefused, ReplyChannel, SystemClock
from core.redaction import Redact, filtered
from core.streaming import StreamingReply
from core.tables import Table
from core.turns import Author, Scope
from storage import InterruptedAnswer

logger = logging.getLogger(__name__)

# Discord allows about 5 message sends/edits per 5 s per channel.
CHANNEL_WINDOW_S = 5.0
# An interaction token lives 15 minutes; stop relying on it a minute before.
INTERACTION_WINDOW_S = 14 * 60.0
# on_ready fires this long after the last GUILD_CREATE (discord.py's default is 2 s).
GUILD_READY_TIMEOUT_S = 2.0
# discord.py sleeps through shorter 429s itself; longer ones come back to the core's pacing.
MAX_RATELIMIT_WAIT_S = 30.0
# On shutdown, how long answers in progress may finish (unless [bot] shutdown_grace_s is set).
SHUTDOWN_GRACE_S = 10.0
# The gateway's close code for a token it does not accept (e.g. reset while the bot ran).
AUTHENTICATION_FAILED = 4004
# discord.py logs request URLs (interaction and webhook URLs carry the interaction's token) and
# every gateway event (INTERACTION_CREATE carries it too).
TOKEN_LOGGERS = ("discord.http", "discord.webhook.async_", "discord.gateway", "discord.client")
INTERACTION_TOKENS = (
    r"(/interactions/\d+/)[^/?#\s'\"]+",
    r"(/webhooks/\d+/)[^/?#\s'\"]+",
    r"""(['"]token['"]:\s*['"])[^'"]+""",
)


class _Client(discord.AutoShardedClient):
    def __init__(self, adapter: DiscordAdapter, intents: discord.Intents) -> None:
        super().__init__(
            intents=intents,
            allowed_mentions=NO_PINGS,
            guild_ready_timeout=adapter.guild_ready_timeout,
            max_ratelimit_timeout=MAX_RATELIMIT_WAIT_S,
            chunk_guilds_at_startup=False,
            http_trace=call_trace(),
            **shard_options(adapter.settings),
        )
        self.adapter = adapter
        self.tree = app_commands.CommandTree(
            self,
            allowed_contexts=commands_module.GUILD_CONTEXTS,
            allowed_installs=commands_module.GUILD_INSTALL,
        )

    async def setup_hook(self) -> None:
        await self.adapter._setup(self)

    async def on_ready(self) -> None:
        self.adapter._on_ready(self)

    async def on_shard_ready(self, shard_id: int) -> None:
        self.adapter.shards.shard_ready(self, shard_id)

    async def on_shard_resumed(self, shard_id: int) -> None:
        self.adapter.shards.shard_ready(self, shard_id)

    async def on_shard_disconnect(self, shard_id: int) -> None:
        self.adapter.shards.shard_lost(shard_id)  # not ready (/readyz) until it reconnects

    async def on_message(self, message: discord.Message) -> None:
        adapter = self.adapter
        language = adapter._message_language(message)
        await adapter._guarded(
            answer_message(adapter, self, message, language), language, message=message
        )

    async def on_interaction(self, interaction: discord.Interaction) -> None:
        await self.adapter.presses.on_interaction(interaction)  # slash commands: the tree's


class DiscordAdapter:
    """Runs a discord.py client until cancelled. Tests may shorten `guild_ready_timeout`,
    `channel_window_s` (the 5 s window of the per-channel budget, scaled with the test's clock)
    and `interaction_window_s`, and set `reraise_unexpected`."""

    name = PLATFORM

    def __init__(
        self,
        config: Config,
        service: ConversationService,
        *,
        guild_ready_timeout: float = GUILD_READY_TIMEOUT_S,
        channel_window_s: float = CHANNEL_WINDOW_S,
        interaction_window_s: float = INTERACTION_WINDOW_S,
        clock: Clock | None = None,
    ) -> None:
        self.config = config
        self.settings = config.platform(PLATFORM, DiscordConfig)
        self.service = service
        self.commands = commands.Commands(service)
        self.guild_ready_timeout = guild_ready_timeout
        self.interaction_window_s = interaction_window_s
        self._clock = clock or SystemClock()
        self.access = DiscordAccess(config.access, self._clock)
        # One bot-wide budget and one per channel, shared by every answer streaming at once (in
        # this process, or in Redis shared by every process of the bot: [limits]).
        # Closed whenever run() ends (a restarted run connects again).
        self.budgets = make_budgets(config.limits, self._clock)
        self.global_budget = self.budgets.bot_wide(PLATFORM, self.settings.requests_per_second)
        self.channel_budgets = self.budgets.keyed(
            f"{PLATFORM}:channel", self.settings.channel_edits_per_5s, channel_window_s
        )
        self.reraise_unexpected = False
        self.unexpected: list[BaseException] = []
        self.ready = asyncio.Event()
        self.shards = ShardReadiness(self.ready)  # ready: every shard of this process is
        self.message_content = True
        self.client: _Client | None = None
        self._synced = False
        self._handlers: set[asyncio.Task[Any]] = set()
        # Discord refused the token: run() stops with PlatformRefused, handlers end quietly.
        self._token_refused = False
        self._closing: asyncio.Task[None] | None = None  # closing the client after a REST 401
        self.presses = Presses(self)  # the buttons under answers
        service.register_fetcher(PLATFORM, lambda url: fetch_attachment(self.client, url))

    # -- lifecycle ----------------------------------------------------------------------------

    async def run(self) -> None:
        redact = Redact([self.settings.token], INTERACTION_TOKENS)
        try:
            with filtered(TOKEN_LOGGERS, redact):
                await self._run()
        finally:  # every answer has ended: nothing paces any more
            await self.budgets.aclose()

    async def _run(self) -> None:
        saved = discord.http.Route.BASE, discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY
        try:
            await point_at_api(self.settings)
            while True:
                client = self.client = _Client(self, intents(self.message_content))
                self._token_refused, self._closing = False, None
                try:
                    await client.start(self.settings.token)
                    if self._token_refused:  # a REST call answered 401 and closed the client
                        raise PlatformRefused(REFUSED)
                    return
                except discord.LoginFailure:
                    raise PlatformRefused(REFUSED) from None
                except discord.ConnectionClosed as exc:
                    if exc.code != AUTHENTICATION_FAILED:
                        raise
                    self._token_refused = True
                    raise PlatformRefused(REFUSED) from None
                except discord.PrivilegedIntentsRequired:
                    if not self.message_content:
                        raise
                    logger.warning(
                        "Discord refused the message-content intent (switch on MESSAGE CONTENT "
                        "INTENT under Bot in the Developer Portal); reconnecting without it"
                    )
                    self.message_content = False
                finally:
                    try:
                        await self._stop_handlers()
                    finally:  # even when cancelled again during the grace period
                        await client.close()
                        self.shards.reset()
        finally:
            discord.http.Route.BASE, discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = saved

    async def _setup(self, client: _Client) -> None:
        default: Language = "zh" if self.config.bot.language == "zh" else "en"
        commands_module.install(
            client.tree,
            functools.partial(interactions.run_command, self),
            functools.partial(interactions.suggest, self),
            default,
            self.settings.install,
        )
        await client.tree.set_translator(CommandTranslator(self.config.bot.language))
        if self._synced:
            return
        dev_guild = self.settings.dev_guild_id
        if dev_guild is not None:
            guild = discord.Object(dev_guild)
            client.tree.copy_global_to(guild=guild)
            synced = await client.tree.sync(guild=guild)
        else:
            synced = await client.tree.sync()
        self._synced = True
        logger.info(
            "Discord commands synced%s: %s",
            f" to guild {dev_guild}" if dev_guild is not None else "",
            ", ".join(f"/{c.name}" for c in synced),
        )

    def _on_ready(self, client: _Client) -> None:
        guilds = len(client.guilds)
        if self.message_content:
            logger.info(
                "Discord ready as %s in %d guild(s): slash commands, mentions, replies to the "
                "bot and DMs are on",
                client.user,
                guilds,
            )
        else:
            logger.warning(
                "Discord ready as %s in %d guild(s) WITHOUT the message-content intent: slash "
                "commands, @mentions and DMs work; replies to the bot that do not @mention it "
                "are ignored",
                client.user,
                guilds,
            )
        self.ready.set()

    async def _stop_handlers(self) -> None:
        """The gateway is no longer read (no new turns): let the answers in progress finish
        within the shutdown grace, then cut the rest (they show and store what arrived) before
        the client's HTTP session closes."""
        try:
            if self._handlers:
                grace = self.config.bot.shutdown_grace_s
                await asyncio.wait(
                    list(self._handlers), timeout=SHUTDOWN_GRACE_S if grace is None else grace
                )
        finally:  # also when cancelled again while waiting: cut them now
            for task in list(self._handlers):
                task.cancel()
            for task in list(self._handlers):
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task

    async def settle_interrupted(self, answers: Sequence[InterruptedAnswer]) -> None:
        """Once connected: fix the messages of answers a dead process left streaming."""
        assert self.client is not None
        await settle_interrupted(self.client, answers, self.config.bot)

    # -- the one catch-all per incoming event --------------------------------------------------

    async def _guarded(
        self,
        work: Coroutine[Any, Any, None],
        language: Language,
        *,
        message: discord.Message | None = None,
        interaction: discord.Interaction | None = None,
    ) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._handlers.add(task)
        try:
            await work
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            if self._token_refused or _is_refusal(exc):
                # Nothing can be said any more; run() stops the adapter and says why, once.
                self._refused()
                return
            self.unexpected.append(exc)
            if self.reraise_unexpected:
                raise
            logger.exception("handling a Discord %s failed", "message" if message else "command")
            apology = i18n.APOLOGY(language)
            with contextlib.suppress(Exception):
                if message is not None:
                    await message.channel.send(
                        apology,
                        reference=message.to_reference(fail_if_not_exists=False),
                        allowed_mentions=NO_PINGS,
                    )
                elif interaction is not None:
                    await self._respond(interaction, apology, ephemeral=True)
        finally:
            if task is not None:
                self._handlers.discard(task)

    def _refused(self) -> None:
        """Discord refused the token (a REST call answered 401): close the client, and run()
        raises PlatformRefused. When a token is reset, the gateway usually closes with 4004
        first, and discord.py has closed the client already."""
        self._token_refused = True
        client = self.client
        if self._closing is None and client is not None and not client.is_closed():
            self._closing = asyncio.create_task(client.close())

    @staticmethod
    async def _respond(
        interaction: discord.Interaction, text: str, *, ephemeral: bool, table: Table | None = None
    ) -> None:
        # Command answers quote GPT links: no link previews. A table comes as an embed.
        shown: dict[str, Any] = (
            {"embed": as_embed(text, table)}
            if table is not None
            else {"content": text, "suppress_embeds": True}
        )
        if interaction.response.is_done():
            await interaction.followup.send(**shown, ephemeral=ephemeral, allowed_mentions=NO_PINGS)
        else:
            await interaction.response.send_message(
                **shown, ephemeral=ephemeral, allowed_mentions=NO_PINGS
            )

    # -- language ------------------------------------------------------------------------------

    def _message_language(self, message: discord.Message) -> Language:
        """A message carries no locale of its author: a guild's preferred locale stands in for
        it; a DM has none (English unless `[bot] language` says otherwise)."""
        guild = message.guild
        locale = guild.preferred_locale.value if guild is not None else None
        return language_for(locale, self.config.bot.language)

    def _interaction_language(self, interaction: discord.Interaction) -> Language:
        """A slash command carries the language of the user's Discord client."""
        return language_for(interaction.locale.value, self.config.bot.language)

    # -- building turns -------------------------------------------------------------------------

    @staticmethod
    def _scope(channel: Any, channel_id: int, guild_id: int | None) -> tuple[Scope, bool]:
        if guild_id is None:  # a DM with the bot, or a group DM (a user install)
            is_group = getattr(channel, "type", None) == discord.ChannelType.group
            return Scope(PLATFORM, str(channel_id)), not is_group
        if isinstance(channel, discord.Thread):
            return Scope(PLATFORM, str(channel.parent_id), str(channel.id)), False
        return Scope(PLATFORM, str(channel_id)), False

    def _streaming_reply(self, channel: ReplyChannel, channel_id: int) -> StreamingReply:
        return StreamingReply(
            channel,
            edit_interval_s=self.settings.edit_interval_s,
            budgets=(self.channel_budgets[str(channel_id)], self.global_budget),
            indicator=self.config.bot.streaming_indicator,
            clock=self._clock,
        )

    # -- slash commands: the core's registry, translated by `commands.install` ----------------

    def _context(self, interaction: discord.Interaction, language: Language) -> commands.Context:
        channel_id = interaction.channel_id
        assert channel_id is not None  # slash commands always come from a channel
        scope, is_private = self._scope(interaction.channel, channel_id, interaction.guild_id)
        # Resolved permissions in this channel, overwrites included — never role names.
        perms = interaction.permissions
        is_admin = interaction.guild_id is not None and (
            perms.manage_channels or perms.administrator
        )
        user = interaction.user
        me = interaction.client.user
        return commands.Context(
            scope,
            Author(str(user.id), user.display_name, is_admin=is_admin),
            is_private,
            language,
            group_id=str(interaction.guild_id) if interaction.guild_id is not None else None,
            bot_mention=me.mention if me is not None else "",
        )


def _is_refusal(exc: Exception) -> bool:
    return isinstance(exc, PlatformRefused) or (
        isinstance(exc, discord.HTTPException) and is_bot_refused(exc)
    )
