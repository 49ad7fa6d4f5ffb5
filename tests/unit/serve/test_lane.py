"""The HTTP lane on the real inference queue and stage (fake model): HTTP inputs ride in the stream's model calls, are
answered by their reply and never reach the outbox (the encoder); admission is bounded; dropped or stranded inputs
fail."""

from __future__ import annotations

import queue
import threading
from concurrent.futures import Future

import numpy as np
import pytest

from tests.unit.stream.helpers import FakeModel, item
from worker.serve.lane import InferenceFailed, Lane, Overloaded, Unavailable
from worker.stream.batcher import InferQueue
from worker.stream.common.stats import RunStats
from worker.stream.infer import InferStage

pytestmark = pytest.mark.unit


def _queue(max_batch_size: int = 64, capacity: int | None = None) -> InferQueue:
    return InferQueue(max_batch_size=max_batch_size, max_wait_s=1.0, capacity=capacity)


def _stage(inbox: InferQueue, outbox: queue.Queue, model: FakeModel) -> threading.Thread:
    stage = InferStage(
        model,  # type: ignore[arg-type]
        inbox,
        outbox,
        chunk_size=8,
        stats=RunStats(),
        on_failed=lambda it, error: pytest.fail(f"dead-lettered: {error}"),
    )
    thread = threading.Thread(target=stage.run, args=(threading.Event(),), daemon=True)
    return thread


def _lane(inbox: InferQueue, max_queued: int = 16) -> Lane:
    return Lane(inbox, max_queued=max_queued)


def _result(future: Future) -> list:
    return future.result(timeout=5)


def test_http_inputs_share_model_calls_with_stream_records_and_never_reach_the_outbox() -> None:
    model, inbox, outbox = FakeModel(), _queue(), queue.Queue()
    lane = _lane(inbox)
    inbox.put([item(0), item(1)])  # the stream's records, queued first
    pending = lane.submit([[1, 2, 3], [4, 5]], ["a", "b"], [False, True])  # then a request, behind them
    inbox.put([item(2)])
    inbox.end()
    thread = _stage(inbox, outbox, model)
    thread.start()
    rows = _result(pending.future)
    thread.join(5)
    assert model.calls == [5], "one model call: the stream's records and the HTTP inputs merged"
    assert [r.stream_in_batch for r in rows] == [3, 3]
    assert [r.truncated for r in rows] == [False, True]
    assert np.allclose(rows[0].probs, [0.5, 0.5])
    handed_on = outbox.get(timeout=1)
    assert [it.record.offset for it in handed_on[0]] == [0, 1, 2], "only the stream's records, in order"
    assert handed_on[1].shape == (3, 2)
    assert outbox.get(timeout=1) is None
    assert lane.held == 0


def test_a_request_runs_in_calls_within_the_budget() -> None:
    model, inbox = FakeModel(), _queue(max_batch_size=4)
    lane = _lane(inbox, max_queued=64)
    pending = lane.submit([[1]] * 10, ["t"] * 10, [False] * 10)
    inbox.end()
    thread = _stage(inbox, queue.Queue(), model)
    thread.start()
    assert len(_result(pending.future)) == 10
    thread.join(5)
    assert model.calls == [4, 4, 2]


def test_requests_queued_while_the_model_is_busy_share_full_calls_in_arrival_order() -> None:
    seen: list[list[str]] = []
    inbox = _queue(max_batch_size=4)
    lane = _lane(inbox, max_queued=64)
    for text in "abc":
        lane.submit([[1]], [text], [False])
    inbox.put([item(0)])  # a stream record ("x"): the next request queues behind it
    lane.submit([[1], [2]], ["d", "e"], [False, False])
    lane.submit([[1], [2], [3]], ["f", "g", "h"], [False] * 3)
    inbox.end()
    while (batch := inbox.take()) is not None:
        seen.append([it.text for it in batch.items])
    assert seen == [["a", "b", "c", "x"], ["d", "e", "f", "g"], ["h"]]


def test_admission_is_bounded_until_the_stage_answers() -> None:
    inbox = _queue(capacity=1)
    lane = _lane(inbox, max_queued=3)
    inbox.put([item(0)])  # the stream's queue is full...
    assert inbox.full()
    first = lane.submit([[1], [2]], ["a", "b"], [False, False])  # ...HTTP still gets in (its own bound)
    with pytest.raises(Overloaded):
        lane.submit([[1], [2]], ["a", "b"], [False, False])
    first.future.cancel()  # a client that gave up: its inputs still count until the stage gets to them
    assert lane.held == 2
    outbox: queue.Queue = queue.Queue()
    inbox.end()
    thread = _stage(inbox, outbox, FakeModel())
    thread.start()
    thread.join(5)
    assert lane.held == 0
    lane.submit([[1], [2], [3]], ["a", "b", "c"], [False] * 3)  # room again (nobody will answer: that's fine here)


def test_dropped_and_stranded_inputs_fail_instead_of_hanging() -> None:
    inbox = _queue()
    lane = _lane(inbox)
    dropped = lane.submit([[1]], ["a"], [False])
    assert inbox.drop_and_end() == 1
    with pytest.raises(InferenceFailed):
        _result(dropped.future)
    late = lane.submit([[1]], ["b"], [False])  # the end marker is queued: refused at once
    with pytest.raises(InferenceFailed) as info:
        _result(late.future)
    assert info.value.transient
    assert lane.held == 0

    other = _queue()
    lane2 = _lane(other)
    stranded = lane2.submit([[1]], ["c"], [False])
    assert lane2.fail_all("gone") == 1
    with pytest.raises(InferenceFailed):
        _result(stranded.future)
    with pytest.raises(Unavailable):
        lane2.submit([[1]], ["d"], [False])


def test_a_record_the_model_fails_on_fails_its_request_only() -> None:
    model, inbox, outbox = FakeModel(fail_at_tokens=3), _queue(), queue.Queue()
    lane = _lane(inbox)
    bad = lane.submit([[1, 2, 3]], ["bad"], [False])
    good = lane.submit([[1, 2]], ["good"], [False])
    inbox.end()
    thread = _stage(inbox, outbox, model)
    thread.start()
    with pytest.raises(InferenceFailed) as info:
        _result(bad.future)
    assert not info.value.transient
    assert len(_result(good.future)) == 1
    thread.join(5)
    assert outbox.get(timeout=1) is None, "nothing handed on, nothing dead-lettered"
