"""Answers that are hard to render without losing or garbling what the GPT wrote.

Each `Answer` is Markdown as a GPT streams it. `keep` lists text that must appear verbatim in the
final message(s); `code` lists text that must be exactly one code or pre entity (code stays
verbatim); `links` is the exact set of URLs that must be clickable. `visible=False` skips the
generic "same visible characters" check for answers whose syntax moves text around (reference
links show their label's target, not the label). The answers are written out in
fixtures/rendering_corpus.toml; the two built here are too long to write out.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path

CORPUS_FILE = Path(__file__).parent / "fixtures" / "rendering_corpus.toml"


@dataclass(frozen=True, slots=True)
class Answer:
    name: str
    text: str
    keep: tuple[str, ...] = ()
    code: tuple[str, ...] = ()
    links: frozenset[str] = frozenset()
    visible: bool = True


def _written_out() -> list[Answer]:
    with CORPUS_FILE.open("rb") as file:
        answers = tomllib.load(file)["answer"]
    return [
        Answer(
            raw["name"],
            raw["text"],
            keep=tuple(raw.get("keep", ())),
            code=tuple(raw.get("code", ())),
            links=frozenset(raw.get("links", ())),
            visible=raw.get("visible", True),
        )
        for raw in answers
    ]


_LONG_CODE_LINES = "".join(
    f"if (a{i} < b && c > d{i}) {{ v.push_back(<T{i}>); }}\n" for i in range(160)
)

CORPUS: tuple[Answer, ...] = (
    *_written_out(),
    Answer(
        "very_long_line",
        "Start: " + "a<b && c>d | " * 700 + "end.",
        keep=("Start: a<b && c>d | a<b", "end."),
    ),
    # Cut into two pages by the split, inside the code fence.
    Answer(
        "long_code_fence_split",
        "Here is the program:\n\n```cpp\n" + _LONG_CODE_LINES + "```\n\nAfter <the> code.",
        keep=("Here is the program:", "After <the> code."),
    ),
)
