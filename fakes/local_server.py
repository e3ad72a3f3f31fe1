"""What every fake server shares: an aiohttp app on 127.0.0.1 and a free port, `async with`."""

from __future__ import annotations

from typing import Any, Self

from aiohttp import web


class LocalServer:
    """Subclasses build their `web.Application` in `start` and hand it to `_listen`."""

    port = 0
    _runner: web.AppRunner | None = None

    async def start(self) -> Self:
        raise NotImplementedError

    async def _listen(self, app: web.Application, **runner_options: Any) -> None:
        self._runner = web.AppRunner(app, **runner_options)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", 0).start()
        self.port = self._runner.addresses[0][1]

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> Self:
        return await self.start()

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()
