"""The answer markup filter: ChatGPT-only markers cleaned from what people see, whatever the
chunks a stream brings them in."""

from __future__ import annotations

import itertools
import random
import re

import pytest

from core import i18n
from core.answer_markup import BRACKET_CAP, LINK_CAP, AnswerMarkup, ImagePrompt

PROMPT_BLOCK = '```json\n{"prompt": "a red fox in snow", "size": "1024x1024"}\n```\n'
OTHER_JSON_BLOCK = '```json\n{"name": "fox", "legs": 4}\n```\n'
IMAGE = "![image](https://files.oaiusercontent.com/file-abc?se=2026&sig=x%2By)"
# Every form, as a browsing, code-interpreter and image GPT would write them.
ANSWER = (
    "Foxes live in many places【4:0†source】 and eat mice【12†Fox facts】.\n"
    "See the survey\ue200cite\ue202turn0search0\ue202turn0news3\ue201 and the notes"
    "\ue200filecite\ue202turn0file1\ue201, also \ue203quoted\ue204here.\n"
    'Red foxes [[1]](https://example.org/red "Red fox") and arctic foxes [[2]](https://example.org/arctic)'
    ' differ; again [[3]](https://example.org/red "Red fox, again").\n'
    "Your table: [foxes.csv](sandbox:/mnt/data/foxes.csv) and the chart "
    "![chart](sandbox:/mnt/data/chart.png).\n"
    f"{PROMPT_BLOCK}{IMAGE}\n"
    f"{OTHER_JSON_BLOCK}"
    "Plain [brackets] stay, 【注意】 stays, a [link](https://example.org) stays, wow!"
)
CLEANED = (
    "Foxes live in many places and eat mice.\n"
    "See the survey and the notes, also here.\n"
    "Red foxes [1] and arctic foxes [2] differ; again [1].\n"
    "Your table: foxes.csv (file in the GPT's sandbox, not downloadable here) and the chart "
    "chart: chart.png (file in the GPT's sandbox, not downloadable here).\n"
    f"{IMAGE}\n"
    f"{OTHER_JSON_BLOCK}"
    "Plain [brackets] stay, 【注意】 stays, a [link](https://example.org) stays, wow!\n\n"
    "Sources:\n"
    "[1] Red fox: https://example.org/red\n"
    "[2] https://example.org/arctic"
)
# What no display may ever hold (a `【` may: Chinese text uses it as an ordinary bracket).
PARTIAL_MARKERS = re.compile('[†\ue200-\ue2ff]|\\[\\[|sandbox:|"prompt"|【\\d')


def streamed(chunks: list[str], image_prompt: ImagePrompt = "hide") -> list[str]:
    """What each chunk shows, then what finish shows."""
    markup = AnswerMarkup("en", image_prompt)
    return [markup.feed(chunk) for chunk in chunks] + [markup.finish()]


def assert_never_partial(pieces: list[str], whole: str) -> None:
    """Every state of the display is a prefix of the whole cleaned text: no marker (nor part of
    one) was ever shown, and nothing shown was taken back."""
    shown = ""
    for piece in pieces:
        shown += piece
        assert whole.startswith(shown), (shown[-80:], piece)
    assert shown == whole


def test_every_form_is_cleaned_at_once() -> None:
    assert AnswerMarkup().clean(ANSWER) == CLEANED


def test_every_two_way_split_shows_the_same_text() -> None:
    for cut in range(len(ANSWER) + 1):
        assert_never_partial(streamed([ANSWER[:cut], ANSWER[cut:]]), CLEANED)


def test_one_character_at_a_time_never_shows_a_partial_marker() -> None:
    pieces = streamed(list(ANSWER))
    assert_never_partial(pieces, CLEANED)
    assert not PARTIAL_MARKERS.search("".join(pieces)), "a marker reached the screen"


@pytest.mark.parametrize("seed", range(20))
def test_random_chunks_show_the_same_text(seed: int) -> None:
    rng = random.Random(seed)
    cuts = sorted(rng.sample(range(1, len(ANSWER)), rng.randint(2, 60)))
    chunks = [ANSWER[a:b] for a, b in itertools.pairwise([0, *cuts, len(ANSWER)])]
    assert_never_partial(streamed(chunks), CLEANED)


@pytest.mark.parametrize(
    "marker",
    [
        "【4:0†source】",
        "【12†title】",
        "\ue200cite\ue202turn0search0\ue202turn0news3\ue201",
        "\ue200filecite\ue202turn0file1\ue201",
        "\ue203span\ue204",
        '[[1]](https://example.org/a "A title")',
        "[a.csv](sandbox:/mnt/data/a.csv)",
        PROMPT_BLOCK,
    ],
)
def test_each_marker_split_at_every_two_and_three_way_point(marker: str) -> None:
    text = f"before\n{marker}\nafter"
    whole = AnswerMarkup().clean(text)
    assert not PARTIAL_MARKERS.search(whole)
    start = len("before\n")
    for a, b in itertools.combinations(range(start, start + len(marker) + 1), 2):
        assert_never_partial(streamed([text[:a], text[a:b], text[b:]]), whole)


def test_sources_are_numbered_in_order_and_deduplicated_by_address() -> None:
    text = (
        'A [[7]](https://b.example "B") B [[2]](https://a.example "A") '
        "C [[9]](https://b.example) D [[1]](https://c.example)."
    )
    assert AnswerMarkup().clean(text) == (
        "A [1] B [2] C [1] D [3].\n\n"
        "Sources:\n[1] B: https://b.example\n[2] A: https://a.example\n[3] https://c.example"
    )
    assert (
        AnswerMarkup("zh")
        .clean("见 [[1]](https://a.example)")
        .endswith("来源：\n[1] https://a.example")
    )


def test_an_answer_without_citations_gets_no_sources_list() -> None:
    assert AnswerMarkup().clean("Nothing cited【3†x】.") == "Nothing cited."


@pytest.mark.parametrize("language", ["en", "zh"])
def test_sandbox_links_become_file_names_with_a_note_in_the_turns_language(
    language: i18n.Language,
) -> None:
    markup = AnswerMarkup(language)
    shown = markup.clean("[report.csv](sandbox:/mnt/data/report.csv)")
    assert shown == i18n.SANDBOX_FILE(language, name="report.csv")
    labelled = AnswerMarkup(language).clean("![Download it](sandbox:/mnt/data/out.zip)")
    assert labelled == i18n.SANDBOX_FILE(language, name="Download it: out.zip")


def test_the_image_prompt_block_is_hidden_or_shown_per_setting() -> None:
    text = f"Here it is:\n{PROMPT_BLOCK}{IMAGE}"
    assert AnswerMarkup(image_prompt="hide").clean(text) == f"Here it is:\n{IMAGE}"
    assert AnswerMarkup(image_prompt="show").clean(text) == text
    # Cut before its closing fence's line ends: the answer's end closes it.
    assert AnswerMarkup().clean(PROMPT_BLOCK.rstrip("\n")) == ""


@pytest.mark.parametrize(
    "text",
    [
        OTHER_JSON_BLOCK + "after",
        '```json\n["prompt"]\n```\n',
        '```json\n{"prompt": \n```\n',  # not JSON
        'inline ```json\n{"prompt": "x"}\n```\n',  # not at a line's start
        '```python\nprint({"prompt": 1})\n```\n',
    ],
)
def test_other_code_blocks_are_shown_unchanged(text: str) -> None:
    for image_prompt in ("hide", "show"):
        pieces = streamed(list(text), image_prompt)  # type: ignore[arg-type]
        assert_never_partial(pieces, text)


def test_image_links_and_ordinary_links_are_left_alone() -> None:
    text = f"{IMAGE} and [docs](https://example.org/a_(b)) and [x] (y) and ! [z]"
    assert AnswerMarkup().clean(text) == text


def test_stray_and_unclosed_private_use_characters_are_dropped() -> None:
    assert AnswerMarkup().clean("a\ue202b\ue206c") == "abc"
    assert AnswerMarkup().clean("cut\ue200cite\ue202turn0") == "cutciteturn0"
    assert AnswerMarkup().clean("line\ue200cite\nnext") == "linecite\nnext"


def test_plain_text_is_shown_as_it_arrives() -> None:
    rng = random.Random(3)
    words = ["fox ", "den, ", "snow. ", "狐狸 ", "(tail) ", "a`b` ", "?\n", "1:2 ", "😀 ", "\t"]
    text = "".join(rng.choice(words) for _ in range(400))[:1200]
    assert len(text) == 1200
    markup = AnswerMarkup()
    shown = ""
    for start in range(0, len(text), 7):
        shown += markup.feed(text[start : start + 7])
        # Nothing held back (no added latency) but trailing spaces, until what follows comes.
        assert shown == text[: start + 7].rstrip(" \t")
    assert shown + markup.finish() == text


def test_an_opener_that_starts_no_marker_is_held_only_while_it_could() -> None:
    markup = AnswerMarkup()
    assert markup.feed("a [ b") == "a"  # its space waits for what follows the opener
    assert markup.feed(" c\n") == " [ b c\n"  # a link never spans lines
    assert markup.feed("【") == ""
    assert markup.feed("注意】") == "【注意】"
    assert markup.feed("x" * BRACKET_CAP + "【" + "y" * BRACKET_CAP) == "x" * BRACKET_CAP + (
        "【" + "y" * BRACKET_CAP
    )
    long_label = "[" + "z" * LINK_CAP
    assert markup.feed(long_label) == long_label  # past the cap: ordinary text
    assert markup.finish() == ""


def test_a_json_block_is_held_only_while_it_may_be_a_prompt() -> None:
    markup = AnswerMarkup()
    assert markup.feed("Data:\n```json\n") == "Data:\n"
    assert markup.feed("42,") == "```json\n42,"  # not an object: shown as it comes
    assert markup.feed("\n```\n") == "\n```\n"
    assert markup.feed("```json\n{") == ""
    assert markup.feed('"a": 1}\n```\n') == '```json\n{"a": 1}\n```\n'


@pytest.mark.parametrize(
    ("text", "cleaned"),
    [
        ("text 【4:0†source】.", "text."),
        ("text 【4:0†source】", "text"),
        ("a 【1†x】 b", "a b"),
        ("a 【1†x】b", "a b"),
        ("a 【1†x】【2†y】, b", "a, b"),
        ("a 【1†x】 【2†y】 b", "a b"),
        ("line \ue200cite\ue202turn0search0\ue201\nnext", "line\nnext"),
        ("中文 【3†来源】。", "中文。"),
        ("see 【1†x】(p. 2)", "see (p. 2)"),
        ("tab\t【1†x】)", "tab)"),
        ("kept  ", "kept  "),
        ("kept .", "kept ."),
    ],
)
def test_a_removed_marker_leaves_no_space_before_punctuation_or_a_line_end(
    text: str, cleaned: str
) -> None:
    assert AnswerMarkup().clean(text) == cleaned
    for a, b in itertools.combinations(range(len(text) + 1), 2):
        assert_never_partial(streamed([text[:a], text[a:b], text[b:]]), cleaned)
    assert_never_partial(streamed(list(text)), cleaned)


def test_a_space_is_held_only_until_the_next_character() -> None:
    markup = AnswerMarkup()
    assert markup.feed("one two ") == "one two"
    assert markup.feed("three") == " three"
    assert markup.feed(" 【1†x】") == ""
    assert markup.feed(".") == "."
    assert markup.feed(" ") == ""
    assert markup.finish() == " "
