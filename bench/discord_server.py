"""The fake Discord (fakes/discord: REST and gateway) in its own process.

    python -m bench.discord_server [--users N] [--shards S]

Prints `READY <api_base> <token>`, then `GATEWAY <time.monotonic()>` once S gateway connections
(one per shard) are ready. With `--users`, N text channels each hold one person; when the parent
writes a line `GO` on stdin each of them mentions the bot at once (N MESSAGE_CREATE events on the
gateway, each to its guild's shard); when every channel shows a final answer it prints
`DONE <json stats>`, in the shape bench/telegram_server.py prints. Runs until stdin closes.

The guilds are spread over the shards (guild i in shard i % S) and the channels over the guilds,
so with two processes each running one shard, each answers half of the questions.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import sys
import time
from typing import Any

from fakes.discord import FakeDiscord

INDICATOR = "▌"
GUILDS_PER_SHARD = 4
MESSAGE_ROUTES = {
    "POST /channels/{channel_id}/messages": "send",
    "PATCH /channels/{channel_id}/messages/{message_id}": "edit",
}


class BenchDiscord(FakeDiscord):
    def __init__(self, users: int, shards: int, question: str) -> None:
        super().__init__(shards=shards)
        self._question = question
        guilds = [
            self.add_guild(f"Guild {i}", shard=(i % shards, shards))
            for i in range(max(shards, min(users, GUILDS_PER_SHARD * shards)))
        ]
        self.people: list[tuple[int, dict[str, Any]]] = []
        for i in range(users):
            guild_id = guilds[i % len(guilds)]
            person = self.make_user(f"User{i}")
            self.add_member(guild_id, person)
            self.people.append((self.add_channel(guild_id, f"chat-{i}"), person))
        self.finished: set[int] = set()

    async def ask(self) -> float:
        """Everyone mentions the bot now; returns when (monotonic time) it began."""
        asked_at = time.monotonic()
        for i, (channel_id, person) in enumerate(self.people):
            await self.user_says(channel_id, person, f"{self._question} {i}", mention_bot=True)
        return asked_at


async def serve(users: int, shards: int, question: str) -> None:
    async with BenchDiscord(users, shards, question) as fake:
        print(f"READY {fake.api_base} {fake.token}", flush=True)
        await fake.wait_for(lambda: _ready(fake) >= shards, within_s=120)
        print(f"GATEWAY {time.monotonic()}", flush=True)
        loop = asyncio.get_running_loop()
        if users:
            line = await loop.run_in_executor(None, sys.stdin.readline)
            if line.strip() == "GO":
                asked_at = await fake.ask()
                await fake.wait_for(lambda: _finished(fake) >= users, within_s=600)
                print("DONE " + json.dumps(stats(fake) | {"asked_at": asked_at}), flush=True)
        await loop.run_in_executor(None, sys.stdin.read)


def _ready(fake: FakeDiscord) -> int:
    return sum(1 for c in fake.connections if c.ready and not c.ws.closed)


def _finished(fake: BenchDiscord) -> int:
    # A final answer carries no streaming indicator. Checked after every call: only the
    # channels not yet finished are looked at.
    bot_id = fake.bot["id"]
    for message in fake.messages.values():
        if (
            message.channel_id not in fake.finished
            and message.author["id"] == bot_id
            and message.content
            and not message.content.endswith(INDICATOR)
        ):
            fake.finished.add(message.channel_id)
    return len(fake.finished)


def stats(fake: FakeDiscord) -> dict[str, Any]:
    streamed = [c for c in fake.calls if c.route in MESSAGE_ROUTES]
    streamed_ids = {id(c) for c in streamed}
    return {
        # (arrival, kind, chat, message id, status, final: without the streaming indicator)
        "calls": [
            (
                c.at,
                MESSAGE_ROUTES[c.route],
                c.params["channel_id"],
                c.params.get("message_id") or _created_id(fake, c),
                c.status,
                not str((c.json or {}).get("content") or "").endswith(INDICATOR),
            )
            for c in streamed
        ],
        "other_calls": len(fake.calls) - len(streamed),
        # Discord's 50 a second counts every request of the bot, not only its messages.
        "other_call_times": [c.at for c in fake.calls if id(c) not in streamed_ids],
        "other_calls_by_method": dict(
            collections.Counter(c.route for c in fake.calls if id(c) not in streamed_ids)
        ),
    }


def _created_id(fake: FakeDiscord, call: Any) -> str | None:
    """The id of the message a POST created: the bot's first message in that channel at or
    after the call arrived."""
    channel_id = int(call.params["channel_id"])
    for message in fake.messages.values():
        if (
            message.channel_id == channel_id
            and message.author["id"] == fake.bot["id"]
            and message.history
            and message.history[0][0] >= call.at
        ):
            return str(message.id)
    return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--users", type=int, default=0)
    parser.add_argument("--shards", type=int, default=1)
    parser.add_argument("--question", default="question")
    args = parser.parse_args()
    asyncio.run(serve(args.users, args.shards, args.question))


if __name__ == "__main__":
    main()
