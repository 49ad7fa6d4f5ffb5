"""`sentiment-worker finetune` and `eval` on the tiny model (exports fp32 + INT8 through the foundation)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from worker.cli import main

pytestmark = pytest.mark.integration


def test_finetune_then_eval(
    tmp_path: Path, starter_tiny_model: Path, toy_files: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    train, test = toy_files
    out = tmp_path / "ft"
    cache = tmp_path / "cache"
    argv = ["finetune", "--model", str(starter_tiny_model), "--train", str(train), "--eval", str(test)]
    argv += ["--output", str(out), "--cache-dir", str(cache), "--epochs", "4", "--lr", "1e-3", "--threads", "1"]
    argv += ["--batch-size", "16", "--seed", "0", "--device", "cpu", "--no-progress", "--log-level", "error"]
    assert main(argv) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    fp32_dir = Path(lines[-1])
    assert (fp32_dir / "model.onnx").is_file() and (fp32_dir / "sentiment-manifest.json").is_file()
    card = (out / "README.md").read_text()
    assert "| test | 200 |" in card and "int8 vs pytorch" in card and "fp32 vs pytorch" in card

    assert main(["eval", "--model", str(out), "--data", str(test), "--json", "--cache-dir", str(cache)]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["backends"] == ["pytorch", "fp32", "int8"]
    assert report["metrics"]["test"]["pytorch"]["accuracy"] >= 0.9
    assert report["metrics"]["test"]["fp32"]["accuracy"] == report["metrics"]["test"]["pytorch"]["accuracy"]
    fp32_vs_torch = next(a for a in report["agreement"]["test"] if a["other"] == "fp32")
    assert fp32_vs_torch["max_abs_logit_diff"] <= 1e-4
    assert set(report["metrics"]["test"]["int8"]["per_class"]) == {"NEGATIVE", "POSITIVE"}

    # An exported dir works too: its local HF source adds PyTorch and the other precision.
    assert main(["eval", "--model", str(fp32_dir), "--data", str(test), "--cache-dir", str(cache)]) == 0
    text = capsys.readouterr().out
    assert "pytorch" in text and "fp32 vs pytorch" in text and "confusion" in text


def test_finetune_bad_file_exit_code(tmp_path: Path, starter_tiny_model: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "x", "label": 7}\n')
    assert main(["finetune", "--model", str(starter_tiny_model), "--train", str(bad), "--log-level", "error"]) == 2


def test_finetune_resume_flag(
    tmp_path: Path, starter_tiny_model: Path, toy_files: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    train, test = toy_files
    out = tmp_path / "ft"
    argv = ["finetune", "--model", str(starter_tiny_model), "--train", str(train), "--eval", str(test)]
    argv += ["--output", str(out), "--lr", "1e-3", "--threads", "1", "--batch-size", "16", "--no-export"]
    argv += ["--device", "cpu", "--log-level", "error"]
    assert main([*argv, "--epochs", "1"]) == 0
    assert Path(capsys.readouterr().out.strip().splitlines()[-1]) == out
    assert json.loads((out / "training.json").read_text())["steps"] == 25

    assert main([*argv, "--epochs", "2", "--resume"]) == 0
    record = json.loads((out / "training.json").read_text())
    assert record["steps"] == 50 and record["resumed_from"].endswith("checkpoint-25")
    assert [h["epoch"] for h in record["history"]] == [2]
    assert "resumed from checkpoint-25" in (out / "README.md").read_text()

    # nothing to resume from: a clear error, exit code 2
    argv[argv.index(str(out))] = str(tmp_path / "other")
    assert main([*argv, "--resume"]) == 2
    assert "nothing to resume" in capsys.readouterr().err
