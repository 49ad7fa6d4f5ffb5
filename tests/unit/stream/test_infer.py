"""The inference stage (no broker, a fake model): batches that queued up while it was busy run as one model call,
in order, within the batch budgets; a failing record is isolated; its input queue bounds what waits."""

from __future__ import annotations

import queue
import threading

import pytest

from tests.unit.stream.helpers import FakeModel, item
from worker.stream.batcher import Batch, Batcher
from worker.stream.infer import InferQueue, InferStage
from worker.stream.stats import RunStats
from worker.stream.timing import Deadline
from worker.stream.types import Item

pytestmark = pytest.mark.unit


def _run(
    sizes: list[int],
    max_batch_size: int,
    *,
    max_batch_tokens: int | None = None,
    tokens: int = 5,
    model: FakeModel | None = None,
) -> tuple[list[int], list[list[int]]]:
    model = model or FakeModel()
    inbox: queue.Queue[Batch | None] = queue.Queue()
    outbox: queue.Queue = queue.Queue()
    offset = 0
    for size in sizes:  # queued before the stage starts: as if they arrived while the model was busy
        inbox.put(Batch(items=[item(offset + i, tokens=tokens) for i in range(size)], created=0.0))
        offset += size
    inbox.put(None)
    failed: list[tuple[Item, str]] = []
    stage = InferStage(
        model,  # type: ignore[arg-type]
        inbox,
        outbox,
        max_batch_size=max_batch_size,
        max_batch_tokens=max_batch_tokens,
        chunk_size=8,
        stats=RunStats(),
        on_failed=lambda it, error: failed.append((it, error)),
    )
    thread = threading.Thread(target=stage.run, args=(threading.Event(),), daemon=True)
    thread.start()
    groups: list[list[int]] = []
    while (out := outbox.get(timeout=5)) is not None:
        groups.append([it.record.offset for it in out[0]])
    thread.join(5)
    assert not thread.is_alive()
    groups.extend([[it.record.offset] for it, _ in failed])  # dead-lettered records, for the "every record" checks
    return model.calls, groups


def test_queued_batches_merge_into_one_call_up_to_max_batch_size_in_order() -> None:
    calls, groups = _run([3, 3, 2], max_batch_size=8)
    assert calls == [8]
    assert groups == [list(range(8))]


def test_a_batch_that_would_overflow_waits_for_the_next_call() -> None:
    calls, groups = _run([3, 3, 2, 4], max_batch_size=5)
    assert calls == [3, 5, 4]
    assert [x for g in groups for x in g] == list(range(12))  # every record once, in order


def test_merging_keeps_within_the_token_budget_too() -> None:
    # three batches of 2 records x 5 tokens: 8 records would fit, but only 20 tokens (2 batches) per call
    calls, groups = _run([2, 2, 2], max_batch_size=8, max_batch_tokens=20, tokens=5)
    assert calls == [4, 2]
    assert groups == [[0, 1, 2, 3], [4, 5]]


def test_a_batch_at_the_token_budget_is_not_merged_with_the_next() -> None:
    # a batch the batcher closed at the budget ("tokens") runs on its own, like one closed at max_batch_size
    batcher = Batcher(max_size=64, max_wait_s=1.0, max_tokens=20)
    full = batcher.add([item(i, tokens=10) for i in range(2)])
    assert [b.flushed_by for b in full] == ["tokens"]
    calls, _ = _run([2, 1], max_batch_size=64, max_batch_tokens=20, tokens=10)
    assert calls == [2, 1]


def test_a_failing_record_is_isolated_and_the_rest_is_inferred() -> None:
    model = FakeModel(fail_at_tokens=7)
    inbox: queue.Queue[Batch | None] = queue.Queue()
    outbox: queue.Queue = queue.Queue()
    items = [item(i, tokens=7 if i == 5 else 5) for i in range(8)]
    inbox.put(Batch(items=items, created=0.0))
    inbox.put(None)
    failed: list[tuple[Item, str]] = []
    stats = RunStats()
    stage = InferStage(
        model,  # type: ignore[arg-type]
        inbox,
        outbox,
        max_batch_size=8,
        max_batch_tokens=None,
        chunk_size=8,
        stats=stats,
        on_failed=lambda it, error: failed.append((it, error)),
    )
    stage.run(threading.Event())
    inferred = []
    while (out := outbox.get_nowait()) is not None:
        inferred.extend(it.record.offset for it in out[0])
    assert [it.record.offset for it, _ in failed] == [5]
    assert "failed on a record" in failed[0][1]
    assert inferred == [0, 1, 2, 3, 4, 6, 7]
    assert stats.batches == 0  # the split calls are not counted as batches (as before)


def test_the_inference_queue_holds_what_does_not_fit_as_backlog_and_drops_it_on_demand() -> None:
    inbox = InferQueue(max_batches=2)
    inbox.add([Batch(items=[item(i)], created=0.0) for i in range(3)])
    assert inbox.push() == 1, "one batch waits: the backlog that pauses the consumer"
    assert inbox.depth() == 3
    assert inbox.items_held() == {"ready": 1, "infer_queue": 2}
    assert inbox.drop_and_end(Deadline(1.0))
    assert inbox.backlog() == 0 and inbox.batches.get_nowait() is None
