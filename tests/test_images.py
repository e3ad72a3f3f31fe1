"""Images out, in the core: which links of an answer are images, and the downloader's limits,
against a local image host (fakes/images.py)."""

from __future__ import annotations

import io
import logging
import socket
from typing import Any

import pytest
from aiohttp.abc import AbstractResolver, ResolveResult

from bots.console.chat import TerminalChannel
from core import i18n
from core.image_hosts import PrivateAddress, PublicAddressesOnly, is_public
from core.images import (
    AnswerImages,
    DownloadLimits,
    ImageFetcher,
    ImageLink,
    ImageNotShown,
    image_links,
    images_for,
    notes,
)
from fakes.images import FakeImageHost, png


def local_fetcher(**options: Any) -> ImageFetcher:
    """A fetcher allowed to reach the image host, which is on 127.0.0.1."""
    return ImageFetcher(private_hosts=True, **options)


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
    async with local_fetcher() as fetcher:
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
    async with local_fetcher() as fetcher:
        with pytest.raises(ImageNotShown) as refused:
            await fetcher.fetch(link)
    assert refused.value.reason == reason
    (line,) = [r.getMessage() for r in caplog.records]
    assert "SECRET" not in line and "127.0.0.1" in line and reason in line


@pytest.mark.asyncio
async def test_the_cap_and_the_timeout_hold_for_every_download(host: FakeImageHost) -> None:
    async with local_fetcher(limits=DownloadLimits(max_bytes=1000, timeout_s=0.3)) as fetcher:
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
    async with local_fetcher() as fetcher:
        assert await images_for(fetcher, terminal, text, "en") == AnswerImages()
    assert host.requests == []


class StaticResolver(AbstractResolver):
    """Names to addresses as DNS would answer them, without DNS (the tests have no internet)."""

    def __init__(self, names: dict[str, str | list[str]]) -> None:
        self.names = names

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        if host not in self.names:
            raise OSError(f"{host} not found")
        addresses = self.names[host]
        return [
            {"hostname": host, "host": address, "port": port, "proto": 0,
             "family": socket.AF_INET6 if ":" in address else socket.AF_INET,
             "flags": socket.AI_NUMERICHOST}
            for address in ([addresses] if isinstance(addresses, str) else addresses)
        ]  # fmt: skip

    async def close(self) -> None:
        pass


class PublicRelay(AbstractResolver):
    """`relay.example` stands for a public host (DNS would give it a public address; here it is
    the local image host), every other name goes through the real check."""

    def __init__(self, names: dict[str, str | list[str]]) -> None:
        self.relay = StaticResolver({"relay.example": "127.0.0.1"})
        self.others = PublicAddressesOnly(StaticResolver(names))

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        resolver = self.relay if host == "relay.example" else self.others
        return await resolver.resolve(host, port, family)

    async def close(self) -> None:
        pass


@pytest.mark.parametrize(
    "address",
    ["127.0.0.1", "10.1.2.3", "172.16.0.1", "192.168.1.1", "169.254.169.254", "100.64.0.1",
     "0.0.0.0", "224.0.0.1", "240.0.0.1", "255.255.255.255", "198.18.0.1", "::1", "::",
     "fe80::1%eth0", "fc00::1", "fd12:3456::1", "fec0::1", "ff02::1", "ff0e::1",
     "::ffff:127.0.0.1", "::ffff:10.0.0.1", "::ffff:169.254.169.254"],
)  # fmt: skip
def test_private_addresses_of_both_families_are_not_public(address: str) -> None:
    assert not is_public(address)


@pytest.mark.parametrize(
    "address", ["93.184.216.34", "8.8.8.8", "2606:4700::1111", "::ffff:8.8.8.8"]
)
def test_internet_addresses_are_public(address: str) -> None:
    assert is_public(address)


def private_links(host: FakeImageHost) -> list[str]:
    """Links to the image host, or to other private addresses, each written another way."""
    port = host.port
    return [
        host.url("/png/a?sig=SECRET"),
        f"http://localhost:{port}/png/a?sig=SECRET",
        f"http://images.example:{port}/png/a?sig=SECRET",  # resolves to 127.0.0.1
        f"http://[::1]:{port}/png/a?sig=SECRET",
        f"http://[::ffff:127.0.0.1]:{port}/png/a?sig=SECRET",
        "http://169.254.169.254/latest/meta-data/?sig=SECRET",
        "https://10.0.0.1/a.png?sig=SECRET",
        f"http://relay.example:{port}/redirect?to=http://127.0.0.1:{port}/png/a",
        f"http://relay.example:{port}/redirect?to=http://[::1]:{port}/png/a",
        f"http://relay.example:{port}/redirect?to=http://images.example:{port}/png/a",
    ]


@pytest.mark.asyncio
async def test_links_to_private_addresses_are_refused_on_every_hop_by_default(
    host: FakeImageHost, caplog: pytest.LogCaptureFixture
) -> None:
    links = [ImageLink(n, "", url) for n, url in enumerate(private_links(host), 1)]
    caplog.set_level(logging.INFO, "core.images")
    names: dict[str, str | list[str]] = {
        "images.example": ["127.0.0.1", "10.0.0.7"],
        "localhost": ["127.0.0.1", "::1"],
    }
    async with ImageFetcher(resolver=PublicRelay(names)) as fetcher:
        images, failures = await fetcher.fetch_all(links)
    assert images == []
    assert [(f.link.number, f.reason) for f in failures] == [
        (n, "private_address") for n in range(1, len(links) + 1)
    ]
    # Only the public relay was asked, for its redirects; nothing private was.
    assert all(path.startswith("/redirect") for path in host.requests)
    assert len(host.requests) == 3
    lines = [record.getMessage() for record in caplog.records]
    assert len(lines) == len(links) and not any("SECRET" in line for line in lines)
    assert "image 8 not shown (127.0.0.1): private_address" in lines
    assert "image 10 not shown (images.example): private_address" in lines
    assert notes(failures[:1], "en") == (
        "(image 1 was not loaded: its address is on a private network)"
    )
    assert "第 1 张图片" in notes(failures[:1], "zh")


@pytest.mark.asyncio
async def test_localhost_is_refused_as_the_system_resolves_it(host: FakeImageHost) -> None:
    link = ImageLink(1, "", f"http://localhost:{host.port}/png/a")
    async with ImageFetcher() as fetcher:
        with pytest.raises(ImageNotShown) as refused:
            await fetcher.fetch(link)
    assert (refused.value.reason, refused.value.host) == ("private_address", "localhost")
    assert host.requests == []


@pytest.mark.asyncio
async def test_allowed_private_hosts_are_downloaded(host: FakeImageHost) -> None:
    port = host.port
    links = [
        ImageLink(1, "", host.url("/png/a")),
        ImageLink(2, "", f"http://images.example:{port}/png/b"),
        ImageLink(3, "", host.url(f"/redirect?to=http://images.example:{port}/png/c")),
    ]
    resolver = StaticResolver({"images.example": "127.0.0.1"})
    async with ImageFetcher(private_hosts=True, resolver=resolver) as fetcher:
        images, failures = await fetcher.fetch_all(links)
    assert failures == []
    assert [image.data for image in images] == [png("a"), png("b"), png("c")]
    async with local_fetcher() as fetcher:  # the system's resolver
        image = await fetcher.fetch(ImageLink(1, "", f"http://localhost:{port}/png/d"))
    assert image.data == png("d")


@pytest.mark.asyncio
async def test_a_name_keeps_only_its_public_addresses() -> None:
    names: dict[str, str | list[str]] = {
        "mixed.example": ["127.0.0.1", "93.184.216.34", "fd00::1", "2606:4700::1111"],
        "inside.example": ["192.168.0.2", "::ffff:10.0.0.1"],
    }
    resolver = PublicAddressesOnly(StaticResolver(names))
    found = await resolver.resolve("mixed.example", 80)
    assert [address["host"] for address in found] == ["93.184.216.34", "2606:4700::1111"]
    with pytest.raises(PrivateAddress):
        await resolver.resolve("inside.example", 80)
