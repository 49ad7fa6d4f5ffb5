"""Accuracy and backend agreement: PyTorch vs ONNX fp32 vs INT8 on labelled sentences.

Every backend gets the very same token ids (one tokenisation, dynamic padding over length-sorted chunks),
so label agreement and max |Δlogit| measure the backends alone. ONNX exports run in the serving runtime
(``worker.model.runtime.SentimentModel``, CPU), so what is measured here is what the worker runs.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from training.data import Example
from worker.model.manifest import CONFIG_NAME
from worker.observability import get_logger

if TYPE_CHECKING:
    import torch

    from worker.model.runtime import SentimentModel

log = get_logger(__name__)

DEFAULT_LABELS: tuple[str, ...] = ("NEGATIVE", "POSITIVE")


# ---------------------------------------------------------------------------------------------------
# metrics


@dataclass(frozen=True)
class ClassMetrics:
    precision: float
    recall: float
    f1: float
    support: int


@dataclass(frozen=True)
class Metrics:
    """Accuracy, per-class precision/recall/F1 and the confusion matrix (rows: true, columns: predicted)."""

    n: int
    accuracy: float
    per_class: dict[str, ClassMetrics]
    confusion: list[list[int]]
    labels: tuple[str, ...] = DEFAULT_LABELS

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def classification_metrics(
    labels: Sequence[int], predictions: Sequence[int], names: Sequence[str] = DEFAULT_LABELS
) -> Metrics:
    y = np.asarray(labels, dtype=np.int64)
    p = np.asarray(predictions, dtype=np.int64)
    if y.shape != p.shape:
        raise ValueError(f"{len(y)} labels but {len(p)} predictions")
    k = len(names)
    confusion = np.zeros((k, k), dtype=np.int64)
    np.add.at(confusion, (y, p), 1)
    per_class: dict[str, ClassMetrics] = {}
    for i, name in enumerate(names):
        tp = int(confusion[i, i])
        predicted = int(confusion[:, i].sum())
        actual = int(confusion[i, :].sum())
        precision = tp / predicted if predicted else 0.0
        recall = tp / actual if actual else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        per_class[name] = ClassMetrics(precision, recall, f1, actual)
    accuracy = float((y == p).mean()) if len(y) else 0.0
    return Metrics(len(y), accuracy, per_class, confusion.tolist(), tuple(names))


# ---------------------------------------------------------------------------------------------------
# tokenisation shared by every backend


@dataclass(frozen=True)
class EncodedBatch:
    input_ids: np.ndarray  # int64 [batch, length]
    attention_mask: np.ndarray  # int64 [batch, length]
    index: np.ndarray  # positions of these rows in the original order


def encode_batches(tokenizer: Any, texts: Sequence[str], *, max_length: int, batch_size: int) -> list[EncodedBatch]:
    """Tokenise once (truncate to ``max_length``), sort by length, pad each chunk to its own longest row."""
    enc = tokenizer(list(texts), truncation=True, max_length=max_length, padding=False)
    ids: list[list[int]] = enc["input_ids"]
    pad_id = int(tokenizer.pad_token_id or 0)
    order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
    batches: list[EncodedBatch] = []
    for start in range(0, len(order), batch_size):
        chunk = order[start : start + batch_size]
        width = max(len(ids[i]) for i in chunk)
        input_ids = np.full((len(chunk), width), pad_id, dtype=np.int64)
        mask = np.zeros((len(chunk), width), dtype=np.int64)
        for row, i in enumerate(chunk):
            input_ids[row, : len(ids[i])] = ids[i]
            mask[row, : len(ids[i])] = 1
        batches.append(EncodedBatch(input_ids, mask, np.asarray(chunk, dtype=np.int64)))
    return batches


def load_tokenizer(model_dir: Path) -> Any:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(model_dir))


# ---------------------------------------------------------------------------------------------------
# backends


def torch_logits(model: torch.nn.Module, batches: Sequence[EncodedBatch], n: int, *, device: str = "cpu") -> np.ndarray:
    """Logits of a (PyTorch) sequence classifier, rows in the original order."""
    import torch

    out: np.ndarray | None = None
    was_training = model.training
    model.eval()
    with torch.inference_mode():
        for batch in batches:
            logits = model(
                input_ids=torch.from_numpy(batch.input_ids).to(device),
                attention_mask=torch.from_numpy(batch.attention_mask).to(device),
            ).logits
            values = logits.float().cpu().numpy()
            if out is None:
                out = np.zeros((n, values.shape[1]), dtype=np.float32)
            out[batch.index] = values
    model.train(was_training)
    return out if out is not None else np.zeros((0, 2), dtype=np.float32)


def load_torch_model(model_dir: Path, device: str = "cpu") -> torch.nn.Module:
    from transformers import AutoModelForSequenceClassification

    model = AutoModelForSequenceClassification.from_pretrained(str(model_dir))
    return model.to(device).eval()


def load_onnx_model(exported_dir: Path, *, threads: int = 0, max_length: int = 128) -> SentimentModel:
    """An exported dir in the serving runtime on the CPU (its manifest's sha256 is checked)."""
    from worker.model.runtime import SentimentModel

    return SentimentModel.load(Path(exported_dir), device="cpu", threads=threads, max_length=max_length, warmup=False)


def onnx_logits(model: SentimentModel, batches: Sequence[EncodedBatch], n: int) -> np.ndarray:
    """Logits of an exported classifier loaded in the serving runtime, rows in the original order."""
    out: np.ndarray | None = None
    for batch in batches:
        values = model.batch_logits(batch.input_ids, batch.attention_mask)
        if out is None:
            out = np.zeros((n, values.shape[1]), dtype=np.float32)
        out[batch.index] = values
    return out if out is not None else np.zeros((0, 2), dtype=np.float32)


def is_torch_dir(model_dir: Path) -> bool:
    d = Path(model_dir)
    return (d / CONFIG_NAME).is_file() and any(
        (d / name).is_file() for name in ("model.safetensors", "pytorch_model.bin", "model.safetensors.index.json")
    )


def is_onnx_dir(model_dir: Path) -> bool:
    return any(Path(model_dir).glob("*.onnx"))


# ---------------------------------------------------------------------------------------------------
# reports


@dataclass(frozen=True)
class Agreement:
    reference: str
    other: str
    label_agreement: float
    max_abs_logit_diff: float


@dataclass
class EvalReport:
    """Per data set and backend: metrics; per data set: agreement of each backend with the reference."""

    metrics: dict[str, dict[str, Metrics]] = field(default_factory=dict)  # dataset -> backend -> metrics
    agreement: dict[str, list[Agreement]] = field(default_factory=dict)  # dataset -> comparisons
    backends: list[str] = field(default_factory=list)

    def accuracy(self, dataset: str, backend: str) -> float:
        return self.metrics[dataset][backend].accuracy

    def find_agreement(self, dataset: str, other: str, reference: str | None = None) -> Agreement | None:
        """The comparison of ``other`` with ``reference`` (default: the report's reference backend)."""
        ref = reference or (self.backends[0] if self.backends else "")
        for a in self.agreement.get(dataset, []):
            if {a.reference, a.other} == {ref, other}:
                return a
        return None

    def to_dict(self) -> dict[str, Any]:
        return {
            "backends": list(self.backends),
            "metrics": {d: {b: m.to_dict() for b, m in per.items()} for d, per in self.metrics.items()},
            "agreement": {d: [asdict(a) for a in items] for d, items in self.agreement.items()},
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    def format_text(self) -> str:
        lines: list[str] = []
        for dataset, per in self.metrics.items():
            lines.append(f"== {dataset} ==")
            for backend, m in per.items():
                pc = "  ".join(
                    f"{name}: P {c.precision:.3f} R {c.recall:.3f} (n {c.support})" for name, c in m.per_class.items()
                )
                lines.append(f"  {backend:<8} acc {m.accuracy:.4f} (n {m.n})  {pc}  confusion {m.confusion}")
            for a in self.agreement.get(dataset, []):
                lines.append(
                    f"  {a.other} vs {a.reference}: label agreement {a.label_agreement:.4f}, "
                    f"max |Δlogit| {a.max_abs_logit_diff:.3g}"
                )
        return "\n".join(lines)


def compare_logits(
    datasets: Mapping[str, Sequence[Example]],
    logits: Mapping[str, Mapping[str, np.ndarray]],  # backend -> dataset -> logits
    *,
    reference: str | None = None,
    names: Sequence[str] = DEFAULT_LABELS,
) -> EvalReport:
    ref = reference or next(iter(logits), "")
    backends = [ref, *(b for b in logits if b != ref)] if logits else []
    report = EvalReport(backends=backends)
    for dataset, rows in datasets.items():
        labels = [y for _, y in rows]
        report.metrics[dataset] = {}
        for backend in backends:
            preds = logits[backend][dataset].argmax(axis=1)
            report.metrics[dataset][backend] = classification_metrics(labels, preds.tolist(), names)
        comparisons: list[Agreement] = []
        # Every pair: reference vs each other backend first, then the others among themselves.
        ordered = [ref, *(b for b in backends if b != ref)]
        for i, first in enumerate(ordered):
            for second in ordered[i + 1 :]:
                a, b = logits[first][dataset], logits[second][dataset]
                comparisons.append(
                    Agreement(
                        reference=first,
                        other=second,
                        label_agreement=float((a.argmax(1) == b.argmax(1)).mean()) if len(a) else 1.0,
                        max_abs_logit_diff=float(np.abs(a - b).max()) if len(a) else 0.0,
                    )
                )
        report.agreement[dataset] = comparisons
    return report


def with_total(datasets: Mapping[str, Sequence[Example]]) -> dict[str, list[Example]]:
    """The data sets plus an ``all`` entry concatenating them (when there is more than one)."""
    out = {name: list(rows) for name, rows in datasets.items()}
    if len(out) > 1:
        out["all"] = [ex for rows in datasets.values() for ex in rows]
    return out


def evaluate_backends(
    datasets: Mapping[str, Sequence[Example]],
    *,
    torch_dir: Path | None = None,
    onnx_dirs: Mapping[str, Path] | None = None,
    tokenizer_dir: Path | None = None,
    max_length: int = 128,
    batch_size: int = 64,
    threads: int = 0,
    device: str = "cpu",
    total: bool = True,
) -> EvalReport:
    """Evaluate a PyTorch folder (``pytorch``) and exported ONNX dirs (e.g. ``{"fp32": dir, "int8": dir}``).

    The reference for agreement is PyTorch when given, else the first ONNX dir. Labels come from the
    model's id2label when available. With ``total`` and more than one data set, an ``all`` entry joins
    them (from the logits already computed: nothing runs twice).
    """
    onnx_dirs = dict(onnx_dirs or {})
    tok_dir = tokenizer_dir or torch_dir or next(iter(onnx_dirs.values()), None)
    if tok_dir is None:
        raise ValueError("nothing to evaluate: give torch_dir and/or onnx_dirs")
    tokenizer = load_tokenizer(tok_dir)
    names = label_names(tok_dir)
    if threads:
        import torch

        torch.set_num_threads(threads)
    encoded = {
        name: (encode_batches(tokenizer, [t for t, _ in rows], max_length=max_length, batch_size=batch_size), len(rows))
        for name, rows in datasets.items()
    }
    logits: dict[str, dict[str, np.ndarray]] = {}
    if torch_dir is not None:
        model = load_torch_model(torch_dir, device)
        logits["pytorch"] = {d: torch_logits(model, b, n, device=device) for d, (b, n) in encoded.items()}
        del model
    for backend, exported in onnx_dirs.items():
        onnx_model = load_onnx_model(exported, threads=threads, max_length=max_length)
        logits[backend] = {d: onnx_logits(onnx_model, b, n) for d, (b, n) in encoded.items()}
        del onnx_model
    if total and len(datasets) > 1 and "all" not in datasets:
        for per in logits.values():
            per["all"] = np.concatenate([per[name] for name in datasets])
        datasets = with_total(datasets)
    report = compare_logits(datasets, logits, names=names)
    log.info(
        "evaluate.done",
        datasets={d: len(r) for d, r in datasets.items()},
        backends=report.backends,
        accuracy={d: {b: round(m.accuracy, 4) for b, m in per.items()} for d, per in report.metrics.items()},
    )
    return report


def label_names(model_dir: Path) -> tuple[str, ...]:
    """Label names in id order from the model's config.json (NEGATIVE/POSITIVE when absent)."""
    try:
        config = json.loads((Path(model_dir) / CONFIG_NAME).read_text())
        id2label = {int(k): str(v) for k, v in (config.get("id2label") or {}).items()}
    except (OSError, ValueError):
        return DEFAULT_LABELS
    if sorted(id2label) != list(range(len(id2label))) or len(id2label) < 2:
        return DEFAULT_LABELS
    return tuple(id2label[i] for i in range(len(id2label)))
