"""Fine-tune a DistilBERT sequence classifier on labelled (text, label) rows, on CPU or GPU.

Defaults follow what was measured on a 2-core CPU (FINDINGS §4): AdamW (fused when the device supports it),
linear warmup + linear decay, dynamic padding over batches drawn from length-sorted groups (halves the
epoch time against random batches), max length 64. The output is a normal Hugging Face model folder plus
``training.json``; :func:`finetune_and_export` adds the evaluation, the ONNX exports (fp32, INT8 through
``worker.model.export``) and the model card (``README.md``).
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

from worker.model.data import Example
from worker.model.evaluate import EvalReport, encode_batches, evaluate_backends, torch_logits
from worker.observability import get_logger

if TYPE_CHECKING:
    import torch

log = get_logger(__name__)

TRAINING_RECORD = "training.json"
MODEL_CARD = "README.md"


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


def length_grouped_batches(
    lengths: Sequence[int], batch_size: int, group_size: int, rng: random.Random
) -> list[list[int]]:
    """Shuffle, cut into groups of ``group_size``, sort each group by length, batch, shuffle the batches.

    Batches hold similar lengths (little padding) while the order stays random across the epoch.
    """
    order = list(range(len(lengths)))
    rng.shuffle(order)
    group_size = max(group_size, batch_size)
    batches: list[list[int]] = []
    for start in range(0, len(order), group_size):
        group = sorted(order[start : start + group_size], key=lengths.__getitem__)
        batches.extend(group[i : i + batch_size] for i in range(0, len(group), batch_size))
    rng.shuffle(batches)
    return batches


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
    from tqdm.auto import tqdm
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    model_dir, output_dir = Path(model_dir), Path(output_dir)
    _check_model_dir(model_dir)
    _check_labels(train, "training data")
    eval_sets = {k: list(v) for k, v in (eval_sets or {}).items() if v}
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

    texts = [t for t, _ in train]
    labels = np.asarray([y for _, y in train], dtype=np.int64)
    ids: list[list[int]] = tokenizer(texts, truncation=True, max_length=config.max_length)["input_ids"]
    lengths = [len(x) for x in ids]
    pad_id = int(tokenizer.pad_token_id or 0)
    eval_encoded = {
        name: (
            encode_batches(
                tokenizer, [t for t, _ in rows], max_length=config.max_length, batch_size=config.eval_batch_size
            ),
            np.asarray([y for _, y in rows]),
        )
        for name, rows in eval_sets.items()
    }

    steps_per_epoch = math.ceil(len(train) / config.batch_size)
    total_steps = steps_per_epoch * config.epochs
    warmup = round(config.warmup_ratio * total_steps)
    optimizer = make_optimizer(model, config.lr, config.weight_decay, device)
    scheduler = linear_schedule(optimizer, warmup, total_steps)
    rng = random.Random(config.seed)
    log.info(
        "finetune.start",
        model=str(model_dir),
        examples=len(train),
        epochs=config.epochs,
        steps=total_steps,
        warmup=warmup,
        lr=config.lr,
        batch_size=config.batch_size,
        max_length=config.max_length,
        device=device,
        threads=torch.get_num_threads() if device == "cpu" else None,
    )

    history: list[EpochStats] = []
    started = time.perf_counter()
    step = 0
    for epoch in range(1, config.epochs + 1):
        epoch_started = time.perf_counter()
        batches = length_grouped_batches(lengths, config.batch_size, config.length_group_size, rng)
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
            width = max(lengths[i] for i in batch)
            input_ids = np.full((len(batch), width), pad_id, dtype=np.int64)
            mask = np.zeros((len(batch), width), dtype=np.int64)
            for row, i in enumerate(batch):
                input_ids[row, : lengths[i]] = ids[i]
                mask[row, : lengths[i]] = 1
            real_tokens += int(mask.sum())
            padded_tokens += mask.size
            out = model(
                input_ids=torch.from_numpy(input_ids).to(device),
                attention_mask=torch.from_numpy(mask).to(device),
                labels=torch.from_numpy(labels[batch]).to(device),
            )
            out.loss.backward()
            if config.max_grad_norm:
                torch.nn.utils.clip_grad_norm_(model.parameters(), config.max_grad_norm)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            step += 1
            loss = float(out.loss.detach())
            loss_sum += loss
            bar.update(1)
            if config.progress and (step % 10 == 0 or step == total_steps):
                elapsed = time.perf_counter() - epoch_started
                bar.set_postfix(loss=f"{loss_sum / done:.4f}", ex_s=f"{done * config.batch_size / elapsed:.0f}")
            if step % config.log_every == 0:
                elapsed = time.perf_counter() - epoch_started
                log.info(
                    "finetune.progress",
                    epoch=epoch,
                    step=step,
                    steps=total_steps,
                    loss=round(loss_sum / done, 4),
                    examples_per_second=round(done * config.batch_size / elapsed, 1),
                )
        bar.close()
        seconds = time.perf_counter() - epoch_started
        stats = EpochStats(
            epoch=epoch,
            steps=len(batches),
            mean_loss=loss_sum / max(1, len(batches)),
            seconds=round(seconds, 2),
            examples_per_second=round(len(train) / seconds, 1) if seconds else 0.0,
            padding_fraction=round(1 - real_tokens / max(1, padded_tokens), 4),
        )
        for name, (enc, y) in eval_encoded.items():
            logits = torch_logits(model, enc, len(y), device=device)
            stats.eval_accuracy[name] = round(float((logits.argmax(1) == y).mean()), 4)
        model.train()
        history.append(stats)
        log.info("finetune.epoch", **asdict(stats))
    seconds = time.perf_counter() - started

    model.eval()
    tmp = output_dir.with_name(output_dir.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    model.to("cpu").save_pretrained(str(tmp), safe_serialization=True)
    tokenizer.save_pretrained(str(tmp))
    result = TrainResult(
        output_dir=output_dir,
        train_examples=len(train),
        steps=step,
        seconds=round(seconds, 2),
        device=device,
        config=config,
        history=history,
    )
    record = {
        "base_model": str(model_dir),
        "train_examples": len(train),
        "label_counts": {str(k): int(v) for k, v in zip(*np.unique(labels, return_counts=True), strict=True)},
        "eval_examples": {k: len(v) for k, v in eval_sets.items()},
        "config": asdict(config),
        "device": device,
        "steps": step,
        "seconds": result.seconds,
        "examples_per_second": round(result.examples_per_second, 1),
        "history": [asdict(h) for h in history],
        "finished_at": datetime.now(UTC).isoformat(),
        "versions": _versions(),
    }
    (tmp / TRAINING_RECORD).write_text(json.dumps(record, indent=2) + "\n")
    if output_dir.exists():
        shutil.rmtree(output_dir)
    tmp.rename(output_dir)
    log.info("finetune.done", output=str(output_dir), seconds=result.seconds, steps=step)
    return result


def _versions() -> dict[str, str]:
    from importlib import metadata

    out: dict[str, str] = {}
    for name in ("torch", "transformers", "tokenizers", "onnxruntime-gpu", "optimum-onnx"):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return out


# ---------------------------------------------------------------------------------------------------
# export + model card


def export_onnx(
    model_dir: Path, cache_dir: Path, precisions: Sequence[str] = ("fp32", "int8"), *, force: bool = False
) -> dict[str, Path]:
    """Export through the foundation's path (``worker.model.export.export_model``); {precision: dir}."""
    from worker.model.export import export_model

    out: dict[str, Path] = {}
    for precision in precisions:
        out[precision] = export_model(model_dir, precision=precision, cache_dir=cache_dir, force=force)  # type: ignore[arg-type]
    return out


@dataclass(frozen=True)
class DataSource:
    name: str
    examples: int
    licence: str
    origin: str = ""
    note: str = ""


@dataclass
class CardInfo:
    """What the model card says besides the measured numbers."""

    title: str
    base_model: str
    base_licence: str = "see the base model"
    licence: str = "see the licences of the base model and the data"
    train_data: list[DataSource] = field(default_factory=list)
    test_data: list[DataSource] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    sanity: list[tuple[str, str, dict[str, str]]] = field(default_factory=list)  # text, expected, backend->got
    timings: dict[str, float] = field(default_factory=dict)


def render_model_card(
    info: CardInfo,
    train: TrainResult | Mapping[str, Any] | None,
    report: EvalReport | None,
    exports: Mapping[str, Path] | None = None,
) -> str:
    """Markdown model card (with a YAML header) holding the data, settings and measured numbers."""
    lines: list[str] = [
        "---",
        "language: en",
        f"license: {info.licence}",
        "library_name: transformers",
        "pipeline_tag: text-classification",
        "tags: [sentiment-analysis, distilbert, onnx]",
        "---",
        "",
        f"# {info.title}",
        "",
        "## Base weights",
        "",
        f"- {info.base_model} (licence: {info.base_licence})",
        "",
    ]
    if info.train_data:
        lines += ["## Training data", "", "| source | examples | licence | origin | note |", "|---|---|---|---|---|"]
        lines += [
            f"| {_cell(d.name)} | {d.examples} | {_cell(d.licence)} | {_cell(d.origin)} | {_cell(d.note)} |"
            for d in info.train_data
        ]
        lines.append("")
    if info.test_data:
        lines += ["## Test data (never trained on)", "", "| file | sentences | licence | origin |", "|---|---|---|---|"]
        lines += [
            f"| {_cell(d.name)} | {d.examples} | {_cell(d.licence)} | {_cell(d.origin)} |" for d in info.test_data
        ]
        lines.append("")
    if train is not None:
        record = _train_record(train)
        cfg = record["config"]
        lines += [
            "## Training settings",
            "",
            f"- examples: {record['train_examples']}, epochs: {cfg['epochs']}, steps: {record['steps']}",
            f"- optimiser: AdamW (fused when available), lr {cfg['lr']}, weight decay {cfg['weight_decay']}, "
            f"linear warmup {cfg['warmup_ratio']:.0%} then linear decay, grad-norm clip {cfg['max_grad_norm']}",
            f"- batch size {cfg['batch_size']}, max length {cfg['max_length']} tokens, dynamic padding over "
            f"length-sorted groups of {cfg['length_group_size']}, seed {cfg['seed']}",
            "- trained parameters: "
            + (
                "all"
                if not (cfg.get("freeze_embeddings") or cfg.get("frozen_layers"))
                else f"embeddings frozen, first {cfg.get('frozen_layers', 0)} transformer layers frozen, "
                "the rest trained"
            ),
            f"- device: {record['device']}, training time {record['seconds']:.0f} s "
            f"({record['examples_per_second']:.0f} examples/s)",
        ]
        for h in record["history"]:
            acc = ", ".join(f"{k} {v:.4f}" for k, v in h["eval_accuracy"].items())
            lines.append(
                f"- epoch {h['epoch']}: mean loss {h['mean_loss']:.4f}, {h['seconds']:.0f} s, "
                f"padding {h['padding_fraction']:.0%}" + (f", eval accuracy: {acc}" if acc else "")
            )
        lines.append("")
    if report is not None:
        backends = report.backends
        lines += ["## Measured accuracy", "", "| data | n | " + " | ".join(backends) + " |"]
        lines.append("|---|---|" + "---|" * len(backends))
        for dataset, per in report.metrics.items():
            n = next(iter(per.values())).n
            lines.append(f"| {dataset} | {n} | " + " | ".join(f"{per[b].accuracy:.4f}" for b in backends) + " |")
        lines += ["", "Per-class precision / recall (all test data):", ""]
        final = "all" if "all" in report.metrics else next(iter(report.metrics))
        lines += ["| backend | class | precision | recall | F1 | support |", "|---|---|---|---|---|---|"]
        for backend, m in report.metrics[final].items():
            for name, c in m.per_class.items():
                lines.append(f"| {backend} | {name} | {c.precision:.4f} | {c.recall:.4f} | {c.f1:.4f} | {c.support} |")
        lines += ["", f"Confusion matrices ({final}; rows: true, columns: predicted):", ""]
        for backend, m in report.metrics[final].items():
            lines.append(f"- {backend}: {m.confusion}")
        lines += ["", "## Export agreement", "", "| data | comparison | label agreement | max abs Δlogit |"]
        lines.append("|---|---|---|---|")
        for dataset, items in report.agreement.items():
            for a in items:
                lines.append(
                    f"| {dataset} | {a.other} vs {a.reference} | {a.label_agreement:.4f} | {a.max_abs_logit_diff:.3g} |"
                )
        lines.append("")
    if info.sanity:
        lines += ["## Sanity sentences", "", "| sentence | expected | predicted |", "|---|---|---|"]
        for text, expected, got in info.sanity:
            shown = ", ".join(f"{b}: {label}" for b, label in got.items())
            lines.append(f"| {_cell(text)} | {expected} | {shown} |")
        lines.append("")
    if exports:
        lines += ["## ONNX exports", ""]
        lines += [f"- {precision}: `{path}`" for precision, path in exports.items()]
        lines.append("")
    if info.timings:
        lines += ["## Build time", "", "| step | seconds |", "|---|---|"]
        lines += [f"| {step} | {seconds:.1f} |" for step, seconds in info.timings.items()]
        lines.append("")
    if info.notes:
        lines += ["## Notes", ""]
        lines += [f"- {note}" for note in info.notes]
        lines.append("")
    return "\n".join(lines)


def _cell(text: str) -> str:
    """Text safe inside a markdown table cell."""
    return text.replace("|", "\\|").replace("\n", " ")


def _train_record(train: TrainResult | Mapping[str, Any]) -> dict[str, Any]:
    if isinstance(train, TrainResult):
        return {
            "train_examples": train.train_examples,
            "config": asdict(train.config),
            "steps": train.steps,
            "device": train.device,
            "seconds": train.seconds,
            "examples_per_second": train.examples_per_second,
            "history": [asdict(h) for h in train.history],
        }
    return dict(train)


def write_model_card(
    model_dir: Path,
    info: CardInfo,
    report: EvalReport | None,
    exports: Mapping[str, Path] | None = None,
) -> Path:
    """Write ``README.md`` into ``model_dir`` (training numbers from its ``training.json``)."""
    record_path = Path(model_dir) / TRAINING_RECORD
    train = json.loads(record_path.read_text()) if record_path.is_file() else None
    path = Path(model_dir) / MODEL_CARD
    path.write_text(render_model_card(info, train, report, exports), encoding="utf-8")
    if report is not None:
        (Path(model_dir) / "evaluation.json").write_text(report.to_json() + "\n")
    return path


@dataclass
class FinetuneOutcome:
    train: TrainResult
    report: EvalReport | None
    exports: dict[str, Path]
    card: Path


def finetune_and_export(
    model_dir: Path,
    train: Sequence[Example],
    *,
    output_dir: Path,
    cache_dir: Path,
    config: FinetuneConfig = FinetuneConfig(),
    eval_sets: Mapping[str, Sequence[Example]] | None = None,
    test_sets: Mapping[str, Sequence[Example]] | None = None,
    card: CardInfo | None = None,
    precisions: Sequence[str] = ("fp32", "int8"),
    eval_max_length: int = 128,
) -> FinetuneOutcome:
    """Fine-tune, export to ONNX (fp32 + INT8), evaluate PyTorch vs ONNX on the test (or eval) sets, write the card.

    The card's accuracy table comes from ``test_sets`` when given, else from ``eval_sets``.
    """
    result = train_classifier(model_dir, train, output_dir=output_dir, config=config, eval_sets=eval_sets)
    exports = export_onnx(output_dir, cache_dir, precisions) if precisions else {}
    measured = test_sets if test_sets else eval_sets
    report = None
    if measured:
        report = evaluate_backends(
            measured,
            torch_dir=output_dir,
            onnx_dirs=exports,
            max_length=eval_max_length,
            threads=config.threads,
        )
    info = card or CardInfo(title=f"{output_dir.name} (fine-tuned)", base_model=str(model_dir))
    path = write_model_card(output_dir, info, report, exports)
    for exported in exports.values():
        shutil.copy2(path, Path(exported) / MODEL_CARD)
    return FinetuneOutcome(train=result, report=report, exports=exports, card=path)
