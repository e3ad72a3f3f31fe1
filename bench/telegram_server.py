"""The fake Telegram Bot API (fakes/telegram) in its own process.

    python -m bench.telegram_server [--users N] [--webhooks URL,URL --secret S]

Prints `READY <base_url> <token>`, then `GETUPDATES <time.monotonic()>` when the first long
poll arrives (monotonic time is system-wide on Linux, so the parent can compare). With `--users`,
N private chats each send one message when the parent writes a line `GO` on stdin (all N updates
at once, answered to the long poll that waits); when all N have a final answer it prints
`DONE <json stats>`. Runs until stdin closes.

With `--webhooks` the updates are not polled: each is POSTed (with the secret header) to one of
the workers' webhook URLs in turn, as a load balancer in front of several workers would.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import sys
import time
from typing import Any

import aiohttp

from bots.telegram_adapter.webhook import SECRET_HEADER
from fakes.telegram import Call, FakeTelegram


class BenchTelegram(FakeTelegram):
    def __init__(self, users: int, question: str) -> None:
        super().__init__()
        self._users = users
        self._question = question
        self._polled = False
        self.first_poll_at = 0.0

    async def _api_getupdates(self, params: dict[str, Any]) -> Any:
        if not self._polled:
            self._polled = True
            self.first_poll_at = time.monotonic()
            print(f"GETUPDATES {self.first_poll_at}", flush=True)
        return await super()._api_getupdates(params)

    def ask(self) -> tuple[float, list[dict[str, Any]]]:
        """Every user sends their question now; when (monotonic time), and the updates."""
        updates = []
        for i in range(self._users):
            user = self.user(10_000 + i, f"User{i}")
            asked = self.user_message(self.private_chat(user), user, f"{self._question} {i}")
            updates.append(self.update(self.update_id_of(asked)))
        return time.monotonic(), updates


async def post_updates(updates: list[dict[str, Any]], webhooks: list[str], secret: str) -> None:
    """Each update to the next worker's webhook, all at once (as Telegram delivers them)."""
    headers = {SECRET_HEADER: secret}
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector, headers=headers) as session:

        async def post(i: int, update: dict[str, Any]) -> None:
            async with session.post(webhooks[i % len(webhooks)], json=update) as response:
                if response.status != 200:
                    raise RuntimeError(f"a worker answered {response.status} to an update")

        await asyncio.gather(*(post(i, update) for i, update in enumerate(updates)))


async def serve(users: int, question: str, webhooks: list[str], secret: str) -> None:
    async with BenchTelegram(users, question) as fake:
        print(f"READY {fake.base_url} {fake.token}", flush=True)
        loop = asyncio.get_running_loop()
        if users:
            line = await loop.run_in_executor(None, sys.stdin.readline)
            if line.strip() == "GO":
                asked_at, updates = fake.ask()
                if webhooks:
                    await post_updates(updates, webhooks, secret)
                await fake.wait_until(lambda: _finished(fake) >= users, timeout=600)
                print("DONE " + json.dumps(stats(fake) | {"asked_at": asked_at}), flush=True)
        await loop.run_in_executor(None, sys.stdin.read)


def _finished(fake: FakeTelegram) -> int:
    # A final answer carries no streaming indicator.
    return sum(
        1
        for (chat, _), message in fake.messages.items()
        if chat >= 10_000 and message["from"]["id"] == fake.bot_id
        and not message.get("text", "").endswith("▌")
    )  # fmt: skip


def stats(fake: FakeTelegram) -> dict[str, Any]:
    streamed = [c for c in fake.calls if c.method.lower() in {"sendmessage", "editmessagetext"}]
    streamed_ids = {id(c) for c in streamed}
    return {
        # (arrival, send or edit, chat, message id, status, final: without the streaming indicator)
        "calls": [
            (
                c.at,
                "send" if c.method.lower() == "sendmessage" else "edit",
                c.params.get("chat_id"),
                _message_id(c),
                c.status,
                not str(c.params.get("text", "")).endswith("▌"),
            )
            for c in streamed
        ],
        "other_calls": len(fake.calls) - len(streamed),
        "other_call_times": [c.at for c in fake.calls if id(c) not in streamed_ids],
        "other_calls_by_method": dict(
            collections.Counter(c.method for c in fake.calls if id(c) not in streamed_ids)
        ),
        "first_poll_at": fake.first_poll_at,  # type: ignore[attr-defined]
    }


def _message_id(call: Call) -> int | None:
    if "message_id" in call.params:
        return int(call.params["message_id"])
    result = call.result
    return int(result["message_id"]) if isinstance(result, dict) else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--users", type=int, default=0)
    parser.add_argument("--question", default="question")
    parser.add_argument("--webhooks", default="", help="comma-separated worker webhook URLs")
    parser.add_argument("--secret", default="", help="the webhook secret the workers expect")
    args = parser.parse_args()
    webhooks = [url for url in args.webhooks.split(",") if url]
    asyncio.run(serve(args.users, args.question, webhooks, args.secret))


if __name__ == "__main__":
    main()
