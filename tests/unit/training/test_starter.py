"""Starter cache lookup and the cached fast path of build-starter and the CLI (no training, no network)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from training import starter
from training.starter import StarterConfig, build_starter
from worker.model import starter_cache
from worker.model.starter_cache import cached_starter_dir

pytestmark = pytest.mark.unit


def _fake_export(directory: Path, precision: str) -> Path:
    directory.mkdir(parents=True)
    (directory / "model.onnx").write_bytes(b"onnx")
    (directory / "config.json").write_text(json.dumps({"id2label": {"0": "NEGATIVE", "1": "POSITIVE"}}))
    manifest = {
        "format_version": 1,
        "onnx_file": "model.onnx",
        "onnx_sha256": "0" * 64,
        "precision": precision,
        "labels": ["NEGATIVE", "POSITIVE"],
    }
    (directory / "sentiment-manifest.json").write_text(json.dumps(manifest))
    return directory


def _fake_build(cache_dir: Path, config: StarterConfig | None = None) -> dict[str, Path]:
    config = config or StarterConfig()
    root = cache_dir / "starter"
    exports = {p: _fake_export(root / "exports" / f"model-x-{p}", p) for p in ("fp32", "int8")}
    record = {
        "recipe_key": config.recipe_key(),
        # fp32 absolute, int8 relative to <cache>/starter (what builds write): both must resolve
        "exports": {"fp32": str(exports["fp32"]), "int8": "exports/model-x-int8"},
        "summary": {"accuracy": {"fp32_all": 0.9}, "targets_met": {"fp32_accuracy_ge_0.88": True}},
        "timings_s": {"total": 1.0},
    }
    (root / "starter.json").write_text(json.dumps(record))
    return exports


def test_cached_starter_dir_none_when_not_built(tmp_path: Path) -> None:
    assert cached_starter_dir(tmp_path) is None
    assert cached_starter_dir(tmp_path, "int8") is None


def test_cached_starter_dir_per_precision(tmp_path: Path) -> None:
    exports = _fake_build(tmp_path)
    assert cached_starter_dir(tmp_path) == exports["fp32"]
    assert cached_starter_dir(tmp_path, "int8") == exports["int8"]
    assert cached_starter_dir(tmp_path, "fp16") is None


def test_cached_starter_dir_none_when_export_incomplete(tmp_path: Path) -> None:
    exports = _fake_build(tmp_path)
    (exports["fp32"] / "model.onnx").unlink()
    assert cached_starter_dir(tmp_path) is None
    (tmp_path / "starter" / "starter.json").write_text("{not json")
    assert cached_starter_dir(tmp_path, "int8") is None


def test_starter_model_dir_resolves_the_records_relative_folder(tmp_path: Path) -> None:
    assert starter_cache.starter_model_dir(tmp_path) is None  # not built
    _fake_build(tmp_path)
    assert starter_cache.starter_model_dir(tmp_path) is None  # a record without model_dir
    record_path = tmp_path / "starter" / "starter.json"
    record = json.loads(record_path.read_text())
    record["model_dir"] = "model"  # relative to <cache>/starter, as builds write it
    record_path.write_text(json.dumps(record))
    assert starter_cache.starter_model_dir(tmp_path) is None  # the folder has no config.json
    (tmp_path / "starter" / "model").mkdir()
    (tmp_path / "starter" / "model" / "config.json").write_text("{}")
    assert starter_cache.starter_model_dir(tmp_path) == tmp_path / "starter" / "model"


def test_build_starter_reuses_a_complete_build(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    exports = _fake_build(tmp_path)

    def no_build(*args: object, **kwargs: object) -> None:
        raise AssertionError("must not rebuild")

    monkeypatch.setattr(starter, "_build", no_build)
    build = build_starter(tmp_path)
    assert build.cached and build.fp32_dir == exports["fp32"] and build.exports["int8"] == exports["int8"]


def test_build_starter_rebuilds_when_recipe_changes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_build(tmp_path)
    calls: list[StarterConfig] = []
    monkeypatch.setattr(starter, "_build", lambda cache, root, config, **kw: calls.append(config) or "rebuilt")
    assert build_starter(tmp_path, config=StarterConfig(epochs=2)) == "rebuilt"
    assert build_starter(tmp_path, force=True) == "rebuilt"
    assert len(calls) == 2


def test_recipe_key_ignores_threads_and_device() -> None:
    assert StarterConfig(threads=1, device="cpu").recipe_key() == StarterConfig().recipe_key()
    assert StarterConfig(lr=1e-4).recipe_key() != StarterConfig().recipe_key()


def test_cli_build_starter_prints_fp32_dir_last(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from worker.cli import main

    exports = _fake_build(tmp_path)
    assert main(["model", "build-starter", "--cache-dir", str(tmp_path), "--log-level", "error"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[-1] == str(exports["fp32"])
    assert any("0.9000" in line for line in lines)
    assert main(["model", "build-starter", "--cache-dir", str(tmp_path), "--precision", "int8"]) == 0
    assert capsys.readouterr().out.strip().splitlines()[-1] == str(exports["int8"])


def test_cli_build_starter_offline_without_materials(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from worker.cli import main

    monkeypatch.setenv("SENTIMENT_OFFLINE", "1")
    assert main(["model", "build-starter", "--cache-dir", str(tmp_path), "--log-level", "error"]) == 3
    assert "not cached" in capsys.readouterr().err
