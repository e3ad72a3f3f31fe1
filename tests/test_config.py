from pathlib import Path

import pytest

from core.config import config_path, load_config, parse_config
from core.errors import ConfigError


def test_defaults_and_secret_overrides_from_the_environment() -> None:
    config = parse_config(
        {"gpts": {"api_key": "from-file", "temperature": 1}},
        {"GPTS_API_KEY": "sk-env", "TELEGRAM_BOT_TOKEN": "123:abc"},
    )
    assert config.gpts.base_url == "https://www.anyapi.vip/v1"
    assert config.gpts.api_key == "sk-env"
    assert config.gpts.temperature == 1.0
    assert config.telegram.token == "123:abc"
    assert config.discord.token == ""
    assert config.storage.url == "sqlite+aiosqlite:///gptsbot.db"
    assert "sk-env" not in repr(config) and "123:abc" not in repr(config)


@pytest.mark.parametrize(
    ("raw", "key"),
    [
        ({"gpts": {"idle_timeout": 5}}, "gpts.idle_timeout"),
        ({"gpts": {"base_url": "not a url"}}, "gpts.base_url"),
        ({"gpts": {"stream": "yes"}}, "gpts.stream"),
        ({"gpts": {"max_retries": 1.5}}, "gpts.max_retries"),
        ({"gpts": {"max_retries": True}}, "gpts.max_retries"),
        ({"gpts": {"idle_timeout_s": 0}}, "gpts.idle_timeout_s"),
        ({"gpts": {"model_template": "gizmo"}}, "gpts.model_template"),
        ({"gpts": {"default_gpt": "not a gpt"}}, "gpts.default_gpt"),
        ({"discord": {"api_base": "ftp://x"}}, "discord.api_base"),
        ({"telegram": {"dm_streaming": "stream"}}, "telegram.dm_streaming"),
        ({"telegram": {"allowed_chat_ids": ["x"]}}, "telegram.allowed_chat_ids[0]"),
        ({"storage": []}, "storage"),
        ({"slack": {}}, "slack"),
    ],
)
def test_bad_config_names_the_key(raw: dict[str, object], key: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(raw, {})
    assert caught.value.key == key
    assert key in str(caught.value)


def test_example_config_documents_every_key_and_loads() -> None:
    example = Path(__file__).parent.parent / "config.example.toml"
    config = load_config(example, {})
    text = example.read_text()
    for section in ("gpts", "storage", "bot", "telegram", "discord"):
        for key in type(getattr(config, section)).__dataclass_fields__:
            assert f"{key} =" in text, f"{section}.{key} is not documented"


def test_config_path_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert config_path(None, {}) is None
    (tmp_path / "config.toml").write_text("")
    assert config_path(None, {}) == Path("config.toml")
    assert config_path(None, {"GPTSBOT_CONFIG": "/etc/g.toml"}) == Path("/etc/g.toml")
    assert config_path("mine.toml", {"GPTSBOT_CONFIG": "/etc/g.toml"}) == Path("mine.toml")


def test_missing_and_broken_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="file not found"):
        load_config(tmp_path / "nope.toml", {})
    broken = tmp_path / "broken.toml"
    broken.write_text("[gpts\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(broken, {})
