"""Settings in typed sections: every field in exactly one section, the names of every env var, flag and config key
unchanged by the split, the sections handed out as frozen copies, `sentiment-worker settings` by section."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydantic import ValidationError

from worker.cli import build_parser, main
from worker.cli.common import settings_from_args
from worker.cli.info_cmds import settings_markdown
from worker.settings import (
    SECTIONS,
    Batching,
    Http,
    Inference,
    Input,
    Kafka,
    ModelRollout,
    Observability,
    Output,
    Placement,
    SchemaRegistry,
    Settings,
    load_settings,
    section_of,
)

pytestmark = pytest.mark.unit

# Every setting before the split into sections (worker/settings.py, 78 fields): each keeps its name, so its env var
# SENTIMENT_<NAME>, its flag --<name> and its config-file key <name>.
BEFORE_THE_SPLIT = (
    "bootstrap_servers",
    "client_id",
    "security_protocol",
    "sasl_mechanism",
    "sasl_username",
    "sasl_password",
    "ssl_cafile",
    "ssl_certfile",
    "ssl_keyfile",
    "ssl_password",
    "ssl_check_hostname",
    "input_topics",
    "input_pattern",
    "group_id",
    "output_topic",
    "dlq_topic",
    "output_partitioning",
    "auto_offset_reset",
    "missing_topics",
    "topic_partitions",
    "topic_replication_factor",
    "session_timeout_ms",
    "heartbeat_interval_ms",
    "max_poll_interval_ms",
    "max_poll_records",
    "fetch_max_bytes",
    "fetch_max_wait_ms",
    "commit_interval_ms",
    "compression_type",
    "linger_ms",
    "producer_max_request_size",
    "producer_buffer_bytes",
    "producer_max_block_ms",
    "reconnect_backoff_max_ms",
    "max_batch_size",
    "max_wait_ms",
    "max_batch_tokens",
    "inference_batch_size",
    "cuda_graph",
    "queue_max_batches",
    "model",
    "model_revision",
    "device",
    "device_id",
    "precision",
    "max_length",
    "threads",
    "intra_op_spinning",
    "cache_dir",
    "inference_failures_to_open",
    "inference_rebuild_attempts",
    "inference_rebuild_backoff_s",
    "model_watch_s",
    "allow_label_change",
    "canary_file",
    "canary_min_agreement",
    "canary_min_accuracy",
    "shadow_model",
    "shadow_sample_rate",
    "input_format",
    "text_field",
    "max_message_bytes",
    "max_text_chars",
    "text_overflow",
    "log_format",
    "log_level",
    "log_interval_s",
    "metrics_port",
    "shutdown_timeout_s",
    "processes",
    "devices",
    "http_port",
    "http_host",
    "http_api_key",
    "http_max_inputs",
    "http_max_queued",
    "http_max_body_bytes",
    "http_timeout_s",
)

# One field of each section, a value for it (as text, as env vars and flags give it), the value parsed.
SAMPLES = {
    "kafka": ("reconnect_backoff_max_ms", "1234", 1234),
    "input": ("fetch_max_wait_ms", "10", 10),
    "schema_registry": ("schema_registry_url", "http://registry:8081", "http://registry:8081"),
    "output": ("linger_ms", "11", 11),
    "batching": ("max_batch_size", "32", 32),
    "inference": ("max_length", "64", 64),
    "rollout": ("shadow_sample_rate", "0.5", 0.5),
    "placement": ("devices", "0,1", [0, 1]),
    "http": ("http_max_inputs", "7", 7),
    "observability": ("log_interval_s", "2.5", 2.5),
}


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    for name in list(os.environ):
        if name.startswith("SENTIMENT_"):
            monkeypatch.delenv(name)


def test_every_field_is_in_exactly_one_section_and_the_flat_model_has_them_all() -> None:
    owners: dict[str, list[str]] = {}
    for name, section in SECTIONS.items():
        for field in section.model_fields:
            owners.setdefault(field, []).append(name)
    assert {f: o for f, o in owners.items() if len(o) > 1} == {}
    assert set(owners) == set(Settings.model_fields)
    assert set(BEFORE_THE_SPLIT) <= set(Settings.model_fields), set(BEFORE_THE_SPLIT) - set(Settings.model_fields)
    assert section_of("max_batch_size") == "batching" and section_of("http_api_key") == "http"


def test_every_setting_before_the_split_keeps_its_flag() -> None:
    parser = build_parser()
    args = parser.parse_args(["settings", *[f"--{name.replace('_', '-')}=x" for name in BEFORE_THE_SPLIT]])
    assert {k.removeprefix("setting_") for k, v in vars(args).items() if v == "x"} == set(BEFORE_THE_SPLIT)


@pytest.mark.parametrize("section", sorted(SAMPLES))
def test_env_var_flag_and_config_key_reach_the_section(
    section: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    field, text, parsed = SAMPLES[section]
    monkeypatch.setenv(f"SENTIMENT_{field.upper()}", text)
    assert getattr(getattr(load_settings(), section), field) == parsed
    monkeypatch.delenv(f"SENTIMENT_{field.upper()}")
    args = build_parser().parse_args(["settings", f"--{field.replace('_', '-')}", text])
    assert getattr(getattr(settings_from_args(args), section), field) == parsed
    config = tmp_path / "worker.toml"
    config.write_text(f"{field} = {json.dumps(parsed)}\n")
    assert getattr(getattr(load_settings(config), section), field) == parsed


def test_the_accessors_give_each_section_its_values_as_a_frozen_copy() -> None:
    settings = load_settings(bootstrap_servers="k:1", input_topics="in", max_wait_ms=7, http_port=0, threads=2)
    expected = {
        "kafka": Kafka,
        "input": Input,
        "schema_registry": SchemaRegistry,
        "output": Output,
        "batching": Batching,
        "inference": Inference,
        "rollout": ModelRollout,
        "placement": Placement,
        "http": Http,
        "observability": Observability,
    }
    assert {name: type(getattr(settings, name)) for name in SECTIONS} == expected
    batching = settings.batching
    assert batching.max_wait_ms == 7 and settings.kafka.bootstrap_servers == ["k:1"]
    assert settings.inference.threads == 2 and settings.http.http_port == 0
    assert set(batching.model_dump()) == set(Batching.model_fields)  # nothing of other sections
    with pytest.raises(ValidationError, match="frozen"):
        batching.max_wait_ms = 1  # type: ignore[misc]
    with pytest.raises(ValidationError, match="frozen"):
        settings.max_wait_ms = 1  # type: ignore[misc]
    changed = batching.model_copy(update={"max_wait_ms": 1})
    assert changed.max_wait_ms == 1 and settings.batching.max_wait_ms == 7  # a copy: the settings keep theirs
    assert settings.with_section(changed).max_wait_ms == 1


def test_which_fields_were_set_survives_into_the_section() -> None:
    # model/resolve.hub_revision tells a given model_revision from the default by model_fields_set
    assert "model_revision" in load_settings(model_revision="v2").inference.model_fields_set
    assert "model_revision" not in load_settings().inference.model_fields_set


def test_a_section_validates_its_own_fields_on_its_own() -> None:
    assert Batching().max_batch_size == "auto" and Input().text_field == "text"
    with pytest.raises(ValidationError, match="max_batch_size"):
        Batching(max_batch_size=0)
    with pytest.raises(ValidationError, match="not host:port"):
        Kafka(bootstrap_servers="nohost")
    with pytest.raises(ValidationError, match="input_topics or input_pattern"):
        Input(input_topics=["a"], input_pattern="b.*")
    with pytest.raises(ValidationError, match="unknown"):
        Output(output_topic="{nope}")


def test_validators_of_every_section_run_on_the_flat_settings() -> None:
    from worker.settings import SettingsError

    for bad, match in [
        ({"bootstrap_servers": "nohost"}, "bootstrap_servers"),  # kafka
        ({"devices": "0,x"}, "devices"),  # placement's csv
        ({"output_id_fields": "a,,b", "dlq_topic": "{label}"}, "dlq_topic"),  # output
        ({"precision": "fp16", "device": "cpu"}, "fp16"),  # inference
        ({"schema_registry_password": "pw"}, "schema_registry_username"),  # schema registry
    ]:
        with pytest.raises(SettingsError, match=match):
            load_settings(**bad)


def test_the_settings_command_prints_the_sections_with_secrets_masked(capsys: pytest.CaptureFixture) -> None:
    args = ["settings", "--schema-registry-url", "https://r:8081", "--schema-registry-token", "tok-secret-1"]
    assert main([*args, "--http-api-key", "key-secret-2", "--max-wait-ms", "9"]) == 0
    out = capsys.readouterr().out
    shown = json.loads(out)
    assert list(shown) == list(SECTIONS)
    assert shown["batching"]["max_wait_ms"] == 9 and shown["batching"]["max_batch_size"] == "auto"
    assert shown["schema_registry"]["schema_registry_token"] == "**********"
    assert shown["http"]["http_api_key"] == "**********"
    assert "tok-secret-1" not in out and "key-secret-2" not in out


def test_the_reference_has_a_table_per_section_with_every_setting_once() -> None:
    text = settings_markdown()
    headings = [line.removeprefix("## ") for line in text.splitlines() if line.startswith("## ")]
    assert headings == [section.title for section in SECTIONS.values()]
    rows = [line.split(" | ")[0].removeprefix("| ") for line in text.splitlines() if line.startswith("| ")]
    rows = [row for row in rows if row not in ("Setting", "|---|---|---|---|")]
    assert sorted(rows) == sorted(Settings.model_fields)
    assert "| text_separator | `SENTIMENT_TEXT_SEPARATOR` / `--text-separator` | ` ` (a space) |" in text
