"""`gptsbot run` in production: /metrics scraped and parsed after real turns, /healthz and
/readyz as the platform connects and the database goes away, the log line of each turn in text
and JSON. A real subprocess against the fake GPTs endpoint and the fake Telegram Bot API."""

from __future__ import annotations

import json
import re
import socket
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from core.i18n import CUT_OFF
from fakes.gpts import Fail, FakeGpts, Reply
from fakes.telegram import FakeTelegram
from fakes.telegram.protocol import Fault
from tests.gptsbot_process import API_KEY, DEFAULT_GPT, WAIT_S, Bot, environment, wait_for
from tests.gptsbot_process import write_config as _write_config

# Nine digits: no free port number can contain the user's (and private chat's) id.
USER_ID = 987654321
QUESTIONS = ("tell me about owls", "and about larks", "and nightingales")
ANSWERS = ("Owls hunt at night.", "Larks sing at dawn.", "Nightingales sing")
LISTENING = re.compile(r"metrics and health at (http://\S+) ")
TURN_FIELDS = (
    "scope", "platform", "gpt", "outcome", "first_token_ms", "total_ms", "prompt_tokens",
    "completion_tokens", "messages", "edits",
)  # fmt: skip
METRICS = {
    "gptsbot_turns": "counter",
    "gptsbot_tokens": "counter",
    "gptsbot_upstream_first_token_seconds": "histogram",
    "gptsbot_upstream_total_seconds": "histogram",
    "gptsbot_upstream_errors": "counter",
    "gptsbot_platform_calls": "counter",
    "gptsbot_platform_rate_limited": "counter",
    "gptsbot_budget_wait_seconds": "histogram",
    "gptsbot_active_streams": "gauge",
    "gptsbot_db_seconds": "histogram",
}


def write_config(tmp_path: Path, fake: FakeGpts, telegram: FakeTelegram, **log: str) -> Path:
    return _write_config(
        tmp_path,
        fake.base_url,
        telegram={"base_url": telegram.base_url},
        metrics={"listen": "127.0.0.1:0"},  # a free port, named in the log
        log=log,
    )


async def listener(bot: Bot) -> str:
    await wait_for(lambda: LISTENING.search(bot.log) is not None, WAIT_S)
    found = LISTENING.search(bot.log)
    assert found is not None
    return found.group(1)


async def get(url: str) -> tuple[int, str]:
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        return response.status, await response.text()


def samples(text: str) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    """Each sample's value by sample name and sorted labels."""
    found: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found.setdefault(sample.name, {})[tuple(sorted(sample.labels.items()))] = sample.value
    return found


def by_label(
    values: dict[tuple[tuple[str, str], ...], float], *names: str
) -> dict[tuple[str, ...], float]:
    return {tuple(dict(labels)[n] for n in names): value for labels, value in values.items()}


def last_text(telegram: FakeTelegram) -> str:
    messages = telegram.bot_messages(USER_ID)
    return str(messages[-1]["text"]) if messages else ""


def turn_lines(log: str) -> list[str]:
    return [line for line in log.splitlines() if "core.turn_report: turn " in line]


@pytest.mark.asyncio
async def test_metrics_after_a_complete_a_retried_and_a_cut_turn(
    fake_gpts: FakeGpts, tmp_path: Path
) -> None:
    fake_gpts.enqueue(
        Reply(ANSWERS[0], usage={"prompt_tokens": 7, "completion_tokens": 3, "total_tokens": 10}),
        Fail(500),
        Reply(ANSWERS[1], usage={"prompt_tokens": 20, "completion_tokens": 4, "total_tokens": 24}),
        Reply(ANSWERS[2] + " all night long.", chunk_chars=6, drop_after=3),
    )
    async with FakeTelegram() as telegram:
        # One 429 from Telegram: PTB's rate limiter waits it out and tries again.
        telegram.inject("setMyCommands", Fault.flood(1))
        env = environment(
            write_config(tmp_path, fake_gpts, telegram), TELEGRAM_BOT_TOKEN=telegram.token
        )
        bot = await Bot.start("run", env=env, database=tmp_path / "bot.db")
        url = await listener(bot)
        await telegram.wait_for_call("getUpdates", timeout=WAIT_S)
        user = telegram.user(USER_ID, "Mei")
        chat = telegram.private_chat(user)
        cut = f"{ANSWERS[2]}\n\n{CUT_OFF('en')}"
        for question, shown in zip(QUESTIONS, (*ANSWERS[:2], cut), strict=True):
            telegram.user_message(chat, user, question)
            await telegram.wait_until(lambda shown=shown: last_text(telegram) == shown, WAIT_S)
        await wait_for(lambda: len(turn_lines(bot.log)) == 3)
        status, text = await get(f"{url}/metrics")
        sent = telegram.calls_to("sendMessage") + telegram.calls_to("editMessageText")
        assert await bot.terminate() == 0

    assert status == 200
    families = {family.name: family.type for family in text_string_to_metric_families(text)}
    assert families.items() >= METRICS.items()
    found = samples(text)
    endpoint = f"127.0.0.1:{fake_gpts.port}"
    assert by_label(found["gptsbot_turns_total"], "platform", "outcome") == {
        ("telegram", "complete"): 2,
        ("telegram", "partial"): 1,
    }
    assert by_label(found["gptsbot_tokens_total"], "platform", "kind") == {
        ("telegram", "prompt"): 27,
        ("telegram", "completion"): 7,
    }
    assert by_label(found["gptsbot_upstream_errors_total"], "endpoint", "kind") == {
        (endpoint, "server"): 1,
        (endpoint, "cut"): 1,
    }
    # Three answers started (the 500 had no text); two arrived in full.
    first = by_label(found["gptsbot_upstream_first_token_seconds_count"], "endpoint")
    assert first == {(endpoint,): 3}
    assert by_label(found["gptsbot_upstream_total_seconds_count"], "endpoint") == {(endpoint,): 2}
    calls = by_label(found["gptsbot_platform_calls_total"], "platform", "method")
    assert calls[("telegram", "setMyCommands")] == 3  # two menus, one of them refused once
    assert calls[("telegram", "getMe")] >= 1 and calls[("telegram", "getUpdates")] >= 1
    streamed = calls[("telegram", "sendMessage")] + calls.get(("telegram", "editMessageText"), 0)
    assert streamed == len(sent) >= 3
    assert by_label(found["gptsbot_platform_rate_limited_total"], "platform") == {("telegram",): 1}
    # Every streamed send and edit asked the bot-wide budget first.
    waits = by_label(found["gptsbot_budget_wait_seconds_count"], "platform")
    assert waits == {("telegram",): len(sent)}
    assert by_label(found["gptsbot_active_streams"], "platform") == {("telegram",): 0}
    # Each turn: one transaction to start it, one to store the answer (and the start's own).
    assert found["gptsbot_db_seconds_count"][()] >= 6

    # Labels are bounded: no user or chat id, nothing anyone wrote.
    values = {value for series in found.values() for labels in series for _, value in labels}
    written = [*QUESTIONS, *ANSWERS, "owls", "larks", "Mei"]
    assert not [v for v in values if str(USER_ID) in v or any(w in v for w in written)]

    lines = turn_lines(bot.log)
    for line, outcome in zip(lines, ("complete", "complete", "partial"), strict=True):
        fields = dict(re.findall(r"(\w+)=(\S+)", line.partition(" turn ")[2]))
        assert tuple(fields) == TURN_FIELDS
        assert fields["scope"] == f"telegram:{USER_ID}" and fields["platform"] == "telegram"
        assert fields["gpt"] == DEFAULT_GPT and fields["outcome"] == outcome
        assert int(fields["first_token_ms"]) <= int(fields["total_ms"])
        assert fields["messages"] == "1" and int(fields["edits"]) >= 0
    assert [re.findall(r"_tokens=(\S+)", line) for line in lines] == [
        ["7", "3"],
        ["20", "4"],
        ["-", "-"],  # cut: the endpoint never said
    ]
    assert not [w for w in written if w in bot.log]  # no message text at INFO
    assert telegram.token not in bot.log and API_KEY not in bot.log


@pytest.mark.asyncio
async def test_readyz_follows_the_platform_and_the_database_and_logs_are_json(
    fake_gpts: FakeGpts, tmp_path: Path
) -> None:
    database = tmp_path / "bot.db"
    async with FakeTelegram() as telegram:
        # The first connection fails: the adapter is restarted 2 s later.
        telegram.inject("getMe", Fault(502, "Bad Gateway"))
        config = write_config(tmp_path, fake_gpts, telegram, format="json")
        env = environment(config, TELEGRAM_BOT_TOKEN=telegram.token)
        bot = await Bot.start("run", env=env, database=database)
        url = await listener(bot)
        status, body = await get(f"{url}/readyz")
        assert (status, json.loads(body)) == (
            503,
            {"ready": False, "not_ready": {"telegram": "not connected"}},
        )
        assert (await get(f"{url}/healthz"))[0] == 200
        await telegram.wait_for_call("getUpdates", timeout=WAIT_S)
        assert await get(f"{url}/readyz") == (200, '{"ready": true}')

        user = telegram.user(USER_ID, "Mei")
        telegram.user_message(chat := telegram.private_chat(user), user, QUESTIONS[0])
        await wait_for(lambda: len(turn_lines_json(bot)) == 1)

        # The database file is replaced by a folder, then by another file: the bot's open
        # connection would go on writing into a file nobody will find again.
        away = tmp_path / "moved.db"
        database.rename(away)
        for replace, undo in ((database.mkdir, database.rmdir), (database.touch, database.unlink)):
            replace()
            status, body = await get(f"{url}/readyz")
            replaced = f"DatabaseReplaced: {database} was removed or replaced since it was opened"
            assert status == 503
            assert json.loads(body) == {"ready": False, "not_ready": {"database": replaced}}
            assert (await get(f"{url}/healthz"))[0] == 200
            undo()
        away.rename(database)
        assert await get(f"{url}/readyz") == (200, '{"ready": true}')
        telegram.user_message(chat, user, QUESTIONS[1])
        await wait_for(lambda: len(turn_lines_json(bot)) == 2)
        assert await bot.terminate() == 0

    records = [json.loads(line) for line in bot.err.decode().splitlines() if line.strip()]
    assert all({"time", "level", "logger", "message"} <= record.keys() for record in records)
    for record in turn_lines_json(bot):
        assert {key: record[key] for key in ("scope", "platform", "gpt", "outcome")} == {
            "scope": f"telegram:{USER_ID}",
            "platform": "telegram",
            "gpt": DEFAULT_GPT,
            "outcome": "complete",
        }
        assert set(TURN_FIELDS) <= record.keys() and record["level"] == "INFO"
        assert isinstance(record["total_ms"], int) and record["messages"] == 1
    assert QUESTIONS[0] not in bot.log and telegram.token not in bot.log


def turn_lines_json(bot: Bot) -> list[dict[str, Any]]:
    lines = bot.err.decode(errors="replace").splitlines()
    return [json.loads(line) for line in lines if '"logger": "core.turn_report"' in line]


@pytest.mark.asyncio
async def test_a_metrics_address_in_use_stops_the_start_naming_the_key(
    fake_gpts: FakeGpts, tmp_path: Path
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        config = _write_config(
            tmp_path,
            fake_gpts.base_url,
            telegram={"base_url": "http://127.0.0.1:9/bot"},
            metrics={"listen": f"127.0.0.1:{port}"},
        )
        env = environment(config, TELEGRAM_BOT_TOKEN="123:not-used")
        bot = await Bot.start("run", env=env, database=tmp_path / "bot.db")
        assert await bot.wait() == 2
    assert f"gptsbot: config: metrics.listen: cannot listen on 127.0.0.1:{port}" in bot.log
    assert "Traceback" not in bot.log
