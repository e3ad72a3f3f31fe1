"""The Discord adapter: discord.py events and slash commands in, core turns out, answers streamed
back through `replies`.

Scopes: a guild channel is `Scope("discord", channel_id)`, a thread `Scope("discord", parent_id,
thread_id)` (it inherits the channel's binding unless bound itself), a DM `Scope("discord",
dm_channel_id)` with `is_private`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Coroutine
from typing import Any

import aiohttp
import discord
import discord.gateway
import discord.http
import yarl
from discord import app_commands

from bots.discord_adapter import text as t
from bots.discord_adapter.replies import NO_PINGS, ChannelReplies, InteractionReplies
from bots.discord_adapter.text import CommandTranslator, described, quote_prompt, turn_text
from core import i18n
from core.config import Config
from core.conversation import BindingInfo, ConversationService
from core.errors import BadGptName, NotAllowed, user_message
from core.i18n import Language, language_for
from core.pacing import KeyedBudgets, RateBudget
from core.platform import Clock, PlatformRefused, ReplyChannel, SystemClock
from core.streaming import StreamingReply, typing_until_first_message
from core.turns import Author, Scope, Turn

logger = logging.getLogger(__name__)

PLATFORM = "discord"
DEFAULT_API_BASE = "https://discord.com/api/v10"
# Discord allows about 5 message sends/edits per 5 s per channel.
CHANNEL_WINDOW_S = 5.0
# An interaction token lives 15 minutes; stop relying on it a minute before.
INTERACTION_WINDOW_S = 14 * 60.0
# A typing indicator shows for about 10 s per call.
TYPING_REFRESH_S = 8.0
# on_ready fires this long after the last GUILD_CREATE (discord.py's default is 2 s).
GUILD_READY_TIMEOUT_S = 2.0
# discord.py sleeps through shorter 429s itself; longer ones come back to the core's pacing.
MAX_RATELIMIT_WAIT_S = 30.0
# How long a DM author's membership in an allowed guild is remembered.
MEMBERSHIP_TTL_S = 600.0
AUTOCOMPLETE_LIMIT = 25  # Discord shows at most 25 choices

BIND_PERMISSIONS = discord.Permissions(manage_channels=True)


def create_adapter(config: Config, service: ConversationService) -> DiscordAdapter | None:
    """Called by `gptsbot run` (core.app): a Discord adapter, or None without a token."""
    if not config.discord.token:
        return None
    return DiscordAdapter(config, service)


class _Client(discord.Client):
    def __init__(self, adapter: DiscordAdapter, intents: discord.Intents) -> None:
        super().__init__(
            intents=intents,
            allowed_mentions=NO_PINGS,
            guild_ready_timeout=adapter.guild_ready_timeout,
            max_ratelimit_timeout=MAX_RATELIMIT_WAIT_S,
            chunk_guilds_at_startup=False,
        )
        self.adapter = adapter
        self.tree = app_commands.CommandTree(
            self,
            allowed_contexts=app_commands.AppCommandContext(guild=True, dm_channel=True),
            allowed_installs=app_commands.AppInstallationType(guild=True),
        )

    async def setup_hook(self) -> None:
        await self.adapter._setup(self)

    async def on_ready(self) -> None:
        self.adapter._on_ready(self)

    async def on_message(self, message: discord.Message) -> None:
        adapter = self.adapter
        language = adapter._message_language(message)
        await adapter._guarded(
            adapter._on_message(self, message, language), language, message=message
        )


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
        self.settings = config.discord
        self.service = service
        self.guild_ready_timeout = guild_ready_timeout
        self.interaction_window_s = interaction_window_s
        self._clock = clock or SystemClock()
        # One bot-wide budget and one per channel, shared by every answer streaming at once.
        self.global_budget = RateBudget.per_second(self.settings.requests_per_second, self._clock)
        self.channel_budgets = KeyedBudgets(
            self.settings.channel_edits_per_5s, channel_window_s, self._clock
        )
        self.reraise_unexpected = False
        self.unexpected: list[BaseException] = []
        self.ready = asyncio.Event()
        self.message_content = True
        self.client: _Client | None = None
        self._synced = False
        self._handlers: set[asyncio.Task[Any]] = set()
        self._members: dict[int, tuple[float, bool]] = {}

    # -- lifecycle ----------------------------------------------------------------------------

    async def run(self) -> None:
        saved = discord.http.Route.BASE, discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY
        try:
            await self._point_at_api()
            while True:
                client = self.client = _Client(self, self._intents())
                try:
                    await client.start(self.settings.token)
                    return
                except discord.LoginFailure:
                    raise PlatformRefused(
                        "Discord refused the bot token: check DISCORD_BOT_TOKEN"
                    ) from None
                except discord.PrivilegedIntentsRequired:
                    if not self.message_content:
                        raise
                    logger.warning(
                        "Discord refused the message-content intent (switch on MESSAGE CONTENT "
                        "INTENT under Bot in the Developer Portal); reconnecting without it"
                    )
                    self.message_content = False
                finally:
                    await self._stop_handlers()
                    await client.close()
                    self.ready.clear()
        finally:
            discord.http.Route.BASE, discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = saved

    def _intents(self) -> discord.Intents:
        intents = discord.Intents.none()
        intents.guilds = True  # channels and threads arrive in GUILD_CREATE
        intents.guild_messages = True
        intents.dm_messages = True
        intents.message_content = self.message_content
        return intents

    async def _point_at_api(self) -> None:
        """discord.py has no option for another API base: set the class attributes it reads
        (REST, interaction callbacks and webhooks all use `Route.BASE`), and fetch the gateway
        URL from `/gateway/bot` since a plain Client never asks for it."""
        base = self.settings.api_base.rstrip("/")
        if base == DEFAULT_API_BASE:
            return
        discord.http.Route.BASE = base
        headers = {"Authorization": f"Bot {self.settings.token}"}
        async with (
            aiohttp.ClientSession() as session,
            session.get(f"{base}/gateway/bot", headers=headers) as response,
        ):
            if response.status == 401:
                raise PlatformRefused("Discord refused the bot token: check DISCORD_BOT_TOKEN")
            if response.status != 200:
                raise RuntimeError(f"GET {base}/gateway/bot answered HTTP {response.status}")
            data = await response.json(content_type=None)
        discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(data["url"])
        logger.info("Discord API at %s, gateway at %s", base, data["url"])

    async def _setup(self, client: _Client) -> None:
        self._install_commands(client.tree)
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
        for task in list(self._handlers):
            task.cancel()
        for task in list(self._handlers):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

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

    @staticmethod
    async def _respond(interaction: discord.Interaction, text: str, *, ephemeral: bool) -> None:
        if interaction.response.is_done():
            await interaction.followup.send(text, ephemeral=ephemeral, allowed_mentions=NO_PINGS)
        else:
            await interaction.response.send_message(
                text, ephemeral=ephemeral, allowed_mentions=NO_PINGS
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

    # -- access ---------------------------------------------------------------------------------

    def _guild_allowed(self, guild_id: int | None) -> bool:
        allowed = self.settings.allowed_guild_ids
        return not allowed or guild_id is None or guild_id in allowed

    async def _dm_allowed(self, client: discord.Client, user_id: int) -> bool:
        """With `allowed_guild_ids` set, a DM is answered only for a member of one of those
        guilds (else anyone who can reach the bot could spend the operator's GPT quota)."""
        allowed = self.settings.allowed_guild_ids
        if not allowed:
            return True
        now = time.monotonic()
        cached = self._members.get(user_id)
        if cached is not None and cached[0] > now:
            return cached[1]
        is_member = False
        for guild_id in allowed:
            guild = client.get_guild(guild_id)
            if guild is None:
                continue
            if guild.get_member(user_id) is not None:
                is_member = True
                break
            try:
                await guild.fetch_member(user_id)
            except discord.NotFound:
                continue
            is_member = True
            break
        self._members[user_id] = (now + MEMBERSHIP_TTL_S, is_member)
        return is_member

    # -- building turns -------------------------------------------------------------------------

    @staticmethod
    def _scope(channel: Any, channel_id: int, guild_id: int | None) -> tuple[Scope, bool]:
        if guild_id is None:
            return Scope(PLATFORM, str(channel_id)), True
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

    # -- messages -------------------------------------------------------------------------------

    async def _on_message(
        self, client: _Client, message: discord.Message, language: Language
    ) -> None:
        me = client.user
        if me is None or message.author.bot or message.webhook_id is not None:
            return
        if message.type not in (discord.MessageType.default, discord.MessageType.reply):
            return
        guild = message.guild
        if guild is None:
            if not await self._dm_allowed(client, message.author.id):
                return
        else:
            if not self._guild_allowed(guild.id) or not self._addresses_bot(message, me.id):
                return
        bot_role = guild.self_role if guild is not None else None
        text = turn_text(
            message.content,
            me.id,
            bot_role_id=bot_role.id if bot_role is not None else None,
            user_names={user.id: user.display_name for user in message.mentions},
            role_names={role.id: role.name for role in message.role_mentions},
        )
        if not text:
            return  # an empty mention, or content withheld without the message-content intent
        channel: Any = message.channel
        if guild is not None and not isinstance(channel, discord.abc.GuildChannel | discord.Thread):
            channel = await client.fetch_channel(message.channel.id)  # a thread not yet cached
        scope, is_private = self._scope(channel, message.channel.id, guild.id if guild else None)
        author = Author(str(message.author.id), message.author.display_name)
        turn = Turn(scope, author, text, is_private, message_id=str(message.id), language=language)
        target = client.get_partial_messageable(
            message.channel.id, guild_id=guild.id if guild else None
        )
        reply = self._streaming_reply(ChannelReplies(target, reply_to=message), target.id)
        async with typing_until_first_message(
            reply, target.typing, self.global_budget, TYPING_REFRESH_S
        ):
            await self.service.answer(turn, reply)

    @staticmethod
    def _addresses_bot(message: discord.Message, bot_id: int) -> bool:
        """A guild message is a turn when it @mentions the bot (or its role) or replies to it."""
        if any(user.id == bot_id for user in message.mentions):
            return True
        guild = message.guild
        bot_role = guild.self_role if guild is not None else None
        if bot_role is not None and bot_role.id in message.raw_role_mentions:
            return True
        reference = message.reference
        if reference is None:
            return False
        replied = reference.resolved or reference.cached_message
        return isinstance(replied, discord.Message) and replied.author.id == bot_id

    # -- slash commands -------------------------------------------------------------------------

    def _install_commands(self, tree: app_commands.CommandTree[Any]) -> None:
        adapter = self
        # The descriptions' own language; Chinese clients get theirs from `CommandTranslator`.
        default: Language = "zh" if self.config.bot.language == "zh" else "en"

        def guarded(
            handler: Callable[..., Coroutine[Any, Any, None]],
        ) -> Callable[..., Coroutine[Any, Any, None]]:
            async def run(interaction: discord.Interaction, *args: Any) -> None:
                language = adapter._interaction_language(interaction)
                if not adapter._guild_allowed(interaction.guild_id):
                    await adapter._respond(interaction, t.NOT_HERE(language), ephemeral=True)
                    return
                await adapter._guarded(
                    handler(interaction, language, *args), language, interaction=interaction
                )

            return run

        @tree.command(name="chat", description=described(t.CHAT_DESCRIPTION, default))
        @app_commands.describe(prompt=described(t.PROMPT_DESCRIPTION, default))
        async def chat(interaction: discord.Interaction, prompt: str) -> None:
            await guarded(adapter._chat)(interaction, prompt)

        @tree.command(name="reset", description=described(t.RESET_DESCRIPTION, default))
        async def reset(interaction: discord.Interaction) -> None:
            await guarded(adapter._reset)(interaction)

        # Discord takes default_member_permissions only on a top-level command, so it hides
        # the whole /gpt group (bind, unbind and info) from members without Manage Channels;
        # server admins can widen that under Server Settings → Integrations. Discord does not
        # enforce it everywhere (DMs, overrides), so bind and unbind also check the resolved
        # permissions of each interaction.
        gpt = app_commands.Group(
            name="gpt",
            description=described(t.GPT_DESCRIPTION, default),
            default_permissions=BIND_PERMISSIONS,
        )

        @gpt.command(name="bind", description=described(t.BIND_DESCRIPTION, default))
        @app_commands.describe(gpt=described(t.BIND_GPT_DESCRIPTION, default))
        async def bind(interaction: discord.Interaction, gpt: str) -> None:
            await guarded(adapter._bind)(interaction, gpt)

        @bind.autocomplete("gpt")
        async def bind_choices(
            interaction: discord.Interaction, current: str
        ) -> list[app_commands.Choice[str]]:
            return await adapter._bound_choices(interaction, current)

        @gpt.command(name="unbind", description=described(t.UNBIND_DESCRIPTION, default))
        async def unbind(interaction: discord.Interaction) -> None:
            await guarded(adapter._unbind)(interaction)

        @gpt.command(name="info", description=described(t.INFO_DESCRIPTION, default))
        async def info(interaction: discord.Interaction) -> None:
            await guarded(adapter._info)(interaction)

        tree.add_command(gpt)

    def _interaction_turn_parts(self, interaction: discord.Interaction) -> tuple[Scope, bool]:
        channel_id = interaction.channel_id
        assert channel_id is not None  # slash commands always come from a channel
        return self._scope(interaction.channel, channel_id, interaction.guild_id)

    @staticmethod
    def _author(interaction: discord.Interaction) -> Author:
        # Resolved permissions in this channel, overwrites included — never role names.
        perms = interaction.permissions
        is_admin = interaction.guild_id is not None and (
            perms.manage_channels or perms.administrator
        )
        return Author(str(interaction.user.id), interaction.user.display_name, is_admin=is_admin)

    async def _chat(
        self, interaction: discord.Interaction, language: Language, prompt: str
    ) -> None:
        await interaction.response.defer(thinking=True)  # first: Discord's 3-second deadline
        started = self._clock.monotonic()
        client = interaction.client
        if interaction.guild_id is None and not await self._dm_allowed(client, interaction.user.id):
            await interaction.edit_original_response(content=t.NOT_HERE(language))
            return
        scope, is_private = self._interaction_turn_parts(interaction)
        channel_id = interaction.channel_id
        assert channel_id is not None
        target = client.get_partial_messageable(channel_id, guild_id=interaction.guild_id)
        replies = InteractionReplies(
            interaction,
            target,
            header=quote_prompt(prompt),
            deadline=started + self.interaction_window_s,
            clock=self._clock,
        )
        turn = Turn(scope, self._author(interaction), prompt, is_private, language=language)
        await self.service.answer(turn, self._streaming_reply(replies, channel_id))

    async def _reset(self, interaction: discord.Interaction, language: Language) -> None:
        scope, _ = self._interaction_turn_parts(interaction)
        await self.service.reset(scope)
        await interaction.response.send_message(
            t.NEW_CONVERSATION(language), allowed_mentions=NO_PINGS
        )

    async def _bind(self, interaction: discord.Interaction, language: Language, gpt: str) -> None:
        scope, is_private = self._interaction_turn_parts(interaction)
        author = self._author(interaction)
        if not is_private and not author.is_admin:
            await self._respond(interaction, t.NEEDS_MANAGE_CHANNELS(language), ephemeral=True)
            return
        group = str(interaction.guild_id) if interaction.guild_id is not None else None
        try:
            info = await self.service.bind(
                scope, gpt, author, is_private=is_private, group_id=group
            )
        except (BadGptName, NotAllowed) as exc:
            await self._respond(interaction, user_message(exc, language), ephemeral=True)
            return
        bound = (
            t.BOUND_TO_THREAD
            if scope.thread_id
            else t.BOUND_TO_CHAT
            if is_private
            else t.BOUND_TO_CHANNEL
        )
        await interaction.response.send_message(
            bound(language, name=author.display_name, gpt_id=info.gpt_id, url=info.url),
            allowed_mentions=NO_PINGS,
        )

    async def _unbind(self, interaction: discord.Interaction, language: Language) -> None:
        scope, is_private = self._interaction_turn_parts(interaction)
        author = self._author(interaction)
        if not is_private and not author.is_admin:
            await self._respond(interaction, t.NEEDS_MANAGE_CHANNELS(language), ephemeral=True)
            return
        try:
            removed = await self.service.unbind(scope, author, is_private=is_private)
        except NotAllowed as exc:
            await self._respond(interaction, user_message(exc, language), ephemeral=True)
            return
        if not removed:
            await self._respond(interaction, i18n.NOTHING_BOUND(language), ephemeral=True)
            return
        await interaction.response.send_message(
            t.UNBOUND(language, name=author.display_name), allowed_mentions=NO_PINGS
        )

    async def _info(self, interaction: discord.Interaction, language: Language) -> None:
        scope, _ = self._interaction_turn_parts(interaction)
        info = await self.service.binding(scope)
        await self._respond(interaction, describe_binding(info, scope, language), ephemeral=True)

    async def _bound_choices(
        self, interaction: discord.Interaction, current: str
    ) -> list[app_commands.Choice[str]]:
        if interaction.guild_id is None or not self._guild_allowed(interaction.guild_id):
            return []
        gpt_ids = await self.service.bound_gpts(PLATFORM, str(interaction.guild_id))
        wanted = current.strip().lower()
        return [
            app_commands.Choice(name=gpt_id, value=gpt_id)
            for gpt_id in gpt_ids
            if wanted in gpt_id.lower()
        ][:AUTOCOMPLETE_LIMIT]


def describe_binding(info: BindingInfo | None, scope: Scope, language: Language = "en") -> str:
    """The /gpt info text."""
    if info is None:
        return t.INFO_NOTHING_BOUND(language)
    gpt = f"`{info.gpt_id}` (<{info.url}>)"
    if info.is_default:
        return t.INFO_DEFAULT(language, gpt=gpt)
    name = info.bound_by_name
    when = f"<t:{int(info.bound_at.timestamp())}:R>" if info.bound_at else None
    if name and when:
        detail = t.BOUND_BY_WHEN(language, name=name, when=when)
    elif name:
        detail = t.BOUND_BY(language, name=name)
    elif when:
        detail = t.BOUND_WHEN(language, when=when)
    else:
        detail = ""
    if info.inherited and info.bound_scope is not None:
        return t.INFO_INHERITED(
            language, gpt=gpt, channel_id=info.bound_scope.chat_id, detail=detail
        )
    return t.INFO_BOUND(language, gpt=gpt, detail=detail)
