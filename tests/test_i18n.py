import pytest

from core import commands, i18n
from core.errors import BadGptName, NoGptBound, RateLimited, UpstreamTimeout, user_message
from core.i18n import language_for


@pytest.mark.parametrize(
    ("locale", "setting", "language"),
    [
        ("zh", "auto", "zh"),
        ("zh-CN", "auto", "zh"),
        ("zh-hans", "auto", "zh"),
        ("zh-TW", "auto", "zh"),
        ("en-US", "auto", "en"),
        ("ru", "auto", "en"),
        (None, "auto", "en"),
        ("zh-CN", "en", "en"),
        (None, "zh", "zh"),
    ],
)
def test_language_follows_the_person_unless_configured(
    locale: str | None, setting: i18n.LanguageSetting, language: str
) -> None:
    assert language_for(locale, setting) == language


def test_every_core_sentence_has_both_languages_with_the_same_placeholders() -> None:
    texts = [value for value in vars(i18n).values() if isinstance(value, i18n.Text)]
    for command in commands.REGISTRY:
        texts += [command.description]
        texts += [part for a in command.arguments for part in (a.placeholder, a.description)]
    texts += [group.description for group in commands.GROUPS]
    assert len(texts) > 40
    for text in texts:
        assert text.en and text.zh and text.en != text.zh
        assert sorted(_fields(text.en)) == sorted(_fields(text.zh))


def _fields(template: str) -> list[str]:
    import string

    return [name for _, name, _, _ in string.Formatter().parse(template) if name]


def test_errors_read_in_chinese() -> None:
    assert user_message(RateLimited("x", retry_after=12.4), "zh") == (
        "⚠️ GPTs 接口限流中，请 12 秒后再试。"
    )
    assert user_message(UpstreamTimeout("first chunk", 150), "zh") == "⚠️ GPT 响应超时，请重试。"
    assert user_message(NoGptBound(), "zh").startswith("⚠️ 这里还没有绑定 GPT")
    assert "g-B3hgivKK9" in user_message(BadGptName("hello"), "zh")
    assert user_message(ValueError("secret detail"), "zh") == "⚠️ 机器人出了点问题，请重试。"
