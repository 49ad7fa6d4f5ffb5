"""worker/datasets_input.py: ``hf:NAME[:CONFIG][@SPLIT]`` on local datasets (offline), errors, the missing extra."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from benchmarks import datasets as bench_datasets
from tests.support.hf_data import go_offline, save_to_disk, write_jsonl
from training.data import read_hf_labelled, read_labelled_file
from worker import datasets_input as di
from worker.cli import main

pytestmark = pytest.mark.unit

ROWS = [("a fine day", 1), ("awful rude staff", 0), ("loved every minute", 1), ("never again", 0)]


@pytest.fixture(autouse=True)
def offline(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    go_offline(monkeypatch, tmp_path / "hf-cache")


def test_parse_spec() -> None:
    assert di.parse_spec("hf:imdb") == di.HfSpec("imdb")
    assert di.parse_spec("hf:user/name:plain_text@test") == di.HfSpec("user/name", "plain_text", "test")
    assert di.parse_spec("hf:/data/reviews@validation") == di.HfSpec("/data/reviews", None, "validation")
    assert str(di.parse_spec("hf:a:b@c")) == "hf:a:b@c"
    assert di.is_hf_spec("hf:x") and di.is_hf_spec(Path("hf:x")) and not di.is_hf_spec("x.jsonl")
    for bad in ("hf:", "hf:@test", "hf:name@", "imdb"):
        with pytest.raises(di.DatasetInputError, match="hf:NAME"):
            di.parse_spec(bad)


def test_saved_dataset_and_dataset_dict(tmp_path: Path) -> None:
    single = save_to_disk(tmp_path / "single", ROWS)
    assert di.load_texts(f"hf:{single}") == [t for t, _ in ROWS]
    multi = save_to_disk(tmp_path / "multi", ROWS, split="test")
    assert di.load_texts(f"hf:{multi}@test") == [t for t, _ in ROWS]
    assert di.load_texts(f"hf:{multi}@other") == [ROWS[0][0]]
    with pytest.raises(di.DatasetInputError, match=r"splits test, other: pick one with @SPLIT"):
        di.load_texts(f"hf:{multi}")


def test_folder_of_data_files_and_single_file(tmp_path: Path) -> None:
    folder = tmp_path / "files"
    write_jsonl(folder / "train.jsonl", ROWS[:3])
    (folder / "test.csv").unlink(missing_ok=True)
    write_jsonl(folder / "test.jsonl", ROWS[3:])
    assert di.load_texts(f"hf:{folder}@train") == [t for t, _ in ROWS[:3]]
    assert di.load_texts(f"hf:{folder}@test") == [ROWS[3][0]]
    csv_dir = tmp_path / "csv"
    csv_dir.mkdir()
    (csv_dir / "data.csv").write_text('text,label\n"hello, world",1\nbye,0\n')
    assert di.load_texts(f"hf:{csv_dir}") == ["hello, world", "bye"]
    assert di.load_texts(f"hf:{csv_dir / 'data.csv'}") == ["hello, world", "bye"]


def test_labels_map_through_classlabel_names_to_the_models_labels(tmp_path: Path) -> None:
    jsonl = write_jsonl(tmp_path / "same.jsonl", ROWS)
    expected = read_labelled_file(jsonl)
    # ClassLabel ids in another order than the model's: mapped by name
    reordered = save_to_disk(tmp_path / "reordered", ROWS, names=("POSITIVE", "NEGATIVE"))
    assert read_hf_labelled(f"hf:{reordered}", label_names=("NEGATIVE", "POSITIVE")) == expected
    # neg/pos words for a two-label model, plain 0/1 ids from a JSONL folder
    short = save_to_disk(tmp_path / "short", ROWS, names=("neg", "pos"))
    assert read_hf_labelled(f"hf:{short}", label_names=("NEGATIVE", "POSITIVE")) == expected
    assert read_hf_labelled(f"hf:{jsonl}") == expected
    assert di.label_index("Positive", ("negative", "positive")) == 1
    assert di.label_index("1", ("negative", "positive")) == 1
    assert di.label_index(2, ("a", "b", "c")) == 2
    with pytest.raises(di.DatasetInputError, match=r"label 'meh' is none of the model's labels"):
        di.label_index("meh", ("negative", "positive"), where="x")
    with pytest.raises(di.DatasetInputError, match="outside the ClassLabel names"):
        di.label_index(5, ("negative", "positive"), ("neg", "pos"))


def test_records_for_produce(tmp_path: Path) -> None:
    saved = save_to_disk(tmp_path / "saved", ROWS)
    lines = di.record_lines(f"hf:{saved}")
    assert [json.loads(line) for line in lines] == [{"text": t, "label": y} for t, y in ROWS]
    assert di.record_lines(f"hf:{saved}", fmt="text") == [t for t, _ in ROWS]


def test_bench_resolves_hf_like_the_same_jsonl(tmp_path: Path) -> None:
    jsonl = write_jsonl(tmp_path / "rows.jsonl", ROWS)
    saved = save_to_disk(tmp_path / "saved", ROWS)
    from_hf = bench_datasets.resolve(f"hf:{saved}")
    assert from_hf.texts == bench_datasets.load_file(jsonl).texts
    assert from_hf.name == f"hf:{saved}"
    with pytest.raises(bench_datasets.DatasetError, match="no column 'body'"):
        bench_datasets.resolve(f"hf:{saved}", text_field="body")


@pytest.mark.parametrize(
    ("suffix", "message"),
    [
        ("@validation", "no split 'validation' (splits: test, other)"),
        (":plain_text@test", "a save_to_disk folder has no configs"),
    ],
)
def test_missing_split_or_config_is_named(tmp_path: Path, suffix: str, message: str) -> None:
    multi = save_to_disk(tmp_path / "multi", ROWS, split="test")
    with pytest.raises(di.DatasetInputError, match=message.replace("(", r"\(").replace(")", r"\)")):
        di.load_texts(f"hf:{multi}{suffix}")


def test_missing_config_of_a_file_folder_and_missing_dataset(tmp_path: Path) -> None:
    write_jsonl(tmp_path / "files" / "train.jsonl", ROWS)
    with pytest.raises(di.DatasetInputError, match="BuilderConfig 'nope' not found"):
        di.load_texts(f"hf:{tmp_path / 'files'}:nope")
    with pytest.raises(di.DatasetInputError, match=r"dataset 'nobody/no-such-dataset' not found"):
        di.load_texts("hf:nobody/no-such-dataset")


def test_missing_column_lists_the_columns(tmp_path: Path) -> None:
    saved = save_to_disk(tmp_path / "saved", ROWS)
    with pytest.raises(
        di.DatasetInputError, match=r"no column 'body' \(columns: text, label\); choose one with --text"
    ):
        di.load_texts(f"hf:{saved}", text_field="body")
    with pytest.raises(di.DatasetInputError, match=r"no column 'stars'.*--label-field"):
        di.load_labelled(f"hf:{saved}", label_field="stars")


@pytest.mark.parametrize("how", ["not installed", "not importable"])
def test_missing_extra_is_one_line(monkeypatch: pytest.MonkeyPatch, how: str) -> None:
    if how == "not installed":
        monkeypatch.setattr(di, "missing_distributions", lambda names: list(names))
    else:
        monkeypatch.setitem(sys.modules, "datasets", None)  # `import datasets` raises ModuleNotFoundError
    with pytest.raises(di.DatasetInputError) as info:
        di.load_texts("hf:anything")
    message = str(info.value)
    assert "\n" not in message and "[datasets]" in message and "pip install 'sentiment-worker[datasets]'" in message


# ---- the commands' errors: one line on stderr, exit 2, no traceback (before any model or broker work) --------
def _cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    code = main(list(argv))
    err = capsys.readouterr().err
    return code, err


def test_commands_report_a_missing_dataset(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = str(tmp_path / "not-there")
    runs = {
        "classify": ["classify", "--data", f"hf:{missing}", "--log-level", "error"],
        "produce": ["produce", "--topic", "t", "--data", f"hf:{missing}", "--log-level", "error"],
        "eval": ["eval", "--model", str(tmp_path), "--data", f"hf:{missing}", "--log-level", "error"],
    }
    for name, argv in runs.items():
        code, err = _cli(capsys, *argv)
        assert code == 2, (name, err)
        lines = [line for line in err.splitlines() if line.strip()]
        assert len(lines) == 1 and "not-there" in lines[0] and "not found" in lines[0], (name, err)
        assert "Traceback" not in err


def test_commands_report_the_missing_extra(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(di, "missing_distributions", lambda names: list(names))
    for argv in (
        ["classify", "--data", "hf:x", "--log-level", "error"],
        ["produce", "--topic", "t", "--data", "hf:x", "--log-level", "error"],
        ["eval", "--model", str(tmp_path), "--data", "hf:x", "--log-level", "error"],
    ):
        code, err = _cli(capsys, *argv)
        lines = [line for line in err.splitlines() if line.strip()]
        assert code == 2 and len(lines) == 1 and "sentiment-worker[datasets]" in lines[0], (argv, err)
