"""The pieces behind /metrics, /readyz and the log formats, in-process: config keys, metric labels
(Discord routes, Telegram methods), turns that end early, the budget's wait, readiness of a
database whose file goes away, JSON log lines."""

from __future__ import annotations

import asyncio
import json
import logging
import sys
from pathlib import Path
from typing import Any

import pytest
import yarl

from bots.discord_adapter.calls import route
from bots.telegram_adapter.request import _method
from core.app import open_app
from core.config import parse_config
from core.errors import ConfigError
from core.log_format import JsonFormatter
from core.metrics import REGISTRY
from core.ops_server import not_ready
from core.pacing import RateBudget
from core.streaming import StreamingReply
from core.turns import Author, Scope, Turn
from fakes.clock import FakeClock
from fakes.gpts import FakeGpts, Reply
from fakes.recording import RecordingChannel
from tests.helpers import sqlite_config
from tests.test_discord import EDIT_MESSAGE, POST_MESSAGE, world


def value(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


# -- config ------------------------------------------------------------------------------------


def test_bot_log_level_names_its_new_place() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config({"bot": {"log_level": "DEBUG"}}, {})
    assert (
        str(caught.value)
        == 'config: bot.log_level: moved to [log]: write level = "..." under [log]'
    )
    config = parse_config({"log": {"level": "DEBUG", "format": "json"}}, {})
    assert (config.log.level, config.log.format) == ("DEBUG", "json")


@pytest.mark.parametrize("listen", ["9464", "127.0.0.1:", ":9464", "localhost:99999", "a:b"])
def test_a_bad_listen_address_names_the_key(listen: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config({"metrics": {"listen": listen}}, {})
    assert caught.value.key == "metrics.listen"
    assert "must be host:port (e.g. 127.0.0.1:9464)" in str(caught.value)


def test_containers_set_the_operations_keys_from_the_environment() -> None:
    env = {
        "GPTSBOT_METRICS_LISTEN": "0.0.0.0:9464",
        "GPTSBOT_LOG_FORMAT": "json",
        "GPTSBOT_LOG_LEVEL": "WARNING",
        "GPTSBOT_DATABASE_URL": "postgresql+asyncpg://gptsbot:pw@postgres/gptsbot",
    }
    config = parse_config({"metrics": {"listen": "[::1]:9464"}}, env)
    assert config.metrics.listen == "0.0.0.0:9464"  # the environment wins
    assert (config.log.format, config.log.level) == ("json", "WARNING")
    assert config.storage.url == env["GPTSBOT_DATABASE_URL"]
    assert parse_config({}, {}).metrics.listen == ""  # off by default
    with pytest.raises(ConfigError, match="set by GPTSBOT_LOG_FORMAT"):
        parse_config({}, {"GPTSBOT_LOG_FORMAT": "xml"})


def test_readme_documents_the_operations_keys() -> None:
    readme = (Path(__file__).parent.parent / "README.md").read_text()
    for documented in (
        "[metrics] listen", "[log] level", "[log] format", "GPTSBOT_METRICS_LISTEN",
        "GPTSBOT_LOG_FORMAT", "GPTSBOT_LOG_LEVEL", "GPTSBOT_DATABASE_URL", "/readyz", "## Deploy",
    ):  # fmt: skip
        assert documented in readme, documented


# -- labels ------------------------------------------------------------------------------------


def test_discord_routes_name_no_id_and_no_token() -> None:
    base = "http://127.0.0.1:1234/api/v10"
    cases = {
        ("POST", "/channels/1234567890/messages"): "POST /channels/{id}/messages",
        ("PATCH", "/channels/1/messages/2"): "PATCH /channels/{id}/messages/{id}",
        ("PATCH", "/webhooks/42/aW50ZXJhY3Rpb246MTIz/messages/@original"):
            "PATCH /webhooks/{id}/{token}/messages/@original",
        ("POST", "/webhooks/42/lowercasetoken"): "POST /webhooks/{id}/{token}",
        ("POST", "/interactions/7/secret-token/callback"):
            "POST /interactions/{id}/{token}/callback",
        ("PUT", "/applications/5/commands"): "PUT /applications/{id}/commands",
        ("GET", "/users/@me"): "GET /users/@me",
    }  # fmt: skip
    for _ in range(2):  # worked out, then remembered
        for (method, path), expected in cases.items():
            assert route(method, yarl.URL(base + path)) == expected
    # Remembered by its shape: another id, the same label.
    assert (
        route("PATCH", yarl.URL(base + "/channels/98/messages/76"))
        == cases["PATCH", "/channels/1/messages/2"]
    )


def test_telegram_methods_never_carry_the_token_or_a_path() -> None:
    assert _method("https://api.telegram.org/bot123:ABC-def/sendMessage") == "sendMessage"
    assert _method("https://api.telegram.org/file/bot123:ABC/photos/file_1.jpg") == "other"
    assert _method("https://api.telegram.org/bot123:ABC/") == "other"


# -- what is recorded --------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_a_refused_turn_is_counted_without_an_active_stream(
    fake_gpts: FakeGpts, tmp_path: Path
) -> None:
    config = sqlite_config(fake_gpts, tmp_path / "bot.db")
    platform = "units"
    before = value("gptsbot_turns_total", platform=platform, outcome="refused")
    db_before = value("gptsbot_db_seconds_count")
    async with open_app(config) as app:
        for text in ("   ", "hello"):
            reply = StreamingReply(RecordingChannel(FakeClock()), edit_interval_s=0)
            turn = Turn(Scope(platform, "c1"), Author("1", "A"), text, is_private=True)
            await app.service.answer(turn, reply)
    assert value("gptsbot_turns_total", platform=platform, outcome="refused") == before + 1
    assert value("gptsbot_turns_total", platform=platform, outcome="complete") >= 1
    assert value("gptsbot_active_streams", platform=platform) == 0
    assert value("gptsbot_db_seconds_count") >= db_before + 3


@pytest.mark.asyncio
async def test_the_bot_wide_budget_reports_how_long_a_call_waited() -> None:
    clock = FakeClock()
    budget = RateBudget.per_second(2.0, clock, platform="units-budget")
    before = value("gptsbot_budget_wait_seconds_sum", platform="units-budget")
    await budget.acquire()
    await clock.run_until(asyncio.ensure_future(budget.acquire()))  # half a second later
    assert value("gptsbot_budget_wait_seconds_count", platform="units-budget") >= 2
    waited = value("gptsbot_budget_wait_seconds_sum", platform="units-budget") - before
    assert waited == pytest.approx(0.5)
    unlabelled = RateBudget(5, 1.0, clock)  # a channel's budget: not reported
    await unlabelled.acquire()


@pytest.mark.asyncio
async def test_discord_calls_and_429s_are_counted_by_route(
    tmp_path: Path, fake_gpts: FakeGpts
) -> None:
    answer = " ".join(["word"] * 40)
    fake_gpts.enqueue(Reply(answer, chunk_chars=20, chunk_delay_s=0.01))
    send = "POST /channels/{id}/messages"
    before = value("gptsbot_platform_calls_total", platform="discord", method=send)
    limited = value("gptsbot_platform_rate_limited_total", platform="discord")
    async with world(tmp_path, fake_gpts) as w:
        w.fake.fail("PATCH", EDIT_MESSAGE, times=2, retry_after=0.05)
        await w.fake.user_says(w.channel_id, w.member, "hi", mention_bot=True)
        await w.answered(w.channel_id, answer)
        sends = w.fake.calls_to("POST", POST_MESSAGE)
        channel_id = w.channel_id
    assert value("gptsbot_platform_calls_total", platform="discord", method=send) - before == len(
        sends
    )
    assert value("gptsbot_platform_rate_limited_total", platform="discord") - limited == 2
    labels = {v for m in REGISTRY.collect() for s in m.samples for v in s.labels.values()}
    assert not [label for label in labels if str(channel_id) in label]


# -- readiness ---------------------------------------------------------------------------------


class _Adapter:
    def __init__(self, name: str, ready: bool) -> None:
        self.name = name
        self.ready = asyncio.Event()
        if ready:
            self.ready.set()

    async def run(self) -> None: ...


@pytest.mark.asyncio
async def test_readiness_names_each_platform_and_the_database(
    fake_gpts: FakeGpts, tmp_path: Path
) -> None:
    database = tmp_path / "bot.db"
    config = parse_config(
        {
            "gpts": {"base_url": fake_gpts.base_url},
            "storage": {"url": f"sqlite+aiosqlite:///{database}"},
        },
        {},
    )
    async with open_app(config) as app:
        adapters: list[Any] = [_Adapter("telegram", True), _Adapter("discord", False)]
        assert await not_ready(adapters, app.repo) == {"discord": "not connected"}
        adapters[1].ready.set()
        assert await not_ready(adapters, app.repo) == {}
        database.rename(tmp_path / "away.db")
        missing = await not_ready(adapters, app.repo)
        assert missing == {
            "database": f"DatabaseReplaced: {database} was removed or replaced since it was opened"
        }


# -- log lines ---------------------------------------------------------------------------------


def test_json_lines_carry_the_fields_and_the_exception() -> None:
    record = logging.LogRecord("core.x", logging.INFO, __file__, 1, "turn %s", ("a=1",), None)
    record.fields = {"scope": "telegram:1", "outcome": "complete", "level": "not this"}
    line = json.loads(JsonFormatter().format(record))
    assert line["message"] == "turn a=1" and line["logger"] == "core.x"
    assert line["scope"] == "telegram:1" and line["level"] == "INFO"
    try:
        raise ValueError("boom")
    except ValueError:
        failed = logging.LogRecord(
            "core.x", logging.ERROR, __file__, 1, "failed", (), sys.exc_info()
        )
    line = json.loads(JsonFormatter().format(failed))
    assert "ValueError: boom" in line["exception"] and "\n" not in JsonFormatter().format(failed)
