"""What a fine-tuning run takes and gives: :class:`FinetuneConfig`, :class:`EpochStats`, :class:`TrainResult`,
:class:`FinetuneError` (shared by ``finetune.py``, which runs it, and ``trainer.py``, the Trainer parts)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


class FinetuneError(RuntimeError):
    """Fine-tuning can't run (bad model folder, empty data, CUDA demanded but unavailable, …)."""


@dataclass(frozen=True)
class FinetuneConfig:
    epochs: int = 1
    lr: float = 8e-5
    batch_size: int = 32  # per device
    max_length: int = 64
    warmup_ratio: float = 0.06
    weight_decay: float = 0.01
    max_grad_norm: float = 1.0
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda
    threads: int = 0  # torch intra-op threads on CPU (0 = all cores)
    length_group_size: int = 1600  # sort by length within groups of this many examples, then batch
    eval_batch_size: int = 128
    progress: bool = True  # tqdm bars on stderr, when it is a terminal
    log_every: int = 100  # a progress log line every this many steps
    freeze_embeddings: bool = False  # keep the embedding layer fixed (less compute per step)
    frozen_layers: int = 0  # keep the embeddings and the first N transformer layers fixed (no backward there)
    optim: str = "adamw_torch_fused"  # a TrainingArguments optim (fused AdamW runs on CPU and CUDA with torch 2.13)
    mixed_precision: str = "no"  # no | bf16 | fp16 (autocast; weights and exports stay fp32)
    checkpoint_dir: str | None = None  # default: <output_dir>.checkpoints beside the output folder
    keep_checkpoints: bool = True  # False: delete the checkpoints once the model is saved (no resume later)


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
    steps: int  # the optimiser steps of the whole run (a resumed run counts the checkpoint's too)
    seconds: float
    device: str
    config: FinetuneConfig
    history: list[EpochStats]  # the epochs trained by this call
    examples_seen: int = 0  # by this call
    resumed_from: str | None = None
    best_step: int | None = None  # the checkpoint kept as the final model (with eval sets)
    best_metric: float | None = None
    trainer: dict[str, Any] = field(default_factory=dict)  # the TrainingArguments summary
    is_main_process: bool = True  # False on the other ranks of `accelerate launch` (they save nothing)

    @property
    def examples_per_second(self) -> float:
        return self.examples_seen / self.seconds if self.seconds else 0.0
