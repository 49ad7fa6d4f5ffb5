"""Shape buckets and device batch defaults (worker.model.buckets): pure functions."""

from __future__ import annotations

import numpy as np
import pytest

from worker.model import buckets
from worker.model.buckets import (
    CPU_BATCH,
    GPU_BATCH,
    batch_buckets,
    batch_defaults,
    bucket_for,
    length_buckets,
    pad_batch,
    resolve_batching,
)

pytestmark = pytest.mark.unit


def test_length_buckets_stop_at_max_length_and_include_it() -> None:
    assert length_buckets(128) == (16, 32, 64, 128)
    assert length_buckets(100) == (16, 32, 64, 100)
    assert length_buckets(512) == (16, 32, 64, 128, 256, 512)
    assert length_buckets(8) == (8,)
    with pytest.raises(ValueError):
        length_buckets(0)


def test_bucket_for_picks_the_smallest_that_holds_the_size() -> None:
    lengths = length_buckets(128)
    assert [bucket_for(n, lengths) for n in (1, 16, 17, 32, 33, 100, 128)] == [16, 16, 32, 32, 64, 128, 128]
    assert bucket_for(200, lengths) == 200  # over the largest: as is (never truncated here)
    rows = batch_buckets(256)
    assert rows == (1, 2, 4, 8, 16, 24, 32, 48, 64, 96, 128, 192, 256)
    assert [bucket_for(n, rows) for n in (1, 3, 5, 17, 64, 65, 130, 256)] == [1, 4, 8, 24, 64, 96, 192, 256]
    assert batch_buckets(100)[-2:] == (96, 100)
    with pytest.raises(ValueError):
        bucket_for(0, rows)


def test_shapes_repeat_under_buckets() -> None:
    """Every length 1..128 maps onto 4 widths; every chunk size 1..256 onto 13 row counts, none a third filler
    above 16 rows."""
    assert len({bucket_for(n, length_buckets(128)) for n in range(1, 129)}) == 4
    assert len({bucket_for(n, batch_buckets(256)) for n in range(1, 257)}) == 13
    assert max(1 - n / bucket_for(n, batch_buckets(1024)) for n in range(17, 1025)) <= 1 / 3


def test_pad_batch_pads_rows_and_width() -> None:
    ids = [[5, 6, 7], [8], [9, 9]]
    lengths = np.array([3, 1, 2])
    input_ids, mask = pad_batch(ids, lengths, np.array([2, 0]), pad_id=0, width=4, rows=4)
    assert input_ids.dtype == np.int64 and mask.dtype == np.int64
    assert input_ids.tolist() == [[9, 9, 0, 0], [5, 6, 7, 0], [0, 0, 0, 0], [0, 0, 0, 0]]
    # filler rows attend to one (pad) token: no fully masked row
    assert mask.tolist() == [[1, 1, 0, 0], [1, 1, 1, 0], [1, 0, 0, 0], [1, 0, 0, 0]]
    same, same_mask = pad_batch(ids, lengths, np.array([0, 1]), pad_id=3, width=3)
    assert same.tolist() == [[5, 6, 7], [8, 3, 3]] and same_mask.tolist() == [[1, 1, 1], [1, 0, 0]]
    with pytest.raises(ValueError, match="rows"):
        pad_batch(ids, lengths, np.array([0, 1]), pad_id=0, width=3, rows=1)
    with pytest.raises(ValueError, match="width"):
        pad_batch(ids, lengths, np.array([0]), pad_id=0, width=2)


def test_batch_defaults_depend_on_the_sessions_provider() -> None:
    assert batch_defaults("CPUExecutionProvider") == CPU_BATCH
    assert batch_defaults("CUDAExecutionProvider") == GPU_BATCH
    assert batch_defaults("TensorrtExecutionProvider") == GPU_BATCH
    assert GPU_BATCH.inference_batch_size > CPU_BATCH.inference_batch_size
    assert GPU_BATCH.max_batch_size >= GPU_BATCH.inference_batch_size
    assert CPU_BATCH.inference_batch_size == 8 and CPU_BATCH.max_batch_size == 64


def test_auto_batch_sizes_resolve_by_the_provider_the_session_got(monkeypatch: pytest.MonkeyPatch) -> None:
    from worker.settings import load_settings

    monkeypatch.setattr(buckets, "gpu_visible", lambda: True)  # a GPU seen on the machine decides nothing
    asked_cuda = load_settings(device="auto").batching
    assert (asked_cuda.max_batch_size, asked_cuda.inference_batch_size) == ("auto", "auto")  # not known yet
    fell_back = resolve_batching(asked_cuda, "CPUExecutionProvider")  # device auto, the session got the CPU
    assert (fell_back.batch_size, fell_back.chunk_size) == (64, 8)
    on_gpu = resolve_batching(asked_cuda, "CUDAExecutionProvider")
    assert (on_gpu.batch_size, on_gpu.chunk_size) == (1024, 256)
    given = resolve_batching(
        load_settings(max_batch_size="32", inference_batch_size=4).batching, "CUDAExecutionProvider"
    )
    assert (given.max_batch_size, given.inference_batch_size) == (32, 4)
    one_given = resolve_batching(load_settings(max_batch_size=100).batching, "CUDAExecutionProvider")
    assert (one_given.max_batch_size, one_given.inference_batch_size) == (100, 256)
