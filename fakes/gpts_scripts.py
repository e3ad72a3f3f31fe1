"""What the fake GPTs endpoint (`fakes.gpts`) is told to do: the scripts a test queues (`Reply`,
`Fail`, `Hang`, `Gate`, `RawSse`), the requests it records, and the bodies it answers with."""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from multidict import CIMultiDict

CLOUDFLARE_524 = """<!DOCTYPE html>
<html lang="en-US">
<head>
<title>api.example.com | 524: A timeout occurred</title>
<meta charset="UTF-8" />
</head>
<body><div id="cf-wrapper"><h1>A timeout occurred</h1>
<p>The origin web server timed out responding to this request.</p>
<span>Cloudflare Ray ID: <strong>8c9d2a1b3e4f5a6b</strong></span></div></body>
</html>
"""
NGINX_404 = """<html>
<head><title>404 Not Found</title></head>
<body>
<center><h1>404 Not Found</h1></center>
<hr><center>nginx</center>
</body>
</html>
"""
SERVER_ERROR = {
    "message": "The server had an error while processing your request. Sorry about that!",
    "type": "server_error",
    "param": None,
    "code": None,
}


@dataclass
class RecordedRequest:
    json: dict[str, Any]
    headers: CIMultiDict[str]
    time: float  # the event loop's clock when it arrived
    method: str = "POST"
    path: str = "/v1/chat/completions"
    # Set when the client closed the connection before the answer ended.
    disconnected: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def model(self) -> str | None:
        return self.json.get("model")

    @property
    def messages(self) -> list[dict[str, Any]]:
        return list(self.json.get("messages") or [])


@dataclass
class Reply:
    """An answer streamed in `chunk_chars` pieces; the *_after fields break it after N pieces."""

    text: str = "Hello from the fake GPT."
    chunk_chars: int = 4
    first_delay_s: float = 0.0  # before anything, headers included
    chunk_delay_s: float | None = None  # None: FakeGpts.chunk_delay_s
    finish_reason: str | None = "stop"
    usage: dict[str, int] | None = None  # e.g. {"prompt_tokens": 3, "completion_tokens": 2, ...}
    done: bool = True  # False: end without [DONE]
    drop_after: int | None = None  # abort the connection after N text pieces
    error_after: int | None = None  # send an {"error": ...} object after N text pieces
    error: dict[str, Any] | str = field(default_factory=lambda: dict(SERVER_ERROR))
    malformed_after: int | None = None  # send a data line that is not JSON after N pieces
    # End the body cleanly after N text pieces, without finish_reason or [DONE], and close the
    # connection: a relay whose own upstream went away.
    close_after: int | None = None


@dataclass
class Fail:
    """An HTTP error. `body`: a dict is sent as JSON, a str as is (e.g. CLOUDFLARE_524)."""

    status: int
    body: dict[str, Any] | str = field(default_factory=lambda: {"error": dict(SERVER_ERROR)})
    headers: dict[str, str] = field(default_factory=dict)
    content_type: str | None = None  # None: JSON for a dict body, text/html for a "<..." str


@dataclass
class Hang:
    """Send nothing, not even headers, until the client gives up or the server stops."""


@dataclass
class Gate:
    """An answer the test releases piece by piece: `send("text")`, then `finish()` or `drop()`.

    Headers go out with the first piece, as relays do.
    """

    finish_reason: str | None = "stop"
    usage: dict[str, int] | None = None
    written: int = 0  # pieces the fake has written to the client's socket
    _queue: asyncio.Queue[str | bool] = field(default_factory=asyncio.Queue, repr=False)
    _progress: asyncio.Event = field(default_factory=asyncio.Event, repr=False)

    def send(self, text: str) -> None:
        self._queue.put_nowait(text)

    async def wait_written(self, count: int) -> None:
        """Until the fake has written `count` pieces: on loopback, they are in the client's socket
        by then."""
        while self.written < count:
            self._progress.clear()
            await self._progress.wait()

    def mark_written(self) -> None:
        """The fake wrote one more piece."""
        self.written += 1
        self._progress.set()

    def finish(self) -> None:
        """End the answer normally: finish_reason, usage, [DONE]."""
        self._queue.put_nowait(True)

    def drop(self) -> None:
        """Abort the connection mid-answer."""
        self._queue.put_nowait(False)


@dataclass
class RawSse:
    """A raw `text/event-stream` body served as is, in `chunk_bytes` pieces (None: at once)."""

    body: bytes
    chunk_bytes: int | None = None

    @classmethod
    def from_file(cls, path: str | Path, chunk_bytes: int | None = None) -> RawSse:
        return cls(Path(path).read_bytes(), chunk_bytes)


Script = Reply | Fail | Hang | Gate | RawSse


def chunk(model: str, delta: dict[str, Any], finish_reason: str | None = None) -> dict[str, Any]:
    return {
        "id": "chatcmpl-fake",
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}],
    }


def event(payload: dict[str, Any] | str) -> bytes:
    data = payload if isinstance(payload, str) else json.dumps(payload)
    return f"data: {data}\n\n".encode()
