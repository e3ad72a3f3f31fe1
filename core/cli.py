"""The `gptsbot` command: run, chat, check, db upgrade."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Callable, Coroutine, Sequence

from core import __version__
from core.answerer_lock import AlreadyAnswering, answerer_lock
from core.app import (
    interrupted_by_platform,
    load_adapters,
    open_app,
    run_adapters,
    stop_on_signals,
    token_variables,
)
from core.config import Config, config_path, load_config
from core.errors import ConfigError, GptNotFound, GptsBotError
from core.gpt_names import model_name, parse_gpt_id
from core.gpts import GptsClient
from core.platform import PlatformRefused
from core.platforms import installed_platforms

logger = logging.getLogger("gptsbot")

EXIT_USAGE = 2
# `check` asks this model when no default GPT is configured: any model proves the key.
CHECK_FALLBACK_MODEL = "gpt-4o-mini"


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        config = load_config(config_path(args.config))
    except ConfigError as exc:
        print(f"gptsbot: {exc}", file=sys.stderr)
        return EXIT_USAGE
    level = config.bot.log_level
    if getattr(args, "quiet_logs", False) and level == "INFO":
        level = "WARNING"  # e.g. `chat`: the terminal is the conversation
    logging.basicConfig(
        level=level,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    # httpx (under python-telegram-bot) logs every request URL at INFO, and Telegram's URLs
    # carry the bot token.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    logging.getLogger("alembic").setLevel(logging.WARNING)
    handler: Callable[[Config, argparse.Namespace], Coroutine[None, None, int]] = args.handler
    try:
        return asyncio.run(handler(config, args))
    except KeyboardInterrupt:
        return 130


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gptsbot", description="Talk to ChatGPT GPTs from Discord, Telegram and the terminal."
    )
    parser.add_argument("--version", action="version", version=f"gptsbot {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)

    def command(name: str, help_text: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help_text)
        sub.add_argument(
            "--config",
            help="TOML config file (default: $GPTSBOT_CONFIG, then ./config.toml if present)",
        )
        return sub

    command("run", "run every platform whose token is set").set_defaults(handler=_run)
    for platform in installed_platforms():
        if platform.add_commands is not None:
            platform.add_commands(command)
    command("check", "check the config and the endpoint's API key").set_defaults(handler=_check)
    db = command("db", "database maintenance")
    db.add_argument("action", choices=["upgrade"], help="upgrade: apply migrations")
    db.set_defaults(handler=_db)
    return parser


async def _run(config: Config, args: argparse.Namespace) -> int:
    # One answerer per database: a second `run` would answer every message again.
    try:
        with answerer_lock(config.storage.url):
            return await _serve(config)
    except AlreadyAnswering as exc:
        print(f"gptsbot: {exc}", file=sys.stderr)
        return 1


async def _serve(config: Config) -> int:
    stop = asyncio.Event()
    stop_on_signals(stop)
    async with open_app(config) as app:
        adapters = load_adapters(config, app.service)
        if not adapters:
            variables = " / ".join(token_variables())
            print(f"gptsbot: no platform token set: set {variables}.", file=sys.stderr)
            return EXIT_USAGE
        logger.info("running %s", ", ".join(adapter.name for adapter in adapters))
        # Answers a dead process left streaming: interrupted now, their messages fixed later.
        interrupted = await interrupted_by_platform(app.repo, adapters)
        refusals: list[BaseException] = []
        try:
            await run_adapters(adapters, stop, secrets=config.secrets(), interrupted=interrupted)
        except* PlatformRefused as group:
            refusals.extend(group.exceptions)
    for refusal in refusals:
        print(f"gptsbot: {refusal}", file=sys.stderr)
    return 1 if refusals else 0


async def _check(config: Config, args: argparse.Namespace) -> int:
    gpts = config.gpts
    model = (
        model_name(gpts.model_template, parse_gpt_id(gpts.default_gpt))
        if gpts.default_gpt
        else CHECK_FALLBACK_MODEL
    )
    async with GptsClient(gpts) as client:
        try:
            await client.check(model)
        except GptNotFound:
            if gpts.default_gpt:
                print(f"FAIL: {gpts.base_url} accepted the key, but gpts.default_gpt ({model}) "
                      "was not found there.")  # fmt: skip
                return 1
            print(f"OK: {gpts.base_url} accepted the key.")
            return 0
        except GptsBotError as exc:
            print(f"FAIL: {gpts.base_url}: {exc}")
            return 1
    print(f"OK: {gpts.base_url} accepted the key; {model} answered.")
    return 0


async def _db(config: Config, args: argparse.Namespace) -> int:
    async with open_app(config):
        pass  # opening the app applies the migrations
    print("The database is up to date.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
