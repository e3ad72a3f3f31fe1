"""A first run without traps: no config file needed, the database where the user expects it
whatever the current folder, and one clear line for what cannot work. Each test runs `gptsbot`
as a user would: a subprocess, its own current folder, piped stdin."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from fakes.gpts import FakeGpts
from tests.test_cli import API_KEY, DEFAULT_GPT, environment, gptsbot


def bare_environment(tmp_path: Path, **extra: str) -> dict[str, str]:
    """The test environment without a config file."""
    env = environment(tmp_path, None)
    Path(env.pop("GPTSBOT_CONFIG")).unlink()
    del env["GPTS_API_KEY"]
    return env | extra


@pytest.mark.asyncio
async def test_a_first_run_needs_only_environment_variables(
    fake_gpts: FakeGpts, tmp_path: Path
) -> None:
    env = bare_environment(
        tmp_path,
        GPTS_BASE_URL=fake_gpts.base_url,
        GPTS_DEFAULT_GPT=DEFAULT_GPT,
        GPTS_API_KEY=f" {API_KEY}\n",  # pasted with spaces around it
    )
    somewhere, elsewhere = tmp_path / "somewhere", tmp_path / "elsewhere"
    somewhere.mkdir()
    elsewhere.mkdir()
    first = await gptsbot("chat", env=env, stdin="hello\n", cwd=somewhere)
    assert first.code == 0, first.err
    assert first.out == "echo: hello\n"
    request = fake_gpts.requests[0]
    assert request.model == f"gpt-4-gizmo-{DEFAULT_GPT}"
    assert request.headers["Authorization"] == f"Bearer {API_KEY}"
    # With no config file the database is in the user's data folder, and chat says so.
    database = tmp_path / "data" / "gptsbot" / "gptsbot.db"
    assert database.is_file()
    assert first.err.count(f"Database: {database}") == 1
    assert list(somewhere.iterdir()) == []

    # Started from another folder, it is the same database: the conversation goes on.
    second = await gptsbot("chat", env=env, stdin="again\n", cwd=elsewhere)
    assert second.code == 0, second.err
    assert fake_gpts.requests[1].messages == [
        {"role": "user", "content": "hello"},
        {"role": "assistant", "content": "echo: hello"},
        {"role": "user", "content": "again"},
    ]
    assert list(elsewhere.iterdir()) == []


@pytest.mark.asyncio
async def test_home_data_folder_when_xdg_data_home_is_unset(
    fake_gpts: FakeGpts, tmp_path: Path
) -> None:
    env = bare_environment(
        tmp_path, GPTS_BASE_URL=fake_gpts.base_url, GPTS_DEFAULT_GPT=DEFAULT_GPT, HOME=str(tmp_path)
    )
    del env["XDG_DATA_HOME"]
    result = await gptsbot("db", "upgrade", env=env, cwd=tmp_path)
    database = tmp_path / ".local" / "share" / "gptsbot" / "gptsbot.db"
    assert result.out == f"The database {database} is up to date.\n", result.err
    assert database.is_file()


@pytest.mark.asyncio
async def test_the_database_lives_next_to_the_config_file(
    fake_gpts: FakeGpts, tmp_path: Path
) -> None:
    folder = tmp_path / "bot"
    folder.mkdir()
    config = folder / "config.toml"
    config.write_text(f'[gpts]\nbase_url = "{fake_gpts.base_url}"\ndefault_gpt = "{DEFAULT_GPT}"\n')
    env = environment(tmp_path, None, GPTSBOT_CONFIG=str(config))
    first = await gptsbot("chat", env=env, stdin="one\n", cwd=tmp_path)
    assert first.code == 0, first.err
    assert (folder / "gptsbot.db").is_file()
    assert f"Database: {folder / 'gptsbot.db'}" in first.err
    # `--config` given relative to the current folder: the same file, the same database.
    await gptsbot("chat", "--config", "config.toml", env=env, stdin="two\n", cwd=folder)
    assert [m["content"] for m in fake_gpts.requests[1].messages] == ["one", "echo: one", "two"]

    # A relative [storage] url is relative to the config file too.
    with config.open("a") as fh:
        fh.write('[storage]\nurl = "sqlite+aiosqlite:///state/bot.db"\n')
    upgraded = await gptsbot("db", "upgrade", env=env, cwd=tmp_path)
    assert upgraded.out == f"The database {folder / 'state' / 'bot.db'} is up to date.\n"
    assert not (tmp_path / "state").exists()


@pytest.mark.asyncio
async def test_an_old_database_in_the_current_folder_is_pointed_out(tmp_path: Path) -> None:
    env = bare_environment(tmp_path)
    (tmp_path / "gptsbot.db").write_bytes(b"")  # where the default database used to be
    result = await gptsbot("db", "upgrade", env=env, cwd=tmp_path)
    database = tmp_path / "data" / "gptsbot" / "gptsbot.db"
    assert result.code == 0, result.err
    assert f"{tmp_path / 'gptsbot.db'} is not used: the database is {database}" in result.err


def one_line(err: str) -> str:
    assert "Traceback" not in err
    lines = err.splitlines()
    assert len(lines) == 1, err
    return lines[0]


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("config", "args", "variables", "line"),
    [
        (
            "[gpts]\ntemperature = 3\n",
            ["chat"],
            {},
            "gpts.temperature: must be from 0 to 2, got 3",
        ),
        (
            '[gpts]\nbase_url = "nope"\n',
            ["chat"],
            {},
            "gpts.base_url: must be an http(s) URL, got 'nope'",
        ),
        (
            None,  # the config as `environment` writes it
            ["run", "--config", "{tmp_path}"],
            {},
            "{tmp_path}: is a folder, not a config file",
        ),
        (
            None,
            ["check"],
            {"GPTS_BASE_URL": "relay.example/v1"},
            "gpts.base_url: must be an http(s) URL, got 'relay.example/v1' (set by GPTS_BASE_URL)",
        ),
    ],
    ids=["a value", "a malformed URL", "a folder for a file", "an environment variable"],
)
async def test_config_mistakes_are_one_line_naming_the_key_and_exit_2(
    tmp_path: Path, config: str | None, args: list[str], variables: dict[str, str], line: str
) -> None:
    env = environment(tmp_path, None) | variables
    if config is not None:
        Path(env["GPTSBOT_CONFIG"]).write_text(config)
    result = await gptsbot(*[arg.format(tmp_path=tmp_path) for arg in args], env=env)
    assert result.code == 2
    assert one_line(result.err) == f"gptsbot: config: {line.format(tmp_path=tmp_path)}"


def with_database(env: dict[str, str], path: Path | str) -> dict[str, str]:
    Path(env["GPTSBOT_CONFIG"]).write_text(f'[storage]\nurl = "sqlite+aiosqlite:///{path}"\n')
    return env


@pytest.mark.asyncio
@pytest.mark.parametrize("command", [("chat",), ("run",), ("db", "upgrade")])
async def test_an_unusable_database_path_is_one_line_naming_it(
    tmp_path: Path, command: tuple[str, ...]
) -> None:
    env = environment(tmp_path, None, TELEGRAM_BOT_TOKEN="123:abc")
    a_file = tmp_path / "notes.txt"
    a_file.write_text("")
    under_a_file = a_file / "gptsbot.db"
    result = await gptsbot(*command, env=with_database(env, under_a_file))
    assert result.code == 2
    expected = f"gptsbot: database {under_a_file}: {a_file} is a file, not a folder"
    assert one_line(result.err) == expected

    result = await gptsbot(*command, env=with_database(env, tmp_path))
    assert result.code == 2
    assert one_line(result.err) == f"gptsbot: database {tmp_path}: is a folder, not a database file"

    # A folder where no file can be created, even by root: SQLite's own reason, still one line.
    result = await gptsbot(*command, env=with_database(env, "/proc/gptsbot.db"))
    assert result.code == 2
    # (`run` says so when it creates its answerer lock beside the file, the others when SQLite
    # opens it.)
    assert one_line(result.err) in {
        "gptsbot: database /proc/gptsbot.db: unable to open database file",
        "gptsbot: database /proc/gptsbot.db: cannot create /proc/gptsbot.db.lock: "
        "No such file or directory",
    }


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write in any folder")
@pytest.mark.asyncio
async def test_a_database_folder_without_write_permission_is_one_line(tmp_path: Path) -> None:
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        env = with_database(environment(tmp_path, None), locked / "gptsbot.db")
        result = await gptsbot("chat", env=env)
    finally:
        locked.chmod(0o700)
    assert result.code == 2
    assert one_line(result.err) == (
        f"gptsbot: database {locked / 'gptsbot.db'}: no permission to write in {locked}"
    )


@pytest.mark.asyncio
async def test_db_upgrade_is_a_subcommand_with_its_own_help(tmp_path: Path) -> None:
    env = environment(tmp_path, None)
    helped = await gptsbot("db", "upgrade", "--help", env=env)
    assert helped.code == 0
    assert helped.out.startswith("usage: gptsbot db upgrade [-h] [--config CONFIG]")
    assert "apply the database migrations" in helped.out
    listed = await gptsbot("db", "--help", env=env)
    assert "upgrade" in listed.out and "apply the database migrations" in listed.out
    # --config is taken on either level.
    config = Path(env.pop("GPTSBOT_CONFIG"))
    for args in (
        ("db", "upgrade", "--config", str(config)),
        ("db", "--config", str(config), "upgrade"),
    ):
        upgraded = await gptsbot(*args, env=env)
        assert upgraded.out == f"The database {tmp_path / 'chat.db'} is up to date.\n", args
    missing = await gptsbot("db", env=env)
    assert missing.code == 2 and "required: action" in missing.err
