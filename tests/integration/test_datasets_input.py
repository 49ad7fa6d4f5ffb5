"""``--data hf:...`` gives the same figures as the same rows in a JSONL file: ``eval`` metrics, ``classify`` output,
``produce`` records (real tiny ONNX export, real embedded broker, local datasets built with ``datasets``, offline).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.support.hf_data import go_offline, save_to_disk, write_jsonl
from tests.support.kafka_utils import consume_all
from tests.unit.training.toydata import toy_examples
from worker.cli import main

pytestmark = pytest.mark.integration

ROWS = toy_examples(40, seed=3)


@pytest.fixture(autouse=True)
def _env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    go_offline(monkeypatch, tmp_path / "hf-cache")
    for name in ("SENTIMENT_MODEL", "SENTIMENT_PRECISION", "SENTIMENT_CONFIG_FILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("SENTIMENT_DEVICE", "cpu")
    monkeypatch.setenv("SENTIMENT_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("SENTIMENT_LOG_FORMAT", "json")


def _out(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    code = main(list(argv))
    captured = capsys.readouterr()
    assert code == 0, captured.err[-2000:]
    return captured.out


def test_eval_figures_equal_the_jsonl_figures(
    tiny_onnx_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    jsonl = write_jsonl(tmp_path / "rows.jsonl", ROWS)
    # ClassLabel ids in the reverse order of the model's labels: they must map by name
    saved = save_to_disk(tmp_path / "saved", ROWS, names=("POSITIVE", "NEGATIVE"), split="test")
    folder = tmp_path / "files"
    write_jsonl(folder / "test.jsonl", ROWS)
    common = ["eval", "--model", str(tiny_onnx_dir), "--backends", "fp32", "--json", "--log-level", "error"]
    reports = {
        source: json.loads(_out(capsys, *common, "--data", source))
        for source in (str(jsonl), f"hf:{saved}@test", f"hf:{folder}")
    }
    metrics = [next(iter(report["metrics"].values()))["fp32"] for report in reports.values()]
    assert metrics[0]["n"] == len(ROWS) and sum(map(sum, metrics[0]["confusion"])) == len(ROWS)
    # the true labels are the same: each row of the confusion matrix sums to that label's count
    assert [sum(row) for row in metrics[0]["confusion"]] == [sum(1 for _, y in ROWS if y == k) for k in (0, 1)]
    assert metrics[0] == metrics[1] == metrics[2]


def test_classify_output_equals_the_jsonl_output(
    tiny_onnx_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    jsonl = write_jsonl(tmp_path / "rows.jsonl", ROWS, text_field="body")
    saved = tmp_path / "saved"
    from datasets import Dataset

    Dataset.from_dict({"body": [t for t, _ in ROWS], "stars": [y for _, y in ROWS]}).save_to_disk(str(saved))
    common = ["classify", "--model", str(tiny_onnx_dir), "--json", "--text-field", "body", "--log-level", "error"]
    from_file = _out(capsys, *common, "--file", str(jsonl))
    from_hf = _out(capsys, *common, "--data", f"hf:{saved}")
    assert from_hf == from_file
    assert len(from_hf.splitlines()) == len(ROWS)


def test_produce_sends_the_same_records(broker, topic_name: str, tmp_path: Path, capsys) -> None:
    jsonl = write_jsonl(tmp_path / "rows.jsonl", ROWS)
    saved = save_to_disk(tmp_path / "saved", ROWS)
    sent = {}
    for n, source in enumerate((str(jsonl), f"hf:{saved}")):
        topic = f"{topic_name}-{n}"
        argv = ["produce", "--topic", topic, "--partitions", "1", "--bootstrap-servers", broker.bootstrap]
        out = _out(capsys, *argv, "--data", source, "--log-level", "error")
        assert f"sent {len(ROWS)} messages" in out
        records = consume_all(broker.bootstrap, topic, expected=len(ROWS), timeout_s=20, settle_s=0.3)
        sent[source] = [json.loads(r.value) for r in records]
    from_file, from_hf = sent.values()
    assert from_hf == from_file == [{"text": t, "label": y} for t, y in ROWS]
