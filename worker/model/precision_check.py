"""Does a reduced-precision export (fp16) agree with fp32? The arithmetic of the check, on logits of the same
inputs (rows in the same order): label agreement, and how far the class probabilities moved.

The bar for fp16: labels agree on at least 99.5% of the held-out sentences (``FP16_MIN_AGREEMENT``). The GPU check
(benchmarks/gpu/) runs it on the starter model's held-out sets on CUDA; fp16 kernels on the CPU differ from CUDA's,
so a CPU run only says that the conversion is sound.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

FP16_MIN_AGREEMENT = 0.995


def probabilities(logits: np.ndarray) -> np.ndarray:
    """Softmax over the last axis, in float64 (so the comparison adds no rounding of its own)."""
    values = np.asarray(logits, dtype=np.float64)
    shifted = values - values.max(axis=-1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=-1, keepdims=True)


@dataclass(frozen=True, slots=True)
class PrecisionCheck:
    n: int
    label_agreement: float  # share of rows whose argmax is the same
    disagreements: int
    max_abs_dprob: float  # over every row and class
    mean_abs_dprob: float
    max_abs_dlogit: float
    threshold: float
    passed: bool

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def compare_precisions(
    reference: np.ndarray, candidate: np.ndarray, *, threshold: float = FP16_MIN_AGREEMENT
) -> PrecisionCheck:
    """Compare ``candidate`` logits (e.g. fp16) with ``reference`` logits (fp32) of the same inputs."""
    ref = np.asarray(reference, dtype=np.float64)
    cand = np.asarray(candidate, dtype=np.float64)
    if ref.shape != cand.shape or ref.ndim != 2:
        raise ValueError(f"logits must be two arrays of the same (rows, labels) shape: {ref.shape}, {cand.shape}")
    if not np.isfinite(cand).all():
        raise ValueError("the candidate logits hold NaN or infinity (an fp16 overflow?)")
    n = len(ref)
    if n == 0:
        raise ValueError("no rows to compare")
    same = ref.argmax(axis=1) == cand.argmax(axis=1)
    dprob = np.abs(probabilities(ref) - probabilities(cand))
    agreement = float(same.mean())
    return PrecisionCheck(
        n=n,
        label_agreement=agreement,
        disagreements=int((~same).sum()),
        max_abs_dprob=float(dprob.max()),
        mean_abs_dprob=float(dprob.mean()),
        max_abs_dlogit=float(np.abs(ref - cand).max()),
        threshold=threshold,
        passed=agreement >= threshold,
    )
