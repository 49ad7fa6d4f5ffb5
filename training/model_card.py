"""The model card (``README.md`` with a YAML header) of a fine-tuned model: data, settings, measured numbers."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from training.evaluate import EvalReport
from training.finetune import TRAINING_RECORD, TrainResult

MODEL_CARD = "README.md"


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
            f"- examples: {record['train_examples']}, epochs: {cfg['epochs']}, steps: {record['steps']}"
            + (f" (resumed from {Path(record['resumed_from']).name})" if record.get("resumed_from") else ""),
            *_optimiser_lines(record),
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


def _optimiser_lines(record: Mapping[str, Any]) -> list[str]:
    """The optimiser and Trainer settings (records written before the Trainer have no ``trainer`` entry)."""
    cfg, args = record["config"], record.get("trainer")
    schedule = (
        f"lr {cfg['lr']}, weight decay {cfg['weight_decay']}, linear warmup {cfg['warmup_ratio']:.0%} then linear "
        f"decay, grad-norm clip {cfg['max_grad_norm']}"
    )
    if not args:
        return [f"- optimiser: AdamW (fused when available), {schedule}"]
    precision = "bf16" if args.get("bf16") else "fp16" if args.get("fp16") else "fp32"
    lines = [
        f"- transformers Trainer (Accelerate): optim {args['optim']}, {schedule}, precision {precision}, "
        f"{args.get('world_size', 1)} process(es) on {args.get('device', record['device'])}",
    ]
    if args.get("metric_for_best_model"):
        best = f"step {record.get('best_step')}, {record.get('best_metric')}" if record.get("best_step") else "n/a"
        lines.append(
            f"- evaluation and checkpoint every epoch; final weights: the best by {args['metric_for_best_model']} "
            f"({best})"
        )
    else:
        lines.append("- checkpoint every epoch (no eval set); final weights: the last epoch")
    return lines


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
            "trainer": train.trainer,
            "resumed_from": train.resumed_from,
            "best_step": train.best_step,
            "best_metric": train.best_metric,
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
