"""Files people attach to Discord messages: the attachment objects in MESSAGE_CREATE and the
CDN that serves them.

Mixed into `FakeDiscord`. `attachment(data, filename, content_type)` stores a file and returns
the attachment object Discord sends (`id, filename, content_type, size, url, proxy_url`), its
`url` on this server (`/attachments/<id>/<filename>`, as cdn.discordapp.com lays them out);
pass it to `user_says(..., attachments=[...])`. `cdn_fetches` counts the downloads per
attachment id.
"""

from __future__ import annotations

import functools
from collections import Counter
from typing import Any

from aiohttp import web


class Attachments:
    # From DiscordState.
    port: int

    def snowflake(self, *, shard: tuple[int, int] | None = None) -> int:
        raise NotImplementedError

    @functools.cached_property
    def cdn(self) -> dict[str, bytes]:
        return {}

    @functools.cached_property
    def cdn_fetches(self) -> Counter[str]:
        return Counter()

    def attachment(self, data: bytes, filename: str, content_type: str | None) -> dict[str, Any]:
        attachment_id = str(self.snowflake())
        self.cdn[attachment_id] = data
        url = f"http://127.0.0.1:{self.port}/attachments/{attachment_id}/{filename}"
        found: dict[str, Any] = {
            "id": attachment_id,
            "filename": filename,
            "size": len(data),
            "url": url,
            "proxy_url": url,
        }
        if content_type is not None:
            found["content_type"] = content_type
        return found

    async def _cdn_get(self, request: web.Request) -> web.Response:
        attachment_id = request.match_info["attachment_id"]
        data = self.cdn.get(attachment_id)
        if data is None:
            return web.Response(status=404, text="Not Found")
        self.cdn_fetches[attachment_id] += 1
        return web.Response(body=data, content_type="application/octet-stream")
