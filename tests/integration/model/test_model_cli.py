"""The export / classify commands end to end on the tiny model (in-process CLI, real export + runtime)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from tests.support.blocked_imports import run_without_extras
from tests.support.cuda_probe import cuda_session_works
from worker.cli import build_parser, main
from worker.model.manifest import ONNX_NAME, is_exported_dir, read_manifest

pytestmark = pytest.mark.integration


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in ("SENTIMENT_MODEL", "SENTIMENT_PRECISION", "SENTIMENT_CONFIG_FILE"):
        monkeypatch.delenv(name, raising=False)
    # The CPU provider unless a test asks for CUDA: device auto would pick a working GPU.
    monkeypatch.setenv("SENTIMENT_DEVICE", "cpu")
    monkeypatch.setenv("SENTIMENT_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("SENTIMENT_LOG_FORMAT", "json")


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_export_prints_dir_last_and_reuses_cache(
    tiny_model_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = _run(capsys, "export", "--model", str(tiny_model_dir))
    assert code == 0
    lines = out.strip().splitlines()
    exported = Path(lines[-1])
    assert is_exported_dir(exported) and exported.is_relative_to(tmp_path / "cache")
    assert lines[0].startswith("exported in") and "precision=fp32" in lines[0]

    code, out, _ = _run(capsys, "export", "--model", str(tiny_model_dir))
    assert code == 0 and out.strip().splitlines()[-1] == str(exported)
    assert out.startswith("reused cached export")

    target = tmp_path / "placed"
    code, out, _ = _run(
        capsys, "export", "--model", str(tiny_model_dir), "--precision", "int8", "--output", str(target)
    )
    assert code == 0 and out.strip().splitlines()[-1] == str(target)
    assert read_manifest(target)["precision"] == "int8"


def test_export_output_refuses_foreign_dir(
    tiny_model_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "keep.txt").write_text("precious")
    code, _, err = _run(capsys, "export", "--model", str(tiny_model_dir), "--output", str(foreign))
    assert code == 2 and "refusing to overwrite" in err
    assert (foreign / "keep.txt").read_text() == "precious"


def test_export_unreachable_hub_model(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = _run(capsys, "export", "--model", "sentiment-stream-tests/no-such-model-3f9c", "--revision", "r1")
    assert code == 1 and out == ""
    assert "no-such-model-3f9c" in err and "build-starter" in err


def test_classify_text_output(tiny_onnx_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = _run(capsys, "classify", "--model", str(tiny_onnx_dir), "I loved it", "awful rude staff")
    assert code == 0
    header, *rows = out.strip().splitlines()
    assert header.startswith("# model=") and "provider=CPUExecutionProvider" in header
    assert [row.split("\t")[0] for row in rows] == ["POSITIVE", "NEGATIVE"]
    assert [row.split("\t")[2] for row in rows] == ["I loved it", "awful rude staff"]
    assert 0.5 <= float(rows[0].split("\t")[1]) <= 1.0
    loaded = [json.loads(line) for line in err.splitlines() if '"model_loaded"' in line]
    assert loaded and loaded[0]["provider"] == "CPUExecutionProvider"


def test_classify_json_keeps_input_order(tiny_onnx_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    texts = ["terrible"] + [f"good {'very ' * i}nice day" for i in range(40)] + ["bad", "I loved it"]
    code, out, _ = _run(
        capsys, "classify", "--model", str(tiny_onnx_dir), "--json", "--inference-batch-size", "4", *texts
    )
    assert code == 0
    records = [json.loads(line) for line in out.strip().splitlines()]
    assert [r["text"] for r in records] == texts
    for record in records:
        assert set(record) == {"text", "label", "score", "scores"}
        assert set(record["scores"]) == {"NEGATIVE", "POSITIVE"}
        assert record["score"] == max(record["scores"].values())
    assert records[0]["label"] == "NEGATIVE" and records[-1]["label"] == "POSITIVE"


def test_classify_file_text_and_jsonl(tiny_onnx_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    plain = tmp_path / "texts.txt"
    plain.write_text("I loved it\n\nworst ever\n", encoding="utf-8")
    code, out, _ = _run(capsys, "classify", "--model", str(tiny_onnx_dir), "--json", "--file", str(plain))
    assert code == 0
    assert [json.loads(line)["text"] for line in out.splitlines()] == ["I loved it", "worst ever"]

    jsonl = tmp_path / "texts.jsonl"
    jsonl.write_text('{"body": "great", "id": 1}\n{"body": "bad", "id": 2}\n', encoding="utf-8")
    code, out, _ = _run(
        capsys, "classify", "--model", str(tiny_onnx_dir), "--json", "--file", str(jsonl), "--text-field", "body"
    )
    assert code == 0
    assert [json.loads(line)["text"] for line in out.splitlines()] == ["great", "bad"]

    code, out, err = _run(capsys, "classify", "--model", str(tiny_onnx_dir), "--file", str(jsonl))
    assert code == 2 and "field 'text'" in err


def test_classify_from_local_hf_dir_exports_first(tiny_model_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _run(capsys, "classify", "--model", str(tiny_model_dir), "--json", "I loved it")
    assert code == 0 and json.loads(out)["label"] == "POSITIVE"


def test_classify_errors(tiny_onnx_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = _run(capsys, "classify", "--model", str(tiny_onnx_dir))
    assert code == 2 and "no texts" in err
    code, _, err = _run(capsys, "classify", "--model", str(tiny_onnx_dir), "--device", "gpu", "hi")
    assert code == 2 and "device" in err


def test_classify_device_cuda_fails_where_cuda_does_not_work(
    tiny_onnx_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    if cuda_session_works(tiny_onnx_dir / ONNX_NAME):
        pytest.skip("CUDA works here: test_classify_device_cuda_runs_on_the_gpu covers --device cuda")
    code, _, err = _run(capsys, "classify", "--model", str(tiny_onnx_dir), "--device", "cuda", "hi")
    assert code == 1 and "cuda" in err


def test_classify_device_cuda_runs_on_the_gpu(tiny_onnx_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    if not cuda_session_works(tiny_onnx_dir / ONNX_NAME):
        pytest.skip("ONNX Runtime's CUDA execution provider does not work here")
    code, out, err = _run(
        capsys, "classify", "--model", str(tiny_onnx_dir), "--device", "cuda", "I loved it", "awful rude staff"
    )
    assert code == 0, err
    header, *rows = out.strip().splitlines()
    assert "provider=CUDAExecutionProvider" in header
    assert [row.split("\t")[0] for row in rows] == ["POSITIVE", "NEGATIVE"]
    loaded = [json.loads(line) for line in err.splitlines() if '"model_loaded"' in line]
    assert loaded and loaded[0]["provider"] == "CUDAExecutionProvider"


def test_classify_runs_without_the_extras(tiny_onnx_dir: Path) -> None:
    """`pip install sentiment-worker` alone (no torch/transformers/optimum/onnx) classifies with an exported dir."""
    argv = ["classify", "--model", str(tiny_onnx_dir), "--json", "I loved it", "awful rude staff"]
    proc = run_without_extras(f"from worker.cli import main\nsys.exit(main({argv!r}))\n")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert [json.loads(line)["label"] for line in proc.stdout.strip().splitlines()] == ["POSITIVE", "NEGATIVE"]


def test_export_without_the_extra_says_which_to_install(tiny_model_dir: Path, tmp_path: Path) -> None:
    cache = tmp_path / "no-extra-cache"
    argv = ["export", "--model", str(tiny_model_dir), "--cache-dir", str(cache)]
    proc = run_without_extras(f"from worker.cli import main\nsys.exit(main({argv!r}))\n")
    assert proc.returncode == 1 and proc.stdout == ""
    assert "pip install 'sentiment-worker[export]'" in proc.stderr
    assert not any((cache / "exports").iterdir()), "a failed export leaves nothing behind"


@pytest.mark.parametrize("command", ["export", "classify", "schemas"])
def test_every_option_is_explained(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    command_parser = sub.choices[command]
    for action in command_parser._actions:
        assert action.help and len(action.help) > 10, f"{command} {action.option_strings or action.dest}"
    with pytest.raises(SystemExit) as exit_info:
        main([command, "--help"])
    assert exit_info.value.code == 0
    assert command in capsys.readouterr().out
