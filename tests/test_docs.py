"""The README and config.example.toml tell a new user what they need, and only that."""

from __future__ import annotations

import re
from pathlib import Path

from core.app import token_variables
from core.config import env_variables, parse_config

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()
EXAMPLE = (ROOT / "config.example.toml").read_text()


def all_variables() -> set[str]:
    """Every environment variable a config section reads, the platforms' included."""
    config = parse_config({}, {})
    sections = [config.gpts, config.storage, config.bot, config.access, config.log, config.metrics]
    sections += config.platforms.values()
    return {v for section in sections for v in env_variables(type(section)).values()}


def test_the_first_run_variables_are_there() -> None:
    assert all_variables() == {
        "GPTS_API_KEY",
        "GPTS_BASE_URL",
        "GPTS_DEFAULT_GPT",
        "TELEGRAM_BOT_TOKEN",
        "TELEGRAM_WEBHOOK_SECRET",
        "DISCORD_BOT_TOKEN",
        # For services and containers, which run without a config file.
        "GPTSBOT_DATABASE_URL",
        "GPTSBOT_METRICS_LISTEN",
        "GPTSBOT_LOG_LEVEL",
        "GPTSBOT_LOG_FORMAT",
    }


def test_every_environment_variable_is_documented() -> None:
    for variable in all_variables():
        assert f"| `{variable}` |" in README, f"{variable} is not in the README's table"
        assert variable in EXAMPLE, f"{variable} is not in config.example.toml"


def quick_start() -> list[str]:
    block = re.search(r"```sh\n(.*?)```", README, re.DOTALL)
    assert block is not None
    return block.group(1).splitlines()


def test_the_quick_start_sets_only_the_token_of_one_platform_per_line() -> None:
    install = "python3 -m venv .venv && .venv/bin/pip install -q -e . && "
    tokens = set(token_variables())
    assert tokens == {"TELEGRAM_BOT_TOKEN", "DISCORD_BOT_TOKEN"}
    platforms_started = []
    for line in quick_start():
        assert line.startswith(install), line  # each line works on a fresh machine by itself
        assigned = set(re.findall(r"\b([A-Z_]+)=", line))
        assert assigned <= all_variables(), line
        assert "GPTS_API_KEY" in assigned, line
        if line.endswith("/gptsbot run"):
            (token,) = assigned & tokens  # exactly one platform on
            platforms_started.append(token)
        else:
            assert "/gptsbot chat --gpt " in line and not assigned & tokens, line
    assert sorted(platforms_started) == sorted(tokens)


def test_the_readme_test_command_is_the_one_ci_runs() -> None:
    command = re.findall(r"```sh\n(.*?)\n```", README, re.DOTALL)[1]
    assert "pytest" in command
    assert command in (ROOT / ".ci" / "run").read_text()
