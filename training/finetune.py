"""Fine-tune a DistilBERT sequence classifier on labelled (text, label) rows with ``transformers.Trainer``.

The Trainer (Accelerate underneath) runs the loop, so mixed precision (``mixed_precision="bf16"``) and
several GPUs (``accelerate launch -m worker finetune ...``) need no code of ours. The settings follow
what was measured on a 2-core CPU: fused AdamW, linear warmup + linear decay, dynamic padding over batches
drawn from length-sorted groups (``training.batching``: halves the epoch time against random
batches), max length 64; evaluation and a checkpoint every epoch, the best epoch (accuracy on the first
eval set) kept; ``resume=True`` continues from the latest checkpoint. The output is a normal Hugging Face
model folder plus ``training.json``; ``training.pipeline.finetune_and_export`` adds the evaluation,
the ONNX exports (fp32, INT8 through ``worker.model.export``) and the model card
(``training.model_card``). ``training.trainer`` holds the Trainer parts, ``training.config``
what a run takes and gives.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import sys
import time
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from training.batching import tokenise
from training.config import FinetuneConfig, FinetuneError, TrainResult
from training.data import Example
from worker.observability import get_logger

if TYPE_CHECKING:
    import torch

log = get_logger(__name__)

TRAINING_RECORD = "training.json"
CHECKPOINTS_SUFFIX = ".checkpoints"


# ---------------------------------------------------------------------------------------------------
# helpers


def resolve_device(device: str) -> str:
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise FinetuneError("device cuda was requested but torch sees no CUDA device")
    if device not in ("cpu",) and not device.startswith("cuda"):
        raise FinetuneError(f"unknown device {device!r} (auto, cpu, cuda, cuda:N)")
    return device


def seed_everything(seed: int) -> None:
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)


def _freeze(model: torch.nn.Module, config: FinetuneConfig) -> None:
    base = getattr(model, "distilbert", None)
    if base is None:
        if config.freeze_embeddings or config.frozen_layers:
            raise FinetuneError("freezing needs a DistilBERT model (model.distilbert)")
        return
    if config.freeze_embeddings or config.frozen_layers:
        base.embeddings.requires_grad_(False)
    layers = base.transformer.layer
    if config.frozen_layers > len(layers):
        raise FinetuneError(f"frozen_layers {config.frozen_layers} > the model's {len(layers)} layers")
    for layer in layers[: config.frozen_layers]:
        layer.requires_grad_(False)


def _check_model_dir(model_dir: Path) -> None:
    config_path = Path(model_dir) / "config.json"
    if not config_path.is_file():
        raise FinetuneError(f"{model_dir} is not a Hugging Face model folder (no config.json)")
    config = json.loads(config_path.read_text())
    if config.get("model_type") != "distilbert":
        raise FinetuneError(f"{model_dir} holds a {config.get('model_type')!r} model; finetune expects DistilBERT")


def _check_labels(rows: Sequence[Example], what: str) -> None:
    if not rows:
        raise FinetuneError(f"{what} is empty")
    bad = {y for _, y in rows if y not in (0, 1)}
    if bad:
        raise FinetuneError(f"{what} has labels {sorted(bad)}; expected 0/1")


# ---------------------------------------------------------------------------------------------------
# training


def _load_for_training(model_dir: Path, config: FinetuneConfig) -> tuple[Any, Any, str]:
    """Check the device, seed everything, load tokenizer and model (2 labels), freeze what the config says."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    device = resolve_device(config.device)
    if device == "cpu":
        torch.set_num_threads(config.threads or os.cpu_count() or 1)
    seed_everything(config.seed)
    tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
    model = AutoModelForSequenceClassification.from_pretrained(str(model_dir))
    if model.config.num_labels != 2:
        raise FinetuneError(f"{model_dir} has {model.config.num_labels} labels; finetune expects 2 (0/1)")
    _freeze(model, config)
    return tokenizer, model, device


def checkpoint_dir_for(output_dir: Path, config: FinetuneConfig) -> Path:
    """Where the Trainer writes ``checkpoint-<step>/`` folders (beside the output, which is replaced at the end)."""
    if config.checkpoint_dir:
        return Path(config.checkpoint_dir)
    return Path(output_dir).with_name(Path(output_dir).name + CHECKPOINTS_SUFFIX)


def _resume_point(resume: bool | str | Path, checkpoints: Path) -> str | None:
    """The checkpoint to resume from: ``True`` → the latest in ``checkpoints``; a path → that one; False → None."""
    from transformers.trainer_utils import get_last_checkpoint

    if resume is False or resume is None:
        return None
    if resume is True:
        latest = get_last_checkpoint(str(checkpoints)) if checkpoints.is_dir() else None
        if latest is None:
            raise FinetuneError(f"nothing to resume: no checkpoint-<step> folder in {checkpoints}")
        return latest
    path = Path(resume)
    if not (path / "trainer_state.json").is_file():
        raise FinetuneError(f"{path} is not a Trainer checkpoint (no trainer_state.json)")
    return str(path)


def train_classifier(
    model_dir: Path,
    train: Sequence[Example],
    *,
    output_dir: Path,
    config: FinetuneConfig | None = None,
    eval_sets: Mapping[str, Sequence[Example]] | None = None,
    resume: bool | str | Path = False,
) -> TrainResult:
    """Fine-tune ``model_dir`` on ``train``; save the model, tokenizer and ``training.json`` to ``output_dir``.

    Every eval set is evaluated after each epoch; the first one's accuracy picks the epoch whose weights are
    saved. Checkpoints go to :func:`checkpoint_dir_for`; ``resume`` (True: the latest there, or a checkpoint
    folder) continues a run: its step, optimiser, schedule and data order (``epochs`` may be raised).
    """
    from transformers import DataCollatorWithPadding

    from training import trainer as hf

    config = config or FinetuneConfig()
    model_dir, output_dir = Path(model_dir), Path(output_dir)
    _check_model_dir(model_dir)
    _check_labels(train, "training data")
    eval_sets = {k: list(v) for k, v in (eval_sets or {}).items() if v}
    checkpoints = checkpoint_dir_for(output_dir, config)
    resume_from = _resume_point(resume, checkpoints)
    tokenizer, model, device = _load_for_training(model_dir, config)
    train_set = tokenise(tokenizer, train, config.max_length)
    evals = {name: tokenise(tokenizer, rows, config.max_length, sort=True) for name, rows in eval_sets.items()}
    progress = config.progress and sys.stderr.isatty()
    metric = f"eval_{next(iter(evals))}_accuracy" if evals else None
    args = hf.training_arguments(config, checkpoints, device=device, metric=metric, progress=progress)
    if resume_from is None and args.process_index == 0:
        shutil.rmtree(checkpoints, ignore_errors=True)  # a fresh run: no stale checkpoint-<step> of another run
    pad_multiple = None if config.mixed_precision == "no" else 8  # tensor-core friendly shapes
    trainer = hf.ClassifierTrainer(
        model=model,
        args=args,
        train_dataset=train_set,
        eval_dataset=evals or None,
        processing_class=tokenizer,
        data_collator=DataCollatorWithPadding(tokenizer, pad_to_multiple_of=pad_multiple),
        compute_metrics=hf.accuracy_metrics if evals else None,
        lengths=train_set.lengths,
        length_group_size=config.length_group_size,
    )
    hf.quiet_callbacks(trainer, progress=progress)
    events = hf.LogCallback(trainer, len(train))
    trainer.add_callback(events)

    started = time.perf_counter()
    with warnings.catch_warnings():
        # checkpoint rotation on file systems with coarse mtimes: it falls back to step order, which is right
        warnings.filterwarnings("ignore", message="mtime may not be reliable")
        trainer.train(resume_from_checkpoint=resume_from)
    seconds = time.perf_counter() - started

    state = trainer.state
    best = state.best_model_checkpoint
    result = TrainResult(
        output_dir=output_dir,
        train_examples=len(train),
        steps=state.global_step,
        seconds=round(seconds, 2),
        device=str(args.device),
        config=config,
        history=events.history,
        examples_seen=sum(min(len(train), h.steps * args.train_batch_size * args.world_size) for h in events.history),
        resumed_from=resume_from,
        best_step=int(Path(best).name.rpartition("-")[2]) if best else None,
        best_metric=round(float(state.best_metric), 4) if state.best_metric is not None else None,
        trainer=hf.arguments_summary(args),
        is_main_process=trainer.is_world_process_zero(),
    )
    if result.is_main_process:
        _save_trained(trainer.model, tokenizer, output_dir, _training_record(result, model_dir, train, eval_sets))
        if not config.keep_checkpoints:
            shutil.rmtree(checkpoints, ignore_errors=True)
        log.info(
            "finetune.done",
            output=str(output_dir),
            seconds=result.seconds,
            steps=result.steps,
            best_step=result.best_step,
            best_metric=result.best_metric,
            checkpoints=str(checkpoints) if config.keep_checkpoints else None,
        )
    return result


def _save_trained(model: Any, tokenizer: Any, output_dir: Path, record: dict[str, Any]) -> None:
    """Model, tokenizer and ``training.json`` into ``output_dir`` (built beside it, then renamed into place)."""
    model.eval()
    tmp = output_dir.with_name(output_dir.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    model.to("cpu").save_pretrained(str(tmp), safe_serialization=True)
    tokenizer.save_pretrained(str(tmp))
    (tmp / TRAINING_RECORD).write_text(json.dumps(record, indent=2) + "\n")
    if output_dir.exists():
        shutil.rmtree(output_dir)
    tmp.rename(output_dir)


def _training_record(
    result: TrainResult, model_dir: Path, train: Sequence[Example], eval_sets: Mapping[str, Sequence[Example]]
) -> dict[str, Any]:
    """What ``training.json`` holds: data sizes, config, Trainer settings, device, timings, history, versions."""
    labels = np.asarray([y for _, y in train])
    return {
        "base_model": str(model_dir),
        "train_examples": result.train_examples,
        "label_counts": {str(k): int(v) for k, v in zip(*np.unique(labels, return_counts=True), strict=True)},
        "eval_examples": {k: len(v) for k, v in eval_sets.items()},
        "config": asdict(result.config),
        "trainer": result.trainer,
        "device": result.device,
        "steps": result.steps,
        "resumed_from": result.resumed_from,
        "best_step": result.best_step,
        "best_metric": result.best_metric,
        "seconds": result.seconds,
        "examples_per_second": round(result.examples_per_second, 1),
        "history": [asdict(h) for h in result.history],
        "finished_at": datetime.now(UTC).isoformat(),
        "versions": _versions(),
    }


def _versions() -> dict[str, str]:
    from importlib import metadata

    out: dict[str, str] = {}
    for name in ("torch", "transformers", "accelerate", "tokenizers", "onnxruntime-gpu", "optimum-onnx"):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return out
