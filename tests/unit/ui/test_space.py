"""The Hugging Face Space (deploy/space/): its card's header, its pins (equal to pyproject.toml's) and its app.py,
which runs the same entry point as ``sentiment-worker ui --demo``."""

from __future__ import annotations

import runpy
import tomllib
from typing import Any

import pytest
import yaml

from tests.support.blocked_imports import REPO
from webapp.app import UiOptions

pytestmark = pytest.mark.unit

SPACE = REPO / "deploy" / "space"


def _pyproject() -> dict[str, Any]:
    return tomllib.loads((REPO / "pyproject.toml").read_text())["project"]


def test_the_card_header_is_a_gradio_space_on_the_pinned_gradio() -> None:
    text = (SPACE / "README.md").read_text()
    assert text.startswith("---\n")
    header = yaml.safe_load(text.split("---\n")[1])
    gradio_pin = next(r for r in _pyproject()["optional-dependencies"]["ui"] if r.startswith("gradio=="))
    assert header["sdk"] == "gradio" and header["sdk_version"] == gradio_pin.split("==")[1]
    assert header["app_file"] == "app.py" and (SPACE / header["app_file"]).is_file()
    assert str(header["python_version"]) == "3.11"
    assert len(header["short_description"]) <= 60  # the Hub's limit


def test_requirements_are_the_projects_pins() -> None:
    project = _pyproject()
    wanted = set(project["dependencies"])
    for extra in ("export", "train", "http", "ui"):
        wanted |= {r for r in project["optional-dependencies"][extra] if not r.startswith("sentiment-worker[")}
    lines = [line.strip() for line in (SPACE / "requirements.txt").read_text().splitlines()]
    pins = {line for line in lines if line and not line.startswith(("#", "--"))}
    assert pins == wanted
    assert "--extra-index-url https://download.pytorch.org/whl/cpu" in lines


def test_app_runs_the_ui_demo_entry_point(monkeypatch: pytest.MonkeyPatch) -> None:
    import webapp

    calls: list[tuple[Any, UiOptions]] = []

    def fake_run_ui(make_settings: Any, options: UiOptions, out: Any) -> int:
        calls.append((make_settings, options))
        return 0

    monkeypatch.setattr(webapp, "run_ui", fake_run_ui)
    monkeypatch.setenv("GRADIO_SERVER_PORT", "7861")
    with pytest.raises(SystemExit) as exited:
        runpy.run_path(str(SPACE / "app.py"), run_name="__main__")
    assert exited.value.code == 0
    ((make_settings, options),) = calls
    assert options.demo and options.port == 7861 and options.host == "0.0.0.0"
    settings = make_settings({"bootstrap_servers": "127.0.0.1:1", "input_topics": "demo.reviews"})
    assert settings.bootstrap_servers == ["127.0.0.1:1"] and settings.input_topics == ["demo.reviews"]
