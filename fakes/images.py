"""A local image host, like the relay file servers GPTs link their pictures to.

- `/png/{name}`: a small real PNG, different for each name (`png(name)` is its bytes); any
  query string (relays sign their links) is ignored.
- `/missing`: 404, as an expired link answers.
- `/huge`: a 30 MB "image/png" streamed in chunks without Content-Length (generated as it is
  sent, never held whole); `/huge-declared`: the same with its Content-Length.
- `/page`: an HTML page (`text/html`).
- `/slow`: headers at once (then `slow_started` is set), then a body that waits for
  `release_slow` (a download timeout).
- `/redirect?to=URL`: a 302 to URL (any scheme).
"""

from __future__ import annotations

import asyncio
import struct
import zlib
from typing import Self

from aiohttp import web
from aiohttp.typedefs import Handler

from fakes.local_server import LocalServer

HUGE_BYTES = 30 * 1024 * 1024
_HUGE_CHUNK = b"\x89" * (256 * 1024)


def png(name: str, size: int = 4) -> bytes:
    """A valid `size` by `size` PNG of one colour drawn from `name`."""
    red, green, blue = zlib.crc32(name.encode()).to_bytes(4, "big")[:3]
    row = b"\x00" + bytes((red, green, blue)) * size

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", size, size, 8, 2, 0, 0, 0)  # 8-bit RGB
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(row * size))
        + chunk(b"IEND", b"")
    )


class FakeImageHost(LocalServer):
    def __init__(self) -> None:
        self.requests: list[str] = []  # each path asked for, query string included
        self.slow_started = asyncio.Event()  # `/slow` was asked for
        self.release_slow = asyncio.Event()

    async def start(self) -> Self:
        app = web.Application()
        app.router.add_get("/png/{name}", self._png)
        app.router.add_get("/huge", self._huge)
        app.router.add_get("/huge-declared", self._huge)
        app.router.add_get("/page", self._page)
        app.router.add_get("/slow", self._slow)
        app.router.add_get("/redirect", self._redirect)
        app.middlewares.append(self._record)
        await self._listen(app, access_log=None)
        return self

    async def close(self) -> None:
        self.release_slow.set()  # a slow body still waiting must not hold the shutdown
        await super().close()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    @web.middleware
    async def _record(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        self.requests.append(request.path_qs)
        return await handler(request)

    async def _png(self, request: web.Request) -> web.Response:
        return web.Response(body=png(request.match_info["name"]), content_type="image/png")

    async def _huge(self, request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "image/png"})
        if request.path == "/huge-declared":
            response.content_length = HUGE_BYTES
        else:
            response.enable_chunked_encoding()
        await response.prepare(request)
        try:
            for _ in range(HUGE_BYTES // len(_HUGE_CHUNK)):
                await response.write(_HUGE_CHUNK)
        except (ConnectionResetError, ConnectionError):
            pass  # the client stopped reading: as it should
        return response

    async def _page(self, request: web.Request) -> web.Response:
        return web.Response(
            text="<html><body>not a picture</body></html>", content_type="text/html"
        )

    async def _slow(self, request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "image/png"})
        response.enable_chunked_encoding()
        await response.prepare(request)
        self.slow_started.set()
        await self.release_slow.wait()
        await response.write(png("slow"))
        return response

    async def _redirect(self, request: web.Request) -> web.Response:
        raise web.HTTPFound(request.query["to"])
