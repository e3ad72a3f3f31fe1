"""PTB's HTTP layer on aiohttp instead of httpx: the Bot API calls were most of the bot's CPU.

PTB's default HTTPXRequest spent about 1.5 ms of CPU per Bot API call (httpx → httpcore → anyio,
and httpcore tries to import the absent `sniffio` several times per request); this one, on the
aiohttp the GPTs client already uses, about 0.2 ms. Only the transport changes: PTB's BaseRequest
still turns status codes and bodies into BadRequest / RetryAfter / Forbidden / … as before.

As HTTPXRequest: `connect` bounds opening a connection and `pool` waiting for a free one (aiohttp's
`connect` timeout covers both, so it gets their sum), `read` each read of the response, and proxies
come from HTTP(S)_PROXY / ALL_PROXY / NO_PROXY, read once (aiohttp's own `trust_env` would look
them up in a thread on every request). aiohttp has no write timeout: an upload that stalls waits
for the response under `read`, which for uploads is at least the write timeout.
"""

from __future__ import annotations

import asyncio
import base64
import functools
import json
import ssl
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any
from urllib.parse import unquote, urlsplit
from urllib.request import getproxies, proxy_bypass

import aiohttp
import httpx  # PTB depends on it; only for its SSL defaults
from telegram._utils.defaultvalue import DefaultValue
from telegram._utils.types import ODVInput
from telegram.error import NetworkError, TimedOut
from telegram.request import BaseRequest, RequestData

from bots.telegram_adapter.settings import NAME as PLATFORM
from core import metrics

MAX_METHOD_CHARS = 40  # the longest Bot API method names have about 35
_JSON = {"Content-Type": "application/json"}
_TimeoutKey = tuple[float | None, float | None, float | None, float | None, bool]


@dataclass(frozen=True, slots=True)
class _Defaults:
    """The timeouts used where a call passes PTB's DEFAULT_NONE."""

    read: float | None
    write: float | None
    connect: float | None
    pool: float | None
    media_write: float | None


class AiohttpRequest(BaseRequest):
    """A `telegram.request.BaseRequest` on one aiohttp ClientSession (opened by `initialize`).
    The arguments and their defaults are HTTPXRequest's."""

    __slots__ = ("_defaults", "_pool_size", "_proxies", "_refused", "_session", "_timeouts")

    def __init__(
        self,
        connection_pool_size: int = 256,
        read_timeout: float | None = 5.0,
        write_timeout: float | None = 5.0,
        connect_timeout: float | None = 5.0,
        pool_timeout: float | None = 1.0,
        media_write_timeout: float | None = 20.0,
        refused: asyncio.Event | None = None,
    ) -> None:
        # Set when the Bot API answers 401 Unauthorized: the token was revoked. PTB raises
        # InvalidToken then, but while polling it raises it inside its own task, where nobody
        # waits for it: the adapter watches this instead, or the bot would stay up, deaf.
        self._refused = refused
        self._pool_size = connection_pool_size
        self._defaults = _Defaults(
            read_timeout, write_timeout, connect_timeout, pool_timeout, media_write_timeout
        )
        self._session: aiohttp.ClientSession | None = None
        self._timeouts: dict[_TimeoutKey, aiohttp.ClientTimeout] = {}
        self._proxies: dict[str, dict[str, Any]] = {}  # origin → proxy arguments

    @property
    def read_timeout(self) -> float | None:
        return self._defaults.read

    async def initialize(self) -> None:
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(
                limit=self._pool_size, limit_per_host=0, ssl=_ssl_context()
            )
            self._session = aiohttp.ClientSession(
                connector=connector, headers={"User-Agent": self.USER_AGENT}
            )

    async def shutdown(self) -> None:
        if self._session is not None and not self._session.closed:
            await self._session.close()

    async def do_request(
        self,
        url: str,
        method: str,
        request_data: RequestData | None = None,
        read_timeout: ODVInput[float] = BaseRequest.DEFAULT_NONE,
        write_timeout: ODVInput[float] = BaseRequest.DEFAULT_NONE,
        connect_timeout: ODVInput[float] = BaseRequest.DEFAULT_NONE,
        pool_timeout: ODVInput[float] = BaseRequest.DEFAULT_NONE,
    ) -> tuple[int, bytes]:
        session = self._session
        if session is None or session.closed:
            raise RuntimeError("This AiohttpRequest is not initialized!")
        data: aiohttp.FormData | bytes | None = None
        headers = None
        files = request_data.multipart_data if request_data else None
        if request_data and files:
            data = aiohttp.FormData(request_data.json_parameters)
            for name, (filename, content, mimetype) in files.items():
                data.add_field(name, content, filename=filename, content_type=mimetype)
        elif request_data:
            # A JSON body, as the Bot API takes for every call without a file: one encoding
            # instead of PTB's form, which JSON-encodes each value (twice) and then URL-quotes.
            data, headers = json.dumps(request_data.parameters).encode(), _JSON
        timeout = self._timeout(
            read_timeout, write_timeout, connect_timeout, pool_timeout, upload=bool(files)
        )
        origin = url[: url.find("/", url.find("//") + 2)]  # Bot API URLs have a path
        proxy = self._proxies.get(origin)
        if proxy is None:
            proxy = self._proxy(origin)
        try:
            async with session.request(
                method, url, data=data, headers=headers, timeout=timeout, **proxy
            ) as response:
                metrics.platform_call(PLATFORM, _method(url), response.status)
                if response.status == HTTPStatus.UNAUTHORIZED and self._refused is not None:
                    self._refused.set()
                return response.status, await response.read()
        except TimeoutError as exc:  # aiohttp's ServerTimeoutError is one too
            raise TimedOut from exc
        except aiohttp.ClientError as exc:
            raise NetworkError(f"aiohttp.{exc.__class__.__name__}: {exc}") from exc

    def _timeout(
        self,
        read: ODVInput[float],
        write: ODVInput[float],
        connect: ODVInput[float],
        pool: ODVInput[float],
        *,
        upload: bool,
    ) -> aiohttp.ClientTimeout:
        """The ClientTimeout for these values (kept: there are only a few combinations)."""
        if isinstance(read, DefaultValue):
            read = self._defaults.read
        if isinstance(write, DefaultValue):
            write = self._defaults.media_write if upload else self._defaults.write
        if isinstance(connect, DefaultValue):
            connect = self._defaults.connect
        if isinstance(pool, DefaultValue):
            pool = self._defaults.pool
        key = (read, write, connect, pool, upload)
        timeout = self._timeouts.get(key)
        if timeout is None:
            if upload and read is not None:
                read = None if write is None else max(read, write)
            timeout = self._timeouts[key] = aiohttp.ClientTimeout(
                total=None,
                connect=None if connect is None or pool is None else connect + pool,
                sock_connect=connect,
                sock_read=read,
            )
        return timeout

    def _proxy(self, origin: str) -> dict[str, Any]:
        """The proxy arguments for an origin (scheme://host:port), from the environment."""
        parts = urlsplit(origin)
        proxies = getproxies()
        proxy = proxies.get(parts.scheme) or proxies.get("all")
        found: dict[str, Any] = {}
        if proxy and not proxy_bypass(parts.hostname or ""):
            url = urlsplit(proxy if "://" in proxy else f"http://{proxy}")
            found["proxy"] = url._replace(netloc=url.netloc.rpartition("@")[2]).geturl()
            if url.username is not None:
                user = f"{unquote(url.username)}:{unquote(url.password or '')}"
                auth = base64.b64encode(user.encode()).decode()
                found["proxy_headers"] = {"Proxy-Authorization": f"Basic {auth}"}
        self._proxies[origin] = found
        return found


def _method(url: str) -> str:
    """The Bot API method a URL calls (`.../bot<token>/sendMessage`): a metric label, so never
    anything else (a file's path, the token)."""
    method = url.rpartition("/")[2]
    return method if method.isalpha() and len(method) <= MAX_METHOD_CHARS else "other"


@functools.cache
def _ssl_context() -> ssl.SSLContext:
    """The certificates HTTPXRequest trusted (SSL_CERT_FILE / SSL_CERT_DIR, else certifi's)."""
    return httpx.create_ssl_context()
