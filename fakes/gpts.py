"""A local GPTs endpoint: a real aiohttp server speaking OpenAI chat completions (SSE or JSON).

    async with FakeGpts() as fake:                      # or the `fake_gpts` fixture
        fake.enqueue(Reply("Hello there", chunk_chars=3), Fail(500), Reply("ok"))
        client = GptsClient(GptsConfig(base_url=fake.base_url, api_key="k"))
        ...
        await fake.wait_requests(2)
        assert fake.requests[0].model == "gpt-4-gizmo-g-x"

Each POST takes the next queued script (FIFO); with the queue empty it streams
f"echo: {last user message}". Scripts: `Reply` (an answer, optionally broken mid-stream),
`Fail` (an HTTP error), `Hang` (no answer at all), `Gate` (chunks released by the test) and
`RawSse` (a fixture body served as is). Like real relays, no headers are sent before the first
chunk, so the time to headers is the time to the first token.

Each recorded request's `disconnected` event is set when the client closes the connection before
the answer has ended (a stopped answer): the handler is cancelled then, as a real server's would
be, instead of writing on to no one.

`fake.overlaps` lists the requests answered at the same time (per `overlap_key`, by default all).
`GET /v1/models` lists `fake.models` (a queued `Fail` is served instead; `serve_models = False`
makes the path unknown). Unknown paths answer 404 with `fake.not_found_body` (an nginx page;
set "" for an empty body), as a server does when `base_url` misses the API's path.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import deque
from collections.abc import Callable
from typing import Any, Self

from aiohttp import web
from multidict import CIMultiDict

from fakes import issued
from fakes.gpts_scripts import (
    CLOUDFLARE_524,
    NGINX_404,
    SERVER_ERROR,
    Fail,
    Gate,
    Hang,
    RawSse,
    RecordedRequest,
    Reply,
    Script,
    chunk,
    event,
)
from fakes.local_server import LocalServer

__all__ = [
    "CLOUDFLARE_524",
    "NGINX_404",
    "SERVER_ERROR",
    "Fail",
    "FakeGpts",
    "Gate",
    "Hang",
    "RawSse",
    "RecordedRequest",
    "Reply",
    "Script",
    "image_urls",
    "text_of",
]


class _Dropped(Exception):
    """The script aborted the connection on purpose."""


class FakeGpts(LocalServer):
    """The server. `requests` records every POST; `chunk_delay_s` paces `Reply` pieces."""

    def __init__(self, *, chunk_delay_s: float = 0.0) -> None:
        self.chunk_delay_s = chunk_delay_s
        self.requests: list[RecordedRequest] = []
        self.models = ["gpt-4o-mini", "gpt-4-gizmo-g-B3hgivKK9"]
        self.serve_models = True
        self.not_found_body = NGINX_404
        # Requests answered at the same time with the same `overlap_key` (by default any two):
        # (the earlier, the later). A test of one scope's order expects none.
        self.overlap_key: Callable[[RecordedRequest], object] = lambda _record: None
        self.overlaps: list[tuple[RecordedRequest, RecordedRequest]] = []
        self._answering: dict[object, list[RecordedRequest]] = {}
        self._scripts: deque[Script] = deque()
        self._arrived = asyncio.Condition()
        self._stopping = asyncio.Event()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def enqueue(self, *scripts: Script) -> None:
        self._scripts.extend(scripts)

    async def wait_requests(self, count: int, within_s: float = 5.0) -> list[RecordedRequest]:
        """Wait until `count` requests have arrived (TimeoutError after `within_s`); all so far."""
        async with asyncio.timeout(within_s), self._arrived:
            await self._arrived.wait_for(lambda: len(self.requests) >= count)
        return list(self.requests)

    async def wait_request(
        self, matches: Callable[[RecordedRequest], bool], within_s: float = 5.0
    ) -> RecordedRequest:
        """Wait until a request that `matches` has arrived (TimeoutError after `within_s`)."""

        def found() -> RecordedRequest | None:
            return next((request for request in self.requests if matches(request)), None)

        async with asyncio.timeout(within_s), self._arrived:
            await self._arrived.wait_for(lambda: found() is not None)
        request = found()
        assert request is not None
        return request

    async def start(self) -> Self:
        self._stopping.clear()
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self._handle)
        app.router.add_get("/v1/models", self._models)
        app.router.add_route("*", "/{path:.*}", self._not_found)
        # A client that closes the connection cancels its handler (and sets `disconnected`).
        await self._listen(app, shutdown_timeout=1.0, handler_cancellation=True)
        return self

    async def close(self) -> None:
        self._stopping.set()  # wakes hanging and gated handlers so shutdown is prompt
        await super().close()

    async def stop(self) -> None:
        """Take the endpoint down mid-test: `base_url` then finds nothing listening."""
        await self.close()

    # --- serving ---

    async def _pause(self, seconds: float) -> None:
        """Sleep, but raise _Dropped at once when the server stops."""
        if seconds <= 0 and not self._stopping.is_set():
            return
        try:
            async with asyncio.timeout(seconds):
                await self._stopping.wait()
        except TimeoutError:
            return
        raise _Dropped

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        try:
            body = await request.json()
        except ValueError:
            body = None
        record = RecordedRequest(
            body if isinstance(body, dict) else {},
            CIMultiDict(request.headers),
            asyncio.get_running_loop().time(),
        )
        await self._record(record)
        if not isinstance(body, dict):
            return web.json_response({"error": {"message": "body is not JSON"}}, status=400)
        script = self._scripts.popleft() if self._scripts else self._echo(record)
        key = self.overlap_key(record)
        answering = self._answering.setdefault(key, [])
        self.overlaps += [(earlier, record) for earlier in answering]
        answering.append(record)
        try:
            return await self._serve(request, record, script)
        except asyncio.CancelledError:
            if not self._stopping.is_set():
                record.disconnected.set()  # the client went away mid-answer
            raise
        except (_Dropped, ConnectionResetError) as exc:
            if isinstance(exc, ConnectionResetError):
                record.disconnected.set()
            # Abort: no chunked-encoding terminator, so the client sees a broken payload.
            if request.transport is not None:
                request.transport.abort()
            return web.Response()
        finally:
            answering.remove(record)

    async def _record(self, record: RecordedRequest) -> None:
        issued.note_authorization(record.headers.get("Authorization"))
        self.requests.append(record)
        async with self._arrived:
            self._arrived.notify_all()

    async def _models(self, request: web.Request) -> web.Response:
        if not self.serve_models:
            return await self._not_found(request)
        now = asyncio.get_running_loop().time()
        await self._record(
            RecordedRequest({}, CIMultiDict(request.headers), now, "GET", request.path)
        )
        if self._scripts and isinstance(self._scripts[0], Fail):
            failure = self._scripts.popleft()
            assert isinstance(failure, Fail)
            return self._fail(failure)
        data = [{"id": m, "object": "model", "owned_by": "fake"} for m in self.models]
        return web.json_response({"object": "list", "data": data})

    async def _not_found(self, request: web.Request) -> web.Response:
        now = asyncio.get_running_loop().time()
        await self._record(
            RecordedRequest({}, CIMultiDict(request.headers), now, request.method, request.path)
        )
        body = self.not_found_body
        return web.Response(status=404, text=body, content_type="text/html" if body else None)

    def _echo(self, record: RecordedRequest) -> Reply:
        users = [m for m in record.messages if m.get("role") == "user"]
        content = users[-1].get("content", "") if users else ""
        images = image_urls(content)
        shown = f" (+{len(images)} images)" if images else ""
        return Reply(f"echo: {text_of(content)}{shown}")

    async def _serve(
        self, request: web.Request, record: RecordedRequest, script: Script
    ) -> web.StreamResponse:
        stream = bool(record.json.get("stream"))
        model = str(record.model)
        match script:
            case Fail():
                return self._fail(script)
            case Hang():
                await self._pause(float("inf"))
                raise _Dropped
            case RawSse():
                response = await self._open_sse(request)
                step = script.chunk_bytes or len(script.body) or 1
                for start in range(0, len(script.body), step):
                    await response.write(script.body[start : start + step])
                await response.write_eof()
                return response
            case Gate():
                return await self._gated(request, model, stream, script)
            case Reply():
                await self._pause(script.first_delay_s)
                if not stream:
                    return self._whole(model, script)
                return await self._stream(request, model, script)

    def _fail(self, script: Fail) -> web.Response:
        if isinstance(script.body, dict):
            text, content_type = json.dumps(script.body), "application/json"
        else:
            text = script.body
            content_type = "text/html" if text.lstrip().startswith("<") else "text/plain"
        return web.Response(
            status=script.status,
            text=text,
            content_type=script.content_type or content_type,
            headers=script.headers,
        )

    def _whole(self, model: str, script: Reply) -> web.Response:
        if script.drop_after is not None:
            raise _Dropped
        if script.error_after is not None:
            return web.json_response({"error": script.error}, status=500)
        if script.malformed_after is not None:
            return web.Response(text="{not json", content_type="application/json")
        body: dict[str, Any] = {
            "id": "chatcmpl-fake",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": model,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": script.text},
                    "finish_reason": script.finish_reason,
                }
            ],
        }
        if script.usage is not None:
            body["usage"] = script.usage
        return web.json_response(body)

    async def _open_sse(self, request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(
            headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
        )
        await response.prepare(request)
        return response

    async def _stream(self, request: web.Request, model: str, script: Reply) -> web.StreamResponse:
        response = await self._open_sse(request)
        await response.write(event(chunk(model, {"role": "assistant", "content": ""})))
        step = max(1, script.chunk_chars)
        pieces = [script.text[i : i + step] for i in range(0, len(script.text), step)]
        delay = self.chunk_delay_s if script.chunk_delay_s is None else script.chunk_delay_s
        for sent, piece in enumerate(pieces):
            if script.drop_after == sent:
                raise _Dropped
            if script.error_after == sent:
                await response.write(event({"error": script.error}))
                await response.write(event("[DONE]"))
                await response.write_eof()
                return response
            if script.close_after == sent:
                response.force_close()
                await response.write_eof()
                return response
            if script.malformed_after == sent:
                await response.write(b'data: {"choices": [{"delta": {"content": "oops\n\n')
            if sent:
                await self._pause(delay)
            await response.write(event(chunk(model, {"content": piece})))
        if script.drop_after is not None and script.drop_after >= len(pieces):
            raise _Dropped
        await self._end_sse(response, model, script.finish_reason, script.usage, script.done)
        return response

    async def _end_sse(
        self,
        response: web.StreamResponse,
        model: str,
        finish_reason: str | None,
        usage: dict[str, int] | None,
        done: bool,
    ) -> None:
        if finish_reason is not None:
            await response.write(event(chunk(model, {}, finish_reason)))
        if usage is not None:
            await response.write(event({**chunk(model, {}), "choices": [], "usage": usage}))
        if done:
            await response.write(event("[DONE]"))
        await response.write_eof()

    async def _gated(
        self, request: web.Request, model: str, stream: bool, gate: Gate
    ) -> web.StreamResponse:
        response: web.StreamResponse | None = None
        text = ""
        while True:
            item = await self._next(gate)
            if item is False:
                raise _Dropped
            if item is True:
                break
            assert isinstance(item, str)
            text += item
            if stream:
                if response is None:
                    response = await self._open_sse(request)
                    role = {"role": "assistant", "content": ""}
                    await response.write(event(chunk(model, role)))
                await response.write(event(chunk(model, {"content": item})))
                gate.mark_written()
        if not stream:
            return self._whole(
                model, Reply(text, finish_reason=gate.finish_reason, usage=gate.usage)
            )
        if response is None:
            response = await self._open_sse(request)
        await self._end_sse(response, model, gate.finish_reason, gate.usage, True)
        return response

    async def _next(self, gate: Gate) -> str | bool:
        """The gate's next item, or _Dropped when the server stops first."""
        getter = asyncio.ensure_future(gate._queue.get())
        stopping = asyncio.ensure_future(self._stopping.wait())
        try:
            await asyncio.wait({getter, stopping}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopping.cancel()
            if not getter.done():
                getter.cancel()
        if not getter.done() or getter.cancelled():
            raise _Dropped
        return getter.result()


# --- messages with images: OpenAI content parts ----------------------------------------------


def text_of(content: Any) -> str:
    """A message's text: the string, or its `text` parts joined."""
    if isinstance(content, str):
        return content
    return "".join(part.get("text", "") for part in content if part.get("type") == "text")


def image_urls(content: Any) -> list[str]:
    """The URLs of a message's `image_url` parts (none for a plain string)."""
    if isinstance(content, str):
        return []
    return [part["image_url"]["url"] for part in content if part.get("type") == "image_url"]
