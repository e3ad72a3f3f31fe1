"""Counting Discord's REST calls for `gptsbot_platform_calls_total`: an aiohttp trace on
discord.py's HTTP session (`Client(http_trace=...)`), labelled with the route's template."""

from __future__ import annotations

import re
from types import SimpleNamespace

import aiohttp
import yarl

from bots.discord_adapter.settings import NAME as PLATFORM
from core import metrics

# A path word of Discord's API (channels, messages, @original...); anything else is a value.
_WORD = re.compile(r"[a-z@_-]{1,32}")
_API_PREFIX = re.compile(r"/api(/v\d+)?")
# In these routes the segment after the id is a token: it must never become a label.
_TOKEN_AFTER = ("webhooks", "interactions")
_SWITCHING_PROTOCOLS = 101  # the gateway's websocket, not a REST call


_DIGITS = re.compile(r"\d+")
_KNOWN_ROUTES_MAX = 256
# Route labels by the call's method and path with its numbers zeroed: calls that differ only in
# their ids (all of an answer's) share one. Not for the routes with a token in their path.
_known_routes: dict[tuple[str, str], str] = {}


def route(method: str, url: yarl.URL) -> str:
    """`POST /channels/{id}/messages`: the call's method and path with every id and token
    replaced, so the label set stays small and names no chat."""
    path = url.path
    if any(word in path for word in _TOKEN_AFTER):
        return _route(method, path)
    key = (method, _DIGITS.sub("0", path))  # a word has no digit: the label is the same
    label = _known_routes.get(key)
    if label is None:
        if len(_known_routes) >= _KNOWN_ROUTES_MAX:
            _known_routes.clear()
        label = _known_routes[key] = _route(method, path)
    return label


def _route(method: str, path: str) -> str:
    path = _API_PREFIX.sub("", path, count=1) if path.startswith("/api") else path
    shown: list[str] = []
    for segment in (s for s in path.split("/") if s):
        if len(shown) >= 2 and shown[-2] in _TOKEN_AFTER and shown[-1] == "{id}":
            shown.append("{token}")
        else:
            shown.append(segment if _WORD.fullmatch(segment) else "{id}")
    return f"{method} /{'/'.join(shown)}"


def call_trace() -> aiohttp.TraceConfig:
    """A trace that counts each REST call Discord answered, and its 429s."""

    async def on_request_end(
        session: aiohttp.ClientSession,
        context: SimpleNamespace,
        params: aiohttp.TraceRequestEndParams,
    ) -> None:
        status = params.response.status
        if status != _SWITCHING_PROTOCOLS:
            metrics.platform_call(PLATFORM, route(params.method, params.url), status)

    trace = aiohttp.TraceConfig()
    trace.on_request_end.append(on_request_end)
    return trace
