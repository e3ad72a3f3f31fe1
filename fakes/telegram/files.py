"""Files people send the bot: photos and documents in updates, `getFile`, and downloads.

Mixed into `FakeTelegram`. `user_photo(chat, user, data, caption=...)` queues a message whose
`photo` is a PhotoSize array (a small thumbnail, then `data` itself as the largest, as Telegram
sends them); `user_document(chat, user, data, file_name, mime_type)` one with a `document`.
`user_album(chat, user, [data, ...], caption=...)` queues an album of photos as Telegram
delivers one: a message (and update) per photo, sharing a `media_group_id`, the caption on the
first.
`getFile` answers with a `file_path`, and `GET /file/bot<token>/<file_path>` serves the bytes,
as api.telegram.org does. `get_file_calls` and `downloads` count, per file id, how often the bot
asked for each (history sends some images again, fetched again).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

from aiohttp import web

from fakes.telegram.markdown import auto_entities
from fakes.telegram.protocol import UNAUTHORIZED, Fault, Refused, error_response

THUMBNAIL_BYTES = 64
FIRST_MEDIA_GROUP = 14_000_000_001


class FileApi:
    # From BotApi / FakeTelegram.
    token: str
    revoked: bool

    def _init_files(self) -> None:
        self.files: dict[str, bytes] = {}  # by file id
        self.get_file_calls: Counter[str] = Counter()
        self.downloads: Counter[str] = Counter()
        self._file_paths: dict[str, str] = {}  # file_path -> file id
        self._next_user_album = FIRST_MEDIA_GROUP

    def add_file(self, data: bytes, folder: str = "documents", suffix: str = "") -> str:
        """Store a file as Telegram would after an upload; returns its file id."""
        number = len(self.files)
        file_id = f"AgAC{number:04d}file{len(data)}"
        self.files[file_id] = data
        self._file_paths[f"{folder}/file_{number}{suffix}"] = file_id
        return file_id

    def _file(self, file_id: str) -> dict[str, Any]:
        data = self.files[file_id]
        return {"file_id": file_id, "file_unique_id": f"u{file_id}", "file_size": len(data)}

    def user_photo(
        self,
        chat: dict[str, Any],
        user: dict[str, Any],
        data: bytes,
        *,
        caption: str | None = None,
        size: tuple[int, int] = (1280, 960),
    ) -> dict[str, Any]:
        """A photo from `user`: its thumbnail and `data` as the largest size."""
        return self._user_file(chat, user, {"photo": self._photo_sizes(data, size)}, caption)

    def user_album(
        self,
        chat: dict[str, Any],
        user: dict[str, Any],
        photos: Sequence[bytes],
        *,
        caption: str | None = None,
    ) -> list[dict[str, Any]]:
        """An album of photos from `user`: one message each, the caption on the first."""
        group_id = str(self._next_user_album)
        self._next_user_album += 1
        return [
            self._user_file(
                chat,
                user,
                {"photo": self._photo_sizes(data), "media_group_id": group_id},
                caption if n == 0 else None,
            )
            for n, data in enumerate(photos)
        ]

    def _photo_sizes(
        self, data: bytes, size: tuple[int, int] = (1280, 960)
    ) -> list[dict[str, Any]]:
        thumbnail = self.add_file(data[:THUMBNAIL_BYTES], "photos", ".jpg")
        largest = self.add_file(data, "photos", ".jpg")
        width, height = size
        return [
            {**self._file(thumbnail), "width": 90, "height": 90 * height // width},
            {**self._file(largest), "width": width, "height": height},
        ]

    def user_document(
        self,
        chat: dict[str, Any],
        user: dict[str, Any],
        data: bytes,
        file_name: str,
        mime_type: str | None,
        *,
        caption: str | None = None,
    ) -> dict[str, Any]:
        """A file sent as a document (not compressed), with its name and type."""
        document = {**self._file(self.add_file(data)), "file_name": file_name}
        if mime_type is not None:
            document["mime_type"] = mime_type
        return self._user_file(chat, user, {"document": document}, caption)

    def _user_file(
        self,
        chat: dict[str, Any],
        user: dict[str, Any],
        fields: dict[str, Any],
        caption: str | None,
    ) -> dict[str, Any]:
        message: dict[str, Any] = self._new_message(chat, user, thread_id=None)  # type: ignore[attr-defined]
        message.update(fields)
        if caption:
            message["caption"] = caption
            entities = auto_entities(caption)
            if entities:
                message["caption_entities"] = entities
        self.push_update({"message": message})  # type: ignore[attr-defined]
        return message

    async def _api_getfile(self, params: dict[str, Any]) -> Any:
        file_id = str(params.get("file_id"))
        self.get_file_calls[file_id] += 1
        if file_id not in self.files:
            raise Refused(Fault(400, "Bad Request: invalid file_id"))
        path = next(path for path, known in self._file_paths.items() if known == file_id)
        return {**self._file(file_id), "file_path": path}

    async def _download(self, request: web.Request) -> web.Response:
        if request.match_info["token"] != self.token or self.revoked:
            return error_response(UNAUTHORIZED)
        file_id = self._file_paths.get(request.match_info["path"])
        if file_id is None:
            return web.Response(status=404, text="Not Found")
        self.downloads[file_id] += 1
        return web.Response(body=self.files[file_id], content_type="application/octet-stream")
