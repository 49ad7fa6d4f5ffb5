"""Fine-tune a DistilBERT sequence classifier on labelled (text, label) rows, on CPU or GPU.

Defaults follow what was measured on a 2-core CPU: AdamW (fused when the device supports it), linear
warmup + linear decay, dynamic padding over batches drawn from length-sorted groups (halves the epoch time
against random batches), max length 64. The output is a normal Hugging Face model folder plus
``training.json``; ``worker.training.pipeline.finetune_and_export`` adds the evaluation, the ONNX exports
(fp32, INT8 through ``worker.model.export``) and the model card (``worker.training.model_card``).
"""

from __future__ import annotations

import json
import math
import os
import random
import shutil
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from worker.observability import get_logger
from worker.training.batching import EvalSet, TrainingSet, encode_eval_sets, encode_training_set, length_grouped_batches
from worker.training.data import Example
from worker.training.evaluate import torch_logits

if TYPE_CHECKING:
    import torch

log = get_logger(__name__)

TRAINING_RECORD = "training.json"


class FinetuneError(RuntimeError):
    """Fine-tuning can't run (bad model folder, empty data, CUDA demanded but unavailable, …)."""


@dataclass(frozen=True)
class FinetuneConfig:
    epochs: int = 1
    lr: float = 8e-5
    batch_size: int = 32
    max_length: int = 64
    warmup_ratio: float = 0.06
    weight_decay: float = 0.01
    max_grad_norm: float = 1.0
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda
    threads: int = 0  # torch intra-op threads on CPU (0 = all cores)
    length_group_size: int = 1600  # sort by length within groups of this many examples, then batch
    eval_batch_size: int = 128
    progress: bool = True  # tqdm bars on stderr
    log_every: int = 100  # a progress log line every this many steps
    freeze_embeddings: bool = False  # keep the embedding layer fixed (less compute per step)
    frozen_layers: int = 0  # keep the embeddings and the first N transformer layers fixed (no backward there)


@dataclass
class EpochStats:
    epoch: int
    steps: int
    mean_loss: float
    seconds: float
    examples_per_second: float
    padding_fraction: float
    eval_accuracy: dict[str, float] = field(default_factory=dict)


@dataclass
class TrainResult:
    output_dir: Path
    train_examples: int
    steps: int
    seconds: float
    device: str
    config: FinetuneConfig
    history: list[EpochStats]

    @property
    def examples_per_second(self) -> float:
        return self.train_examples * self.config.epochs / self.seconds if self.seconds else 0.0


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


def make_optimizer(model: torch.nn.Module, lr: float, weight_decay: float, device: str) -> torch.optim.Optimizer:
    """AdamW with no decay on biases and LayerNorms; fused kernel when the device supports it."""
    import torch

    decay, no_decay = [], []
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        (no_decay if param.ndim < 2 or "LayerNorm" in name or "layer_norm" in name else decay).append(param)
    groups = [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    try:
        optimizer = torch.optim.AdamW(groups, lr=lr, fused=True)
        # Fail now (not at the first step) when the fused kernel doesn't exist for this device.
        log.debug("finetune.optimizer", fused=True, device=device)
        return optimizer
    except (RuntimeError, TypeError, ValueError) as exc:
        log.info("finetune.optimizer_unfused", reason=str(exc)[:200])
        return torch.optim.AdamW(groups, lr=lr)


def linear_schedule(optimizer: torch.optim.Optimizer, warmup: int, total: int) -> torch.optim.lr_scheduler.LambdaLR:
    import torch

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / max(1, warmup)
        return max(0.0, (total - step) / max(1, total - warmup))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


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


@dataclass
class _Optimisation:
    """Model, optimiser and schedule of one run; counts the optimiser steps taken."""

    model: Any
    optimizer: Any
    scheduler: Any
    device: str
    max_grad_norm: float
    total_steps: int
    steps_done: int = 0

    def step(self, input_ids: np.ndarray, mask: np.ndarray, labels: np.ndarray) -> float:
        """One forward/backward pass and optimiser step on a padded batch; returns its loss."""
        import torch

        out = self.model(
            input_ids=torch.from_numpy(input_ids).to(self.device),
            attention_mask=torch.from_numpy(mask).to(self.device),
            labels=torch.from_numpy(labels).to(self.device),
        )
        out.loss.backward()
        if self.max_grad_norm:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.max_grad_norm)
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.steps_done += 1
        return float(out.loss.detach())


def _load_for_training(model_dir: Path, config: FinetuneConfig) -> tuple[Any, Any, str]:
    """Pick the device, seed everything, load tokenizer and model (2 labels), freeze what the config says."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    device = resolve_device(config.device)
    if device == "cpu":
        torch.set_num_threads(config.threads or os.cpu_count() or 1)
    seed_everything(config.seed)
    tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
    model = AutoModelForSequenceClassification.from_pretrained(str(model_dir)).to(device)
    if model.config.num_labels != 2:
        raise FinetuneError(f"{model_dir} has {model.config.num_labels} labels; finetune expects 2 (0/1)")
    _freeze(model, config)
    model.train()
    return tokenizer, model, device


def _start_optimisation(model: Any, n_train: int, config: FinetuneConfig, device: str) -> tuple[_Optimisation, int]:
    """AdamW and the linear warmup/decay schedule over every step of the run; returns it and the warmup steps."""
    steps_per_epoch = math.ceil(n_train / config.batch_size)
    total_steps = steps_per_epoch * config.epochs
    warmup = round(config.warmup_ratio * total_steps)
    optimizer = make_optimizer(model, config.lr, config.weight_decay, device)
    scheduler = linear_schedule(optimizer, warmup, total_steps)
    return _Optimisation(model, optimizer, scheduler, device, config.max_grad_norm, total_steps), warmup


def _train_epoch(
    run: _Optimisation, data: TrainingSet, batches: list[list[int]], epoch: int, config: FinetuneConfig
) -> EpochStats:
    """One pass over ``batches`` with a progress bar and progress log lines; the epoch's numbers."""
    from tqdm.auto import tqdm

    epoch_started = time.perf_counter()
    loss_sum, real_tokens, padded_tokens = 0.0, 0, 0
    bar = tqdm(
        total=len(batches),
        desc=f"epoch {epoch}/{config.epochs}",
        unit="batch",
        disable=not config.progress,
        file=sys.stderr,
        dynamic_ncols=True,
    )
    for done, batch in enumerate(batches, start=1):
        input_ids, mask = data.padded(batch)
        real_tokens += int(mask.sum())
        padded_tokens += mask.size
        loss_sum += run.step(input_ids, mask, data.labels[batch])
        step = run.steps_done
        bar.update(1)
        if config.progress and (step % 10 == 0 or step == run.total_steps):
            elapsed = time.perf_counter() - epoch_started
            bar.set_postfix(loss=f"{loss_sum / done:.4f}", ex_s=f"{done * config.batch_size / elapsed:.0f}")
        if step % config.log_every == 0:
            elapsed = time.perf_counter() - epoch_started
            log.info(
                "finetune.progress",
                epoch=epoch,
                step=step,
                steps=run.total_steps,
                loss=round(loss_sum / done, 4),
                examples_per_second=round(done * config.batch_size / elapsed, 1),
            )
    bar.close()
    seconds = time.perf_counter() - epoch_started
    return EpochStats(
        epoch=epoch,
        steps=len(batches),
        mean_loss=loss_sum / max(1, len(batches)),
        seconds=round(seconds, 2),
        examples_per_second=round(len(data.ids) / seconds, 1) if seconds else 0.0,
        padding_fraction=round(1 - real_tokens / max(1, padded_tokens), 4),
    )


def _eval_accuracy(model: Any, eval_encoded: Mapping[str, EvalSet], device: str) -> dict[str, float]:
    """Accuracy on each eval set (the model is left in training mode)."""
    accuracy = {}
    for name, (enc, y) in eval_encoded.items():
        logits = torch_logits(model, enc, len(y), device=device)
        accuracy[name] = round(float((logits.argmax(1) == y).mean()), 4)
    model.train()
    return accuracy


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


def train_classifier(
    model_dir: Path,
    train: Sequence[Example],
    *,
    output_dir: Path,
    config: FinetuneConfig = FinetuneConfig(),
    eval_sets: Mapping[str, Sequence[Example]] | None = None,
) -> TrainResult:
    """Fine-tune ``model_dir`` on ``train``; save the model, tokenizer and ``training.json`` to ``output_dir``."""
    import torch

    model_dir, output_dir = Path(model_dir), Path(output_dir)
    _check_model_dir(model_dir)
    _check_labels(train, "training data")
    eval_sets = {k: list(v) for k, v in (eval_sets or {}).items() if v}
    tokenizer, model, device = _load_for_training(model_dir, config)
    data = encode_training_set(tokenizer, train, config.max_length)
    eval_encoded = encode_eval_sets(tokenizer, eval_sets, config.max_length, config.eval_batch_size)
    run, warmup = _start_optimisation(model, len(train), config, device)
    rng = random.Random(config.seed)
    log.info(
        "finetune.start",
        model=str(model_dir),
        examples=len(train),
        epochs=config.epochs,
        steps=run.total_steps,
        warmup=warmup,
        lr=config.lr,
        batch_size=config.batch_size,
        max_length=config.max_length,
        device=device,
        threads=torch.get_num_threads() if device == "cpu" else None,
    )

    history: list[EpochStats] = []
    started = time.perf_counter()
    for epoch in range(1, config.epochs + 1):
        batches = length_grouped_batches(data.lengths, config.batch_size, config.length_group_size, rng)
        stats = _train_epoch(run, data, batches, epoch, config)
        stats.eval_accuracy.update(_eval_accuracy(model, eval_encoded, device))
        history.append(stats)
        log.info("finetune.epoch", **asdict(stats))
    seconds = time.perf_counter() - started

    result = TrainResult(
        output_dir=output_dir,
        train_examples=len(train),
        steps=run.steps_done,
        seconds=round(seconds, 2),
        device=device,
        config=config,
        history=history,
    )
    _save_trained(model, tokenizer, output_dir, _training_record(result, model_dir, data.labels, eval_sets))
    log.info("finetune.done", output=str(output_dir), seconds=result.seconds, steps=run.steps_done)
    return result


def _training_record(
    result: TrainResult, model_dir: Path, labels: np.ndarray, eval_sets: Mapping[str, Sequence[Example]]
) -> dict[str, Any]:
    """What ``training.json`` holds: data sizes, config, device, timings, per-epoch history, versions."""
    return {
        "base_model": str(model_dir),
        "train_examples": result.train_examples,
        "label_counts": {str(k): int(v) for k, v in zip(*np.unique(labels, return_counts=True), strict=True)},
        "eval_examples": {k: len(v) for k, v in eval_sets.items()},
        "config": asdict(result.config),
        "device": result.device,
        "steps": result.steps,
        "seconds": result.seconds,
        "examples_per_second": round(result.examples_per_second, 1),
        "history": [asdict(h) for h in result.history],
        "finished_at": datetime.now(UTC).isoformat(),
        "versions": _versions(),
    }


def _versions() -> dict[str, str]:
    from importlib import metadata

    out: dict[str, str] = {}
    for name in ("torch", "transformers", "tokenizers", "onnxruntime-gpu", "optimum-onnx"):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return out
