"""Serving apart from training: the run path imports without the [export]/[train] extras, and a missing
extra is reported as such (and only then)."""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path

import pytest

from tests.support.blocked_imports import REPO, run_without_extras
from worker.model import errors, export
from worker.model.errors import (
    EXPORT_PACKAGES,
    TRAIN_PACKAGES,
    ExtraNotInstalledError,
    ModelUnavailableError,
    extra_imports,
)

pytestmark = pytest.mark.unit

SERVING_MODULES = (
    "worker.model.manifest",
    "worker.model.runtime",
    "worker.model.resolve",
    "worker.model.export",
    "worker.model.starter_cache",
    "worker.stream.runner",
)


def _names(requirements: list[str]) -> set[str]:
    return {re.split(r"[=<>\[ ;]", req, maxsplit=1)[0].lower() for req in requirements}


def test_serving_modules_and_cli_import_without_the_extras() -> None:
    code = f"""
import importlib, json
from worker.cli import build_parser
build_parser()
for name in {SERVING_MODULES!r}:
    importlib.import_module(name)
heavy = ("torch", "transformers", "optimum", "onnx")
loaded = sorted(m for m in sys.modules if m.partition(".")[0] in heavy or m.startswith("training"))
print(json.dumps(loaded))
"""
    proc = run_without_extras(code)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == []


def test_the_blocker_really_blocks() -> None:
    """The check above means something: importing training code under the blocker fails."""
    proc = run_without_extras("import training.finetune\n")
    assert proc.returncode != 0 and "ModuleNotFoundError" in proc.stderr


def test_export_extra_holds_the_export_stack_and_core_does_not() -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    assert _names(extras["export"]) == set(EXPORT_PACKAGES)
    assert not _names(project["dependencies"]) & set(EXPORT_PACKAGES)
    assert "sentiment-worker[export]" in extras["train"]
    # [train] = [export] + its own packages (accelerate, for transformers.Trainer): errors.TRAIN_PACKAGES lists both
    assert set(EXPORT_PACKAGES) | (_names(extras["train"]) - {"sentiment-worker"}) == set(TRAIN_PACKAGES)
    assert "accelerate" in TRAIN_PACKAGES
    assert {"onnxruntime-gpu", "tokenizers", "numpy", "huggingface_hub"} <= _names(project["dependencies"])


def test_missing_third_party_module_names_the_extra() -> None:
    expected = r"pip install 'sentiment-worker\[export\]'"
    with pytest.raises(ExtraNotInstalledError, match=expected) as info, extra_imports("export", "exporting"):
        raise ModuleNotFoundError("No module named 'optimum'", name="optimum")
    assert info.value.missing == ["optimum"] and isinstance(info.value, ModelUnavailableError)


@pytest.mark.parametrize(
    "error",
    [
        ModuleNotFoundError("No module named 'worker.model.gone'", name="worker.model.gone"),  # our own code
        ImportError("cannot import name 'main_export' from 'optimum.exporters.onnx'", name="optimum.exporters.onnx"),
    ],
    ids=["own-module", "wrong-version"],
)
def test_other_import_errors_are_not_a_missing_extra(error: ImportError) -> None:
    with pytest.raises(type(error)) as info, extra_imports("export", "exporting a model to ONNX"):
        raise error
    assert info.value is error


def test_export_without_the_extra_says_what_to_install(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text("{}")
    (model / "model.safetensors").write_bytes(b"weights")
    monkeypatch.setattr(errors, "missing_distributions", lambda names: ["optimum", "torch"])
    with pytest.raises(ExtraNotInstalledError, match=r"missing: optimum, torch.*sentiment-worker\[export\]"):
        export.export_model(model, cache_dir=tmp_path / "cache")
    assert not (tmp_path / "cache" / "exports").exists(), "nothing is started before the check"


def test_installed_distributions_are_not_missing() -> None:
    assert errors.missing_distributions(["numpy", "sentiment-worker-no-such-dist"]) == ["sentiment-worker-no-such-dist"]


def test_a_command_of_a_package_the_installation_lacks_says_what_to_install() -> None:
    """The images hold worker/ only: a command of ``training`` (or ``devtools``) exits 2 with a line, no traceback."""
    proc = run_without_extras("import sys\nfrom worker.cli import main\nsys.exit(main(['model', 'build-starter']))\n")
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "command needs the training package" in proc.stderr and "Traceback" not in proc.stderr
