"""GPT names: what people paste (an id, a model name, a chatgpt.com link) → the GPT id → the model.

Ids seen in the wild: `g-` + 9 letters/digits (case-sensitive, e.g. `g-B3hgivKK9`), `g-` + 32
lowercase hex, and projects `g-p-` + 32 hex. A link's last path part is `<id>-<slug>` and the slug
has hyphens of its own, so the id is cut by its shape, never at the first hyphen.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

from core.errors import BadGptName

_ID = r"g-p-[0-9a-f]{32}|g-[0-9a-f]{32}|g-[A-Za-z0-9]{9}"
_BARE_ID = re.compile(rf"(?:{_ID})")
_MODEL = re.compile(rf"gpt-4o?-gizmo-(?P<id>{_ID})")
# The id, then the end of the path part or a hyphen that starts the slug.
_ID_THEN_SLUG = re.compile(rf"(?P<id>{_ID})(?:-[^/]*)?")
_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_HOSTS = {"chatgpt.com", "www.chatgpt.com", "chat.openai.com"}
GPT_URL = "https://chatgpt.com/g/{id}"


def parse_gpt_id(text: str) -> str:
    """The GPT id in `text`, or `BadGptName` whose message shows the accepted forms."""
    candidate = text.strip().removeprefix("<").removesuffix(">")
    if _BARE_ID.fullmatch(candidate):
        return candidate
    if model := _MODEL.fullmatch(candidate):
        return model["id"]
    if gpt_id := _id_from_url(candidate):
        return gpt_id
    raise BadGptName(text)


def _id_from_url(text: str) -> str | None:
    if any(c.isspace() for c in text):
        return None
    if not text.lower().startswith(("http://", "https://")):
        text = "https://" + text
    parts = urlsplit(text)
    if (parts.hostname or "") not in _HOSTS or parts.port or parts.username:
        return None
    path = parts.path.rstrip("/").split("/")[1:]  # "/g/<id>-<slug>/c/<uuid>" → ["g", ...]
    if len(path) < 2 or path[0] != "g":
        return None
    tail = path[2:]
    if (
        tail
        and tail != ["project"]
        and not (len(tail) == 2 and tail[0] == "c" and _UUID.fullmatch(tail[1]))
    ):
        return None
    match = _ID_THEN_SLUG.fullmatch(path[1])
    return match["id"] if match else None


def model_name(template: str, gpt_id: str) -> str:
    """The model sent upstream, e.g. `gpt-4-gizmo-{id}` → `gpt-4-gizmo-g-B3hgivKK9`."""
    return template.format(id=gpt_id)


def gpt_url(gpt_id: str) -> str:
    return GPT_URL.format(id=gpt_id)
