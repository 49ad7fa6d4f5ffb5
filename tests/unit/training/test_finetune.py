"""Fine-tuning the tiny DistilBERT on a separable toy set improves accuracy; model card holds the numbers."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from worker.training.batching import length_grouped_batches
from worker.training.evaluate import evaluate_backends
from worker.training.finetune import FinetuneConfig, FinetuneError, train_classifier
from worker.training.model_card import CardInfo, DataSource
from worker.training.pipeline import finetune_and_export

pytestmark = pytest.mark.unit

FAST = FinetuneConfig(epochs=4, lr=1e-3, batch_size=16, progress=False, seed=0, threads=1)


def test_length_grouped_batches_cover_everything_once_with_sorted_groups() -> None:
    lengths = [random.Random(i).randint(3, 60) for i in range(1000)]
    batches = length_grouped_batches(lengths, 32, 320, random.Random(0))
    flat = [i for b in batches for i in b]
    assert sorted(flat) == list(range(1000))
    assert all(len(b) <= 32 for b in batches)
    # within a batch lengths are close: padding far below random batching
    padded = sum(len(b) * max(lengths[i] for i in b) for b in batches)
    assert sum(lengths) / padded > 0.85


def test_finetune_improves_toy_accuracy(
    tmp_path: Path, starter_tiny_model: Path, toy_train: list[tuple[str, int]], toy_test: list[tuple[str, int]]
) -> None:
    before = evaluate_backends({"toy": toy_test}, torch_dir=starter_tiny_model).accuracy("toy", "pytorch")
    result = train_classifier(
        starter_tiny_model, toy_train, output_dir=tmp_path / "ft", config=FAST, eval_sets={"toy": toy_test}
    )
    after = evaluate_backends({"toy": toy_test}, torch_dir=tmp_path / "ft").accuracy("toy", "pytorch")
    assert after > before
    assert after >= 0.9
    assert result.history[-1].eval_accuracy["toy"] == pytest.approx(after, abs=0.02)
    record = json.loads((tmp_path / "ft" / "training.json").read_text())
    assert record["train_examples"] == 400 and record["config"]["lr"] == 1e-3
    assert (tmp_path / "ft" / "tokenizer.json").is_file()


def test_model_card_written_with_numbers(
    tmp_path: Path, starter_tiny_model: Path, toy_train: list[tuple[str, int]], toy_test: list[tuple[str, int]]
) -> None:
    card = CardInfo(
        title="toy model",
        base_model="tiny random DistilBERT",
        base_licence="apache-2.0",
        train_data=[DataSource("toy-train", len(toy_train), "CC0")],
        test_data=[DataSource("toy-test", len(toy_test), "CC0")],
        sanity=[("good movie", "POSITIVE", {"pytorch": "POSITIVE"})],
    )
    outcome = finetune_and_export(
        starter_tiny_model,
        toy_train,
        output_dir=tmp_path / "ft",
        cache_dir=tmp_path / "cache",
        config=FAST,
        test_sets={"toy-test": toy_test},
        card=card,
        precisions=(),
    )
    assert outcome.report is not None
    text = outcome.card.read_text()
    accuracy = outcome.report.accuracy("toy-test", "pytorch")
    assert f"| toy-test | 200 | {accuracy:.4f} |" in text
    assert "tiny random DistilBERT (licence: apache-2.0)" in text
    assert "| toy-train | 400 | CC0 |" in text
    assert "lr 0.001" in text and "max length 64" in text and "seed 0" in text
    assert "good movie" in text
    assert (tmp_path / "ft" / "evaluation.json").is_file()


def test_finetune_rejects_bad_inputs(tmp_path: Path, starter_tiny_model: Path) -> None:
    with pytest.raises(FinetuneError, match="empty"):
        train_classifier(starter_tiny_model, [], output_dir=tmp_path / "x", config=FAST)
    with pytest.raises(FinetuneError, match="labels"):
        train_classifier(starter_tiny_model, [("a", 2)], output_dir=tmp_path / "x", config=FAST)
    with pytest.raises(FinetuneError, match=r"config\.json"):
        train_classifier(tmp_path, [("a", 1)], output_dir=tmp_path / "x", config=FAST)
