"""Telegram by webhook: a worker serves the path of `webhook_url` on `listen`, the real
python-telegram-bot Application answers what is posted there (secret header checked), and
`gptsbot telegram set-webhook` registers the URL with the fake Bot API."""

from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from bots.telegram_adapter.adapter import TelegramAdapter
from bots.telegram_adapter.webhook import ALLOWED_UPDATES, SECRET_HEADER
from core.config import Config, parse_config
from core.errors import ConfigError
from fakes.gpts import FakeGpts
from fakes.telegram import FakeTelegram, Fault
from tests import test_telegram
from tests.databases import rows
from tests.gptsbot_process import Bot, environment, write_config
from tests.test_telegram import Json, answer_to, make_config, running, wait_answer

# test_telegram.py's fixtures, found here by name: the same people and chats.
ann, dm = test_telegram.ann, test_telegram.dm

WEBHOOK_URL = "https://bot.example.org/telegram/updates"
SECRET = "webhook-Secret_0123456789"


def webhook_config(tmp_path: Path, tg: FakeTelegram, gpts: FakeGpts, **telegram: Any) -> Config:
    return make_config(
        tmp_path,
        tg,
        gpts,
        mode="webhook",
        webhook_url=WEBHOOK_URL,
        listen="127.0.0.1:0",  # a free port: the test reads it from the adapter
        secret_token=SECRET,
        **telegram,
    )


async def post(
    adapter: TelegramAdapter, body: Json | bytes, secret: str | None = SECRET, path: str = ""
) -> int:
    """POST `body` to the worker as Telegram would; the HTTP status."""
    assert adapter.webhook is not None
    url = f"http://127.0.0.1:{adapter.webhook.port}{path or '/telegram/updates'}"
    headers = {"Content-Type": "application/json"}
    if secret is not None:
        headers[SECRET_HEADER] = secret
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    async with (
        aiohttp.ClientSession() as session,
        session.post(url, data=data, headers=headers) as response,
    ):
        return response.status


async def stored_user_messages(tmp_path: Path) -> list[str]:
    url = f"sqlite+aiosqlite:///{tmp_path / 'bot.db'}"
    return [row[0] for row in await rows(url, "SELECT content FROM messages WHERE role = 'user'")]


async def answered_through_the_webhook(
    tg: FakeTelegram, adapter: TelegramAdapter, dm: Json, ann: Json, text: str
) -> Json:
    """Ann writes `text`, its update is POSTed to the worker (accepted), and the GPT's answer
    shows; the message she wrote."""
    asked = tg.user_message(dm, ann, text)
    assert await post(adapter, tg.update(tg.update_id_of(asked))) == 200
    await wait_answer(tg, asked, f"echo: {text}")
    return asked


@pytest.mark.asyncio
async def test_a_posted_update_is_answered_and_nothing_is_polled(
    tmp_path: Path, tg: FakeTelegram, fake_gpts: FakeGpts, ann: Json, dm: Json
) -> None:
    async with running(webhook_config(tmp_path, tg, fake_gpts)) as adapter:
        await answered_through_the_webhook(tg, adapter, dm, ann, "hello")

    assert [r.messages[-1]["content"] for r in fake_gpts.requests] == ["hello"]
    assert len(tg.calls_to("sendMessage")) == 1
    # A worker leaves the webhook alone and never polls.
    assert tg.calls_to("getUpdates") == [] and tg.calls_to("deleteWebhook") == []
    assert tg.calls_to("setWebhook") == []


@pytest.mark.asyncio
async def test_a_wrong_or_missing_secret_is_refused_and_nothing_happens(
    tmp_path: Path, tg: FakeTelegram, fake_gpts: FakeGpts, ann: Json, dm: Json
) -> None:
    async with running(webhook_config(tmp_path, tg, fake_gpts)) as adapter:
        forged = tg.update(tg.update_id_of(tg.user_message(dm, ann, "forged")))
        assert await post(adapter, forged, secret="not-the-secret") == 403
        assert await post(adapter, forged, secret=None) == 403
        assert await post(adapter, forged, secret="") == 403
        assert await post(adapter, forged, path="/elsewhere") == 404
        # Malformed bodies, with the right secret: 400, nothing processed.
        assert await post(adapter, b"{not json") == 400
        assert await post(adapter, [1, 2]) == 400  # type: ignore[arg-type]
        assert await post(adapter, {"message": {"text": "no update_id"}}) == 400
        # What comes after is answered, and it alone.
        await answered_through_the_webhook(tg, adapter, dm, ann, "real")

    assert [r.messages[-1]["content"] for r in fake_gpts.requests] == ["real"]
    assert await stored_user_messages(tmp_path) == ["real"]
    assert len(tg.calls_to("sendMessage")) == 1


@pytest.mark.asyncio
async def test_the_same_update_posted_twice_is_answered_once(
    tmp_path: Path, tg: FakeTelegram, fake_gpts: FakeGpts, ann: Json, dm: Json
) -> None:
    async with running(webhook_config(tmp_path, tg, fake_gpts)) as adapter:
        asked = tg.user_message(dm, ann, "hello")
        update = tg.update(tg.update_id_of(asked))
        assert await post(adapter, update) == 200
        assert await post(adapter, update) == 200  # Telegram's retry, or a second worker's
        await wait_answer(tg, asked, "echo: hello")
        await answered_through_the_webhook(tg, adapter, dm, ann, "next")

    assert [r.messages[-1]["content"] for r in fake_gpts.requests] == ["hello", "next"]
    assert [m["text"] for m in answer_to(tg, asked)] == ["echo: hello", "echo: next"]
    assert await stored_user_messages(tmp_path) == ["hello", "next"]


@pytest.mark.asyncio
async def test_set_webhook_at_start_registers_it(
    tmp_path: Path, tg: FakeTelegram, fake_gpts: FakeGpts
) -> None:
    config = webhook_config(tmp_path, tg, fake_gpts, set_webhook_at_start=True)
    async with running(config):
        assert tg.webhook is not None
        assert tg.webhook["url"] == WEBHOOK_URL and tg.webhook["secret_token"] == SECRET
    assert tg.calls_to("getUpdates") == [] and tg.calls_to("deleteWebhook") == []


# --- gptsbot telegram set-webhook -------------------------------------------------------------


async def set_webhook(tmp_path: Path, tg: FakeTelegram, fake_gpts: FakeGpts) -> Bot:
    config = write_config(
        tmp_path,
        fake_gpts.base_url,
        telegram={
            "base_url": tg.base_url,
            "mode": "webhook",
            "webhook_url": WEBHOOK_URL,
            "listen": "0.0.0.0:8443",
        },
    )
    env = environment(config, TELEGRAM_BOT_TOKEN=tg.token, TELEGRAM_WEBHOOK_SECRET=SECRET)
    return await Bot.start("telegram", "set-webhook", env=env)


@pytest.mark.asyncio
async def test_set_webhook_command_registers_url_and_secret(
    tmp_path: Path, tg: FakeTelegram, fake_gpts: FakeGpts
) -> None:
    bot = await set_webhook(tmp_path, tg, fake_gpts)
    assert await bot.wait() == 0, bot.log

    (call,) = tg.calls_to("setWebhook")
    assert call.params["url"] == WEBHOOK_URL
    assert call.params["secret_token"] == SECRET
    assert call.params["allowed_updates"] == ALLOWED_UPDATES
    assert tg.webhook is not None
    out = bot.out.decode()
    assert out.count("\n") == 1 and WEBHOOK_URL in out and f"@{tg.username}" in out
    assert SECRET not in bot.log and tg.token not in bot.log
    assert tg.calls_to("getUpdates") == []


@pytest.mark.asyncio
async def test_set_webhook_command_fails_with_one_line(
    tmp_path: Path, tg: FakeTelegram, fake_gpts: FakeGpts
) -> None:
    tg.inject("setWebhook", Fault(400, "Bad Request: bad webhook: Failed to resolve host"))
    bot = await set_webhook(tmp_path, tg, fake_gpts)
    assert await bot.wait() == 1

    assert tg.webhook is None
    assert bot.out == b""
    err = bot.err.decode()
    assert "set-webhook" in err and "failed to resolve host" in err.lower()
    assert SECRET not in bot.log and tg.token not in bot.log


# --- config ---------------------------------------------------------------------------------


def telegram_config(**telegram: Any) -> Config:
    return parse_config({"telegram": {"token": "1:x", **telegram}}, env={})


@pytest.mark.parametrize(
    ("telegram", "key", "problem"),
    [
        ({"mode": "webhook", "listen": ":8443", "secret_token": SECRET}, "listen", "host:port"),
        ({"mode": "webhook", "listen": "0.0.0.0:8443", "secret_token": SECRET},
         "webhook_url", "https"),
        ({"mode": "webhook", "webhook_url": "http://bot.example.org/hook", "listen": "0.0.0.0:1",
          "secret_token": SECRET}, "webhook_url", "https://"),
        ({"mode": "webhook", "webhook_url": WEBHOOK_URL, "secret_token": SECRET},
         "listen", "host:port"),
        ({"mode": "webhook", "webhook_url": WEBHOOK_URL, "listen": "0.0.0.0:99999",
          "secret_token": SECRET}, "listen", "host:port"),
        ({"mode": "webhook", "webhook_url": WEBHOOK_URL, "listen": "0.0.0.0:8443"},
         "secret_token", "TELEGRAM_WEBHOOK_SECRET"),
        ({"mode": "webhook", "webhook_url": WEBHOOK_URL, "listen": "0.0.0.0:8443",
          "secret_token": "with spaces inside"}, "secret_token", "letter, a digit"),
        ({"mode": "hooks"}, "mode", "polling"),
    ],
)  # fmt: skip
def test_webhook_config_errors_name_the_key(telegram: Json, key: str, problem: str) -> None:
    with pytest.raises(ConfigError) as raised:
        telegram_config(**telegram)
    assert raised.value.key == f"telegram.{key}"
    assert problem in raised.value.problem
    assert SECRET not in str(raised.value) or key != "secret_token"


def test_webhook_config_and_its_secret_from_the_environment() -> None:
    raw = {"token": "1:x", "mode": "webhook", "webhook_url": WEBHOOK_URL, "listen": "[::]:8443"}
    config = parse_config({"telegram": raw}, env={"TELEGRAM_WEBHOOK_SECRET": SECRET})
    settings = config.platforms["telegram"]
    assert settings.secret_token == SECRET and SECRET not in repr(settings)
    assert SECRET in config.secrets()
    assert telegram_config().platforms["telegram"].mode == "polling"


@pytest.mark.asyncio
async def test_a_taken_listen_port_is_the_error_it_fails_with(
    tmp_path: Path, tg: FakeTelegram, fake_gpts: FakeGpts
) -> None:
    """Another server holds the port: the worker fails saying so, not with PTB's "This
    Application is not running!" from stopping what never started."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        config = make_config(tmp_path, tg, fake_gpts, mode="webhook", webhook_url=WEBHOOK_URL,
                             listen=f"127.0.0.1:{port}", secret_token=SECRET)  # fmt: skip
        with pytest.raises(OSError, match="address already in use"):
            async with running(config):
                pass
