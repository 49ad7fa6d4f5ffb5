"""The inference stage runs batches that queued up while it was busy as one model call, in order (no broker)."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

import numpy as np
import pytest

from tests.unit.stream.helpers import item
from worker.model.runtime import InferenceResult
from worker.settings import load_settings
from worker.stream.batcher import Batch
from worker.stream.runner import Runner

pytestmark = pytest.mark.unit


class FakeModel:
    """Just what the runner's inference stage uses; records the size of every model call."""

    model_id, revision, provider, precision, sha256 = "fake", None, "CPUExecutionProvider", "fp32", "0" * 64

    def __init__(self) -> None:
        self.labels = ["NEGATIVE", "POSITIVE"]
        self.calls: list[int] = []

    def tokenize(self, texts: Sequence[str]) -> tuple[list[list[int]], list[bool]]:
        return [[1, 2]] * len(texts), [False] * len(texts)

    def model_meta(self) -> dict[str, Any]:
        return {"id": self.model_id}

    def infer_ids(self, ids: Sequence[Sequence[int]], *, chunk_size: int | None = None) -> InferenceResult:
        self.calls.append(len(ids))
        return InferenceResult(np.full((len(ids), 2), 0.5, dtype=np.float32), 5 * len(ids), 5 * len(ids))


def _run(sizes: list[int], max_batch_size: int) -> tuple[list[int], list[list[int]]]:
    settings = load_settings(
        bootstrap_servers="127.0.0.1:9092", input_topics="in", max_batch_size=max_batch_size, queue_max_batches=8
    )
    model = FakeModel()
    runner = Runner(settings, model)  # type: ignore[arg-type]
    offset = 0
    for size in sizes:  # queued before the stage starts: as if they arrived while the model was busy
        runner.batch_q.put(Batch(items=[item(offset + i) for i in range(size)], created=0.0))
        offset += size
    runner.batch_q.put(None)
    thread = threading.Thread(target=runner._infer_loop, args=(threading.Event(),), daemon=True)
    thread.start()
    groups: list[list[int]] = []
    while (out := runner.out_q.get(timeout=5)) is not None:
        groups.append([it.record.offset for it in out[0]])
    thread.join(5)
    assert not thread.is_alive()
    return model.calls, groups


def test_queued_batches_merge_into_one_call_up_to_max_batch_size_in_order() -> None:
    calls, groups = _run([3, 3, 2], max_batch_size=8)
    assert calls == [8]
    assert groups == [list(range(8))]


def test_a_batch_that_would_overflow_waits_for_the_next_call() -> None:
    calls, groups = _run([3, 3, 2, 4], max_batch_size=5)
    assert calls == [3, 5, 4]
    assert [x for g in groups for x in g] == list(range(12))  # every record once, in order
