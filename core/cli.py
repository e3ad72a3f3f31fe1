"""The `gptsbot` command: run, chat, check, db upgrade, db copy."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import queue
import sys
from collections.abc import Callable, Coroutine, Iterator, Sequence
from logging.handlers import QueueHandler, QueueListener
from typing import Any, TypeVar

from sqlalchemy.exc import DBAPIError

from core import __version__
from core.answerer_lock import AlreadyAnswering, answerer_lock
from core.app import (
    has_a_platform_token,
    interrupted_by_platform,
    load_adapters,
    open_app,
    run_adapters,
    stop_on_signals,
    token_variables,
)
from core.config import Config, config_path, load_config
from core.database import describe, sqlite_file
from core.errors import (
    AuthError,
    ConfigError,
    DatabaseUnusable,
    EndpointNotFound,
    GptNotFound,
    GptsBotError,
)
from core.gpt_names import parse_gpt_id
from core.gpts import GptsClient
from core.log_format import log_formatter
from core.ops_server import serve_ops
from core.platforms import installed_platforms
from storage.copy import TargetNotEmpty, copy_database

T = TypeVar("T")

logger = logging.getLogger("gptsbot")

EXIT_USAGE = 2
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
# Log records on their way to stderr (see `_logging_to_stderr`).
_log_queue: queue.Queue[logging.LogRecord] | None = None


def run_loop(main: Coroutine[Any, Any, T]) -> T:
    """`main` on uvloop where it is installed (not on Windows): about a quarter of a turn's CPU
    is the event loop and its sockets, which uvloop runs in C."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(main)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(main)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        config = load_config(config_path(args.config))
    except ConfigError as exc:
        print(f"gptsbot: {exc}", file=sys.stderr)
        return EXIT_USAGE
    level = config.log.level
    if getattr(args, "quiet_logs", False) and level == "INFO":
        level = "WARNING"  # e.g. `chat`: the terminal is the conversation
    # httpx (under python-telegram-bot) logs every request URL at INFO, and Telegram's URLs
    # carry the bot token.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    logging.getLogger("alembic").setLevel(logging.WARNING)
    handler: Callable[[Config, argparse.Namespace], Coroutine[None, None, int]] = args.handler
    with _logging_to_stderr(level, log_formatter(config.log.format)):
        try:
            return run_loop(handler(config, args))
        except (DatabaseUnusable, ConfigError) as exc:  # ConfigError: e.g. metrics.listen taken
            _say(str(exc))
            return EXIT_USAGE
        except KeyboardInterrupt:
            return 130


@contextlib.contextmanager
def _logging_to_stderr(level: str, formatter: logging.Formatter) -> Iterator[None]:
    """Log through a queue that a thread of its own writes to stderr: a stderr that drains
    slowly or not at all (a full pipe) blocks that thread, never the event loop. At the end the
    queue is written out, so the last lines are not lost."""
    global _log_queue
    records: queue.Queue[logging.LogRecord] = queue.Queue()
    writer = logging.StreamHandler(sys.stderr)
    writer.setFormatter(formatter)
    listener = QueueListener(records, writer)
    enqueue = QueueHandler(records)
    root = logging.getLogger()
    root.setLevel(level)
    root.addHandler(enqueue)
    _log_queue = records
    listener.start()
    try:
        yield
    finally:
        root.removeHandler(enqueue)
        listener.stop()  # writes every queued record, then ends the thread
        _log_queue = None


def _say(line: str) -> None:
    """A last line to the operator, after every log line logged before it."""
    if _log_queue is not None:
        _log_queue.join()
    print(f"gptsbot: {line}", file=sys.stderr)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gptsbot", description="Talk to ChatGPT GPTs from Discord, Telegram and the terminal."
    )
    parser.add_argument("--version", action="version", version=f"gptsbot {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)

    def command(
        name: str,
        help_text: str,
        under: argparse._SubParsersAction[argparse.ArgumentParser] = commands,
    ) -> argparse.ArgumentParser:
        sub: argparse.ArgumentParser = under.add_parser(name, help=help_text, description=help_text)
        sub.add_argument(
            "--config",
            # Given at any level (`db --config X upgrade` or `db upgrade --config X`): a level
            # that was not given leaves the other's value alone.
            default=None if under is commands else argparse.SUPPRESS,
            help="TOML config file (default: $GPTSBOT_CONFIG, then ./config.toml if present)",
        )
        return sub

    command("run", "run every platform whose token is set").set_defaults(handler=_run)
    for platform in installed_platforms():
        if platform.add_commands is not None:
            platform.add_commands(command)
    command("check", "check the config and the endpoint's API key").set_defaults(handler=_check)
    db = command("db", "database maintenance").add_subparsers(dest="action", required=True)
    upgrade = command(
        "upgrade", "apply the database migrations (run and chat also do it at start)", db
    )
    upgrade.set_defaults(handler=_db_upgrade)
    copy = command(
        "copy", "copy everything a database holds into an empty one (SQLite to PostgreSQL)", db
    )
    copy.add_argument("--from", dest="source", help="the database to copy (default: [storage] url)")
    copy.add_argument(
        "--to",
        dest="target",
        required=True,
        help="an empty database, e.g. postgresql+asyncpg://...",
    )
    copy.set_defaults(handler=_db_copy)
    return parser


async def _run(config: Config, args: argparse.Namespace) -> int:
    if not has_a_platform_token(config):  # before the database: nothing is left behind
        _say(f"no platform token set: set {' / '.join(token_variables())}.")
        return EXIT_USAGE
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
        logger.info("running %s", ", ".join(adapter.name for adapter in adapters))
        # Answers a dead process left streaming: interrupted now, their messages fixed later.
        interrupted = await interrupted_by_platform(app.repo, adapters)
        async with serve_ops(config.metrics.listen, adapters, app.repo):
            refusals = await run_adapters(
                adapters, stop, secrets=config.secrets(), interrupted=interrupted
            )
    # Each refused platform, in one line each: the process ends when none is left running.
    for refusal in refusals:
        _say(str(refusal))
    return 1 if refusals else 0


async def _check(config: Config, args: argparse.Namespace) -> int:
    """Prove each endpoint's key (and the default GPT, if set) with one small request; say what
    was tried, then one line per endpoint. Exit 1 if any fails."""
    gpts = config.gpts
    gpt_id = parse_gpt_id(gpts.default_gpt) if gpts.default_gpt else None
    async with GptsClient(gpts) as client:
        endpoints = client.endpoints
        single = len(endpoints) == 1
        base = endpoints[0].base_url.rstrip("/") if single else "{base_url}"
        where = "" if single else f" of each of the {len(endpoints)} endpoints"
        if gpt_id:
            asked = endpoints[0].model(gpt_id) if single else gpt_id
            print(f"Trying: POST {base}/chat/completions{where} asking gpts.default_gpt ({asked}).")
        else:
            # Relays often serve no ordinary model, so without a GPT to ask, the key is checked
            # by listing the models it may use.
            print(f"Trying: GET {base}/models{where} (no gpts.default_gpt is set to ask).")
        failed = False
        for endpoint in endpoints:
            who = endpoint.base_url.rstrip("/")
            if not single:
                who = f"{endpoint.key} {who}" + (f" ({endpoint.name})" if endpoint.name else "")
            model = endpoint.model(gpt_id) if gpt_id else None
            try:
                if gpt_id:
                    await client.check(gpt_id, endpoint)
                    success = f"{model} answered"
                else:
                    success = f"it lists {len(await client.list_models(endpoint))} models"
            except GptsBotError as exc:
                failed = True
                for line in _check_failure(exc, who, model, endpoint.key_setting):
                    print(line)
            else:
                print(f"OK: {who} accepted the key; {success}.")
    return 1 if failed else 0


def _check_failure(exc: GptsBotError, who: str, model: str | None, key_setting: str) -> list[str]:
    """What `check` says about a failure: the likely cause (key, URL, GPT) and what to change."""
    match exc:
        case AuthError():
            return [f"FAIL: {who} refused the key: {exc}. Check {key_setting}."]
        case EndpointNotFound():
            lines = [f"FAIL: {who} does not look like the API: {exc}"]
            if model is None:
                lines.append("(A relay that lists no models answers the same: set gpts.default_gpt "
                             "to check by asking that GPT instead.)")  # fmt: skip
            return lines
        case GptNotFound() if model is not None:
            return [f"FAIL: {who} accepted the key, but gpts.default_gpt ({model}) was not found "
                    f"there: {exc}"]  # fmt: skip
        case _:
            return [f"FAIL: {who}: {exc}"]


async def _db_upgrade(config: Config, args: argparse.Namespace) -> int:
    async with open_app(config):
        pass  # opening the app applies the migrations
    print(f"The database {describe(config.storage.url)} is up to date.")
    return 0


async def _db_copy(config: Config, args: argparse.Namespace) -> int:
    source = args.source or config.storage.url
    path = sqlite_file(source)
    if path is not None and not path.is_file():
        _say(f"db copy: {path} does not exist; nothing was copied.")
        return 1
    try:
        # A `gptsbot run` answering from the source would write while it is copied.
        with answerer_lock(source):
            copied = await copy_database(source, args.target)
    except (AlreadyAnswering, TargetNotEmpty) as exc:
        _say(f"db copy: {exc}; nothing was copied.")
        return 1
    except (DBAPIError, OSError) as exc:
        reason = str(getattr(exc, "orig", None) or exc)
        _say(f"db copy: nothing was copied: {reason}")
        return 1
    counts = ", ".join(f"{rows} {table}" for table, rows in copied.items())
    print(f"Copied {describe(source)} to {describe(args.target)}: {counts}.")
    print(f'To use it, set [storage] url = "{describe(args.target)}" (with its password, if any).')
    return 0


if __name__ == "__main__":
    sys.exit(main())
