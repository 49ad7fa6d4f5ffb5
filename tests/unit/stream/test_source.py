"""The consumer's configuration follows the settings (no broker)."""

from __future__ import annotations

from typing import Any

import pytest

from worker.settings import load_settings
from worker.stream.source import consumer_config

pytestmark = pytest.mark.unit


def _config(**overrides: object) -> dict[str, Any]:
    settings = load_settings(bootstrap_servers="127.0.0.1:9092", input_topics="in", **overrides)
    return consumer_config(settings.kafka, settings.input)


def test_fetch_wait_defaults_to_kafkas_and_follows_the_setting() -> None:
    assert _config()["fetch_max_wait_ms"] == 500
    assert _config(fetch_max_wait_ms=10)["fetch_max_wait_ms"] == 10


def test_commits_are_manual_and_offsets_start_where_the_settings_say() -> None:
    config = _config(auto_offset_reset="latest")
    assert config["enable_auto_commit"] is False
    assert config["auto_offset_reset"] == "latest"
