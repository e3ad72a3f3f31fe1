"""Which links in a GPT's answer may be clickable, on every platform.

Only `http(s)` links with a host and `mailto` links with an address: `tg://`, `javascript:`,
`file:`, `data:` and relative links stay visible as text but never become links, since a GPT's
answer (and what a user quoted into it) is not trusted.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

_UNSAFE_URL_CHARS = re.compile(r"[\s\x00-\x1f\x7f]")


def is_safe_url(url: str) -> bool:
    """Whether a link to `url` may be clickable: http(s) with a host, or mailto with an address."""
    if not url or _UNSAFE_URL_CHARS.search(url):
        return False
    try:
        parts = urlsplit(url)
    except ValueError:
        return False
    scheme = parts.scheme.lower()
    if scheme in ("http", "https"):
        return bool(parts.netloc)
    return scheme == "mailto" and bool(parts.path)
