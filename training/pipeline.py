"""Fine-tune → ONNX exports (fp32, INT8 through ``worker.model.export``) → evaluation → model card."""

from __future__ import annotations

import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from training.data import Example
from training.evaluate import EvalReport, evaluate_backends
from training.finetune import FinetuneConfig, TrainResult, train_classifier
from training.model_card import MODEL_CARD, CardInfo, write_model_card

_DEFAULT_CONFIG = FinetuneConfig()


def export_onnx(
    model_dir: Path, cache_dir: Path, precisions: Sequence[str] = ("fp32", "int8"), *, force: bool = False
) -> dict[str, Path]:
    """Export through the foundation's path (``worker.model.export.export_model``); {precision: dir}."""
    from worker.model.export import export_model

    out: dict[str, Path] = {}
    for precision in precisions:
        out[precision] = export_model(model_dir, precision=precision, cache_dir=cache_dir, force=force)  # type: ignore[arg-type]
    return out


@dataclass
class FinetuneOutcome:
    train: TrainResult
    report: EvalReport | None
    exports: dict[str, Path]
    card: Path | None  # None on the other ranks of `accelerate launch` (only the main process exports)


def finetune_and_export(
    model_dir: Path,
    train: Sequence[Example],
    *,
    output_dir: Path,
    cache_dir: Path,
    config: FinetuneConfig = _DEFAULT_CONFIG,
    eval_sets: Mapping[str, Sequence[Example]] | None = None,
    test_sets: Mapping[str, Sequence[Example]] | None = None,
    card: CardInfo | None = None,
    precisions: Sequence[str] = ("fp32", "int8"),
    eval_max_length: int = 128,
    resume: bool | str | Path = False,
) -> FinetuneOutcome:
    """Fine-tune, export to ONNX (fp32 + INT8), evaluate PyTorch vs ONNX on the test (or eval) sets, write the card.

    The card's accuracy table comes from ``test_sets`` when given, else from ``eval_sets``. ``resume``: see
    :func:`~training.finetune.train_classifier`.
    """
    result = train_classifier(
        model_dir, train, output_dir=output_dir, config=config, eval_sets=eval_sets, resume=resume
    )
    if not result.is_main_process:
        return FinetuneOutcome(train=result, report=None, exports={}, card=None)
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
