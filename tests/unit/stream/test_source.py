"""The consumer's configuration follows the settings (no broker)."""

from __future__ import annotations

import pytest

from worker.settings import load_settings
from worker.stream.source import consumer_config

pytestmark = pytest.mark.unit


def _settings(**overrides: object):  # type: ignore[no-untyped-def]
    return load_settings(bootstrap_servers="127.0.0.1:9092", input_topics="in", **overrides)


def test_fetch_wait_defaults_to_kafkas_and_follows_the_setting() -> None:
    assert consumer_config(_settings())["fetch_max_wait_ms"] == 500
    assert consumer_config(_settings(fetch_max_wait_ms=10))["fetch_max_wait_ms"] == 10


def test_commits_are_manual_and_offsets_start_where_the_settings_say() -> None:
    config = consumer_config(_settings(auto_offset_reset="latest"))
    assert config["enable_auto_commit"] is False
    assert config["auto_offset_reset"] == "latest"
