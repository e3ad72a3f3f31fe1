"""The `gptsbot` command as a user runs it: a real subprocess, pipes, the fake GPTs endpoint."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.fake_gpts import Fail, FakeGpts, Gate
from tests.fake_telegram import FakeTelegram

API_KEY = "sk-cli-secret-0123456789"
DEFAULT_GPT = "g-B3hgivKK9"
# This checkout: its code runs in the subprocesses, whatever their current folder.
ROOT = Path(__file__).resolve().parent.parent


@dataclass
class Result:
    code: int
    out: str
    err: str


def environment(tmp_path: Path, fake: FakeGpts | None, **extra: str) -> dict[str, str]:
    config = tmp_path / "config.toml"
    base_url = fake.base_url if fake else "http://127.0.0.1:9/v1"
    config.write_text(
        f'[gpts]\nbase_url = "{base_url}"\nretry_backoff_s = 0.01\ndefault_gpt = "{DEFAULT_GPT}"\n'
        f'[storage]\nurl = "sqlite+aiosqlite:///{tmp_path / "chat.db"}"\n'
    )
    env = {k: v for k, v in os.environ.items() if not k.endswith(("_TOKEN", "_API_KEY"))}
    env = {k: v for k, v in env.items() if not k.startswith(("LC_", "GPTS"))}
    env |= {"GPTSBOT_CONFIG": str(config), "GPTS_API_KEY": API_KEY, "USER": "alice", "LANG": "C"}
    env |= {"PYTHONPATH": str(ROOT), "XDG_DATA_HOME": str(tmp_path / "data")}
    return env | extra


async def gptsbot(
    *args: str, env: dict[str, str], stdin: str = "", cwd: Path | None = None
) -> Result:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "core.cli", *args,
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE, env=env, cwd=cwd,
    )  # fmt: skip
    out, err = await asyncio.wait_for(process.communicate(stdin.encode()), 60)
    assert process.returncode is not None
    return Result(process.returncode, out.decode(), err.decode())


@pytest.mark.asyncio
async def test_chat_remembers_across_runs_and_takes_a_gpt_link(
    fake_gpts: FakeGpts, tmp_path: Path
) -> None:
    env = environment(tmp_path, fake_gpts)
    link = "https://chatgpt.com/g/g-B3hgivKK9-write-for-me"
    first = await gptsbot("chat", "--gpt", link, env=env, stdin="hello there\n")
    assert first.code == 0, first.err
    assert first.out == "echo: hello there\n"
    assert fake_gpts.requests[0].model == "gpt-4-gizmo-g-B3hgivKK9"

    second = await gptsbot("chat", env=env, stdin="and again\n/gpt info\n")
    assert second.out == "echo: and again\n"
    assert "GPT: g-B3hgivKK9 — https://chatgpt.com/g/g-B3hgivKK9" in second.err
    assert "Bound by alice on " in second.err
    assert fake_gpts.requests[1].model == "gpt-4-gizmo-g-B3hgivKK9"
    assert fake_gpts.requests[1].messages == [
        {"role": "user", "content": "hello there"},
        {"role": "assistant", "content": "echo: hello there"},
        {"role": "user", "content": "and again"},
    ]
    third = await gptsbot("chat", "--new", env=env, stdin="fresh\n")
    assert third.code == 0
    assert fake_gpts.requests[2].messages == [{"role": "user", "content": "fresh"}]
    assert API_KEY not in first.err + second.err + third.err


@pytest.mark.asyncio
async def test_chat_streams_to_stdout_as_the_answer_arrives(
    fake_gpts: FakeGpts, tmp_path: Path
) -> None:
    gate = Gate()
    fake_gpts.enqueue(gate)
    env = environment(tmp_path, fake_gpts)
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "core.cli", "chat", "--gpt", "g-B3hgivKK9",
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL, env=env,
    )  # fmt: skip
    assert process.stdin and process.stdout
    process.stdin.write(b"stream please\n")
    await process.stdin.drain()
    await fake_gpts.wait_requests(1, within_s=30)
    gate.send("First words, ")
    assert await asyncio.wait_for(process.stdout.readexactly(13), 10) == b"First words, "
    gate.send("then the rest.")
    gate.finish()
    process.stdin.close()
    assert await asyncio.wait_for(process.stdout.read(), 10) == b"then the rest.\n"
    assert await process.wait() == 0


@pytest.mark.asyncio
async def test_chat_shows_a_short_error_and_keeps_going(
    fake_gpts: FakeGpts, tmp_path: Path
) -> None:
    fake_gpts.enqueue(Fail(404, {"error": {"message": "no such model", "code": "model_not_found"}}))
    env = environment(tmp_path, fake_gpts)
    result = await gptsbot("chat", "--gpt", "g-B3hgivKK9", env=env, stdin="one\ntwo\n")
    assert result.out == "⚠️ The GPT was not found. Check the binding with /gpt info.\necho: two\n"
    fake_gpts.enqueue(Fail(404, {"error": {"message": "no such model", "code": "model_not_found"}}))
    env["LANG"] = "zh_CN.UTF-8"
    chinese = await gptsbot("chat", env=env, stdin="三\n")
    assert chinese.out == "⚠️ 找不到这个 GPT。请用 /gpt info 检查绑定。\n"


@pytest.mark.asyncio
async def test_run_without_tokens_names_the_variables(tmp_path: Path) -> None:
    result = await gptsbot("run", env=environment(tmp_path, None))
    assert result.code == 2
    assert "TELEGRAM_BOT_TOKEN" in result.err and "DISCORD_BOT_TOKEN" in result.err


@pytest.mark.asyncio
async def test_bad_config_exits_2_naming_the_key(tmp_path: Path) -> None:
    env = environment(tmp_path, None)
    Path(env["GPTSBOT_CONFIG"]).write_text('[gpts]\nbase_url = "nope"\n')
    result = await gptsbot("chat", env=env)
    assert result.code == 2
    assert (
        result.err.strip() == "gptsbot: config: gpts.base_url: must be an http(s) URL, got 'nope'"
    )


@pytest.mark.asyncio
async def test_check_says_whether_the_key_works(fake_gpts: FakeGpts, tmp_path: Path) -> None:
    env = environment(tmp_path, fake_gpts)
    ok = await gptsbot("check", env=env)
    assert ok.code == 0 and ok.out.startswith("OK: ")
    assert fake_gpts.requests[0].headers["Authorization"] == f"Bearer {API_KEY}"
    fake_gpts.enqueue(Fail(401, {"error": {"message": f"Incorrect API key: {API_KEY}"}}))
    refused = await gptsbot("check", env=env)
    assert refused.code == 1 and refused.out.startswith("FAIL: ")
    assert API_KEY not in refused.out + refused.err
    missing = {"error": {"message": "model not found", "code": "model_not_found"}}
    fake_gpts.enqueue(Fail(404, missing))
    no_gpt = await gptsbot("check", env=env)
    assert no_gpt.code == 1
    assert "accepted the key, but gpts.default_gpt" in no_gpt.out


@pytest.mark.asyncio
async def test_db_upgrade_and_version(tmp_path: Path) -> None:
    env = environment(tmp_path, None)
    upgraded = await gptsbot("db", "upgrade", env=env)
    assert upgraded.code == 0, upgraded.err
    assert (tmp_path / "chat.db").exists()
    version = await gptsbot("--version", env=env)
    assert version.out.startswith("gptsbot ")


@pytest.mark.asyncio
async def test_run_serves_telegram_until_sigterm_then_exits_0(
    fake_gpts: FakeGpts, tmp_path: Path
) -> None:
    async with FakeTelegram() as telegram:
        env = environment(tmp_path, fake_gpts, TELEGRAM_BOT_TOKEN=telegram.token)
        with Path(env["GPTSBOT_CONFIG"]).open("a") as config:
            config.write(f'[telegram]\nbase_url = "{telegram.base_url}"\n')
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "core.cli", "run", "--config", env["GPTSBOT_CONFIG"],
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=env,
        )  # fmt: skip
        try:
            await telegram.wait_for_call("getUpdates", timeout=30)
            user = telegram.user(501, "Mei")
            telegram.user_message(telegram.private_chat(user), user, "你好")
            await telegram.wait_until(
                lambda: [m["text"] for m in telegram.bot_messages(501)] == ["echo: 你好"]
            )
        finally:
            process.send_signal(signal.SIGTERM)
            out, err = await asyncio.wait_for(process.communicate(), 30)
    assert process.returncode == 0, err.decode()
    log = out.decode() + err.decode()
    assert telegram.token not in log and API_KEY not in log
    assert fake_gpts.requests[0].model == f"gpt-4-gizmo-{DEFAULT_GPT}"
    # Where the database is, once at start.
    assert log.count("database: ") == 1 and f"database: {tmp_path / 'chat.db'}\n" in log


@pytest.mark.asyncio
async def test_run_with_a_refused_token_says_so_without_the_token(
    fake_gpts: FakeGpts, tmp_path: Path
) -> None:
    wrong = "999999:not-the-right-token"
    async with FakeTelegram() as telegram:
        env = environment(tmp_path, fake_gpts, TELEGRAM_BOT_TOKEN=wrong)
        with Path(env["GPTSBOT_CONFIG"]).open("a") as config:
            config.write(f'[telegram]\nbase_url = "{telegram.base_url}"\n')
        result = await gptsbot("run", env=env)
    assert result.code == 1
    assert "gptsbot: Telegram refused the bot token: check TELEGRAM_BOT_TOKEN" in result.err
    assert wrong not in result.out + result.err
    assert "Traceback" not in result.err and "Unclosed" not in result.err
