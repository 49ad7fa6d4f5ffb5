"""Security settings: SASL/SSL reach both the consumer and the producer (and the admin client); secrets are
``SecretStr`` and never printed — not by ``repr``, the ``settings`` command, nor validation errors; no pickle-style
loaders appear in the run path's source."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from kafka import KafkaConsumer, KafkaProducer
from kafka.admin import KafkaAdminClient
from pydantic import SecretStr

from worker.cli import main
from worker.settings import Settings, SettingsError, load_settings
from worker.stream.sink import producer_config
from worker.stream.source import consumer_config

pytestmark = pytest.mark.unit

SASL_SECRET = "sasl-Pa55w0rd-not-for-logs"
SSL_SECRET = "ssl-key-Pa55phrase-not-for-logs"
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    for name in list(os.environ):
        if name.startswith("SENTIMENT_"):
            monkeypatch.delenv(name)


def _files(tmp_path: Path) -> dict[str, str]:
    paths = {}
    for name in ("ca.pem", "client.pem", "client.key"):
        (tmp_path / name).write_text("-----BEGIN TEST-----\n")
        paths[name] = str(tmp_path / name)
    return paths


CONFIGS = {
    "sasl_plain": {"security_protocol": "SASL_PLAINTEXT", "sasl_mechanism": "PLAIN"},
    "sasl_ssl_scram256": {"security_protocol": "SASL_SSL", "sasl_mechanism": "SCRAM-SHA-256"},
    "sasl_ssl_scram512": {"security_protocol": "SASL_SSL", "sasl_mechanism": "SCRAM-SHA-512"},
    "ssl_mtls": {"security_protocol": "SSL"},
}


@pytest.mark.parametrize("name", list(CONFIGS))
def test_security_settings_reach_consumer_producer_and_admin_configs(name: str, tmp_path: Path) -> None:
    files = _files(tmp_path)
    extra = dict(CONFIGS[name])
    sasl = "sasl_mechanism" in extra
    ssl = extra["security_protocol"] in ("SSL", "SASL_SSL")
    if sasl:
        extra.update(sasl_username="svc-sentiment", sasl_password=SASL_SECRET)
    # the TLS settings carry kafka-python's own option names: given and expected alike
    ssl_options = {
        "ssl_cafile": files["ca.pem"],
        "ssl_certfile": files["client.pem"],
        "ssl_keyfile": files["client.key"],
        "ssl_password": SSL_SECRET,
        "ssl_check_hostname": False,
    }
    if ssl:
        extra.update(ssl_options)
    settings = load_settings(bootstrap_servers="broker-1:9093,broker-2:9093", input_topics="in", **extra)
    expected: dict[str, object] = {
        "bootstrap_servers": ["broker-1:9093", "broker-2:9093"],
        "security_protocol": extra["security_protocol"],
    }
    if sasl:
        expected.update(
            sasl_mechanism=extra["sasl_mechanism"], sasl_plain_username="svc-sentiment", sasl_plain_password=SASL_SECRET
        )
    if ssl:
        expected.update(ssl_options)
    consumer = consumer_config(settings.kafka, settings.input)
    producer, admin = producer_config(settings.kafka, settings.output), settings.kafka.kafka_security()
    for config in (consumer, producer, admin):
        assert {k: config.get(k) for k in expected} == expected
        if not sasl:
            assert "sasl_mechanism" not in config and "sasl_plain_password" not in config
        if not ssl:
            assert not any(k.startswith("ssl_") for k in config)
    # every key is one kafka-python knows (it raises on unknown ones at construction)
    assert set(consumer) <= set(KafkaConsumer.DEFAULT_CONFIG)
    assert set(producer) <= set(KafkaProducer.DEFAULT_CONFIG)
    assert set(admin) <= set(KafkaAdminClient.DEFAULT_CONFIG)


def test_sasl_needs_credentials_and_a_sasl_protocol() -> None:
    with pytest.raises(SettingsError, match="sasl_username and sasl_password"):
        load_settings(security_protocol="SASL_SSL", sasl_mechanism="PLAIN", sasl_username="u")
    with pytest.raises(SettingsError, match="sasl_mechanism needs"):
        load_settings(security_protocol="SSL", sasl_mechanism="PLAIN", sasl_username="u", sasl_password="p")


def _secret_settings(**kw: object) -> Settings:
    return load_settings(
        security_protocol="SASL_SSL",
        sasl_mechanism="SCRAM-SHA-512",
        sasl_username="svc",
        sasl_password=SASL_SECRET,
        ssl_password=SSL_SECRET,
        **kw,
    )


def test_secrets_are_secretstr_and_hidden_in_every_rendering() -> None:
    settings = _secret_settings()
    assert isinstance(settings.sasl_password, SecretStr) and isinstance(settings.ssl_password, SecretStr)
    for field in ("sasl_password", "ssl_password"):
        assert Settings.model_fields[field].annotation == SecretStr | None
    renderings = [
        repr(settings),
        str(settings),
        json.dumps(settings.safe_dump(), default=str),
        settings.model_dump_json(),
        str(settings.model_dump()),
    ]
    for text in renderings:
        assert SASL_SECRET not in text and SSL_SECRET not in text
    assert settings.safe_dump()["sasl_password"] == "**********"


def test_settings_command_never_prints_secrets(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    monkeypatch.setenv("SENTIMENT_SECURITY_PROTOCOL", "SASL_SSL")
    monkeypatch.setenv("SENTIMENT_SASL_MECHANISM", "PLAIN")
    monkeypatch.setenv("SENTIMENT_SASL_USERNAME", "svc")
    monkeypatch.setenv("SENTIMENT_SASL_PASSWORD", SASL_SECRET)
    assert main(["settings", "--ssl-password", SSL_SECRET]) == 0
    out, err = capsys.readouterr()
    shown = json.loads(out)
    kafka = shown["kafka"]  # printed by section
    assert kafka["sasl_password"] == "**********" and kafka["ssl_password"] == "**********"
    assert SASL_SECRET not in out + err and SSL_SECRET not in out + err
    assert main(["settings", "--markdown"]) == 0
    out, err = capsys.readouterr()
    assert SASL_SECRET not in out + err


def test_validation_errors_never_echo_secrets(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture, tmp_path: Path
) -> None:
    # another field is invalid while the secrets are set (env and flag)
    monkeypatch.setenv("SENTIMENT_SASL_PASSWORD", SASL_SECRET)
    monkeypatch.setenv("SENTIMENT_MAX_BATCH_SIZE", "lots")
    assert main(["settings", "--ssl-password", SSL_SECRET, "--device", "tpu"]) == 2
    _, err = capsys.readouterr()
    assert "max_batch_size" in err and "device" in err
    assert SASL_SECRET not in err and SSL_SECRET not in err
    monkeypatch.delenv("SENTIMENT_MAX_BATCH_SIZE")
    monkeypatch.delenv("SENTIMENT_SASL_PASSWORD")
    # the secret itself is malformed (a table in the config file)
    config = tmp_path / "worker.toml"
    config.write_text(f'sasl_password = {{ value = "{SASL_SECRET}" }}\nssl_password = ["{SSL_SECRET}"]\n')
    with pytest.raises(SettingsError) as caught:
        load_settings(config)
    assert "sasl_password" in str(caught.value) and "ssl_password" in str(caught.value)
    assert SASL_SECRET not in str(caught.value) and SSL_SECRET not in str(caught.value)
    # SASL without a password: the message names the fields, not values
    with pytest.raises(SettingsError) as caught:
        load_settings(security_protocol="SASL_SSL", sasl_mechanism="PLAIN", sasl_username=SASL_SECRET)
    assert SASL_SECRET not in str(caught.value)


# Loaders that can execute code from data: none may appear in the run path (worker run → resolve an exported dir
# → ONNX Runtime session → stream stages). tests/integration/reliability/test_security.py runs that path with
# them all patched to fail, as a dynamic check.
UNSAFE = re.compile(
    r"\b(pickle|cPickle|_pickle|dill|joblib|shelve|marshal)\b|torch\.load|np\.load|numpy\.load|allow_pickle|"
    r"\byaml\.load\(|\beval\(|\bexec\("
)
RUN_PATH = [
    *sorted((REPO / "worker" / "stream").rglob("*.py")),
    REPO / "worker" / "model" / "runtime.py",
    REPO / "worker" / "model" / "session.py",
    REPO / "worker" / "model" / "loading.py",
    REPO / "worker" / "cli" / "stream_cmds.py",
    REPO / "worker" / "app.py",
    *sorted((REPO / "worker" / "settings").glob("*.py")),
    REPO / "worker" / "records.py",
    REPO / "worker" / "metrics.py",
    REPO / "worker" / "observability.py",
]


def test_no_unsafe_deserialisation_in_the_run_path_source() -> None:
    hits = [
        f"{path.relative_to(REPO)}:{n}: {line.strip()}"
        for path in RUN_PATH
        for n, line in enumerate(path.read_text().splitlines(), 1)
        if UNSAFE.search(line) and not line.lstrip().startswith("#")
    ]
    assert not hits, hits


def test_registered_secrets_are_masked_in_third_party_debug_logs(tmp_path: Path) -> None:
    """kafka-python's admin client logs its whole configuration at debug level: the password must not show."""
    import io
    import logging

    from worker.observability import configure_logging

    secret = "pw-third-party-" + "x7Qz"
    settings = load_settings(security_protocol="SASL_PLAINTEXT", sasl_username="u", sasl_password=secret)
    assert secret in settings.secret_values()
    for fmt in ("json", "console"):
        stream = io.StringIO()
        configure_logging(fmt, "debug", stream=stream)
        logging.getLogger("kafka.admin.client").debug(
            "Starting with configuration: %s", {"sasl_plain_password": secret}
        )
        logging.getLogger("kafka.admin.client").error("failed", exc_info=RuntimeError(f"boom {secret}"))
        text = stream.getvalue()
        assert "Starting with configuration" in text and "**********" in text
        assert secret not in text, text
