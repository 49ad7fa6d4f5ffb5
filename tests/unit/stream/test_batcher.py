"""The inference queue (worker/stream/batcher.py), the one owner of batching: what a batch holds and when it runs,
backpressure, draining, ending, dropping."""

from __future__ import annotations

import threading
import time

import pytest

from worker.stream.batcher import Batch, InferQueue
from worker.stream.common.types import Item
from worker.stream.pacing import Pacer

from .helpers import item

pytestmark = pytest.mark.unit


class Reply:
    def __init__(self) -> None:
        self.failed: list[str] = []

    def resolve(self, *args: object) -> None:
        pass

    def fail(self, error: str) -> None:
        self.failed.append(error)


def direct(offset: int, tokens: int = 5) -> Item:
    it = item(offset, tokens)
    it.reply = Reply()
    return it


def slow_model_pacer() -> Pacer:
    """A pacer that has learned a slow model (0.1 s for one record, a tenth of that per record in a full batch) and a
    busy stream: waiting for company pays."""
    pacer = Pacer()
    pacer.observe(1, 0.1)
    pacer.observe(64, 0.64)
    pacer.arrived(1000, time.monotonic())
    return pacer


def offsets(batch: Batch | None) -> list[int]:
    assert batch is not None
    return [it.record.offset for it in batch.items]


def test_a_batch_is_the_head_of_the_queue_up_to_max_batch_size_in_order() -> None:
    q = InferQueue(max_batch_size=5, max_wait_s=0.05)
    q.put([item(i) for i in range(12)])
    batches = [q.take() for _ in range(3)]
    assert [offsets(b) for b in batches] == [[0, 1, 2, 3, 4], [5, 6, 7, 8, 9], [10, 11]]
    assert [b.flushed_by for b in batches if b] == ["size", "size", "time"], "no model time learned: max_wait"
    assert len(q) == 0


def test_the_token_budget_closes_a_batch_and_a_long_record_runs_alone() -> None:
    q = InferQueue(max_batch_size=100, max_wait_s=0.05, max_batch_tokens=20)
    q.put([item(0, tokens=8), item(1, tokens=8), item(2, tokens=8), item(3, tokens=30), item(4, tokens=1)])
    batches = [q.take() for _ in range(4)]
    assert [offsets(b) for b in batches] == [[0, 1], [2], [3], [4]]
    assert [b.tokens for b in batches if b] == [16, 8, 30, 1]
    assert [b.flushed_by for b in batches if b][:3] == ["tokens", "tokens", "tokens"]


def test_a_partial_batch_waits_for_company_at_most_max_wait_when_waiting_pays() -> None:
    q = InferQueue(max_batch_size=64, max_wait_s=0.2, pacer=slow_model_pacer())
    started = time.monotonic()
    q.put([item(0)])
    threading.Timer(0.05, q.put, args=([item(1)],)).start()  # company arrives while it waits
    batch = q.take()
    waited = time.monotonic() - started
    assert offsets(batch) == [0, 1] and batch is not None and batch.flushed_by == "time"
    assert 0.2 <= waited < 1.5, waited
    assert started <= batch.created < started + 0.05, "created: when the oldest record arrived"


def test_a_partial_batch_runs_at_once_when_the_model_keeps_up_with_the_arrivals() -> None:
    pacer = Pacer()
    pacer.observe(1, 0.001)  # 1 ms per record...
    pacer.arrived(50, time.monotonic())  # ...at ~50 records/s: the model is idle 95% of the time
    q = InferQueue(max_batch_size=64, max_wait_s=5.0, pacer=pacer)
    q.put([item(0)])
    started = time.monotonic()
    batch = q.take()
    assert offsets(batch) == [0] and batch is not None and batch.flushed_by == "pace"
    assert time.monotonic() - started < 1.0


def test_http_inputs_never_wait_for_company_and_take_the_stream_records_along() -> None:
    q = InferQueue(max_batch_size=64, max_wait_s=5.0, pacer=slow_model_pacer())
    q.put([item(0), item(1)])
    assert q.submit([direct(10), direct(11)])
    q.put([item(2)])
    started = time.monotonic()
    batch = q.take()
    assert offsets(batch) == [0, 1, 10, 11, 2] and batch is not None and batch.flushed_by == "direct"
    assert time.monotonic() - started < 1.0


def test_flush_makes_what_waits_due_at_once_but_not_what_comes_after() -> None:
    q = InferQueue(max_batch_size=64, max_wait_s=0.3, pacer=slow_model_pacer())
    q.put([item(0), item(1)])
    q.flush()
    batch = q.take()
    assert offsets(batch) == [0, 1] and batch is not None and batch.flushed_by == "drain"
    started = time.monotonic()
    q.put([item(2)])
    batch = q.take()
    assert offsets(batch) == [2] and batch is not None and batch.flushed_by == "time"
    assert time.monotonic() - started >= 0.3


def test_zero_max_wait_never_holds_a_record() -> None:
    q = InferQueue(max_batch_size=64, max_wait_s=0.0, pacer=slow_model_pacer())
    q.put([item(0)])
    batch = q.take()
    assert offsets(batch) == [0] and batch is not None and batch.flushed_by == "time"


def test_the_queue_learns_the_model_time_the_stage_observes() -> None:
    q = InferQueue(max_batch_size=64, max_wait_s=0.02)
    q.observe(8, 0.016)
    assert q.pacer.batch_s(8) == pytest.approx(0.016)


def test_full_pauses_and_wait_for_room_returns_when_the_stage_takes_a_batch() -> None:
    q = InferQueue(max_batch_size=2, max_wait_s=10, capacity=4)
    q.put([item(i) for i in range(5)])  # a poll's records are always taken in
    assert q.full()
    assert q.items_held() == {"infer_queue": 4, "ready": 1}
    assert q.depth() == 3
    threading.Timer(0.05, q.take).start()
    started = time.monotonic()
    assert q.wait_for_room(2.0) is True
    assert time.monotonic() - started < 1.0
    assert not q.full() and q.wait_for_room(0.0) is True, "room: no wait"
    q.put([item(5), item(6)])
    started = time.monotonic()
    assert q.wait_for_room(0.1) is False and time.monotonic() - started >= 0.09, "nobody takes one: timeout"


def test_end_runs_what_waits_then_ends_and_refuses_http_inputs() -> None:
    q = InferQueue(max_batch_size=2, max_wait_s=10, pacer=slow_model_pacer())
    q.put([item(0), item(1), item(2)])
    q.end()
    assert not q.submit([direct(9)]), "the stage is ending"
    batches = [q.take(), q.take()]
    assert [offsets(b) for b in batches] == [[0, 1], [2]]
    assert batches[1] is not None and batches[1].flushed_by == "drain"
    assert q.take() is None
    assert q.take() is None, "stays ended"
    q.reopen()
    assert q.submit([direct(10)]) and offsets(q.take()) == [10], "a new pipeline generation takes batches again"


def test_drop_and_end_drops_what_waits_fails_http_inputs_and_ends_a_waiting_stage() -> None:
    q = InferQueue(max_batch_size=8, max_wait_s=10)
    took: list[Batch | None] = []
    stage = threading.Thread(target=lambda: took.append(q.take()))
    stage.start()
    time.sleep(0.05)
    q.drop_and_end()
    stage.join(2)
    assert took == [None], "a stage waiting for records ends"
    q.reopen()
    http = direct(1)
    q.put([item(0)])
    assert q.submit([http])
    assert q.drop_and_end("gone") == 2
    assert len(q) == 0 and q.take() is None
    assert http.reply is not None and http.reply.failed == ["gone"]  # type: ignore[attr-defined]


def test_wake_hands_an_idle_stage_an_empty_batch_once() -> None:
    q = InferQueue(max_batch_size=8, max_wait_s=0.05)
    q.wake()
    batch = q.take()
    assert batch is not None and batch.items == [] and batch.flushed_by == "wake"
    q.put([item(0)])
    q.wake()
    batch = q.take()
    assert offsets(batch) == [0], "a real batch is the boundary the wake asked for"
    q.end()
    q.wake()
    assert q.take() is None, "no wake once ending"


def test_many_producers_one_consumer_every_record_once_in_each_producers_order() -> None:
    q = InferQueue(max_batch_size=7, max_wait_s=0.001)
    per_producer = 300

    def produce(partition: int) -> None:
        for start in range(0, per_producer, 3):
            q.put([item(i, partition=partition) for i in range(start, min(start + 3, per_producer))])

    producers = [threading.Thread(target=produce, args=(p,)) for p in range(3)]
    for t in producers:
        t.start()
    seen: dict[int, list[int]] = {0: [], 1: [], 2: []}
    while sum(len(v) for v in seen.values()) < 3 * per_producer:
        batch = q.take()
        assert batch is not None and 0 < len(batch) <= 7
        for it in batch.items:
            seen[it.record.partition].append(it.record.offset)
    for t in producers:
        t.join()
    assert all(v == list(range(per_producer)) for v in seen.values())


def test_rejects_bad_sizes() -> None:
    with pytest.raises(ValueError):
        InferQueue(max_batch_size=0, max_wait_s=1)
    with pytest.raises(ValueError):
        InferQueue(max_batch_size=1, max_wait_s=1, capacity=0)
