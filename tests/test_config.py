import dataclasses
import itertools
import tomllib
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from bots.discord_adapter import DiscordConfig
from bots.telegram_adapter import TelegramConfig
from core.config import (
    AccessConfig,
    AccessList,
    EndpointConfig,
    GptsConfig,
    QuotaConfig,
    config_path,
    env_variables,
    load_config,
    non_negative,
    parse_config,
    secret,
    secret_variables,
    url,
)
from core.errors import ConfigError


def test_defaults_and_secret_overrides_from_the_environment() -> None:
    config = parse_config(
        {"gpts": {"api_key": "from-file", "temperature": 1}},
        {"GPTS_API_KEY": "sk-env", "TELEGRAM_BOT_TOKEN": "123:abc"},
    )
    assert config.gpts.base_url == "https://www.anyapi.vip/v1"
    assert config.gpts.api_key == "sk-env"
    assert config.gpts.temperature == 1.0
    assert config.platform("telegram", TelegramConfig).token == "123:abc"
    assert config.platform("discord", DiscordConfig).token == ""
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
        ({"gpts": {"turn_timeout_s": -1}}, "gpts.turn_timeout_s"),
        ({"gpts": {"model_template": "gizmo"}}, "gpts.model_template"),
        ({"gpts": {"default_gpt": "not a gpt"}}, "gpts.default_gpt"),
        ({"discord": {"api_base": "ftp://x"}}, "discord.api_base"),
        ({"telegram": {"dm_streaming": "stream"}}, "telegram.dm_streaming"),
        ({"access": {"allow": {"telegram_chats": ["x"]}}}, "access.allow.telegram_chats[0]"),
        ({"access": {"block": {"users": ["42"]}}}, "access.block.users"),
        ({"access": {"allow": ["telegram:1"]}}, "access.allow"),
        ({"access": {"allow": {"guilds": [1]}}}, "access.allow.guilds"),
        ({"access": {"allow_dms": "no"}}, "access.allow_dms"),
        ({"quota": {"tokens_per_user_per_day": -1}}, "quota.tokens_per_user_per_day"),
        ({"quota": {"turns_per_user_per_minute": 1.5}}, "quota.turns_per_user_per_minute"),
        ({"storage": []}, "storage"),
        ({"slack": {}}, "slack"),
        ({"access": {"owners": ["42"]}}, "access.owners"),
        ({"telegram": {"edit_interval_s": "1"}}, "telegram.edit_interval_s"),
        ({"discord": {"channel_edits_per_5s": 0}}, "discord.channel_edits_per_5s"),
        ({"discord": {"shard_count": -1}}, "discord.shard_count"),
        ({"discord": {"shard_ids": [0]}}, "discord.shard_ids"),
        ({"discord": {"shard_count": 2, "shard_ids": [2]}}, "discord.shard_ids"),
        ({"discord": {"shard_count": 2, "shard_ids": [-1]}}, "discord.shard_ids"),
        ({"discord": {"shard_count": 2, "shard_ids": [1, 1]}}, "discord.shard_ids"),
        ({"discord": {"shard_count": 2, "shard_ids": ["1"]}}, "discord.shard_ids[0]"),
    ],
)
def test_bad_config_names_the_key(raw: dict[str, object], key: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(raw, {})
    assert caught.value.key == key
    assert key in str(caught.value)


EXAMPLE = Path(__file__).parent.parent / "config.example.toml"


def nested_tables(section: type[Any]) -> dict[str, type[Any]]:
    """The keys of `section` that are lists of nested tables, and the table type of each."""
    return {
        key: typing.get_args(hint)[0]
        for key, hint in typing.get_type_hints(section).items()
        if typing.get_origin(hint) is tuple and dataclasses.is_dataclass(typing.get_args(hint)[0])
    }


def sub_tables(section: type[Any]) -> dict[str, type[Any]]:
    """The keys of `section` that are one nested table ([access.allow]), and its type."""
    return {
        key: hint
        for key, hint in typing.get_type_hints(section).items()
        if isinstance(hint, type) and dataclasses.is_dataclass(hint)
    }


def test_example_config_documents_every_key_and_loads() -> None:
    config = load_config(EXAMPLE, {})
    text = EXAMPLE.read_text()
    names = ("gpts", "storage", "bot", "access", "limits", "quota", "log", "metrics")
    sections = {name: getattr(config, name) for name in names}
    assert set(config.platforms) == {"telegram", "discord"}
    for name, section in {**sections, **config.platforms}.items():
        assert f"[{name}]" in text
        nested = nested_tables(type(section))
        tables = sub_tables(type(section))
        for key in (f.name for f in dataclasses.fields(section)):
            if key in nested:  # documented by a commented example, checked below
                assert f"# [[{name}.{key}]]" in text, f"[[{name}.{key}]] is not documented"
            elif key in tables:
                table = text[text.index(f"\n[{name}.{key}]\n") :].split("\n\n")[0]
                for inner in (f.name for f in dataclasses.fields(tables[key])):
                    assert f"{inner} =" in table, f"{name}.{key}.{inner} is not documented"
            else:
                assert f"{key} =" in text, f"{name}.{key} is not documented"
    assert nested_tables(GptsConfig) == {"endpoints": EndpointConfig}
    assert sub_tables(AccessConfig) == {"allow": AccessList, "block": AccessList}


@pytest.mark.parametrize(
    ("raw", "moved"),
    [
        ({"telegram": {"allowed_chat_ids": [1]}}, "telegram.allowed_chat_ids: has moved: "),
        ({"discord": {"allowed_guild_ids": [1]}}, "discord.allowed_guild_ids: has moved: "),
    ],
)
def test_moved_keys_say_where_they_went(raw: dict[str, object], moved: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(raw, {})
    assert str(caught.value).startswith(f"config: {moved}")
    assert "[access.allow]" in str(caught.value)


def test_access_lists_and_quotas_load_as_nested_tables() -> None:
    config = parse_config(
        {
            "access": {
                "owners": ["telegram:1"],
                "allow_dms": False,
                "allow": {"users": ["discord:2"], "telegram_chats": [-100123]},
                "block": {"discord_roles": [7], "discord_channels": [8]},
            },
            "quota": {"turns_per_user_per_minute": 3, "tokens_per_scope_per_day": 1000},
        },
        {},
    )
    access = config.access
    assert access.allow == AccessList(users=("discord:2",), telegram_chats=(-100123,))
    assert access.block == AccessList(discord_roles=(7,), discord_channels=(8,))
    assert not access.allow_dms and access.owners == ("telegram:1",)
    assert config.quota == QuotaConfig(3, 0, 1000)
    assert parse_config({}, {}).access.allow == AccessList()


def commented_example(text: str, header: str) -> str:
    """The commented example that starts at `header` (up to the first uncommented line), as
    TOML: each line without its `# `."""
    lines = text[text.index(f"# {header}") :].splitlines()
    example = itertools.takewhile(lambda line: line.startswith("#"), lines)
    return "\n".join(line.removeprefix("#").removeprefix(" ") for line in example)


def test_the_endpoints_example_sets_every_key_and_loads() -> None:
    raw = tomllib.loads(commented_example(EXAMPLE.read_text(), "[[gpts.endpoints]]"))
    tables = raw["gpts"]["endpoints"]
    assert set().union(*tables) == set(EndpointConfig.__dataclass_fields__)
    config = parse_config(raw, {"GPTS_KEY_ONE": "sk-one", "GPTS_API_KEY": "sk-default"})
    one, two = config.gpts.endpoints
    assert (one.name, one.api_key, one.weight, one.max_concurrent) == ("one", "sk-one", 2.0, 20)
    assert (two.name, two.api_key, two.weight, two.max_concurrent) == ("two", "sk-...", 1.0, 0)


@dataclass(frozen=True, slots=True)
class PigeonConfig:
    token: str = secret("PIGEON_TOKEN")
    loft_url: str = url("https://loft.example")
    flap_interval_s: float = non_negative(1.0)


def test_a_new_platform_section_is_validated_like_the_core_ones() -> None:
    platforms = {"pigeon": PigeonConfig}
    config = parse_config({"pigeon": {"flap_interval_s": 2}}, {"PIGEON_TOKEN": "coo"}, platforms)
    pigeon = config.platform("pigeon", PigeonConfig)
    assert pigeon == PigeonConfig("coo", "https://loft.example", 2.0)
    assert config.secrets() == ["coo"] and "coo" not in repr(config)
    for raw, message in [
        ({"flap_interval_s": -1}, "config: pigeon.flap_interval_s: must not be negative"),
        ({"flap_interval_s": "fast"}, "config: pigeon.flap_interval_s: must be float, got str"),
        ({"loft_url": "loft"}, "config: pigeon.loft_url: must be an http(s) URL, got 'loft'"),
        ({"wings": 2}, "config: pigeon.wings: unknown key"),
    ]:
        with pytest.raises(ConfigError) as caught:
            parse_config({"pigeon": raw}, {}, platforms)
        assert str(caught.value) == message
    with pytest.raises(ConfigError, match="config: telegram: unknown section"):
        parse_config({"telegram": {}}, {}, platforms)


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


def test_base_url_and_default_gpt_come_from_the_environment_without_being_secrets() -> None:
    env = {"GPTS_BASE_URL": "https://relay.example/v1", "GPTS_DEFAULT_GPT": "g-B3hgivKK9"}
    config = parse_config({"gpts": {"base_url": "https://file.example/v1"}}, env)
    assert config.gpts.base_url == "https://relay.example/v1"  # the environment wins
    assert config.gpts.default_gpt == "g-B3hgivKK9"
    # Not secrets: shown in repr, not masked in logs, not a platform's on-switch.
    assert "relay.example" in repr(config) and config.secrets() == []
    assert env_variables(GptsConfig) == {
        "base_url": "GPTS_BASE_URL",
        "api_key": "GPTS_API_KEY",
        "default_gpt": "GPTS_DEFAULT_GPT",
    }
    assert secret_variables(GptsConfig) == {"api_key": "GPTS_API_KEY"}
    # A bad value from the environment names the key and the variable.
    with pytest.raises(ConfigError) as caught:
        parse_config({}, {"GPTS_BASE_URL": "relay.example"})
    assert str(caught.value) == (
        "config: gpts.base_url: must be an http(s) URL, got 'relay.example' (set by GPTS_BASE_URL)"
    )
    with pytest.raises(ConfigError, match=r"gpts\.default_gpt: .*\(set by GPTS_DEFAULT_GPT\)"):
        parse_config({}, {"GPTS_DEFAULT_GPT": "write for me"})
    # Empty or blank: unset.
    assert parse_config({}, {"GPTS_DEFAULT_GPT": " ", "GPTS_BASE_URL": ""}) == parse_config({}, {})


def test_values_pasted_with_spaces_around_them_are_trimmed() -> None:
    config = parse_config(
        {
            "gpts": {
                "api_key": " sk-file ",
                "base_url": "https://relay.example/v1 \n",
                "default_gpt": "\tg-B3hgivKK9 ",
            },
            "telegram": {"token": "123:abc\n"},
            "access": {"owners": [" telegram:1 "]},
        },
        {"DISCORD_BOT_TOKEN": "  discord-token  "},
    )
    assert config.gpts.api_key == "sk-file"
    assert config.gpts.base_url == "https://relay.example/v1"
    assert config.gpts.default_gpt == "g-B3hgivKK9"
    assert config.platform("telegram", TelegramConfig).token == "123:abc"
    assert config.platform("discord", DiscordConfig).token == "discord-token"
    assert config.access.owners == ("telegram:1",)
    assert parse_config({}, {"GPTS_API_KEY": " sk-env\n"}).gpts.api_key == "sk-env"
    # Where the spaces mean something, they stay.
    assert parse_config({"bot": {"streaming_indicator": " …"}}, {}).bot.streaming_indicator == " …"


@pytest.mark.parametrize("value", [-0.1, 2.5, 7])
def test_temperature_outside_0_to_2_names_the_key(value: float) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config({"gpts": {"temperature": value}}, {})
    assert str(caught.value) == f"config: gpts.temperature: must be from 0 to 2, got {value}"


def test_temperature_within_0_to_2_or_unset() -> None:
    assert parse_config({"gpts": {"temperature": 0}}, {}).gpts.temperature == 0.0
    assert parse_config({"gpts": {"temperature": 2}}, {}).gpts.temperature == 2.0
    assert parse_config({}, {}).gpts.temperature is None


def test_a_config_path_that_is_a_folder_is_one_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(tmp_path, {})
    assert str(caught.value) == f"config: {tmp_path}: is a folder, not a config file"


ENDPOINT = "https://one.example/v1"


def test_endpoints_are_nested_tables_with_their_own_keys_kept_secret() -> None:
    raw = {
        "gpts": {
            "api_key": "sk-shared",
            "endpoints": [
                {"base_url": ENDPOINT, "api_key_env": "KEY_ONE", "name": "one", "weight": 3},
                {"base_url": " https://two.example/v1 ", "api_key": "sk-two", "max_concurrent": 4},
                {"base_url": "https://three.example/v1", "model_template": "{id}"},
            ],
        }
    }
    config = parse_config(raw, {"KEY_ONE": " sk-one\n"})
    one, two, three = config.gpts.endpoints
    assert one == EndpointConfig(ENDPOINT, "sk-one", "KEY_ONE", "one", None, 3.0, 0)
    assert two == EndpointConfig("https://two.example/v1", "sk-two", max_concurrent=4)
    assert (three.api_key, three.model_template) == ("", "{id}")  # the shared key is used later
    # Every key, the nested ones included, is kept out of repr and masked in logs.
    assert sorted(config.secrets()) == ["sk-one", "sk-shared", "sk-two"]
    assert not any(key in repr(config) for key in config.secrets())
    assert parse_config({}, {}).gpts.endpoints == ()


@pytest.mark.parametrize(
    ("gpts", "env", "message"),
    [
        (
            {"endpoints": [{"base_url": ENDPOINT}, {"base_url": "x"}]},
            {},
            "gpts.endpoints[1].base_url: must be an http(s) URL, got 'x'",
        ),
        (
            {"endpoints": [{"name": "one"}]},
            {},
            "gpts.endpoints[0].base_url: missing: it has no default",
        ),
        (
            {"endpoints": [{"base_url": ENDPOINT, "wieght": 2}]},
            {},
            "gpts.endpoints[0].wieght: unknown key",
        ),
        (
            {"endpoints": [{"base_url": ENDPOINT, "weight": 0}]},
            {},
            "gpts.endpoints[0].weight: must be greater than 0",
        ),
        (
            {"endpoints": [{"base_url": ENDPOINT, "max_concurrent": -1}]},
            {},
            "gpts.endpoints[0].max_concurrent: must not be negative",
        ),
        (
            {"endpoints": [{"base_url": ENDPOINT, "max_concurrent": 1.5}]},
            {},
            "gpts.endpoints[0].max_concurrent: must be int, got float",
        ),
        (
            {"endpoints": [{"base_url": ENDPOINT, "model_template": "gizmo"}]},
            {},
            "gpts.endpoints[0].model_template: must contain {id}",
        ),
        (
            {"endpoints": {"base_url": ENDPOINT}},
            {},
            "gpts.endpoints: must be a list of tables ([[gpts.endpoints]])",
        ),
        (
            {"endpoints": [ENDPOINT]},
            {},
            "gpts.endpoints[0]: must be a table ([[gpts.endpoints]])",
        ),
        (
            {"endpoints": [{"base_url": ENDPOINT, "api_key_env": "KEY_ONE"}]},
            {"KEY_ONE": " "},
            "gpts.endpoints[0].api_key_env: the environment variable KEY_ONE is not set",
        ),
        (
            {"endpoints": [{"base_url": ENDPOINT, "api_key_env": "KEY_ONE", "api_key": "k"}]},
            {"KEY_ONE": "sk-one"},
            "gpts.endpoints[0].api_key_env: set api_key or api_key_env, not both",
        ),
        (
            {
                "endpoints": [
                    {"base_url": ENDPOINT, "name": "a"},
                    {"base_url": ENDPOINT, "name": "a"},
                ]
            },
            {},
            "gpts.endpoints[1].name: 'a' already names gpts.endpoints[0]",
        ),
        (
            {"base_url": ENDPOINT, "endpoints": [{"base_url": ENDPOINT}]},
            {},
            "gpts.base_url: not used when [[gpts.endpoints]] are listed: give each endpoint its "
            "base_url",
        ),
        (
            {"endpoints": [{"base_url": ENDPOINT}]},
            {"GPTS_BASE_URL": ENDPOINT},
            "gpts.base_url: not used when [[gpts.endpoints]] are listed: give each endpoint its "
            "base_url (set by GPTS_BASE_URL)",
        ),
        (
            {"endpoint_backoff_s": 60, "endpoint_max_backoff_s": 30},
            {},
            "gpts.endpoint_max_backoff_s: must not be below endpoint_backoff_s",
        ),
    ],
)
def test_endpoint_errors_name_the_table_and_key(
    gpts: dict[str, Any], env: dict[str, str], message: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config({"gpts": gpts}, env)
    assert str(caught.value) == f"config: {message}"
