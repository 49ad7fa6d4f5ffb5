"""Model-only benchmarks: ONNX Runtime alone, no Kafka.

1. The grid (:func:`run_grid`): batch sizes × precisions × length distributions × padding strategy, on
   pre-tokenised inputs (``SentimentModel.infer_ids``). Padding strategies:

   - ``pad``: batches of ``b`` consecutive messages, each padded to its longest sequence;
   - ``bucket``: windows of ``min(max(4·b, W), N)`` consecutive messages sorted by length, cut into batches of
     ``b``, W = the worker's ``max_batch_size`` (what the worker does with a micro-batch of ``max_batch_size``
     run in length-sorted chunks of ``inference_batch_size``: 64/8 by default). At batch 1 there is no padding,
     so one cell (``none``).

   Cells run side by side: every repeat runs every cell once, in a fresh seeded order, so machine noise
   spreads over all cells; seq/s is the median over repeats, ms/batch percentiles pool all repeats.
2. The model-only ceiling of the pipeline (:func:`pipeline_ceiling`): tokenise + infer the *same messages*
   the end-to-end run gets, in micro-batches of ``max_batch_size`` run in chunks of ``inference_batch_size``,
   exactly like the worker but without Kafka.
"""

from __future__ import annotations

import random
import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from benchmarks.models import BenchModel, flops_per_sequence
from worker.observability import get_logger

log = get_logger(__name__)

WINDOW_FACTOR = 4


@dataclass
class GridConfig:
    batch_sizes: list[int]
    precisions: list[str]
    repeats: int = 3
    threads: int = 0
    max_length: int = 128
    seed: int = 0
    o3_datasets: list[str] | None = None  # o3 cells only for these datasets (None: all)
    bucket_window: int = 64  # smallest bucketing window: the worker's max_batch_size


@dataclass
class Cell:
    model: str
    precision: str
    dataset: str
    batch_size: int
    padding: str  # "pad", "bucket", "none" (batch 1)
    batches: list[np.ndarray] = field(default_factory=list)  # index arrays into the dataset's ids
    real_tokens: int = 0
    padded_tokens: int = 0
    useful_flops: float = 0.0
    executed_flops: float = 0.0
    round_seconds: list[float] = field(default_factory=list)
    batch_ms: list[float] = field(default_factory=list)

    def result(self, n: int) -> dict[str, Any]:
        seconds = statistics.median(self.round_seconds) if self.round_seconds else float("nan")
        ms = np.array(self.batch_ms) if self.batch_ms else np.array([float("nan")])
        return {
            "model": self.model,
            "precision": self.precision,
            "dataset": self.dataset,
            "batch_size": self.batch_size,
            "padding": self.padding,
            "sequences": n,
            "batches_per_repeat": len(self.batches),
            "repeats": len(self.round_seconds),
            "seq_per_s": round(n / seconds, 2),
            "seq_per_s_all": [round(n / s, 2) for s in self.round_seconds],
            "ms_per_batch_p50": round(float(np.percentile(ms, 50)), 2),
            "ms_per_batch_p99": round(float(np.percentile(ms, 99)), 2),
            "real_tokens": self.real_tokens,
            "padded_tokens": self.padded_tokens,
            "padding_waste": round(self.padded_tokens / self.real_tokens - 1, 4) if self.real_tokens else None,
            "gflops_executed": round(self.executed_flops / seconds / 1e9, 1),
            "gflops_useful": round(self.useful_flops / seconds / 1e9, 1),
        }


def plan_batches(lengths: np.ndarray, batch_size: int, padding: str, min_window: int = 1) -> list[np.ndarray]:
    """Index arrays of the batches for a padding strategy (see the module docstring)."""
    n = len(lengths)
    order = np.arange(n)
    if padding == "bucket" and batch_size > 1:
        window = min(max(WINDOW_FACTOR * batch_size, min_window), n)
        parts = []
        for start in range(0, n, window):
            idx = order[start : start + window]
            parts.append(idx[np.argsort(lengths[idx], kind="stable")])
        order = np.concatenate(parts)
    return [order[start : start + batch_size] for start in range(0, n, batch_size)]


def _account(cell: Cell, lengths: np.ndarray, shape: dict[str, int]) -> None:
    for idx in cell.batches:
        width = max(1, int(lengths[idx].max()))
        cell.padded_tokens += len(idx) * width
        cell.real_tokens += int(lengths[idx].sum())
        cell.executed_flops += len(idx) * flops_per_sequence(shape, width)
        cell.useful_flops += sum(flops_per_sequence(shape, int(length)) for length in lengths[idx])


def tokenizer_rate(model: Any, texts: Sequence[str], batch: int = 64) -> float:
    """Texts/s of the fast tokenizer (``SentimentModel.tokenize``) in batches of ``batch``."""
    started = time.perf_counter()
    for start in range(0, len(texts), batch):
        model.tokenize(texts[start : start + batch])
    return len(texts) / max(1e-9, time.perf_counter() - started)


def run_grid(
    bench_model: BenchModel,
    datasets: dict[str, list[str]],
    config: GridConfig,
    *,
    progress: bool = True,
) -> dict[str, Any]:
    """The grid for one model; returns {"cells": [...], "datasets": {...}} (JSON-ready)."""
    from tqdm import tqdm

    from worker.model.runtime import SentimentModel

    sessions = {
        precision: SentimentModel.load(
            bench_model.exports[precision], device="cpu", threads=config.threads, max_length=config.max_length
        )
        for precision in config.precisions
        if precision in bench_model.exports
    }
    if not sessions:
        return {"cells": [], "datasets": {}, "skipped": "no CPU precision exported"}
    any_model = next(iter(sessions.values()))
    ids_by_dataset: dict[str, list[list[int]]] = {}
    dataset_info: dict[str, Any] = {}
    for name, texts in datasets.items():
        ids, truncated = any_model.tokenize(texts)
        lengths = np.array([len(x) for x in ids])
        ids_by_dataset[name] = ids
        dataset_info[name] = {
            "sequences": len(ids),
            "tokens_mean": round(float(lengths.mean()), 1),
            "tokens_p50": int(np.percentile(lengths, 50)),
            "tokens_p90": int(np.percentile(lengths, 90)),
            "tokens_max": int(lengths.max()),
            "truncated_share": round(sum(truncated) / len(truncated), 3),
            "tokenizer_texts_per_s": round(tokenizer_rate(any_model, texts), 0),
        }

    cells: list[Cell] = []
    for name, ids in ids_by_dataset.items():
        lengths = np.array([len(x) for x in ids])
        for precision in sessions:
            if precision == "o3" and config.o3_datasets is not None and name not in config.o3_datasets:
                continue
            for b in config.batch_sizes:
                for padding in ("none",) if b == 1 else ("pad", "bucket"):
                    cell = Cell(bench_model.key, precision, name, b, padding)
                    cell.batches = plan_batches(lengths, b, padding, config.bucket_window)
                    _account(cell, lengths, bench_model.shape)
                    cells.append(cell)

    # warm-up: two batches of each cell (memory arenas, thread pools), untimed
    for cell in cells:
        model = sessions[cell.precision]
        ids = ids_by_dataset[cell.dataset]
        for idx in cell.batches[:2]:
            model.infer_ids([ids[i] for i in idx])

    rng = random.Random(config.seed)
    bar = tqdm(
        total=len(cells) * config.repeats,
        desc=f"model-only {bench_model.key}",
        unit="cell",
        disable=not progress,
        leave=False,
    )
    for _ in range(config.repeats):
        order = list(range(len(cells)))
        rng.shuffle(order)
        for i in order:
            cell = cells[i]
            model = sessions[cell.precision]
            ids = ids_by_dataset[cell.dataset]
            batch_inputs = [[ids[j] for j in idx] for idx in cell.batches]
            total = 0.0
            for batch in batch_inputs:
                started = time.perf_counter()
                model.infer_ids(batch)
                elapsed = time.perf_counter() - started
                total += elapsed
                cell.batch_ms.append(elapsed * 1000)
            cell.round_seconds.append(total)
            bar.update(1)
    bar.close()
    results = [cell.result(len(ids_by_dataset[cell.dataset])) for cell in cells]
    providers = {precision: model.provider for precision, model in sessions.items()}
    return {"cells": results, "datasets": dataset_info, "providers": providers}


def pipeline_ceiling(
    model: Any,
    texts: Sequence[str],
    *,
    max_batch_size: int,
    inference_batch_size: int,
    repeats: int = 3,
) -> dict[str, Any]:
    """Tokenise + infer ``texts`` in micro-batches like the worker (no Kafka): msgs/s, median of repeats."""
    rates: list[float] = []
    batch_ms: list[float] = []
    padded = real = 0
    for _ in range(repeats):
        started = time.perf_counter()
        padded = real = 0
        for start in range(0, len(texts), max_batch_size):
            t0 = time.perf_counter()
            ids, _ = model.tokenize(texts[start : start + max_batch_size])
            result = model.infer_ids(ids, chunk_size=inference_batch_size)
            batch_ms.append((time.perf_counter() - t0) * 1000)
            padded += result.padded_tokens
            real += result.real_tokens
        rates.append(len(texts) / (time.perf_counter() - started))
    ms = np.array(batch_ms)
    return {
        "messages": len(texts),
        "max_batch_size": max_batch_size,
        "inference_batch_size": inference_batch_size,
        "repeats": repeats,
        "msgs_per_s": round(statistics.median(rates), 1),
        "msgs_per_s_all": [round(r, 1) for r in rates],
        "ms_per_full_batch_p50": round(float(np.percentile(ms, 50)), 2),
        "ms_per_full_batch_p99": round(float(np.percentile(ms, 99)), 2),
        "padding_waste": round(padded / real - 1, 4) if real else None,
    }
