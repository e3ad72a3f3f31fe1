"""Images out, in the core: which links of an answer are images, and the downloader's limits,
against a local image host (fakes/images.py)."""

from __future__ import annotations

import io
import logging

import pytest

from bots.console.chat import TerminalChannel
from core import i18n
from core.images import (
    AnswerImages,
    ImageFetcher,
    ImageLink,
    ImageNotShown,
    image_links,
    images_for,
    notes,
)
from fakes.images import FakeImageHost, png


def urls(text: str) -> list[str]:
    return [link.url for link in image_links(text)]


def test_image_links_with_titles_several_per_line_and_numbered() -> None:
    text = (
        "Here: ![a cat](https://files.example/cat.png) and ![dog](http://x.example/d.webp "
        '"a title") and ![](https://x.example/e?se=1&sig=abc)\n'
        "![spaced]( <https://x.example/f.png> 'single' )"
    )
    links = image_links(text)
    assert [(link.number, link.alt) for link in links] == [
        (1, "a cat"),
        (2, "dog"),
        (3, ""),
        (4, "spaced"),
    ]
    assert [link.url for link in links] == [
        "https://files.example/cat.png",
        "http://x.example/d.webp",
        "https://x.example/e?se=1&sig=abc",
        "https://x.example/f.png",
    ]


def test_only_http_links_outside_code_are_images() -> None:
    text = (
        "![plain link](https://x.example/1.png)\n"
        "[not an image](https://x.example/2.png)\n"
        "![sandbox](sandbox:/mnt/data/plot.png) ![js](javascript:alert(1))\n"
        "`![span](https://x.example/3.png)` and ``![two](https://x.example/4.png)``\n"
        "```markdown\n![fenced](https://x.example/5.png)\n```\n"
        "~~~~\n![tilde](https://x.example/6.png)\n```\nstill code\n~~~~\n"
        "![after](https://x.example/7.png)"
    )
    assert urls(text) == ["https://x.example/1.png", "https://x.example/7.png"]


def test_an_unclosed_fence_keeps_the_rest_code_and_the_number_of_links_is_bounded() -> None:
    assert urls("```\n![x](https://x.example/1.png)") == []
    assert urls("![a `]` b](https://x.example/1.png) ![c](https://x.example/2.png)") == [
        "https://x.example/2.png"
    ]
    many = " ".join(f"![{n}](https://x.example/{n}.png)" for n in range(30))
    assert len(image_links(many, limit=20)) == 20


@pytest.mark.asyncio
async def test_fetching_returns_the_bytes_the_host_served(host: FakeImageHost) -> None:
    links = [
        ImageLink(1, "red", host.url("/png/red?sig=secret")),
        ImageLink(2, "blue", host.url("/png/blue")),
    ]
    async with ImageFetcher() as fetcher:
        images, failures = await fetcher.fetch_all(links)
    assert failures == []
    assert [image.data for image in images] == [png("red"), png("blue")]
    assert [(i.mime_type, i.file_name, i.alt) for i in images] == [
        ("image/png", "image-1.png", "red"),
        ("image/png", "image-2.png", "blue"),
    ]


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("path", "reason"),
    [
        ("/missing", "unreachable"),
        ("/page", "not_image"),
        ("/huge", "too_large"),  # chunked: no Content-Length to trust
        ("/huge-declared", "too_large"),
        ("/redirect?to=file:///etc/passwd", "unreachable"),
    ],
)
async def test_links_that_cannot_become_images_say_why(
    host: FakeImageHost, path: str, reason: str, caplog: pytest.LogCaptureFixture
) -> None:
    link = ImageLink(2, "x", host.url(path) + ("&sig=SECRET" if "?" in path else "?sig=SECRET"))
    caplog.set_level(logging.INFO, "core.images")
    async with ImageFetcher() as fetcher:
        with pytest.raises(ImageNotShown) as refused:
            await fetcher.fetch(link)
    assert refused.value.reason == reason
    (line,) = [r.getMessage() for r in caplog.records]
    assert "SECRET" not in line and "127.0.0.1" in line and reason in line


@pytest.mark.asyncio
async def test_the_cap_and_the_timeout_hold_for_every_download(host: FakeImageHost) -> None:
    async with ImageFetcher(max_bytes=1000, timeout_s=0.3) as fetcher:
        images, failures = await fetcher.fetch_all(
            [
                ImageLink(1, "", host.url("/png/small")),
                ImageLink(2, "", host.url("/huge")),
                ImageLink(3, "", host.url("/slow")),
            ]
        )
    assert [image.data for image in images] == [png("small")]
    assert [(f.link.number, f.reason) for f in failures] == [(2, "too_large"), (3, "unreachable")]


def test_notes_name_each_image_and_why() -> None:
    link = ImageLink(2, "x", "https://x.example/2.png")
    failures = [ImageNotShown(link, "unreachable"), ImageNotShown(link, "too_large")]
    assert notes(failures, "en").splitlines() == [
        i18n.IMAGE_UNREACHABLE("en", number=2),
        i18n.IMAGE_TOO_LARGE("en", number=2, megabytes=10),
    ]
    assert "第 2 张图片" in notes(failures[:1], "zh")


@pytest.mark.asyncio
async def test_the_terminal_cannot_show_images_so_nothing_is_downloaded(
    host: FakeImageHost,
) -> None:
    terminal = TerminalChannel(io.StringIO())
    text = f"![cat]({host.url('/png/cat')}) and ![gone]({host.url('/missing')})"
    async with ImageFetcher() as fetcher:
        assert await images_for(fetcher, terminal, text, "en") == AnswerImages()
    assert host.requests == []
