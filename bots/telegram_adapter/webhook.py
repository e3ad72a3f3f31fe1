"""How updates reach the Application: long polling, or a webhook this worker serves.

    polling:  getUpdates (long poll) → Application.update_queue
    webhook:  Telegram → (any load balancer) → POST <path of webhook_url> on `listen` → update_queue

In webhook mode every worker serves the same path; Telegram's `X-Telegram-Bot-Api-Secret-Token`
header is checked on every request (wrong or missing: 403, nothing read). A worker never calls
deleteWebhook or getUpdates: `gptsbot telegram set-webhook` registers the URL once (or each start,
with `set_webhook_at_start`, for a single worker). An update Telegram posts twice (a retry, or one
a load balancer sent to two workers) is answered once: the storage keys each message by its ids.
"""

from __future__ import annotations

import contextlib
import hmac
import json
import logging
import sys
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlsplit

from aiohttp import web
from telegram import Bot, Update
from telegram.error import InvalidToken, TelegramError
from telegram.ext import Application

from bots.telegram_adapter.request import AiohttpRequest
from bots.telegram_adapter.settings import NAME, TelegramConfig, listen_address
from core.config import Config

logger = logging.getLogger(__name__)

ALLOWED_UPDATES = ["message", "callback_query"]
POLL_TIMEOUT_S = 10
SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"
EXIT_FAILED = 1

AnyApplication = Application[Any, Any, Any, Any, Any, Any]


class WebhookServer:
    """An aiohttp server taking the updates Telegram posts to `webhook_url`'s path."""

    def __init__(self, application: AnyApplication, settings: TelegramConfig) -> None:
        self._application = application
        self._secret = settings.secret_token.encode()
        self._path = urlsplit(settings.webhook_url).path or "/"
        address = listen_address(settings.listen)
        assert address is not None  # the config checked it
        self._host, self.port = address
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post(self._path, self._on_post)
        self._runner = web.AppRunner(app, access_log=None)  # no paths, no headers in the logs
        await self._runner.setup()
        site = web.TCPSite(self._runner, self._host, self.port)
        await site.start()
        if self.port == 0:  # a free port was asked for: which one it got
            self.port = int(self._runner.addresses[0][1])

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _on_post(self, request: web.Request) -> web.Response:
        given = request.headers.get(SECRET_HEADER, "").encode()
        if not hmac.compare_digest(given, self._secret):
            return web.Response(status=403)
        try:
            data = await request.json()
            if not isinstance(data, dict) or not isinstance(data.get("update_id"), int):
                raise ValueError("not an update")
            update = Update.de_json(data, self._application.bot)
        except (ValueError, TypeError, KeyError, TelegramError):
            return web.Response(status=400)
        await self._application.update_queue.put(update)
        return web.Response()


@contextlib.asynccontextmanager
async def receiving(
    application: AnyApplication, settings: TelegramConfig
) -> AsyncIterator[WebhookServer | None]:
    """While inside, updates flow into `application`: polled, or posted to this worker (the
    server is yielded)."""
    if settings.mode == "webhook":
        server = WebhookServer(application, settings)
        await server.start()
        try:
            if settings.set_webhook_at_start:
                await set_webhook(application.bot, settings)
            yield server
        finally:
            await server.close()
        return
    updater = application.updater
    assert updater is not None
    await updater.start_polling(timeout=POLL_TIMEOUT_S, allowed_updates=ALLOWED_UPDATES)
    try:
        yield None
    finally:
        with contextlib.suppress(InvalidToken):  # it ended polling
            await updater.stop()


async def set_webhook(bot: Bot, settings: TelegramConfig) -> None:
    await bot.set_webhook(
        settings.webhook_url,
        secret_token=settings.secret_token,
        allowed_updates=ALLOWED_UPDATES,
    )


# --- gptsbot telegram set-webhook ------------------------------------------------------------


async def set_webhook_command(config: Config) -> int:
    """Register the webhook; one line on stdout, or a problem on stderr and exit code 1."""
    settings = config.platform(NAME, TelegramConfig)
    if not settings.token:
        return _failed("no bot token: set TELEGRAM_BOT_TOKEN or [telegram] token")
    if settings.mode != "webhook":
        return _failed('[telegram] mode is not "webhook" (see webhook_url, listen, secret_token)')
    bot = Bot(settings.token, base_url=settings.base_url, request=AiohttpRequest())
    try:
        async with bot:  # getMe, and the HTTP session closed at the end
            await set_webhook(bot, settings)
    except InvalidToken:
        return _failed("Telegram refused the bot token: check TELEGRAM_BOT_TOKEN")
    except TelegramError as exc:
        # PTB's messages never carry the URL it called (the token is in it), only Telegram's.
        return _failed(f"Telegram refused: {exc.message}")
    print(f"Telegram posts @{bot.username}'s updates to {json.dumps(settings.webhook_url)}")
    return 0


def _failed(problem: str) -> int:
    print(f"gptsbot: telegram set-webhook: {problem}", file=sys.stderr)
    return EXIT_FAILED
