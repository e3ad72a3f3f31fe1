"""Pure wire parsing: captured SSE bodies replayed through the parser, error bodies, retry rules."""

from __future__ import annotations

import bisect
import json
import random
from pathlib import Path

import pytest

from core.errors import (
    AuthError,
    EndpointNotFound,
    GptNotFound,
    RateLimited,
    UpstreamError,
)
from core.gpts import (
    Delta,
    SseDecoder,
    StreamParser,
    Usage,
    delta_from_chunk,
    delta_from_completion,
    error_from_body,
    is_retryable,
    parse_retry_after,
    parse_sse_lines,
    retry_delay,
)
from core.gpts.error_mapping import RETRY_JITTER
from fakes.gpts import CLOUDFLARE_524
from tests.upstream_errors import FAILURES, Failure, failure_id

FIXTURES = Path(__file__).parent / "fixtures" / "sse"


def replay(body: bytes, pieces: list[int] | None = None) -> tuple[list[Delta], StreamParser]:
    """Feed `body` in pieces of the given sizes (all at once when None), then close."""
    parser = StreamParser()
    deltas: list[Delta] = []
    start = 0
    for size in pieces or [len(body)]:
        deltas += parser.feed(body[start : start + size])
        start += size
    deltas += parser.feed(body[start:])
    deltas += parser.close()
    return deltas, parser


def summary(deltas: list[Delta]) -> tuple[str, str | None, Usage | None]:
    text = "".join(d.text for d in deltas)
    finish = [d.finish_reason for d in deltas if d.finish_reason]
    usage = [d.usage for d in deltas if d.usage]
    assert len(finish) <= 1 and len(usage) <= 1
    return text, next(iter(finish), None), next(iter(usage), None)


EXPECTED = {
    "openai-usage-length.sse": ('{"', "length", Usage(79, 1, 80)),
    "openai-refusal.sse": ("I'm sorry, I can't help with that.", "stop", Usage(79, 11, 90)),
    "azure-style-crlf-quirks.sse": ("Hello world", "stop", Usage(15, 2, 17)),
    "gizmo-relay-quirks.sse": (
        'Here is your picture:\n```json\n{"prompt": "a cat"}\n```\n'
        "![image](https://files.oaiusercontent.com/file-abc?se=2026-11-26&sig=x)\n",
        "stop",
        None,
    ),
}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_fixture_replays_to_the_exact_answer(name: str) -> None:
    body = (FIXTURES / name).read_bytes()
    deltas, parser = replay(body)
    assert summary(deltas) == EXPECTED[name]
    assert parser.done and parser.error is None and parser.malformed_chunks == 0


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_fixture_split_anywhere_gives_the_same_answer(name: str) -> None:
    body = (FIXTURES / name).read_bytes()
    rng = random.Random(name)
    byte_by_byte, _ = replay(body, [1] * len(body))
    assert summary(byte_by_byte) == EXPECTED[name]
    for _ in range(20):
        pieces = [rng.randint(1, 40) for _ in range(len(body) // 10)]
        deltas, _ = replay(body, pieces)
        assert summary(deltas) == EXPECTED[name]


def test_error_mid_stream_fixture_keeps_the_text_before_the_error() -> None:
    deltas, parser = replay((FIXTURES / "error-mid-stream.sse").read_bytes())
    assert summary(deltas) == ("Partial answer", None, None)
    assert isinstance(parser.error, UpstreamError)
    assert parser.error.message.startswith("The server had an error")
    assert not parser.done  # parsing stopped at the error, before [DONE]


def test_decoder_handles_the_sse_line_rules() -> None:
    body = (
        b"\xef\xbb\xbf: comment\r\n"
        b"data:first\rdata: second\n\n"  # CR, no space, multi-line data
        b"event: message\nid: 7\nretry: 100\ndata\n\n"  # other fields ignored; bare "data"
        b"data:  two spaces keeps one\n\n"
        b"data: tail without blank line"
    )
    decoder = SseDecoder()
    assert decoder.feed(body) == ["first\nsecond", "", " two spaces keeps one"]
    assert decoder.close() == ["tail without blank line"]


def test_decoder_keeps_utf8_and_crlf_split_across_feeds() -> None:
    decoder = SseDecoder()
    raw = "data: héllo ✓\r\n\r\n".encode()
    events = [e for i in range(len(raw)) for e in decoder.feed(raw[i : i + 1])]
    assert events == ["héllo ✓"]
    assert decoder.feed(b"data: x\r") == []  # a CR may be half of a CRLF
    assert decoder.feed(b"\n\r\n") == ["x"]


def test_parse_sse_lines_works_on_text_lines() -> None:
    lines = [": PING\n", "data: a\n", "data: b\n", "\n", "data: [DONE]\n", "\n"]
    assert list(parse_sse_lines(lines)) == ["a\nb", "[DONE]"]


def test_malformed_line_is_skipped_with_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    chunk = json.dumps({"choices": [{"delta": {"content": "ok"}, "finish_reason": "stop"}]})
    body = f"data: {{not json\n\ndata: {chunk}\n\ndata: [DONE]\n\n".encode()
    deltas, parser = replay(body)
    assert deltas == [Delta("ok", "stop")]
    assert parser.malformed_chunks == 1 and parser.valid_chunks == 1
    assert "malformed" in caplog.text


@pytest.mark.parametrize(
    ("chunk", "expected"),
    [
        ({"choices": []}, None),
        ({"choices": [{"index": 0, "finish_reason": None}]}, None),  # no delta
        ({"choices": [{"delta": {"role": "assistant", "content": None}}]}, None),
        ({"choices": [{"delta": {"content": "a"}, "finish_reason": "stop"}]}, Delta("a", "stop")),
        ({"choices": [{"delta": {"content": None, "refusal": "no"}}]}, Delta("no")),
        (
            {"choices": [], "usage": {"prompt_tokens": 1, "completion_tokens": 2}},
            Delta(usage=Usage(1, 2, None)),
        ),
        (
            {"choices": [{"index": 1, "delta": {"content": "b"}}, {"delta": {"content": "a"}}]},
            Delta("a"),
        ),
        # Next to the fast path of a plain content chunk, each condition of it missed once:
        ({"choices": [{"index": 0, "delta": {"content": "a"}}]}, Delta("a")),
        (
            {"choices": [{"delta": {"content": "a"}}], "usage": {"total_tokens": 3}},
            Delta("a", usage=Usage(None, None, 3)),
        ),
        ({"choices": [{"delta": {"content": "a", "refusal": "no"}}]}, Delta("ano")),
        ({"choices": [{"delta": {"content": ""}, "message": {"content": "m"}}]}, Delta("m")),
        ({"choices": [{"delta": {"content": 5}}]}, None),
        ({"choices": [{"index": 2, "delta": {"content": "a"}}]}, Delta("a")),
        ({"choices": [{"delta": {"content": "a"}, "finish_reason": ""}]}, Delta("a")),
        ({"choices": [{"delta": {"content": "a"}}], "usage": None}, Delta("a")),
    ],
)
def test_delta_from_chunk(chunk: dict[str, object], expected: Delta | None) -> None:
    assert delta_from_chunk(chunk) == expected


def chunk_sse(*pieces: str, finish: bool = True) -> bytes:
    """An SSE body with one content chunk per piece, JSON-escaped as a relay's
    JSON.stringify escapes a lone surrogate ("\\ud83d")."""
    chunks = [{"choices": [{"index": 0, "delta": {"content": p}}]} for p in pieces]
    if finish:
        chunks.append({"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
    events = [f"data: {json.dumps(chunk)}\n\n" for chunk in chunks] + ["data: [DONE]\n\n"]
    return "".join(events).encode()


@pytest.mark.parametrize(
    ("pieces", "finish", "expected"),
    [
        # An emoji cut between its UTF-16 halves, by a relay slicing text by UTF-16 units.
        (["smile \ud83d", "\ude00 ok"], True, "smile \U0001f600 ok"),
        (["\ud83d", "\ude00"], True, "\U0001f600"),
        (["中文\ud83d", "\ude00中文"], True, "中文\U0001f600中文"),
        # Lone halves: one replacement character each, the text around them kept.
        (["a\ude00b"], True, "a\ufffdb"),
        (["end \ud83d"], True, "end \ufffd"),  # the finish comes before the other half
        (["end \ud83d"], False, "end \ufffd"),  # [DONE] does
        (["\ud83d", "x"], True, "\ufffdx"),
        # NUL, which PostgreSQL's text refuses, the same way.
        (["nul\x00here"], True, "nul\ufffdhere"),
    ],
)
def test_surrogates_and_nul_from_a_relay_are_joined_or_replaced(
    pieces: list[str], finish: bool, expected: str
) -> None:
    body = chunk_sse(*pieces, finish=finish)
    first_event = body.index(b"\n\n") + 2
    for split in (None, [first_event]):  # all in one read; the first chunk in a read of its own
        deltas, _ = replay(body, split)
        text = "".join(d.text for d in deltas)
        assert text == expected
        text.encode()  # storable and sendable: no surrogate is left


def test_a_stream_cut_between_surrogate_halves_ends_with_a_replacement() -> None:
    body = chunk_sse("cut \ud83d", finish=False).replace(b"data: [DONE]\n\n", b"")
    deltas, _ = replay(body)
    assert "".join(d.text for d in deltas) == "cut \ufffd"


def test_delta_from_completion() -> None:
    body = {
        "choices": [{"message": {"role": "assistant", "content": "hi"}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4},
    }
    assert delta_from_completion(body) == Delta("hi", "stop", Usage(3, 1, 4))
    lone = {"choices": [{"message": {"content": "x\ud83d \ud83d\ude00"}, "finish_reason": "stop"}]}
    assert delta_from_completion(lone).text == "x\ufffd \U0001f600"
    with pytest.raises(UpstreamError, match="without any choices"):
        delta_from_completion({"id": "x"})
    with pytest.raises(GptNotFound):
        delta_from_completion({"error": {"message": "no such GPT", "code": "model_not_found"}})


@pytest.mark.parametrize(
    ("status", "body", "kind", "message"),
    [
        (
            401,
            {"error": {"message": "bad key", "type": "invalid_request_error"}},
            AuthError,
            "bad key",
        ),
        (403, {"error": "forbidden"}, AuthError, "forbidden"),
        (404, {"error": {"message": "no GPT g-x"}}, GptNotFound, "no GPT g-x"),
        # A 404 that is not the API's own error: the URL is wrong, not the GPT.
        (404, {"detail": "Not Found"}, EndpointNotFound, "Not Found (is gpts.base_url right?)"),
        (404, "404 page not found", EndpointNotFound, None),
        (404, "", EndpointNotFound, "HTTP 404 (is gpts.base_url right?)"),
        (404, "<html><title>404 Not Found</title></html>", EndpointNotFound, None),
        (
            404,
            {"error": {"message": "Invalid URL (POST /chat/completions)", "type": "invalid"}},
            EndpointNotFound,
            None,
        ),
        (404, {"error": {"message": "gone", "code": "model_not_found"}}, GptNotFound, "gone"),
        (400, {"error": {"message": "nope", "code": "model_not_found"}}, GptNotFound, "nope"),
        (503, {"error": {"message": "no channel", "type": "model_not_found"}}, GptNotFound, None),
        (429, {"detail": {"message": "slow down"}}, RateLimited, "slow down"),
        (422, {"detail": [{"loc": ["body"], "msg": "field required"}]}, UpstreamError, None),
        (500, "upstream exploded\nstack trace...", UpstreamError, "upstream exploded"),
        (502, "", UpstreamError, "HTTP 502"),
        (524, CLOUDFLARE_524, UpstreamError, "HTTP 524: api.example.com | 524: A timeout occurred"),
        (520, "<html><body>oops</body></html>", UpstreamError, "HTTP 520 (HTML page)"),
    ],
)
def test_error_bodies_become_one_short_typed_message(
    status: int, body: object, kind: type[UpstreamError], message: str | None
) -> None:
    raw = body if isinstance(body, str) else json.dumps(body)
    exc = error_from_body(status, raw.encode())
    assert type(exc) is kind
    assert exc.status == status
    if message is not None:
        assert exc.message == message
    assert 0 < len(exc.message) <= 200


def test_error_message_is_shortened_and_never_carries_a_key() -> None:
    exc = error_from_body(
        401, {"error": {"message": "Incorrect key sk-live-abcdef123 " + "x" * 500}}
    )
    assert len(exc.message) == 200
    assert "sk-live-abcdef123" not in exc.message
    exc = error_from_body(400, {"error": "your key is my-own-secret"}, secret="my-own-secret")
    assert "my-own-secret" not in exc.message


def test_retry_after_parsing() -> None:
    assert parse_retry_after("3") == 3.0
    assert parse_retry_after("0.5") == 0.5
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0  # in the past
    assert parse_retry_after("soon") is None
    assert parse_retry_after(None) is None


@pytest.mark.parametrize("failure", FAILURES, ids=failure_id)
def test_which_errors_are_retried(failure: Failure) -> None:
    assert is_retryable(failure.error) is failure.retried


def _most_within(delays: list[float], window_s: float) -> int:
    """The most delays that fall within any `window_s` of each other."""
    ordered = sorted(delays)
    return max(bisect.bisect_right(ordered, d + window_s) - i for i, d in enumerate(ordered))


def test_fifty_turns_told_the_same_retry_after_come_back_spread_out() -> None:
    refused = RateLimited("slow down", retry_after=2.0)
    delays = [retry_delay(refused, 0, 1.0, random.Random(f"turn {n}")) for n in range(50)]
    assert min(delays) >= 2.0  # never sooner than the endpoint asked
    assert max(delays) <= 2.0 * (1 + RETRY_JITTER)
    assert max(delays) - min(delays) >= 0.75  # they span most of a second...
    assert _most_within(delays, 0.05) <= 10  # ...so no 50 ms holds more than a fifth of them
    # The same seeds give the same waits: tests stay deterministic.
    again = [retry_delay(refused, 0, 1.0, random.Random(f"turn {n}")) for n in range(50)]
    assert again == delays


def test_backoff_without_retry_after_doubles_and_spreads_too() -> None:
    rng = random.Random(7)
    failed = UpstreamError("x", status=503)
    for attempt, base in enumerate([1.0, 2.0, 4.0]):
        delays = [retry_delay(failed, attempt, 1.0, rng) for _ in range(50)]
        assert base <= min(delays) and max(delays) <= base * (1 + RETRY_JITTER)
        assert max(delays) - min(delays) >= base * RETRY_JITTER / 2
    # A short Retry-After is still spread over the backoff's jitter, not squeezed into it.
    short = [retry_delay(RateLimited("x", retry_after=0.1), 0, 1.0, rng) for _ in range(50)]
    assert min(short) >= 1.0 and max(short) - min(short) >= 0.25


def reference_events(text: str) -> list[str]:
    """The SSE rules line by line, straight from the spec, as the decoder's oracle."""
    events: list[str] = []
    data: list[str] = []
    lines = text.removeprefix("\ufeff").replace("\r\n", "\n").replace("\r", "\n").split("\n")
    for number, line in enumerate(lines):
        last = number == len(lines) - 1
        if not line:
            if data and not last:
                events.append("\n".join(data))
                data = []
            continue
        name, _, value = line.partition(":")
        if name == "data":
            data.append(value[1:] if value.startswith(" ") else value)
    if data:
        events.append("\n".join(data))
    return events


def random_sse_text(rng: random.Random) -> str:
    pieces = ["\ufeff"] if rng.random() < 0.3 else []
    fields = [
        'data: {"choices": [{"delta": {"content": "é ✓ x"}}]}',
        "data:no space",
        "data:  two spaces",
        "data",
        "data:",
        ": keep-alive",
        "event: message",
        "id: 3",
        "",
        "",
    ]
    for _ in range(rng.randint(0, 30)):
        pieces.append(rng.choice(fields) + rng.choice(["\n", "\n", "\r\n", "\r"]))
    if rng.random() < 0.5:
        pieces.append(rng.choice(fields))  # a last line without its line end
    return "".join(pieces)


def decode_in_pieces(body: bytes, rng: random.Random) -> list[str]:
    decoder = SseDecoder()
    events: list[str] = []
    start = 0
    while start < len(body):
        size = rng.choice([1, 2, 3, rng.randint(1, 64)])
        events += decoder.feed(body[start : start + size])
        start += size
    return events + decoder.close()


def test_decoder_matches_the_line_by_line_rules_on_random_bodies_and_splits() -> None:
    """LF-only feeds (split at once) and feeds with CR or CRLF (rewritten first) agree."""
    rng = random.Random(20261126)
    for _ in range(400):
        text = random_sse_text(rng)
        body = text.encode()
        expected = reference_events(text)
        assert decode_in_pieces(body, rng) == expected, text
        decoder = SseDecoder()
        assert decoder.feed(body) + decoder.close() == expected, text
        lf_only = text.replace("\r\n", "\n").replace("\r", "\n")
        assert decode_in_pieces(lf_only.encode(), rng) == reference_events(lf_only)
        assert reference_events(lf_only) == expected


def decode_at_event_ends(body: bytes, rng: random.Random) -> list[str]:
    """Fed as a transport feeds it (the whole-events way first), in pieces that end mostly
    where an event ends, sometimes elsewhere."""
    decoder = SseDecoder()
    ends = [i + 2 for i in range(len(body)) if body[i : i + 2] == b"\n\n"] + [len(body)]
    events: list[str] = []
    start = 0
    while start < len(body):
        later = [end for end in ends if end > start]
        stop = rng.choice(later[:3]) if rng.random() < 0.8 else start + rng.randint(1, 40)
        piece = body[start:stop]
        whole = decoder.feed_whole_events(piece)
        events += decoder.feed(piece) if whole is None else whole
        start = stop
    return events + decoder.close()


def test_whole_events_way_matches_the_line_by_line_rules() -> None:
    rng = random.Random(20261130)
    usual = 'data: {"choices": [{"delta": {"content": "é ✓ x"}}]}\n\n'
    for _ in range(400):
        text = random_sse_text(rng)
        if rng.random() < 0.5:
            text = usual * rng.randint(0, 5) + text + usual * rng.randint(0, 5)
        expected = reference_events(text)
        assert decode_at_event_ends(text.encode(), rng) == expected, text
    raw = "data: ✓\n\n".encode()
    for body in (raw + b"data: \xff\n\n", raw[:-1] + b"x", raw.replace(b"\n\n", b"\r\n\r\n")):
        expected = reference_events(body.decode(errors="replace"))
        for _ in range(20):
            assert decode_at_event_ends(body, rng) == expected, body


def test_decoder_replaces_invalid_utf8_and_keeps_a_split_sequence() -> None:
    decoder = SseDecoder()
    raw = "data: ✓\n\n".encode()
    assert decoder.feed(raw[:7]) == []  # in the middle of the 3-byte "✓"
    assert decoder.feed(raw[7:] + b"data: \xff\n\n") == ["✓", "\ufffd"]
    assert decoder.feed(b"data: \xe2\x9c") == []
    assert decoder.close() == ["\ufffd"]


@pytest.mark.parametrize(
    "data",
    ['{"choices": []} x', "", "[1, 2]", '"text"', '{"a": 1}{"b": 2}', "\ufeff{}"],
)
def test_data_that_is_not_one_json_object_is_malformed(data: str) -> None:
    parser = StreamParser()
    assert parser.feed(f"data: {data}\n\n".encode()) == []
    assert parser.malformed_chunks == 1 and parser.valid_chunks == 0


# Events an answer's reads may hold, most of them plain content chunks.
_PLAIN = ["plain ", "中文 ", "\ud83d", "\ude00", "nul\x00", "", 'a"quote" ']
_OTHER = [
    {"choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}}]},
    {"choices": [{"index": 0, "delta": {"refusal": "no. "}}]},
    {"choices": [{"index": 0, "delta": {"content": "last"}, "finish_reason": "stop"}]},
    {"choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7}},
    {"error": {"message": "The server had an error", "type": "server_error"}},
]


def random_answer_events(rng: random.Random) -> list[str]:
    events = []
    for _ in range(rng.randint(1, 30)):
        roll = rng.random()
        if roll < 0.8:
            chunk = {"choices": [{"index": 0, "delta": {"content": rng.choice(_PLAIN)}}]}
            events.append(json.dumps(chunk))
        elif roll < 0.95:
            events.append(json.dumps(rng.choice(_OTHER)))
        else:
            events.append(rng.choice(["[DONE]", "not json", '{"a": 1}{"b": 2}', " {}"]))
    return events


def everything(deltas: list[Delta]) -> tuple[str, list[str], list[Usage]]:
    """The text of `deltas`, and every finish and usage in them, in order."""
    text = "".join(d.text for d in deltas)
    return (
        text,
        [d.finish_reason for d in deltas if d.finish_reason],
        [d.usage for d in deltas if d.usage],
    )


def test_reads_of_whole_events_give_what_the_events_one_by_one_give() -> None:
    """A read of several plain content chunks is parsed at once: the same text, finish, usage,
    counts and error as each event on its own (fed byte by byte, every event takes that way)."""
    rng = random.Random(20261201)
    for _ in range(500):
        events = random_answer_events(rng)
        body = "".join(f"data: {data}\n\n" for data in events).encode()
        one_by_one, reference = replay(body, [1] * len(body))
        parser = StreamParser()
        deltas = parser.feed(f"data: {events[0]}\n\n".encode())
        start = 1
        while start < len(events):
            stop = start + rng.randint(1, 8)
            deltas += parser.feed("".join(f"data: {d}\n\n" for d in events[start:stop]).encode())
            start = stop
        deltas += parser.close()
        assert everything(deltas) == everything(one_by_one), events
        counts = (parser.valid_chunks, parser.malformed_chunks, parser.done, str(parser.error))
        assert counts == (
            reference.valid_chunks,
            reference.malformed_chunks,
            reference.done,
            str(reference.error),
        ), events
