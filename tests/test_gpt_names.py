import pytest

from core.errors import BadGptName
from core.gpt_names import gpt_url, model_name, parse_gpt_id

CLASSIC = "g-B3hgivKK9"
HEX = "g-0123456789abcdef0123456789abcdef"
PROJECT = "g-p-0123456789abcdef0123456789abcdef"


@pytest.mark.parametrize(
    ("text", "gpt_id"),
    [
        (CLASSIC, CLASSIC),
        (f"  {CLASSIC}\n", CLASSIC),
        (HEX, HEX),
        (PROJECT, PROJECT),
        (f"gpt-4-gizmo-{CLASSIC}", CLASSIC),
        (f"gpt-4o-gizmo-{CLASSIC}", CLASSIC),
        (f"gpt-4-gizmo-{HEX}", HEX),
        (f"https://chatgpt.com/g/{CLASSIC}-write-for-me", CLASSIC),
        (f"https://chatgpt.com/g/{CLASSIC}", CLASSIC),
        (f"chatgpt.com/g/{CLASSIC}-write-for-me", CLASSIC),
        (f"www.chatgpt.com/g/{CLASSIC}-write-for-me", CLASSIC),
        (f"http://chat.openai.com/g/{CLASSIC}-write-for-me", CLASSIC),
        (f"https://chat.openai.com/g/{CLASSIC}-write-for-me/", CLASSIC),
        (f"https://chatgpt.com/g/{CLASSIC}-write-for-me?model=gpt-4o&x=1#top", CLASSIC),
        (f"https://chatgpt.com/g/{CLASSIC}-write-for-me/c/67aa1234-1234-1234-1234-1234567890ab",
         CLASSIC),
        (f"https://chatgpt.com/g/{HEX}-multi-hyphen-slug-2", HEX),
        (f"https://chatgpt.com/g/{PROJECT}-my-project/project", PROJECT),
        (f"https://chatgpt.com/g/{CLASSIC}-%E5%86%99%E4%BD%9C", CLASSIC),  # a Chinese slug
        (f"https://chatgpt.com/g/{CLASSIC}-写作助手", CLASSIC),
        (f"<https://chatgpt.com/g/{CLASSIC}-write-for-me>", CLASSIC),  # Discord's no-embed form
    ],
)  # fmt: skip
def test_accepted_forms(text: str, gpt_id: str) -> None:
    assert parse_gpt_id(text) == gpt_id


@pytest.mark.parametrize(
    "text",
    [
        "",
        "   ",
        "g-",
        "g-p-",
        "g-B3hgivKK9X",  # 10 characters: not a classic id
        "g-B3hgivKK",  # 8
        "G-B3hgivKK9",
        "g-0123456789ABCDEF0123456789ABCDEF",  # hex ids are lowercase
        "gpt-4-gizmo-",
        "gpt-5-gizmo-g-B3hgivKK9",
        "g-B3hg ivKK9",
        "write for me",
        "https://example.com/g/g-B3hgivKK9-write-for-me",
        "https://chatgpt.com.evil.example/g/g-B3hgivKK9",
        "https://chatgpt.com/gpts/g-B3hgivKK9",
        "https://chatgpt.com/g/g-B3hgivKK9-x/something-else",
        "https://chatgpt.com:8443/g/g-B3hgivKK9",
        "https://user@chatgpt.com/g/g-B3hgivKK9",
        "g-B3hgivKK9; DROP TABLE bindings;--",
        "g-B3hgivKK9' OR '1'='1",
        "g-B3hgivKK9\n/gpt unbind",
        "javascript:alert(1)//chatgpt.com/g/g-B3hgivKK9",
        "../g-B3hgivKK9",
    ],
)
def test_rejections_name_the_accepted_forms(text: str) -> None:
    with pytest.raises(BadGptName) as caught:
        parse_gpt_id(text)
    assert "gpt-4-gizmo-g-B3hgivKK9" in str(caught.value)
    assert "https://chatgpt.com/g/" in str(caught.value)


def test_model_and_url() -> None:
    assert model_name("gpt-4-gizmo-{id}", CLASSIC) == "gpt-4-gizmo-g-B3hgivKK9"
    assert model_name("{id}", CLASSIC) == CLASSIC
    assert gpt_url(CLASSIC) == "https://chatgpt.com/g/g-B3hgivKK9"
