"""The `gptsbot` command as a user runs it: a real subprocess, pipes, the fake GPTs endpoint."""

from __future__ import annotations

import asyncio
import fcntl
import os
import signal
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from fakes.discord import FakeDiscord
from fakes.gpts import Fail, FakeGpts, Gate
from fakes.telegram import FakeTelegram

API_KEY = "sk-cli-secret-0123456789"
DEFAULT_GPT = "g-B3hgivKK9"
# This checkout: its code runs in the subprocesses, whatever their current folder.
ROOT = Path(__file__).resolve().parent.parent


@dataclass
class Result:
    code: int
    out: str
    err: str


def environment(
    tmp_path: Path,
    fake: FakeGpts | None,
    *,
    telegram: FakeTelegram | None = None,
    discord: FakeDiscord | None = None,
    base_url: str | None = None,
    default_gpt: str | None = DEFAULT_GPT,
    **extra: str,
) -> dict[str, str]:
    """A config file (GPTs endpoint or `base_url`, storage, the default GPT, and the APIs of
    `telegram` and `discord` if given) and a clean environment naming it; `extra` adds variables
    such as tokens."""
    config = tmp_path / "config.toml"
    base_url = base_url or (fake.base_url if fake else "http://127.0.0.1:9/v1")
    gpt = f'default_gpt = "{default_gpt}"\n' if default_gpt else ""
    config.write_text(
        f'[gpts]\nbase_url = "{base_url}"\nretry_backoff_s = 0.01\n{gpt}'
        f'[storage]\nurl = "sqlite+aiosqlite:///{tmp_path / "chat.db"}"\n'
    )
    with config.open("a") as file:
        if telegram is not None:
            file.write(f'[telegram]\nbase_url = "{telegram.base_url}"\n')
        if discord is not None:
            file.write(f'[discord]\napi_base = "{discord.api_base}"\n')
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


async def start_chat(
    *args: str, env: dict[str, str], asking: str, stderr: int = asyncio.subprocess.PIPE
) -> asyncio.subprocess.Process:
    """`gptsbot chat *args` with its stdin and stdout piped, `asking` already written to it."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "core.cli", "chat", *args,
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=stderr, env=env,
    )  # fmt: skip
    assert process.stdin is not None
    process.stdin.write(asking.encode() + b"\n")
    await process.stdin.drain()
    return process


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
    fake_gpts: FakeGpts, gate: Gate, tmp_path: Path
) -> None:
    env = environment(tmp_path, fake_gpts)
    process = await start_chat(
        "--gpt", "g-B3hgivKK9", env=env, asking="stream please", stderr=asyncio.subprocess.DEVNULL
    )
    assert process.stdin and process.stdout
    await fake_gpts.wait_requests(1, within_s=30)
    gate.send("First words, ")
    # The trailing space waits for what follows (it may precede a removed citation).
    assert await asyncio.wait_for(process.stdout.readexactly(12), 10) == b"First words,"
    gate.send("then the rest.")
    gate.finish()
    process.stdin.close()
    assert await asyncio.wait_for(process.stdout.read(), 10) == b" then the rest.\n"
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
    # A run that cannot start leaves nothing behind: no database, no lock file.
    assert list(tmp_path.glob("chat.db*")) == []


def verdict(result: Result) -> tuple[int, str, str]:
    """The exit code, the 'Trying: ...' line and the 'OK/FAIL: ...' line of a check."""
    tried, outcome, *_ = result.out.splitlines()
    assert API_KEY not in result.out + result.err
    return result.code, tried, outcome


@pytest.mark.asyncio
async def test_check_says_whether_the_key_works(fake_gpts: FakeGpts, tmp_path: Path) -> None:
    env = environment(tmp_path, fake_gpts)
    base = fake_gpts.base_url
    model = f"gpt-4-gizmo-{DEFAULT_GPT}"
    code, tried, outcome = verdict(await gptsbot("check", env=env))
    assert tried == f"Trying: POST {base}/chat/completions asking gpts.default_gpt ({model})."
    assert (code, outcome) == (0, f"OK: {base} accepted the key; {model} answered.")
    assert fake_gpts.requests[0].headers["Authorization"] == f"Bearer {API_KEY}"
    fake_gpts.enqueue(Fail(401, {"error": {"message": f"Incorrect API key: {API_KEY}"}}))
    code, _, outcome = verdict(await gptsbot("check", env=env))
    assert code == 1 and outcome.startswith(f"FAIL: {base} refused the key: Incorrect API key")
    missing = {"error": {"message": "model not found", "code": "model_not_found"}}
    fake_gpts.enqueue(Fail(404, missing))
    code, _, outcome = verdict(await gptsbot("check", env=env))
    assert code == 1
    assert outcome.startswith(f"FAIL: {base} accepted the key, but gpts.default_gpt ({model})")


@pytest.mark.asyncio
async def test_check_without_a_default_gpt_lists_the_models(
    fake_gpts: FakeGpts, tmp_path: Path
) -> None:
    env = environment(tmp_path, fake_gpts, default_gpt=None)
    base = fake_gpts.base_url
    code, tried, outcome = verdict(await gptsbot("check", env=env))
    assert tried == f"Trying: GET {base}/models (no gpts.default_gpt is set to ask)."
    assert (code, outcome) == (0, f"OK: {base} accepted the key; it lists 2 models.")
    (listing,) = fake_gpts.requests
    assert (listing.method, listing.path) == ("GET", "/v1/models")
    assert listing.headers["Authorization"] == f"Bearer {API_KEY}"
    # No chat model was asked: relays often serve none but GPTs.
    fake_gpts.enqueue(Fail(403, {"error": {"message": "key disabled", "type": "forbidden"}}))
    code, _, outcome = verdict(await gptsbot("check", env=env))
    assert (code, outcome) == (
        1,
        f"FAIL: {base} refused the key: key disabled. Check GPTS_API_KEY or gpts.api_key.",
    )
    assert all(request.method == "GET" for request in fake_gpts.requests)


@pytest.mark.asyncio
@pytest.mark.parametrize("default_gpt", [DEFAULT_GPT, None], ids=["chat", "models"])
@pytest.mark.parametrize("page", ["html", "empty"])
async def test_check_tells_a_wrong_url_from_a_missing_gpt(
    fake_gpts: FakeGpts, tmp_path: Path, default_gpt: str | None, page: str
) -> None:
    if page == "empty":
        fake_gpts.not_found_body = ""
    wrong = fake_gpts.base_url.removesuffix("/v1")  # the usual slip: /v1 left out
    env = environment(tmp_path, fake_gpts, base_url=wrong, default_gpt=default_gpt)
    result = await gptsbot("check", env=env)
    code, tried, outcome = verdict(result)
    assert code == 1
    assert tried.startswith(f"Trying: {'POST' if default_gpt else 'GET'} {wrong}/")
    assert outcome.startswith(f"FAIL: {wrong} does not look like the API: HTTP 404")
    assert outcome.endswith("(is gpts.base_url right?)")
    assert "was not found" not in result.out and "refused" not in result.out
    assert ("set gpts.default_gpt" in result.out) is (default_gpt is None)
    (request,) = fake_gpts.requests  # a 404 is not retried
    assert request.path in ("/chat/completions", "/models")


@pytest.mark.asyncio
async def test_check_without_a_default_gpt_on_a_relay_that_lists_no_models(
    fake_gpts: FakeGpts, tmp_path: Path
) -> None:
    fake_gpts.serve_models = False
    env = environment(tmp_path, fake_gpts, default_gpt=None)
    result = await gptsbot("check", env=env)
    assert result.code == 1
    assert result.out.splitlines()[1:] == [
        f"FAIL: {fake_gpts.base_url} does not look like the API: HTTP 404: 404 Not Found "
        "(is gpts.base_url right?)",
        "(A relay that lists no models answers the same: set gpts.default_gpt to check by "
        "asking that GPT instead.)",
    ]


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
    fake_gpts: FakeGpts, tg: FakeTelegram, tmp_path: Path
) -> None:
    env = environment(tmp_path, fake_gpts, telegram=tg, TELEGRAM_BOT_TOKEN=tg.token)
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "core.cli", "run", "--config", env["GPTSBOT_CONFIG"],
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=env,
    )  # fmt: skip
    try:
        await tg.wait_for_call("getUpdates", timeout=30)
        user = tg.user(501, "Mei")
        tg.user_message(tg.private_chat(user), user, "你好")
        await tg.wait_until(lambda: [m["text"] for m in tg.bot_messages(501)] == ["echo: 你好"])
    finally:
        process.send_signal(signal.SIGTERM)
        out, err = await asyncio.wait_for(process.communicate(), 30)
    assert process.returncode == 0, err.decode()
    log = out.decode() + err.decode()
    assert tg.token not in log and API_KEY not in log
    assert fake_gpts.requests[0].model == f"gpt-4-gizmo-{DEFAULT_GPT}"
    # Where the database is, once at start.
    assert log.count("database: ") == 1 and f"database: {tmp_path / 'chat.db'}\n" in log


@pytest.mark.asyncio
async def test_run_with_a_refused_token_says_so_without_the_token(
    fake_gpts: FakeGpts, tg: FakeTelegram, tmp_path: Path
) -> None:
    wrong = "999999:not-the-right-token"
    env = environment(tmp_path, fake_gpts, telegram=tg, TELEGRAM_BOT_TOKEN=wrong)
    result = await gptsbot("run", env=env)
    assert result.code == 1
    assert "gptsbot: Telegram refused the bot token: check TELEGRAM_BOT_TOKEN" in result.err
    assert wrong not in result.out + result.err
    assert "Traceback" not in result.err and "Unclosed" not in result.err


@pytest.mark.asyncio
async def test_run_goes_on_without_a_refused_platform_and_exits_1_when_none_is_left(
    fake_gpts: FakeGpts, tg: FakeTelegram, tmp_path: Path
) -> None:
    wrong = "MTIz.not-the-discord-token.xyz"
    async with FakeDiscord() as discord:
        env = environment(
            tmp_path, fake_gpts, telegram=tg, discord=discord,
            TELEGRAM_BOT_TOKEN=tg.token, DISCORD_BOT_TOKEN=wrong,
        )  # fmt: skip
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "core.cli", "run",
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=env,
        )  # fmt: skip
        try:
            await discord.wait_for(lambda: discord.calls_to("GET", "/gateway/bot"), 30)
            # Discord refused its token; Telegram keeps answering.
            user = tg.user(501, "Mei")
            tg.user_message(tg.private_chat(user), user, "still there?")
            await tg.wait_until(
                lambda: [m["text"] for m in tg.bot_messages(501)] == ["echo: still there?"], 30
            )
            tg.revoke_token()
            out, err = await asyncio.wait_for(process.communicate(), 30)
        finally:
            if process.returncode is None:
                process.kill()
                await process.wait()
    assert process.returncode == 1, err.decode()
    log = err.decode()
    last_lines = log.splitlines()[-2:]
    assert last_lines == [
        "gptsbot: Discord refused the bot token: check DISCORD_BOT_TOKEN",
        "gptsbot: Telegram refused the bot token: check TELEGRAM_BOT_TOKEN",
    ]
    # When Discord refused, the log said so at once, and that Telegram went on.
    assert "Discord refused the bot token: check DISCORD_BOT_TOKEN (telegram still running)" in log
    assert "Traceback" not in log and "Unclosed" not in log
    for secret in (wrong, tg.token, API_KEY):
        assert secret not in out.decode() + log


@pytest.mark.skipif(not hasattr(fcntl, "F_SETPIPE_SZ"), reason="shrinks a pipe the Linux way")
@pytest.mark.asyncio
async def test_a_stderr_nobody_reads_never_holds_up_the_bot(
    fake_gpts: FakeGpts, tg: FakeTelegram, tmp_path: Path
) -> None:
    turns = 30
    env = environment(tmp_path, fake_gpts, telegram=tg, TELEGRAM_BOT_TOKEN=tg.token)
    with Path(env["GPTSBOT_CONFIG"]).open("a") as file:
        file.write('[log]\nlevel = "DEBUG"\n')
    read_end, write_end = os.pipe()
    # The smallest pipe (a page), so the DEBUG lines of the start alone fill it many times over;
    # in all, they would fill even the usual 64 KiB one.
    fcntl.fcntl(write_end, fcntl.F_SETPIPE_SZ, 4096)
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "core.cli", "run",
        stdout=asyncio.subprocess.DEVNULL, stderr=write_end, env=env,
    )  # fmt: skip
    os.close(write_end)
    user = tg.user(501, "Mei")
    chat = tg.private_chat(user)

    def last_answer() -> str | None:
        texts = [m["text"] for m in tg.bot_messages(501)]
        return texts[-1] if texts else None

    try:
        for turn in range(turns):  # nobody reads stderr meanwhile
            tg.user_message(chat, user, f"turn {turn}")
            expected = f"echo: turn {turn}"
            await tg.wait_until(lambda expected=expected: last_answer() == expected, 30)
        process.send_signal(signal.SIGTERM)
        with os.fdopen(read_end, "rb") as stderr:
            err = (await asyncio.to_thread(stderr.read)).decode()
        assert await asyncio.wait_for(process.wait(), 30) == 0
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    # Every line logged while nobody read got out in the end, the last ones too.
    assert len(err) > 64 * 1024
    assert err.count("core.gpts.transport: GPTs answer from") == turns
    assert "INFO core.app: stopped\n" in err
    assert tg.token not in err
