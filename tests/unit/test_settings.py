"""Settings: sources and their priority, parsing, validation messages, secrets."""

from __future__ import annotations

from pathlib import Path

import pytest

from worker.cli import build_parser
from worker.cli.common import settings_from_args
from worker.settings import DEFAULT_MODEL, DEFAULT_REVISION, Settings, SettingsError, load_settings

pytestmark = pytest.mark.unit


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    for name in list(os.environ):
        if name.startswith("SENTIMENT_"):
            monkeypatch.delenv(name)


def test_defaults() -> None:
    settings = load_settings()
    assert settings.bootstrap_servers == ["localhost:9092"]
    assert settings.model == DEFAULT_MODEL and settings.model_revision == DEFAULT_REVISION
    assert settings.device == "auto" and settings.precision == "fp32"
    assert settings.max_length == 128 and settings.max_batch_size == "auto"  # resolved once the provider is known


def test_env_prefix_and_types(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SENTIMENT_MAX_BATCH_SIZE", "32")
    monkeypatch.setenv("SENTIMENT_DEVICE", "cpu")
    monkeypatch.setenv("SENTIMENT_SSL_CHECK_HOSTNAME", "false")
    monkeypatch.setenv("MAX_BATCH_SIZE", "7")  # no prefix: ignored
    settings = load_settings()
    assert settings.max_batch_size == 32
    assert settings.device == "cpu"
    assert settings.ssl_check_hostname is False


def test_env_is_case_insensitive(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("sentiment_group_id", "lower")
    assert load_settings().group_id == "lower"


def test_comma_separated_lists(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SENTIMENT_BOOTSTRAP_SERVERS", "a:9092, b:9093 ,c:1")
    monkeypatch.setenv("SENTIMENT_INPUT_TOPICS", "reviews,tweets,")
    settings = load_settings()
    assert settings.bootstrap_servers == ["a:9092", "b:9093", "c:1"]
    assert settings.input_topics == ["reviews", "tweets"]
    assert load_settings(input_topics="x,y").input_topics == ["x", "y"]


def test_overrides_beat_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SENTIMENT_MAX_WAIT_MS", "50")
    monkeypatch.setenv("SENTIMENT_MODEL", "env/model")
    settings = load_settings(max_wait_ms="7", model=None)  # None = flag not given
    assert settings.max_wait_ms == 7
    assert settings.model == "env/model"


def test_cli_flags_beat_env_and_config_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    config = tmp_path / "worker.toml"
    config.write_text('group_id = "from-file"\nmax_wait_ms = 99\nlinger_ms = 11\n')
    monkeypatch.setenv("SENTIMENT_CONFIG_FILE", str(config))
    monkeypatch.setenv("SENTIMENT_MAX_WAIT_MS", "50")
    args = build_parser().parse_args(["classify", "--max-length", "64", "--device", "cpu", "some text"])
    settings = settings_from_args(args)
    assert settings.max_length == 64 and settings.device == "cpu"  # flags
    assert settings.max_wait_ms == 50  # env beats file
    assert settings.group_id == "from-file" and settings.linger_ms == 11  # file beats defaults


def test_toml_config_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    config = tmp_path / "worker.toml"
    config.write_text(
        'bootstrap_servers = ["k1:9092", "k2:9092"]\ninput_topics = ["reviews"]\nprecision = "int8"\n'
        'cache_dir = "/var/cache/sentiment"\n'
    )
    monkeypatch.setenv("SENTIMENT_CONFIG_FILE", str(config))
    settings = load_settings()
    assert settings.bootstrap_servers == ["k1:9092", "k2:9092"]
    assert settings.input_topics == ["reviews"]
    assert settings.precision == "int8"
    assert settings.cache_dir == Path("/var/cache/sentiment")
    # an explicit config file argument works too, and env still wins over it
    monkeypatch.delenv("SENTIMENT_CONFIG_FILE")
    monkeypatch.setenv("SENTIMENT_PRECISION", "o3")
    assert load_settings(config).precision == "o3"


def test_missing_config_file_is_an_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="does not exist"):
        load_settings(tmp_path / "nope.toml")
    monkeypatch.setenv("SENTIMENT_CONFIG_FILE", str(tmp_path / "nope.toml"))
    with pytest.raises(SettingsError, match="SENTIMENT_CONFIG_FILE"):
        load_settings()


def test_unknown_key_in_config_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    config = tmp_path / "worker.toml"
    config.write_text("max_batch_sise = 3\n")
    monkeypatch.setenv("SENTIMENT_CONFIG_FILE", str(config))
    with pytest.raises(SettingsError, match="max_batch_sise"):
        load_settings()


@pytest.mark.parametrize(
    ("env", "value", "field"),
    [
        ("SENTIMENT_MAX_BATCH_SIZE", "0", "max_batch_size"),
        ("SENTIMENT_MAX_BATCH_SIZE", "lots", "max_batch_size"),
        ("SENTIMENT_DEVICE", "gpu", "device"),
        ("SENTIMENT_PRECISION", "int4", "precision"),
        ("SENTIMENT_BOOTSTRAP_SERVERS", "localhost", "bootstrap_servers"),
        ("SENTIMENT_OUTPUT_TOPIC", "{topic}.{nope}", "output_topic"),
        ("SENTIMENT_MAX_LENGTH", "1024", "max_length"),
    ],
)
def test_invalid_value_names_field_env_and_flag(
    monkeypatch: pytest.MonkeyPatch, env: str, value: str, field: str
) -> None:
    monkeypatch.setenv(env, value)
    with pytest.raises(SettingsError) as info:
        load_settings()
    message = str(info.value)
    assert f"invalid setting {field}" in message
    assert f"env {env}" in message
    assert f"flag --{field.replace('_', '-')}" in message


def test_cross_field_rules() -> None:
    with pytest.raises(SettingsError, match="input_topics or input_pattern"):
        load_settings(input_topics="a", input_pattern="b.*")
    with pytest.raises(SettingsError, match="fp16 runs only on CUDA"):
        load_settings(precision="fp16", device="cpu")
    with pytest.raises(SettingsError, match="heartbeat_interval_ms"):
        load_settings(session_timeout_ms=1000, heartbeat_interval_ms=1000)
    with pytest.raises(SettingsError, match="sasl_username and sasl_password"):
        load_settings(security_protocol="SASL_SSL")
    with pytest.raises(SettingsError, match="input_topics"):
        load_settings().require_input()


def test_secrets_stay_hidden() -> None:
    settings = load_settings(
        security_protocol="SASL_SSL", sasl_mechanism="PLAIN", sasl_username="user", sasl_password="hunter2"
    )
    assert "hunter2" not in repr(settings)
    assert "hunter2" not in str(settings)
    dumped = settings.safe_dump()
    assert "hunter2" not in str(dumped)
    assert dumped["sasl_password"] == "**********"
    assert settings.kafka_security()["sasl_plain_password"] == "hunter2"  # only where it is needed


def test_every_field_has_a_description() -> None:
    for name, info in Settings.model_fields.items():
        assert info.description, name
