"""The operations listener of `gptsbot run` (`[metrics] listen`): an aiohttp server in the bot's
own event loop.

    GET /metrics   the Prometheus text format (`core.metrics.REGISTRY`)
    GET /healthz   200 while the process runs and its event loop answers
    GET /readyz    200 when every configured platform is connected (its adapter's `ready`) and
                   the database answers a read within DB_PING_TIMEOUT_S; else 503 with a short
                   JSON body naming what is not ready: {"ready": false, "not_ready": {...}}
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Sequence

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from core.config import listen_address
from core.errors import ConfigError
from core.metrics import REGISTRY
from core.platform import Adapter
from storage import Repository

logger = logging.getLogger(__name__)

DB_PING_TIMEOUT_S = 1.0
# A reason read from an exception is cut to this length: the body stays short.
MAX_REASON_CHARS = 300


async def not_ready(adapters: Sequence[Adapter], repo: Repository) -> dict[str, str]:
    """What keeps the bot from taking turns, by name ("telegram", "database"); empty: ready."""
    missing = {a.name: "not connected" for a in adapters if not a.ready.is_set()}
    try:
        async with asyncio.timeout(DB_PING_TIMEOUT_S):
            await repo.ping()
    except TimeoutError:
        missing["database"] = f"no answer within {DB_PING_TIMEOUT_S:g} s"
    except Exception as exc:
        # The driver's words ("unable to open database file"), never parameters: none are sent.
        reason = f"{type(exc).__name__}: {getattr(exc, 'orig', None) or exc}"
        missing["database"] = reason[:MAX_REASON_CHARS]
    return missing


def build_app(adapters: Sequence[Adapter], repo: Repository) -> web.Application:
    async def metrics(request: web.Request) -> web.Response:
        return web.Response(
            body=generate_latest(REGISTRY), headers={"Content-Type": CONTENT_TYPE_LATEST}
        )

    async def healthz(request: web.Request) -> web.Response:
        return web.json_response({"alive": True})

    async def readyz(request: web.Request) -> web.Response:
        missing = await not_ready(adapters, repo)
        if missing:
            return web.json_response({"ready": False, "not_ready": missing}, status=503)
        return web.json_response({"ready": True})

    app = web.Application()
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    return app


@contextlib.asynccontextmanager
async def serve_ops(
    listen: str, adapters: Sequence[Adapter], repo: Repository
) -> AsyncIterator[str | None]:
    """Serve /metrics, /healthz and /readyz on `listen` (host:port; port 0 picks a free one)
    while inside; yields the address it listens on (None when `listen` is empty). An address
    that cannot be listened on raises ConfigError naming `metrics.listen`."""
    address = listen_address(listen) if listen else None
    if address is None:
        yield None
        return
    # No access log: probes every few seconds would drown the turn lines.
    runner = web.AppRunner(build_app(adapters, repo), access_log=None)
    await runner.setup()
    try:
        try:
            await web.TCPSite(runner, *address).start()
        except OSError as exc:
            raise ConfigError(
                "metrics.listen", f"cannot listen on {listen}: {exc.strerror}"
            ) from exc
        host, port = runner.addresses[0][:2]
        where = f"http://{f'[{host}]' if ':' in host else host}:{port}"
        logger.info("metrics and health at %s (/metrics, /healthz, /readyz)", where)
        yield where
    finally:
        await runner.cleanup()
