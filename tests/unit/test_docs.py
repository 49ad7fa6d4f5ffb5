"""Docs match the code: the README's settings table is generated from the Settings model."""

from pathlib import Path

import pytest

from worker.cli.info_cmds import settings_markdown
from worker.settings import Settings, env_name

pytestmark = pytest.mark.unit
README = Path(__file__).resolve().parents[2] / "README.md"


def test_readme_settings_table_is_current() -> None:
    text = README.read_text(encoding="utf-8")
    start = text.index("<!-- settings-table:start")
    start = text.index("\n", start) + 1
    end = text.index("<!-- settings-table:end -->")
    assert text[start:end].strip() == settings_markdown().strip(), (
        "README settings table is stale: run `sentiment-worker settings --markdown` and paste it"
    )


def test_every_setting_documented_with_env_var() -> None:
    text = README.read_text(encoding="utf-8")
    missing = [name for name in Settings.model_fields if f"`{env_name(name)}`" not in text]
    assert not missing
