"""Files the bot uploads with a message, as discord.py sends them: multipart/form-data with the
message's JSON in `payload_json` and each file as `files[n]`, described by the payload's
`attachments` entry whose `id` is n. Kept by the fake with their bytes (`FakeMessage.uploads`)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from aiohttp import web

MAX_FILES = 10  # per message
MAX_FILE_BYTES = 10 * 1024 * 1024  # a server without boosts
MAX_REQUEST_BYTES = 110 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class Upload:
    id: int
    filename: str
    data: bytes
    content_type: str
    description: str | None


# A request's files, for the route that stores its message.
UPLOADS = web.RequestKey("uploads", list[Upload])


async def read_multipart(request: web.Request) -> tuple[Any, list[Upload]]:
    """The payload and the files of a multipart request."""
    form = await request.post()
    payload = form.get("payload_json")
    body = json.loads(payload) if isinstance(payload, str) else {}
    described = {str(a.get("id")): a for a in body.get("attachments") or []}
    uploads: list[Upload] = []
    for name, value in form.items():
        if not isinstance(value, web.FileField):
            continue
        index = name.removeprefix("files[").removesuffix("]")
        entry = described.get(index, {})
        uploads.append(
            Upload(
                int(index) if index.isdigit() else len(uploads),
                str(entry.get("filename") or value.filename),
                value.file.read(),
                value.content_type,
                entry.get("description"),
            )
        )
    return body, uploads


def uploads_problem(uploads: list[Upload]) -> str | None:
    """What Discord would refuse in these files (an Invalid Form Body detail), if anything."""
    if len(uploads) > MAX_FILES:
        return f"files: Must be {MAX_FILES} or fewer in length."
    if any(len(upload.data) > MAX_FILE_BYTES for upload in uploads):
        return "files: File too large."  # Discord answers 413 Request entity too large
    return None


def attachment_payload(upload: Upload, channel_id: int, attachment_id: int) -> dict[str, Any]:
    url = f"https://cdn.discordapp.com/attachments/{channel_id}/{attachment_id}/{upload.filename}"
    payload: dict[str, Any] = {
        "id": str(attachment_id),
        "filename": upload.filename,
        "size": len(upload.data),
        "url": url,
        "proxy_url": url.replace("cdn.discordapp.com", "media.discordapp.net"),
        "content_type": upload.content_type,
    }
    if upload.description:
        payload["description"] = upload.description
    return payload
