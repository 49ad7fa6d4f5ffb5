"""The inference stage calls its tracer once per model batch (the call that scored it, or failed), with the batch's
items, the call's duration and the error; the default is the no-op tracer."""

from __future__ import annotations

import queue
import threading
from collections.abc import Sequence

import pytest

from tests.unit.stream.helpers import FakeModel, item
from worker.stream.batcher import InferQueue
from worker.stream.common.ports import NullBatchTracer
from worker.stream.common.stats import RunStats
from worker.stream.common.types import Item
from worker.stream.infer import InferStage

pytestmark = pytest.mark.unit


class Recorder:
    def __init__(self) -> None:
        self.calls: list[tuple[list[int], float, BaseException | None]] = []

    def model_batch(self, items: Sequence[Item], seconds: float, error: BaseException | None = None) -> None:
        self.calls.append(([it.record.offset for it in items], seconds, error))


def _run(sizes: list[int], tracer: Recorder | None, model: FakeModel) -> InferStage:
    inbox = InferQueue(max_batch_size=8, max_wait_s=1.0)
    offset = 0
    for size in sizes:
        inbox.put([item(offset + i) for i in range(size)])
        offset += size
    inbox.end()
    outbox: queue.Queue = queue.Queue()
    stage = InferStage(
        model,  # type: ignore[arg-type]
        inbox,
        outbox,
        chunk_size=8,
        stats=RunStats(),
        on_failed=lambda it, error: None,
        tracer=tracer,
    )
    thread = threading.Thread(target=stage.run, args=(threading.Event(),), daemon=True)
    thread.start()
    while outbox.get(timeout=5) is not None:
        pass
    thread.join(5)
    return stage


def test_one_tracer_call_per_model_batch() -> None:
    tracer = Recorder()
    model = FakeModel()
    _run([3, 3, 2, 4], tracer, model)
    assert [len(offsets) for offsets, _, _ in tracer.calls] == model.calls  # one call per model call, same items
    assert [o for offsets, _, _ in tracer.calls for o in offsets] == list(range(12))
    assert all(seconds >= 0 and error is None for _, seconds, error in tracer.calls)


def test_a_failed_model_batch_is_traced_with_its_error() -> None:
    tracer = Recorder()
    model = FakeModel(fail_at_tokens=5)  # every record has 5 tokens: every call fails
    _run([2], tracer, model)
    offsets, _seconds, error = tracer.calls[0]
    assert offsets == [0, 1] and isinstance(error, RuntimeError)
    assert len(tracer.calls) == 1  # the split calls that isolate the bad record make no span


def test_the_default_tracer_is_the_no_op() -> None:
    assert isinstance(_run([1], None, FakeModel()).tracer, NullBatchTracer)
