"""Fine-tuning the tiny DistilBERT (transformers.Trainer) on a separable toy set improves accuracy; resuming
from a checkpoint continues the run; the model card holds the numbers."""

from __future__ import annotations

import json
import random
from dataclasses import replace
from pathlib import Path

import pytest

from training.batching import LengthGroupedShuffleSampler, length_grouped_batches, padding_fraction
from training.evaluate import evaluate_backends
from training.finetune import FinetuneConfig, FinetuneError, checkpoint_dir_for, train_classifier
from training.model_card import CardInfo, DataSource
from training.pipeline import finetune_and_export

pytestmark = pytest.mark.unit

FAST = FinetuneConfig(epochs=4, lr=1e-3, batch_size=16, progress=False, seed=0, threads=1)


def test_length_grouped_batches_cover_everything_once_with_sorted_groups() -> None:
    lengths = [random.Random(i).randint(3, 60) for i in range(1000)]
    batches = length_grouped_batches(lengths, 32, 320, random.Random(0))
    flat = [i for b in batches for i in b]
    assert sorted(flat) == list(range(1000))
    # all full but one, which comes last (the data loader cuts the flattened order into batches of 32)
    assert all(len(b) == 32 for b in batches[:-1]) and len(batches[-1]) == 1000 % 32
    # within a batch lengths are close: padding far below random batching
    assert padding_fraction(lengths, batches) < 0.15
    shuffled = list(range(1000))
    random.Random(0).shuffle(shuffled)
    assert padding_fraction(lengths, [shuffled[i : i + 32] for i in range(0, 1000, 32)]) > 0.3


def test_sampler_yields_the_batches_in_order_and_new_ones_each_epoch() -> None:
    lengths = [random.Random(i).randint(3, 60) for i in range(500)]
    sampler = LengthGroupedShuffleSampler(lengths, 16, 100, seed=3)
    assert len(sampler) == 500
    order = list(sampler)
    assert sorted(order) == list(range(500))
    # cut into consecutive chunks of 16 (what the data loader does): exactly the grouped batches
    chunks = [order[i : i + 16] for i in range(0, 500, 16)]
    assert chunks == length_grouped_batches(lengths, 16, 100, random.Random(3))
    assert list(sampler) == order  # same epoch, same order (a resumed run sees the same batches)
    sampler.set_epoch(1)
    assert list(sampler) != order
    sampler.set_epoch(0)
    assert list(sampler) == order


def test_finetune_improves_toy_accuracy(
    tmp_path: Path,
    starter_tiny_model: Path,
    toy_train: list[tuple[str, int]],
    toy_test: list[tuple[str, int]],
    capsys: pytest.CaptureFixture[str],
) -> None:
    before = evaluate_backends({"toy": toy_test}, torch_dir=starter_tiny_model).accuracy("toy", "pytorch")
    result = train_classifier(
        starter_tiny_model, toy_train, output_dir=tmp_path / "ft", config=FAST, eval_sets={"toy": toy_test}
    )
    # no Trainer prints ({'loss': ...} dicts; stdout carries the CLI's results), only our own log lines
    out = capsys.readouterr().out
    assert "'loss':" not in out and "'train_runtime':" not in out
    after = evaluate_backends({"toy": toy_test}, torch_dir=tmp_path / "ft").accuracy("toy", "pytorch")
    assert after > before
    assert after >= 0.9
    # the saved weights are the best epoch's (the first eval set's accuracy), evaluated after every epoch
    assert [h.epoch for h in result.history] == [1, 2, 3, 4]
    assert all("toy" in h.eval_accuracy for h in result.history)
    assert result.best_metric == max(h.eval_accuracy["toy"] for h in result.history)
    assert result.best_metric == pytest.approx(after, abs=0.02)
    assert result.steps == 4 * 25 and result.best_step in (25, 50, 75, 100)
    assert result.history[0].mean_loss > result.history[-1].mean_loss
    record = json.loads((tmp_path / "ft" / "training.json").read_text())
    assert record["train_examples"] == 400 and record["config"]["lr"] == 1e-3
    trainer = record["trainer"]
    assert trainer["optim"] == "adamw_torch_fused" and trainer["lr_scheduler_type"] == "linear"
    assert trainer["eval_strategy"] == "epoch" and trainer["metric_for_best_model"] == "eval_toy_accuracy"
    assert trainer["load_best_model_at_end"] is True and trainer["seed"] == 0 and trainer["device"] == "cpu"
    assert "accelerate" in record["versions"]
    assert (tmp_path / "ft" / "tokenizer.json").is_file()
    checkpoints = checkpoint_dir_for(tmp_path / "ft", FAST)
    assert checkpoints == tmp_path / "ft.checkpoints" and any(checkpoints.glob("checkpoint-*"))


def test_resume_continues_from_the_checkpoint(
    tmp_path: Path, starter_tiny_model: Path, toy_train: list[tuple[str, int]], toy_test: list[tuple[str, int]]
) -> None:
    one = replace(FAST, epochs=1)
    first = train_classifier(starter_tiny_model, toy_train, output_dir=tmp_path / "ft", config=one)
    assert first.steps == 25 and first.resumed_from is None
    assert (tmp_path / "ft.checkpoints" / "checkpoint-25" / "trainer_state.json").is_file()

    two = replace(FAST, epochs=2)
    second = train_classifier(
        starter_tiny_model, toy_train, output_dir=tmp_path / "ft", config=two, eval_sets={"toy": toy_test}, resume=True
    )
    # it went on from step 25: only epoch 2 was trained, and the run ends at step 50
    assert second.resumed_from is not None and Path(second.resumed_from).name == "checkpoint-25"
    assert second.steps == 50
    assert [(h.epoch, h.steps) for h in second.history] == [(2, 25)]
    state = json.loads((tmp_path / "ft.checkpoints" / "checkpoint-50" / "trainer_state.json").read_text())
    assert state["global_step"] == 50 and state["epoch"] == 2.0
    record = json.loads((tmp_path / "ft" / "training.json").read_text())
    assert record["steps"] == 50 and record["resumed_from"].endswith("checkpoint-25")


def test_resumed_run_matches_an_uninterrupted_one(
    tmp_path: Path, starter_tiny_model: Path, toy_train: list[tuple[str, int]]
) -> None:
    """Stopping after epoch 1 and resuming gives the weights of a run that never stopped (steps, optimiser,
    schedule, data order and RNG all come back from the checkpoint)."""
    from safetensors.numpy import load_file

    two = replace(FAST, epochs=2)
    train_classifier(starter_tiny_model, toy_train, output_dir=tmp_path / "full", config=two)
    full = load_file(tmp_path / "full" / "model.safetensors")
    interrupted = tmp_path / "full.checkpoints" / "checkpoint-25"
    resumed = train_classifier(
        starter_tiny_model,
        toy_train,
        output_dir=tmp_path / "resumed",
        config=replace(two, checkpoint_dir=str(tmp_path / "resumed-ckpt")),
        resume=interrupted,
    )
    assert resumed.steps == 50 and [h.epoch for h in resumed.history] == [2]
    again = load_file(tmp_path / "resumed" / "model.safetensors")
    assert full.keys() == again.keys()
    assert max(float(abs(full[k] - again[k]).max()) for k in full) < 1e-5


def test_mixed_precision_goes_to_the_trainer(
    tmp_path: Path, starter_tiny_model: Path, toy_train: list[tuple[str, int]], toy_test: list[tuple[str, int]]
) -> None:
    config = replace(FAST, epochs=2, mixed_precision="bf16")
    result = train_classifier(starter_tiny_model, toy_train, output_dir=tmp_path / "ft", config=config)
    assert result.trainer["bf16"] is True and result.trainer["fp16"] is False
    after = evaluate_backends({"toy": toy_test}, torch_dir=tmp_path / "ft").accuracy("toy", "pytorch")
    assert after >= 0.9
    with pytest.raises(FinetuneError, match="mixed precision"):
        train_classifier(
            starter_tiny_model, toy_train, output_dir=tmp_path / "x", config=replace(FAST, mixed_precision="int4")
        )


def test_resume_without_a_checkpoint_and_dropped_checkpoints(
    tmp_path: Path, starter_tiny_model: Path, toy_train: list[tuple[str, int]]
) -> None:
    with pytest.raises(FinetuneError, match="nothing to resume"):
        train_classifier(starter_tiny_model, toy_train, output_dir=tmp_path / "ft", config=FAST, resume=True)
    with pytest.raises(FinetuneError, match="not a Trainer checkpoint"):
        train_classifier(starter_tiny_model, toy_train, output_dir=tmp_path / "ft", config=FAST, resume=tmp_path)
    config = replace(FAST, epochs=1, keep_checkpoints=False)
    train_classifier(starter_tiny_model, toy_train, output_dir=tmp_path / "ft", config=config)
    assert (tmp_path / "ft" / "model.safetensors").is_file() and not (tmp_path / "ft.checkpoints").exists()


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
