"""The aiohttp transport under python-telegram-bot: Telegram's answers and errors come out of PTB
exactly as with its httpx transport, timeouts become TimedOut, network failures NetworkError."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio
from aiohttp import web
from telegram import Bot
from telegram.error import BadRequest, Forbidden, InvalidToken, NetworkError, RetryAfter, TimedOut

from bots.telegram_adapter.request import AiohttpRequest
from fakes.telegram import FakeTelegram, Fault

# PTB's Bot, used directly here, logs the token in URLs: redacted as the adapter does.
pytestmark = pytest.mark.usefixtures("bot_api_redacted")


@pytest_asyncio.fixture
async def bot(tg: FakeTelegram) -> AsyncIterator[Bot]:
    request = AiohttpRequest(connection_pool_size=4)
    async with Bot(tg.token, base_url=tg.base_url, request=request) as client:
        yield client


@pytest.mark.asyncio
async def test_calls_and_telegram_errors(tg: FakeTelegram, bot: Bot) -> None:
    assert bot.username == tg.username  # getMe at initialize
    chat = tg.private_chat(tg.user(10, "Ann"))
    sent = await bot.send_message(chat["id"], "héllo 😀 & more=1")
    assert sent.text == "héllo 😀 & more=1"
    edited = await bot.edit_message_text("two", chat_id=chat["id"], message_id=sent.id)
    assert not isinstance(edited, bool) and edited.text == "two"
    assert tg.calls_to("editMessageText")[0].params == {
        "chat_id": chat["id"],
        "message_id": sent.id,
        "text": "two",
    }

    tg.inject("sendMessage", Fault(403, "Forbidden: bot was blocked by the user"))
    with pytest.raises(Forbidden, match="blocked"):
        await bot.send_message(chat["id"], "x")
    with pytest.raises(BadRequest, match=r"(?i)message to edit not found"):
        await bot.edit_message_text("x", chat_id=chat["id"], message_id=999)
    tg.inject("sendMessage", Fault(502, "Bad Gateway"))
    with pytest.raises(NetworkError, match="Bad Gateway"):
        await bot.send_message(chat["id"], "x")
    tg.inject("editMessageText", Fault.flood(7))  # the chat stays flooded for 7 s
    with pytest.raises(RetryAfter) as flood:
        await bot.edit_message_text("three", chat_id=chat["id"], message_id=sent.id)
    assert flood.value.retry_after.total_seconds() == 7  # type: ignore[union-attr]
    with pytest.raises(InvalidToken):
        async with Bot("999:wrong", base_url=tg.base_url, request=AiohttpRequest()):
            pass


@pytest.mark.asyncio
async def test_long_poll_and_upload(tg: FakeTelegram, bot: Bot) -> None:
    ann = tg.user(10, "Ann")
    chat = tg.private_chat(ann)
    polling = asyncio.create_task(bot.get_updates(offset=0, timeout=5))
    await tg.wait_for_call("getUpdates", timeout=5)
    await asyncio.sleep(0.1)  # longer than nothing, shorter than the default read timeout
    tg.user_message(chat, ann, "hi")
    updates = await asyncio.wait_for(polling, 5)
    assert updates[0].message is not None and updates[0].message.text == "hi"

    uploaded: dict[str, object] = {}

    def receive(params: dict[str, Any]) -> bool:  # the file is readable only during the call
        document = params["document"]
        uploaded.update(params, filename=document.filename, content=document.file.read())
        return True

    tg.inject("sendDocument", Fault(400, "Bad Request: tg has no documents"), when=receive)
    with pytest.raises(BadRequest, match="no documents"):
        await bot.send_document(chat["id"], b"\x00file body", filename="a.bin", caption="c")
    assert uploaded["chat_id"] == chat["id"] and uploaded["caption"] == "c"
    assert uploaded["filename"] == "a.bin" and uploaded["content"] == b"\x00file body"


@pytest_asyncio.fixture
async def stalling() -> AsyncIterator[str]:
    """A server that never answers: base URL for a Bot."""

    async def handle(request: web.Request) -> web.Response:
        await asyncio.sleep(30)
        return web.Response()

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    runner = web.AppRunner(app, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    yield f"http://127.0.0.1:{port}/bot"
    await runner.cleanup()


@pytest.mark.asyncio
async def test_timeouts_and_network_errors(stalling: str) -> None:
    request = AiohttpRequest(
        connection_pool_size=1, read_timeout=0.2, connect_timeout=0.2, pool_timeout=0.2
    )
    await request.initialize()
    try:
        url = f"{stalling}123:x/getMe"
        with pytest.raises(TimedOut):
            await request.post(url)
        # The one connection is busy: the second call times out waiting for it (after pool +
        # connect timeout: aiohttp bounds waiting for a connection and opening it together).
        busy = asyncio.create_task(request.post(url, read_timeout=5))
        await asyncio.sleep(0.1)
        with pytest.raises(TimedOut):
            await request.post(url)
        busy.cancel()
        with socket.socket() as unused:
            unused.bind(("127.0.0.1", 0))
            port = unused.getsockname()[1]
        with pytest.raises(NetworkError, match="aiohttp"):
            await request.post(f"http://127.0.0.1:{port}/bot123:x/getMe")
    finally:
        await request.shutdown()
    with pytest.raises(RuntimeError, match="not initialized"):
        await request.do_request("http://127.0.0.1/x", "POST")


def test_proxy_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("http_proxy", "https_proxy", "all_proxy", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.upper(), raising=False)
    monkeypatch.setenv("HTTPS_PROXY", "http://us%40er:p%3Aw@proxy.local:3128")
    monkeypatch.setenv("NO_PROXY", "localhost,127.0.0.1")
    request = AiohttpRequest()
    found = request._proxy("https://api.telegram.org")
    assert found["proxy"] == "http://proxy.local:3128"
    assert found["proxy_headers"] == {"Proxy-Authorization": "Basic dXNAZXI6cDp3"}
    assert request._proxy("http://127.0.0.1:8081") == {}
    assert request._proxy("http://example.org") == {}  # no HTTP_PROXY, no ALL_PROXY
