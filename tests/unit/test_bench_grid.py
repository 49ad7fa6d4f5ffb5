"""The model-only grid batches like the worker: bucketing sorts a whole micro-batch window by length."""

from __future__ import annotations

import numpy as np
import pytest

from benchmarks.model_only import plan_batches

pytestmark = pytest.mark.unit


def _waste(lengths: np.ndarray, batches: list[np.ndarray]) -> float:
    padded = sum(len(idx) * int(lengths[idx].max()) for idx in batches)
    return padded / int(lengths.sum()) - 1


def test_bucketing_window_is_at_least_the_workers_micro_batch() -> None:
    rng = np.random.default_rng(0)
    lengths = rng.integers(10, 60, size=128)
    narrow = plan_batches(lengths, 8, "bucket")  # window 4 x 8 = 32
    wide = plan_batches(lengths, 8, "bucket", min_window=64)  # window 64, like a 64-record micro-batch
    for batches in (narrow, wide):
        assert sorted(np.concatenate(batches).tolist()) == list(range(128))  # every message once
        assert all(len(idx) == 8 for idx in batches)
    first_window = {int(i) for idx in wide[:8] for i in idx}
    assert first_window == set(range(64))  # sorting never crosses a window
    assert _waste(lengths, wide) < _waste(lengths, narrow) < _waste(lengths, plan_batches(lengths, 8, "pad"))
