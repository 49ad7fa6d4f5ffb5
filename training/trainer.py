"""The ``transformers.Trainer`` behind :func:`training.finetune.train_classifier`.

* :func:`training_arguments`: a :class:`~training.config.FinetuneConfig` as ``TrainingArguments``
  (fused AdamW, linear warmup + decay, evaluation and a checkpoint every epoch, the best epoch kept,
  ``report_to="none"``, progress bars only on a TTY);
* :class:`ClassifierTrainer`: the Trainer with the length-grouped, shuffled batches of
  :mod:`training.batching` and per-epoch loss/padding counters;
* :class:`LogCallback`: Trainer events as structlog lines and per-epoch :class:`EpochStats` (nothing on stdout).

Imports transformers at module level: import it lazily (``training.finetune`` does).
"""

from __future__ import annotations

import time
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from transformers import Trainer, TrainerCallback, TrainingArguments
from transformers.trainer_callback import PrinterCallback, ProgressCallback

from training.batching import LengthGroupedShuffleSampler
from training.config import EpochStats, FinetuneConfig, FinetuneError
from worker.observability import get_logger

if TYPE_CHECKING:
    import torch

log = get_logger(__name__)

SAVE_TOTAL_LIMIT = 2  # checkpoints kept: the latest and the best (load_best_model_at_end keeps the best one)

# The TrainingArguments that training.json and the model card record (the rest stay at the Trainer's defaults).
SUMMARY_FIELDS = (
    "num_train_epochs",
    "per_device_train_batch_size",
    "per_device_eval_batch_size",
    "gradient_accumulation_steps",
    "learning_rate",
    "weight_decay",
    "max_grad_norm",
    "optim",
    "lr_scheduler_type",
    "warmup_ratio",
    "eval_strategy",
    "save_strategy",
    "save_total_limit",
    "load_best_model_at_end",
    "metric_for_best_model",
    "bf16",
    "fp16",
    "seed",
    "logging_steps",
)


def training_arguments(
    config: FinetuneConfig, checkpoint_dir: Path, *, device: str, metric: str | None, progress: bool
) -> TrainingArguments:
    """The run's ``TrainingArguments`` on ``device`` (cpu or cuda, resolved); ``metric`` (``eval_<set>_accuracy``)
    picks the best epoch, None: no evaluation."""
    if config.mixed_precision not in ("no", "bf16", "fp16"):
        raise FinetuneError(f"unknown mixed precision {config.mixed_precision!r} (no, bf16, fp16)")
    evaluate = "epoch" if metric else "no"
    try:
        return TrainingArguments(
            output_dir=str(checkpoint_dir),
            num_train_epochs=config.epochs,
            per_device_train_batch_size=config.batch_size,
            per_device_eval_batch_size=config.eval_batch_size,
            learning_rate=config.lr,
            weight_decay=config.weight_decay,
            max_grad_norm=config.max_grad_norm,
            optim=config.optim,
            lr_scheduler_type="linear",
            warmup_ratio=config.warmup_ratio,
            eval_strategy=evaluate,
            save_strategy="epoch",
            save_total_limit=SAVE_TOTAL_LIMIT,
            load_best_model_at_end=bool(metric),
            metric_for_best_model=metric,
            greater_is_better=True if metric else None,
            bf16=config.mixed_precision == "bf16",
            fp16=config.mixed_precision == "fp16",
            use_cpu=device == "cpu",
            seed=config.seed,
            logging_strategy="steps",
            logging_steps=config.log_every,
            disable_tqdm=not progress,
            report_to="none",
            dataloader_pin_memory=device != "cpu",
            save_safetensors=True,
        )
    except ValueError as exc:  # e.g. fp16 without CUDA, an unknown optim
        raise FinetuneError(f"training arguments rejected: {exc}") from exc


def arguments_summary(args: TrainingArguments) -> dict[str, Any]:
    """The recorded subset of ``args`` (JSON-safe), plus the device and the number of processes."""
    out: dict[str, Any] = {}
    for name in SUMMARY_FIELDS:
        value = getattr(args, name)
        out[name] = value.value if hasattr(value, "value") else value
    out["device"] = str(args.device)
    out["world_size"] = args.world_size
    return out


def accuracy_metrics(prediction: Any) -> dict[str, float]:
    """``compute_metrics``: accuracy of the argmax over the logits."""
    logits = prediction.predictions[0] if isinstance(prediction.predictions, tuple) else prediction.predictions
    return {"accuracy": float((np.asarray(logits).argmax(-1) == np.asarray(prediction.label_ids)).mean())}


class ClassifierTrainer(Trainer):
    """A Trainer whose training batches come from :class:`LengthGroupedShuffleSampler`; counts loss and padding."""

    def __init__(self, *args: Any, lengths: list[int], length_group_size: int, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._lengths = lengths
        self._length_group_size = length_group_size
        self.reset_counters()

    def reset_counters(self) -> None:
        self.loss_sum: Any = 0.0
        self.batches = 0
        self.real_tokens: Any = 0
        self.token_slots = 0

    def _get_train_sampler(self, train_dataset: Any = None) -> Any:
        # The data loader cuts this order into batches of _train_batch_size: the sampler's batches exactly.
        return LengthGroupedShuffleSampler(
            self._lengths, self._train_batch_size, self._length_group_size, self.args.seed
        )

    def training_step(self, model: Any, inputs: dict[str, Any], num_items_in_batch: Any = None) -> torch.Tensor:
        loss = super().training_step(model, inputs, num_items_in_batch)
        mask = inputs["attention_mask"]
        self.loss_sum = self.loss_sum + loss  # tensors stay on the device: no sync per step
        self.real_tokens = self.real_tokens + mask.sum()
        self.token_slots += mask.numel()
        self.batches += 1
        return loss


def quiet_callbacks(trainer: Trainer, *, progress: bool) -> None:
    """Drop the Trainer's stdout printers; keep a tqdm bar (on stderr, no log lines in it) when ``progress``."""
    trainer.remove_callback(PrinterCallback)
    trainer.remove_callback(ProgressCallback)
    if progress:
        trainer.add_callback(_BarOnly())


class _BarOnly(ProgressCallback):
    def on_log(self, args: Any, state: Any, control: Any, logs: Any = None, **kwargs: Any) -> None:
        return None  # LogCallback logs through structlog; tqdm.write would print to stdout


class LogCallback(TrainerCallback):
    """Trainer events → structlog lines; per-epoch :class:`EpochStats` (loss, time, padding, eval accuracy)."""

    def __init__(self, trainer: ClassifierTrainer, examples: int) -> None:
        self.trainer = trainer
        self.examples = examples
        self.history: list[EpochStats] = []
        self._epoch = 0
        self._started = 0.0
        self._first_step = 0

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        import torch

        if state.is_world_process_zero:
            log.info(
                "finetune.start",
                examples=self.examples,
                epochs=args.num_train_epochs,
                steps=state.max_steps,
                warmup=args.get_warmup_steps(state.max_steps),
                resumed_at_step=state.global_step or None,
                device=str(args.device),
                world_size=args.world_size,
                optim=str(getattr(args.optim, "value", args.optim)),
                threads=torch.get_num_threads() if args.device.type == "cpu" else None,
            )

    def on_epoch_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self._epoch = int(state.epoch or 0) + 1
        self._started = time.perf_counter()
        self._first_step = state.global_step
        self.trainer.reset_counters()

    def on_epoch_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        t = self.trainer
        seconds = time.perf_counter() - self._started
        steps = state.global_step - self._first_step
        examples = min(self.examples, steps * args.train_batch_size * args.world_size)
        stats = EpochStats(
            epoch=self._epoch,
            steps=steps,
            mean_loss=float(t.loss_sum) / max(1, t.batches),
            seconds=round(seconds, 2),
            examples_per_second=round(examples / seconds, 1) if seconds else 0.0,
            padding_fraction=round(1 - float(t.real_tokens) / max(1, t.token_slots), 4),
        )
        self.history.append(stats)
        if state.is_world_process_zero:
            log.info("finetune.epoch", **{k: v for k, v in asdict(stats).items() if k != "eval_accuracy"})

    def on_evaluate(self, args: Any, state: Any, control: Any, metrics: Any = None, **kwargs: Any) -> None:
        # Called once per eval set (the Trainer evaluates a dict of sets one by one).
        if not self.history or not metrics:
            return
        found = {
            key[len("eval_") : -len("_accuracy")]: round(float(value), 4)
            for key, value in metrics.items()
            if key.startswith("eval_") and key.endswith("_accuracy")
        }
        self.history[-1].eval_accuracy.update(found)
        if state.is_world_process_zero and found:
            log.info("finetune.eval", epoch=self.history[-1].epoch, step=state.global_step, accuracy=found)

    def on_log(self, args: Any, state: Any, control: Any, logs: Any = None, **kwargs: Any) -> None:
        if not state.is_world_process_zero or not logs or "loss" not in logs:
            return
        log.info(
            "finetune.progress",
            step=state.global_step,
            steps=state.max_steps,
            epoch=round(float(state.epoch or 0), 2),
            loss=round(float(logs["loss"]), 4),
            learning_rate=logs.get("learning_rate"),
            grad_norm=round(float(logs["grad_norm"]), 3) if logs.get("grad_norm") is not None else None,
        )
