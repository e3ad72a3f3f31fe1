"""Images out: the `![alt](https://...)` links of a final answer, downloaded to be uploaded.

GPTs that draw (DALL·E, code interpreter plots) answer with Markdown image links to relay
files that expire within hours and that platforms often cannot fetch themselves, so the bot
downloads each one and uploads the bytes. Only http(s) links outside code count (a link in a
``` fence or a `code span` is code). A download is bounded: `max_bytes` read as a stream (a
missing or lying Content-Length changes nothing), a PNG, JPEG, GIF or WebP Content-Type,
`timeout_s` in all, redirects only to http(s), and by default only to public addresses, checked
on every hop (core.image_hosts). A link that fails keeps its place in the text; the answer gets
one short line saying which image could not be shown and why (`notes`).
"""

from __future__ import annotations

import asyncio
import logging
import mimetypes
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal
from urllib.parse import urlsplit

import aiohttp
from aiohttp.abc import AbstractResolver
from yarl import URL

from core import i18n
from core.image_hosts import PrivateAddress, PublicAddressesOnly, literal_host_is_private
from core.platform import Image, PlatformRefused, SendsImages

if TYPE_CHECKING:
    from core.streaming import StreamingReply

logger = logging.getLogger(__name__)

MAX_IMAGE_BYTES = 10 * 1024 * 1024  # Telegram's limit for a photo; Discord's for a free upload
DOWNLOAD_TIMEOUT_S = 20.0
MAX_REDIRECTS = 3
MAX_IMAGES = 20  # per answer: more links than this stay links
CHUNK_BYTES = 64 * 1024
# Platforms show these as pictures; an SVG is a document (and can carry scripts).
_SHOWN_TYPES = ("image/png", "image/jpeg", "image/gif", "image/webp")
_REDIRECTS = (301, 302, 303, 307, 308)

_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")
_CODE_SPAN = re.compile(r"(`+)(?!`).*?(?<!`)\1(?!`)")
_IMAGE_LINK = re.compile(
    r"!\[(?P<alt>[^\]\n]*)\]\(\s*<?(?P<url>https?://[^\s)<>]+)>?"
    r"(?:\s+(?:\"[^\"\n]*\"|'[^'\n]*'))?\s*\)",
    re.IGNORECASE,
)

Failure = Literal["unreachable", "too_large", "not_image", "private_address"]


@dataclass(frozen=True, slots=True)
class ImageLink:
    """The `number`-th image link of an answer (from 1), as the answer wrote it."""

    number: int
    alt: str
    url: str


class ImageNotShown(Exception):
    """An image link that could not become an image, and why."""

    def __init__(self, link: ImageLink, reason: Failure, host: str | None = None) -> None:
        super().__init__(reason)
        self.link = link
        self.reason = reason
        self.host = host or _host(link.url)  # the host refused: a redirect's, if it was one


def image_links(text: str, limit: int = MAX_IMAGES) -> list[ImageLink]:
    """The http(s) image links of `text` outside code, in order, at most `limit`."""
    masked = _mask_code(text)
    links: list[ImageLink] = []
    for match in _IMAGE_LINK.finditer(masked):
        if len(links) == limit:
            break
        start, end = match.span()
        original = _IMAGE_LINK.fullmatch(text, start, end)
        if original is None:
            continue  # code with a "]" in its alt text: rare, left a link
        links.append(ImageLink(len(links) + 1, original["alt"].strip(), original["url"]))
    return links


def _mask_code(text: str) -> str:
    """`text` with fenced blocks and code spans blanked out, every other character in place."""
    lines = text.splitlines(keepends=True)
    opener = ""
    for index, line in enumerate(lines):
        fence = _FENCE.match(line)
        if opener:
            closes = fence and fence[1][0] == opener[0] and len(fence[1]) >= len(opener)
            if closes and not line.strip().lstrip(opener[0]):
                opener = ""
            lines[index] = _blank(line)
        elif fence:
            opener = fence[1]
            lines[index] = _blank(line)
        else:
            lines[index] = _CODE_SPAN.sub(lambda m: " " * len(m[0]), line)
    return "".join(lines)


def _blank(line: str) -> str:
    return " " * len(line.rstrip("\n")) + line[len(line.rstrip("\n")) :]


def note(failure: ImageNotShown, language: i18n.Language) -> str:
    """The line the answer gets for an image link that stayed a link."""
    number = failure.link.number
    if failure.reason == "too_large":
        return i18n.IMAGE_TOO_LARGE(language, number=number, megabytes=MAX_IMAGE_BYTES >> 20)
    if failure.reason == "not_image":
        return i18n.IMAGE_NOT_AN_IMAGE(language, number=number)
    if failure.reason == "private_address":
        return i18n.IMAGE_PRIVATE_ADDRESS(language, number=number)
    return i18n.IMAGE_UNREACHABLE(language, number=number)


def notes(failures: Sequence[ImageNotShown], language: i18n.Language) -> str:
    return "\n".join(note(failure, language) for failure in failures)


def _host(url: str) -> str:
    """What a log line may say of a link: its host (the query carries signatures)."""
    return urlsplit(url).hostname or "?"


def _file_name(link: ImageLink, mime_type: str) -> str:
    extension = mimetypes.guess_extension(mime_type) or "." + mime_type.partition("/")[2]
    return f"image-{link.number}{extension}"


@dataclass(frozen=True, slots=True)
class DownloadLimits:
    """How much of an image link the bot reads, and for how long, before giving up on it."""

    max_bytes: int = MAX_IMAGE_BYTES
    timeout_s: float = DOWNLOAD_TIMEOUT_S


class ImageFetcher:
    """Downloads an answer's images over one shared aiohttp session (opened on first use).

    `private_hosts` allows links to loopback and private-network addresses (`[bot]
    allow_private_image_hosts`). `resolver` turns names into addresses, closed with the fetcher;
    by default aiohttp's, keeping only public addresses unless `private_hosts`."""

    def __init__(
        self,
        *,
        private_hosts: bool = False,
        resolver: AbstractResolver | None = None,
        limits: DownloadLimits = DownloadLimits(),
    ) -> None:
        self._timeout = aiohttp.ClientTimeout(total=limits.timeout_s)
        self.max_bytes = limits.max_bytes
        self.private_hosts = private_hosts
        self._resolver = resolver
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> ImageFetcher:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
        if self._resolver is not None:
            await self._resolver.close()
            self._resolver = None

    def _open(self) -> aiohttp.ClientSession:
        if self._session is None:
            if self._resolver is None:  # made here: aiohttp's resolvers want a running loop
                self._resolver = aiohttp.DefaultResolver()
                if not self.private_hosts:
                    self._resolver = PublicAddressesOnly(self._resolver)
            connector = aiohttp.TCPConnector(resolver=self._resolver)
            self._session = aiohttp.ClientSession(connector=connector, timeout=self._timeout)
        return self._session

    async def fetch_all(
        self, links: Sequence[ImageLink]
    ) -> tuple[list[Image], list[ImageNotShown]]:
        """Every link downloaded at once: the images, in order, and the links that failed."""
        results = await asyncio.gather(
            *(self.fetch(link) for link in links), return_exceptions=True
        )
        images: list[Image] = []
        failures: list[ImageNotShown] = []
        for result in results:
            if isinstance(result, ImageNotShown):
                failures.append(result)
            elif isinstance(result, BaseException):
                raise result
            else:
                images.append(result)
        return images, failures

    async def fetch(self, link: ImageLink) -> Image:
        """The image behind `link`; raises `ImageNotShown` saying why not."""
        try:
            return await self._download(link)
        except ImageNotShown as exc:
            logger.info("image %d not shown (%s): %s", link.number, exc.host, exc.reason)
            raise
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            logger.info(
                "image %d not shown (%s): unreachable, %s",
                link.number,
                _host(link.url),
                type(exc).__name__,
            )
            raise ImageNotShown(link, "unreachable") from None

    async def _download(self, link: ImageLink) -> Image:
        """Redirects are followed here, not by aiohttp, to check each hop's literal host."""
        session = self._open()
        url = URL(link.url)
        for _ in range(MAX_REDIRECTS + 1):
            if url.scheme not in ("http", "https"):
                raise ImageNotShown(link, "unreachable")
            if not self.private_hosts and literal_host_is_private(url.host):
                raise ImageNotShown(link, "private_address", url.host)
            try:
                async with session.get(url, allow_redirects=False) as response:
                    location = response.headers.get("Location")
                    if response.status in _REDIRECTS and location:
                        url = response.url.join(URL(location))
                        continue
                    return await self._read(link, response)
            except aiohttp.ClientConnectorError as exc:
                if isinstance(exc.os_error, PrivateAddress):  # a name the resolver refused
                    raise ImageNotShown(link, "private_address", exc.host) from None
                raise
        raise ImageNotShown(link, "unreachable")  # too many redirects

    async def _read(self, link: ImageLink, response: aiohttp.ClientResponse) -> Image:
        if response.status != 200:
            raise ImageNotShown(link, "unreachable")
        mime_type = response.content_type.lower()
        if mime_type not in _SHOWN_TYPES:
            raise ImageNotShown(link, "not_image")
        if (response.content_length or 0) > self.max_bytes:
            raise ImageNotShown(link, "too_large")
        data = bytearray()
        async for chunk in response.content.iter_chunked(CHUNK_BYTES):
            data += chunk
            if len(data) > self.max_bytes:
                response.close()  # the rest is never read: drop the connection
                raise ImageNotShown(link, "too_large")
        return Image(bytes(data), mime_type, _file_name(link, mime_type), link.alt)


@dataclass(frozen=True, slots=True)
class AnswerImages:
    """What an answer's image links gave: the images to upload after it, the note lines for
    the links that stay links, and the cancellation (a shutdown) that cut the downloads short:
    the answer is still shown and stored, then the turn re-raises it."""

    images: list[Image] = field(default_factory=list)
    notes: str = ""
    cancelled: asyncio.CancelledError | None = None


async def images_for(
    fetcher: ImageFetcher, channel: object, text: str, language: i18n.Language
) -> AnswerImages:
    """The images of an answer's `text`. Nothing for a channel that cannot show images (the
    terminal), and never an exception: the answer matters more than its pictures."""
    links = image_links(text) if isinstance(channel, SendsImages) else []
    if not links:
        return AnswerImages()
    try:
        images, failures = await fetcher.fetch_all(links)
    except asyncio.CancelledError as exc:
        return AnswerImages(cancelled=exc)
    except Exception:
        logger.exception("downloading an answer's images failed")
        return AnswerImages()
    return AnswerImages(images, notes(failures, language))


async def upload(reply: StreamingReply, images: Sequence[Image], language: i18n.Language) -> None:
    """Post `images` under the answer; a platform that refuses them gets one line instead."""
    if not images:
        return
    try:
        await reply.send_images(images)
    except PlatformRefused:
        raise
    except Exception as exc:
        logger.warning("%d image(s) of an answer not sent: %s", len(images), type(exc).__name__)
        try:
            await reply.channel.send(i18n.IMAGES_NOT_SENT(language), final=True)
        except Exception as send_error:
            logger.warning("could not say so: %s", type(send_error).__name__)
