"""Images and text files through the conversation service: a real database (`db_url`), real
HTTP to the fake GPTs endpoint, and a platform fetcher that serves files by reference as an
adapter's would. The platforms' own tests (Telegram, Discord, terminal) cover their side."""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from core import commands
from core.attachments import decode_text, fenced, kind_of
from core.streaming import StreamingReply
from core.turns import Attachment, Turn
from fakes.clock import FakeClock
from fakes.gpts import FakeGpts, image_urls, text_of
from fakes.recording import RecordingChannel
from tests.helpers import data_url_bytes
from tests.test_conversation import ALICE, DM, Bot, bot_on, stored

PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4


class Files:
    """What the platform holds, by reference, and how often each was fetched."""

    def __init__(self) -> None:
        self.data: dict[str, bytes] = {}
        self.fetched: Counter[str] = Counter()

    def add(self, reference: str, data: bytes) -> None:
        self.data[reference] = data

    async def fetch(self, reference: str) -> bytes:
        self.fetched[reference] += 1
        return self.data[reference]


@pytest_asyncio.fixture
async def bot(fake_gpts: FakeGpts, db_url: str) -> AsyncIterator[tuple[Bot, Files]]:
    files = Files()
    async with bot_on(fake_gpts, db_url, max_image_bytes=4096) as bot:
        bot.app.service.reraise_unexpected = True
        bot.app.service.register_fetcher(DM.platform, files.fetch)
        yield bot, files


async def send(bot: Bot, text: str, *files: Attachment) -> RecordingChannel:
    channel = RecordingChannel(FakeClock())
    turn = Turn(DM, ALICE, text, is_private=True, attachments=files)
    await bot.app.service.answer(turn, StreamingReply(channel, edit_interval_s=0))
    return channel


def image(files: Files, reference: str, data: bytes = PNG) -> Attachment:
    files.add(reference, data)
    return Attachment(f"{reference}.png", "image/png", len(data), reference)


@pytest.mark.asyncio
async def test_an_image_goes_upstream_as_a_data_url_and_is_stored_by_reference(
    bot: tuple[Bot, Files],
) -> None:
    gpt, files = bot
    channel = await send(gpt, "what is this?", image(files, "file-1"))

    content = gpt.fake.requests[-1].messages[-1]["content"]
    assert content[0] == {"type": "text", "text": "what is this?"}
    assert [data_url_bytes(url) for url in image_urls(content)] == [PNG]
    assert "\n".join(channel.visible()).startswith("echo: what is this? (+1 images)")
    conversation = await gpt.app.repo.current_conversation(DM)
    [exchange] = await gpt.app.repo.exchanges(conversation, limit=5)
    assert exchange.question == "what is this?"
    assert [(a.kind, a.reference, a.size) for a in exchange.question_attachments] == [
        ("image", "file-1", len(PNG))
    ]


@pytest.mark.asyncio
async def test_an_image_without_a_caption_is_a_message(bot: tuple[Bot, Files]) -> None:
    gpt, files = bot
    await send(gpt, "", image(files, "file-1"))
    content = gpt.fake.requests[-1].messages[-1]["content"]
    assert [part["type"] for part in content] == ["image_url"]


@pytest.mark.asyncio
async def test_a_text_file_goes_in_the_message_fenced_and_stays_in_history(
    bot: tuple[Bot, Files],
) -> None:
    gpt, files = bot
    files.add("notes", b"a,b\n1,```2\n")
    notes = Attachment("data.csv", "text/csv", 12, "notes")
    await send(gpt, "sum column b", notes)

    sent = gpt.fake.requests[-1].messages[-1]["content"]
    assert sent == "sum column b\n\ndata.csv:\n````csv\na,b\n1,```2\n````"
    assert (await stored(gpt.app, DM))[0] == ("user", sent, "complete")
    await send(gpt, "and column a?")
    assert text_of(gpt.fake.requests[-1].messages[0]["content"]) == sent


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("files_of", "line"),
    [
        (lambda f: [Attachment("paper.pdf", "application/pdf", 10, "pdf")], "isn't supported"),
        (lambda f: [image(f, f"i{n}") for n in range(5)], "At most 4 images per message"),
        (lambda f: [image(f, "big", PNG * 8)], "big.png is too large"),
    ],
    ids=["pdf", "too-many", "too-large"],
)
async def test_a_file_the_gpt_cannot_take_refuses_the_message(
    bot: tuple[Bot, Files], files_of: object, line: str
) -> None:
    gpt, files = bot
    attached = files_of(files)  # type: ignore[operator]
    channel = await send(gpt, "look", *attached)

    assert line in "\n".join(channel.visible())
    assert gpt.fake.requests == []
    assert await stored(gpt.app, DM) == [("user", "look", "refused")]
    assert sum(files.fetched.values()) == 0  # refused on what the platform said, unfetched


@pytest.mark.asyncio
async def test_history_sends_again_only_the_images_of_the_last_two_image_turns(
    bot: tuple[Bot, Files],
) -> None:
    gpt, files = bot
    for n in (1, 2, 3):
        await send(gpt, f"picture {n}", image(files, f"p{n}", PNG + bytes([n])))
    files.fetched.clear()
    await send(gpt, "compare them")

    messages = gpt.fake.requests[-1].messages
    with_images = {
        text_of(m["content"]): [data_url_bytes(url)[-1] for url in image_urls(m["content"])]
        for m in messages
        if m["role"] == "user"
    }
    assert with_images == {
        "picture 1": [],
        "picture 2": [2],
        "picture 3": [3],
        "compare them": [],
    }
    assert files.fetched == Counter({"p2": 1, "p3": 1})


@pytest.mark.asyncio
async def test_an_image_that_cannot_be_fetched_again_leaves_history_without_it(
    bot: tuple[Bot, Files],
) -> None:
    gpt, files = bot
    await send(gpt, "picture", image(files, "gone"))
    del files.data["gone"]
    channel = await send(gpt, "and now?")
    assert "\n".join(channel.visible()).startswith("echo: and now?")
    assert gpt.fake.requests[-1].messages[0]["content"] == "picture"


@pytest.mark.asyncio
async def test_text_only_turns_fetch_nothing_and_send_plain_strings(
    bot: tuple[Bot, Files],
) -> None:
    gpt, files = bot
    await send(gpt, "one")
    await send(gpt, "two")
    assert all(isinstance(m["content"], str) for m in gpt.fake.requests[-1].messages)
    assert files.fetched == Counter()


@pytest.mark.asyncio
async def test_retry_asks_again_with_the_question_s_images(bot: tuple[Bot, Files]) -> None:
    gpt, files = bot
    await send(gpt, "what is this?", image(files, "file-1"))
    context = commands.Context(DM, ALICE, True, "en")
    retry = await commands.Commands(gpt.app.service).retry(context, None)
    assert isinstance(retry, commands.Retry)
    channel = RecordingChannel(FakeClock())
    await gpt.app.service.retry(
        retry.answer_id, retry.turn, StreamingReply(channel, edit_interval_s=0)
    )

    content = gpt.fake.requests[-1].messages[-1]["content"]
    assert text_of(content) == "what is this?"
    assert [data_url_bytes(url) for url in image_urls(content)] == [PNG]
    assert files.fetched == Counter({"file-1": 2})


def test_text_files_decode_from_the_encodings_people_use() -> None:
    assert decode_text("héllo".encode()) == "héllo"
    assert decode_text("\ufeffhéllo".encode()) == "héllo"
    assert decode_text("你好".encode("utf-16")) == "你好"
    assert decode_text("你好，世界".encode("gb18030")) == "你好，世界"
    assert decode_text(b"%PDF-1.7\x00\x01\xff") is None


def test_what_a_file_is_to_the_gpt() -> None:
    assert kind_of("a.png", "image/png") == "image"
    assert kind_of("photo", "image/jpeg; charset=binary") == "image"
    assert kind_of("main.rs", "application/octet-stream") == "text"
    assert kind_of("notes", "text/plain") == "text"
    assert kind_of("paper.pdf", "application/pdf") is None
    assert kind_of("pic.heic", "image/heic") is None


def test_a_fence_is_longer_than_any_backtick_run_inside() -> None:
    assert fenced("a.md", "x ````` y") == "a.md:\n``````md\nx ````` y\n``````"
    assert fenced("README", "plain\n") == "README:\n```\nplain\n```"
