"""The inference stage (no broker, a fake model) on the inference queue: records that queued up while it was busy
run as one model call, in order, within the batch budgets; a failing record is isolated; the stage teaches the queue
the model's time per batch."""

from __future__ import annotations

import queue
import threading

import pytest

from tests.unit.stream.helpers import FakeModel, item
from worker.stream.batcher import InferQueue
from worker.stream.common.stats import RunStats
from worker.stream.common.types import Item
from worker.stream.infer import InferStage, Outbox

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
    inbox = InferQueue(max_batch_size=max_batch_size, max_wait_s=1.0, max_batch_tokens=max_batch_tokens)
    outbox: queue.Queue = queue.Queue()
    offset = 0
    for size in sizes:  # queued before the stage starts: as if they arrived (one poll each) while the model was busy
        inbox.put([item(offset + i, tokens=tokens) for i in range(size)])
        offset += size
    inbox.end()
    failed: list[tuple[Item, str]] = []
    stage = InferStage(
        model,  # type: ignore[arg-type]
        inbox,
        outbox,
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


def test_records_queued_while_the_model_was_busy_run_as_one_call_up_to_max_batch_size_in_order() -> None:
    calls, groups = _run([3, 3, 2], max_batch_size=8)
    assert calls == [8]
    assert groups == [list(range(8))]


def test_what_does_not_fit_max_batch_size_runs_in_the_next_call() -> None:
    calls, groups = _run([3, 3, 2, 4], max_batch_size=5)
    assert calls == [5, 5, 2]
    assert [x for g in groups for x in g] == list(range(12))  # every record once, in order


def test_merging_keeps_within_the_token_budget_too() -> None:
    # three batches of 2 records x 5 tokens: 8 records would fit, but only 20 tokens (2 batches) per call
    calls, groups = _run([2, 2, 2], max_batch_size=8, max_batch_tokens=20, tokens=5)
    assert calls == [4, 2]
    assert groups == [[0, 1, 2, 3], [4, 5]]


def test_a_call_at_the_token_budget_takes_no_more_records() -> None:
    calls, _ = _run([2, 1], max_batch_size=64, max_batch_tokens=20, tokens=10)
    assert calls == [2, 1]


def test_a_failing_record_is_isolated_and_the_rest_is_inferred() -> None:
    model = FakeModel(fail_at_tokens=7)
    inbox = InferQueue(max_batch_size=8, max_wait_s=1.0)
    outbox: queue.Queue = queue.Queue()
    inbox.put([item(i, tokens=7 if i == 5 else 5) for i in range(8)])
    inbox.end()
    failed: list[tuple[Item, str]] = []
    stats = RunStats()
    stage = InferStage(
        model,  # type: ignore[arg-type]
        inbox,
        outbox,
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


def test_the_stage_teaches_the_queue_the_model_time_per_batch() -> None:
    inbox = InferQueue(max_batch_size=4, max_wait_s=1.0)
    stage = InferStage(
        FakeModel(),  # type: ignore[arg-type]
        inbox,
        queue.Queue(),
        chunk_size=8,
        stats=RunStats(),
        on_failed=lambda it, error: pytest.fail(error),
    )
    inbox.put([item(i) for i in range(6)])
    inbox.end()
    stage.run(threading.Event())
    assert set(inbox.pacer.learned()) == {2, 4}, "one call of 4 records, one of 2"


def test_the_outbox_counts_the_records_it_holds() -> None:
    outbox = Outbox(maxsize=2)
    outbox.put(([item(0), item(1)], None, None))  # type: ignore[arg-type]
    outbox.put(([item(2)], None, None))  # type: ignore[arg-type]
    assert outbox.records() == 3
    with pytest.raises(queue.Full):
        outbox.put_nowait(([item(3)], None, None))  # type: ignore[arg-type]
    assert outbox.records() == 3, "a put that failed is not counted"
    outbox.get_nowait()
    assert outbox.records() == 1
    outbox.get()
    outbox.put(None)
    assert outbox.records() == 0 and outbox.get() is None
