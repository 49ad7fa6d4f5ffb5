"""The settings added for the record formats (issue 22) and the simulated device (issue 21): their defaults keep
the behaviour from before, and their checks name the field."""

from __future__ import annotations

import pytest

from worker.settings import SettingsError, load_settings, text_paths

pytestmark = pytest.mark.unit

REGISTRY = "http://registry:8081"


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    for name in list(os.environ):
        if name.startswith("SENTIMENT_"):
            monkeypatch.delenv(name)


def test_defaults_are_the_behaviour_from_before() -> None:
    s = load_settings()
    assert (s.input_format, s.text_field, s.text_separator) == ("json", "text", " ")
    assert (s.output_format, s.output_field, s.output_mode, s.output_id_fields) == ("json", "sentiment", "copy", [])
    assert (s.cloudevents_type_suffix, s.cloudevents_source) == (".sentiment", "sentiment-worker")
    assert s.schema_registry_url is None and s.simulate_device_rate is None
    assert s.schema_registry.secret_values() == []


@pytest.mark.parametrize("fmt", ["json", "text", "cloudevents"])
def test_input_formats_that_need_no_registry(fmt: str) -> None:
    assert load_settings(input_format=fmt).input.input_format == fmt


def test_the_schema_registry_formats_need_its_url() -> None:
    with pytest.raises(SettingsError, match="input_format schema-registry needs schema_registry_url"):
        load_settings(input_format="schema-registry")
    with pytest.raises(SettingsError, match="output_format schema-registry needs schema_registry_url"):
        load_settings(output_format="schema-registry", input_format="schema-registry")
    with pytest.raises(SettingsError, match="needs input_format schema-registry"):
        load_settings(output_format="schema-registry", schema_registry_url=REGISTRY)
    both = load_settings(input_format="schema-registry", output_format="schema-registry", schema_registry_url=REGISTRY)
    assert both.schema_registry.schema_registry_url == REGISTRY and both.output.output_format == "schema-registry"
    with pytest.raises(SettingsError, match="invalid setting input_format"):
        load_settings(input_format="avro")


def test_registry_url_and_credentials_are_checked_and_secrets_masked(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(SettingsError, match=r"invalid setting schema_registry_url .*http:// or https://"):
        load_settings(schema_registry_url="registry:8081")
    assert load_settings(schema_registry_url="https://r:8081/").schema_registry_url == "https://r:8081"
    with pytest.raises(SettingsError, match="schema_registry_password needs schema_registry_username"):
        load_settings(schema_registry_password="pw")
    with pytest.raises(SettingsError, match="not both"):
        load_settings(schema_registry_token="t", schema_registry_username="u")
    with pytest.raises(SettingsError, match="schema_registry_ssl_keyfile needs schema_registry_ssl_certfile"):
        load_settings(schema_registry_ssl_keyfile="/k.pem")
    monkeypatch.setenv("SENTIMENT_SCHEMA_REGISTRY_PASSWORD", "pw-reg-123")
    s = load_settings(schema_registry_url=REGISTRY, schema_registry_username="u", schema_registry_ssl_cafile="/ca")
    assert "pw-reg-123" in s.secret_values() and "pw-reg-123" not in str(s.sections_dump())
    assert s.schema_registry.safe_dump()["schema_registry_password"] == "**********"
    assert s.schema_registry.safe_dump()["schema_registry_ssl_cafile"] == "/ca"
    monkeypatch.delenv("SENTIMENT_SCHEMA_REGISTRY_PASSWORD")
    token = load_settings(schema_registry_token="tok-9").schema_registry
    assert token.secret_values() == ["tok-9"] and "tok-9" not in repr(token)


@pytest.mark.parametrize(
    ("text_field", "paths"),
    [
        ("text", ["text"]),
        ("/data/review/body", ["/data/review/body"]),
        ("review.body", ["review.body"]),
        ("title, /data/body", ["title", "/data/body"]),
        ("/a~1b/c~0d", ["/a~1b/c~0d"]),  # RFC 6901 escapes: "a/b", "c~d"
    ],
)
def test_text_field_takes_pointers_dotted_paths_and_several(text_field: str, paths: list[str]) -> None:
    s = load_settings(text_field=text_field)
    assert s.input.text_paths == paths == text_paths(text_field)


@pytest.mark.parametrize(("text_field", "reason"), [("/a~2b", "RFC 6901"), ("a..b", "empty part"), (" , ", "at least")])
def test_a_malformed_text_field_is_refused(text_field: str, reason: str) -> None:
    with pytest.raises(SettingsError, match=f"invalid setting text_field .*{reason}"):
        load_settings(text_field=text_field)


def test_output_shape_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SENTIMENT_OUTPUT_ID_FIELDS", "id, /meta/trace ,")
    s = load_settings(output_mode="slim", output_field="/enrichment/sentiment", text_separator=" | ")
    assert s.output.output_id_fields == ["id", "/meta/trace"] and s.output.output_mode == "slim"
    assert s.output.output_field == "/enrichment/sentiment" and s.input.text_separator == " | "
    bad_values = [
        ({"output_mode": "full"}, "output_mode"),
        ({"output_field": "a..b"}, "output_field"),
        ({"output_field": "/"}, "output_field"),
        ({"cloudevents_source": ""}, "cloudevents_source"),
    ]
    for bad, field in bad_values:
        with pytest.raises(SettingsError, match=f"invalid setting {field}"):
            load_settings(**bad)


def test_simulate_device_rate_by_env_and_flag(monkeypatch: pytest.MonkeyPatch) -> None:
    from worker.cli import build_parser
    from worker.cli.common import settings_from_args

    monkeypatch.setenv("SENTIMENT_SIMULATE_DEVICE_RATE", "4000")
    assert load_settings().inference.simulate_device_rate == 4000.0
    args = build_parser().parse_args(["settings", "--simulate-device-rate", "2500.5"])
    assert settings_from_args(args).inference.simulate_device_rate == 2500.5
    for bad in ("0", "-1", "fast"):
        with pytest.raises(
            SettingsError, match=r"invalid setting simulate_device_rate .*SENTIMENT_SIMULATE_DEVICE_RATE"
        ):
            load_settings(simulate_device_rate=bad)
