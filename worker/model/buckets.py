"""Shape buckets and device-dependent batch defaults: pure functions, no onnxruntime import.

On a GPU every new input shape costs: the CUDA provider picks kernels and grows its memory arena per shape, and a
captured CUDA graph replays one fixed shape only. Padding each model call to one of a few *length buckets* and its
row count to one of a few *batch buckets* makes shapes repeat, so that cost is paid once per bucket.
On a CPU the padding costs compute in proportion (every position is a FLOP), so the runtime buckets shapes only on
CUDA unless told otherwise (``SentimentModel.load(shape_buckets=...)``).

``max_batch_size`` / ``inference_batch_size`` ``"auto"`` are resolved here, by the execution provider the model's
session got (:func:`resolve_batching`): a worker that asked for ``device auto`` and fell back to the CPU gets the CPU
sizes. This module imports nothing heavy (no onnxruntime).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from worker.settings import Batching

# Powers of two up to the longest a DistilBERT takes; max_length itself is always added (lengths are truncated to it).
LENGTH_BUCKETS: tuple[int, ...] = (16, 32, 64, 128, 256, 512)
# Row counts a call is padded to: powers of two and the midpoints above 16 (a filler row costs a real row's compute,
# so at most a third of a call is filler above 16 rows, instead of up to half with powers of two alone).
BATCH_BUCKETS: tuple[int, ...] = (1, 2, 4, 8, 16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512, 768, 1024)


@dataclass(frozen=True, slots=True)
class BatchDefaults:
    """What ``"auto"`` means for ``max_batch_size`` (records per batch) and ``inference_batch_size`` (per call)."""

    max_batch_size: int
    inference_batch_size: int


# CPU: measured on 2 cores (README settings table): chunks of 8 were as fast as larger ones and pad least.
CPU_BATCH = BatchDefaults(max_batch_size=64, inference_batch_size=8)
# GPU: one call per ~256 records keeps the GPU busy while the worker's Python side feeds it; a batch of up to 1024
# lets calls queue up behind a busy GPU. A starting point to be confirmed by the GPU check (benchmarks/gpu/), which
# measures seq/s by batch size on the H200; it has not been run yet.
GPU_BATCH = BatchDefaults(max_batch_size=1024, inference_batch_size=256)


# The provider a simulated device reports (worker/model/simulated.py): it stands for an accelerator, so it gets the
# accelerator's batch sizes (with the CPU's chunks of 8, the thread's wake-up after each short wait costs a share of
# the device's time that large calls amortise: benchmarks/device.py).
SIMULATED_DEVICE_PROVIDER = "SimulatedDevice"
# Execution providers that run the model on an accelerator (the GPU batch sizes suit them).
ACCELERATOR_PROVIDERS = frozenset(
    {"CUDAExecutionProvider", "TensorrtExecutionProvider", "ROCMExecutionProvider", SIMULATED_DEVICE_PROVIDER}
)


def gpu_visible() -> bool:
    """A cheap, side-effect-free hint that an NVIDIA GPU is present (device nodes; WSL's /dev/dxg)."""
    dev = Path("/dev")
    return any(dev.glob("nvidia[0-9]*")) or (dev / "dxg").exists()


def batch_defaults(provider: str) -> BatchDefaults:
    """The batch sizes ``"auto"`` resolves to for a session on ``provider`` (e.g. ``CPUExecutionProvider``)."""
    return GPU_BATCH if provider in ACCELERATOR_PROVIDERS else CPU_BATCH


def resolve_batching(batching: Batching, provider: str) -> Batching:
    """``batching`` with ``"auto"`` sizes replaced by ``provider``'s defaults (numbers given stay as they are)."""
    defaults = batch_defaults(provider)
    return batching.resolve(max_batch_size=defaults.max_batch_size, inference_batch_size=defaults.inference_batch_size)


def length_buckets(max_length: int, base: Sequence[int] = LENGTH_BUCKETS) -> tuple[int, ...]:
    """The bucket lengths below ``max_length``, plus ``max_length`` itself (sorted, no duplicates)."""
    if max_length < 1:
        raise ValueError(f"max_length must be positive, got {max_length}")
    return tuple(sorted({b for b in base if 0 < b < max_length} | {max_length}))


def bucket_for(size: int, buckets: Sequence[int]) -> int:
    """The smallest bucket ≥ ``size``; ``size`` itself when it is over the largest bucket (no bucket fits)."""
    if size < 1:
        raise ValueError(f"size must be positive, got {size}")
    for bucket in buckets:
        if bucket >= size:
            return bucket
    return size


@functools.lru_cache(maxsize=64)
def batch_buckets(limit: int, base: tuple[int, ...] = BATCH_BUCKETS) -> tuple[int, ...]:
    """The row buckets up to ``limit`` (the inference chunk), plus ``limit`` itself: a full chunk is never padded."""
    if limit < 1:
        raise ValueError(f"limit must be positive, got {limit}")
    return tuple(sorted({b for b in base if 0 < b < limit} | {limit}))


def pad_batch(
    ids: Sequence[Sequence[int]],
    lengths: np.ndarray,
    idx: np.ndarray,
    *,
    pad_id: int,
    width: int,
    rows: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """int64 ``input_ids`` and ``attention_mask`` of shape ``[rows, width]`` for the sequences ``idx`` of ``ids``.

    Sequences are left-aligned and padded with ``pad_id`` (mask 0). Rows past ``len(idx)`` (batch-bucket filler)
    hold one pad token with mask 1, so no row is fully masked; their outputs are to be dropped.
    """
    count = len(idx)
    rows = count if rows is None else rows
    if rows < count:
        raise ValueError(f"rows ({rows}) must be at least the number of sequences ({count})")
    if count and int(lengths[idx].max()) > width:
        raise ValueError(f"a sequence is longer than the width {width}")
    input_ids = np.full((rows, width), pad_id, dtype=np.int64)
    for row, i in enumerate(idx.tolist()):
        input_ids[row, : lengths[i]] = ids[i]
    real = np.ones(rows, dtype=np.int64)
    real[:count] = lengths[idx]
    attention_mask = (np.arange(width)[None, :] < real[:, None]).astype(np.int64)
    return input_ids, attention_mask
