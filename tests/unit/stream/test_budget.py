"""The ack budget (records awaiting the broker's acks), the producer wrapper that charges it, and the memory bound."""

from __future__ import annotations

import threading
import time
from types import SimpleNamespace
from typing import Any

import pytest
from kafka.future import Future

from worker.settings import SettingsError, load_settings
from worker.stream.budget import (
    RECORD_COPIES,
    AckBudget,
    BudgetedProducer,
    acks_full,
    max_partition_fetch_bytes,
    memory_bound,
    when_room,
)
from worker.stream.sink import producer_config
from worker.stream.source import consumer_config

pytestmark = pytest.mark.unit


class FakeProducer:
    def __init__(self) -> None:
        self.futures: list[Future] = []
        self.fail_send = False
        self.flushed = False

    def send(self, topic: str, value: Any = None, key: Any = None, headers: Any = None, partition: Any = None) -> Any:
        if self.fail_send:
            raise ValueError("refused")
        future = Future()
        self.futures.append(future)
        return future

    def flush(self, timeout: float | None = None) -> None:
        self.flushed = True


def test_a_send_is_charged_until_its_future_is_answered_either_way() -> None:
    budget = AckBudget(limit=10_000, per_record=100)
    producer = BudgetedProducer(FakeProducer(), budget)
    cost = budget.cost(b"v" * 50, b"kk", [("h", b"123")])
    assert cost == RECORD_COPIES * (50 + 2 + 4) + 100
    first = producer.send("t", value=b"v" * 50, key=b"kk", headers=[("h", b"123")])
    second = producer.send("t", value=b"v" * 50, key=b"kk", headers=[("h", b"123")])
    assert budget.used == 2 * cost
    first.success("meta")
    second.failure(RuntimeError("not delivered"))
    assert budget.used == 0 and budget.peak == 2 * cost
    producer.producer.fail_send = True
    with pytest.raises(ValueError):
        producer.send("t", value=b"x")
    assert budget.used == 0, "a refused send is not charged"
    producer.flush(1.0)
    assert producer.producer.flushed, "everything else goes to the real producer"


def test_an_output_waits_for_room_and_goes_when_acks_free_it() -> None:
    budget = AckBudget(limit=1_000, per_record=0)
    producer = BudgetedProducer(FakeProducer(), budget)
    sink = SimpleNamespace(producer=producer, stopping=threading.Event())
    sent: list[Any] = []
    send = when_room(sink, lambda out: sent.append(producer.send("t", value=out.value, key=out.key)))
    out = SimpleNamespace(value=b"x" * 200, key=None, headers=[])  # costs 800
    send(out)
    assert budget.used == 800 and not acks_full(sink)
    waiter = threading.Thread(target=send, args=(out,))
    waiter.start()
    time.sleep(0.3)
    assert len(sent) == 1 and waiter.is_alive(), "800 + 800 > 1000: the second output waits"
    sent[0].success("meta")
    waiter.join(5)
    assert len(sent) == 2 and budget.waits == 1


def test_a_record_larger_than_the_budget_goes_alone_and_a_stop_ends_the_wait() -> None:
    budget = AckBudget(limit=100, per_record=0)
    stopping = threading.Event()
    assert budget.wait_for_room(10_000, stopping.is_set), "nothing awaits acks: it goes, whatever its size"
    budget.charge(10_000)
    assert budget.full()
    threading.Timer(0.2, stopping.set).start()
    assert budget.wait_for_room(10, stopping.is_set) is False
    sent: list[Any] = []
    sink = SimpleNamespace(producer=BudgetedProducer(FakeProducer(), budget), stopping=stopping)
    when_room(sink, sent.append)(SimpleNamespace(value=b"x", key=None, headers=[]))
    assert sent == [], "stopping while it waited: not sent (it stays uncommitted)"


def test_dead_letters_are_charged_without_waiting_and_a_full_budget_pauses_the_consumer() -> None:
    budget = AckBudget(limit=100, per_record=0)
    sink = SimpleNamespace(producer=BudgetedProducer(FakeProducer(), budget), stopping=threading.Event())
    sink.producer.send("t.dlq", value=b"x" * 100)  # a dead letter: BudgetedProducer.send never waits
    sink.producer.send("t.dlq", value=b"x" * 100)
    assert budget.used == 800 and acks_full(sink)
    assert not acks_full(SimpleNamespace(producer=FakeProducer())), "a sink without a budget never pauses"


def test_unbounded_budget_never_waits() -> None:
    budget = AckBudget(limit=None)
    budget.charge(10**12)
    assert not budget.full() and budget.wait_for_room(10**9, lambda: False)


def test_producer_buffer_must_hold_a_request_and_batches_never_exceed_a_request() -> None:
    with pytest.raises(SettingsError, match="producer_buffer_bytes must be at least producer_max_request_size"):
        load_settings(bootstrap_servers="h:1", producer_buffer_bytes=1_000_000, producer_max_request_size=2_000_000)
    settings = load_settings(bootstrap_servers="h:1", producer_buffer_bytes=8_000, producer_max_request_size=8_000)
    assert producer_config(settings)["batch_size"] == 8_000
    assert producer_config(load_settings(bootstrap_servers="h:1"))["batch_size"] == 16_384
    assert "buffer_memory" not in producer_config(settings), "kafka-python 3 has no buffer_memory (it refuses it)"


def test_memory_bound_formula() -> None:
    settings = load_settings(
        bootstrap_servers="h:1",
        queue_max_batches=2,
        max_batch_size=32,
        max_poll_records=100,
        max_length=128,
        producer_buffer_bytes=4 << 20,
        producer_max_request_size=1 << 20,
        max_message_bytes=64 << 10,
        fetch_max_bytes=4 << 20,
    )
    bound = memory_bound(settings, input_bytes=2_000, partitions=4)
    per_record = 4 * (2_000 + 1_024) + 4_096 + 40 * 128
    assert bound.per_record == per_record
    assert bound.records_in_stages == (2 * 2 + 4) * 32 + 100
    assert bound.in_stages == bound.records_in_stages * per_record
    assert bound.awaiting_acks == (4 << 20) + (100 + 32 + 1) * per_record
    assert bound.fetched == min(4 << 20, 4 * (1 << 20))
    assert bound.total == bound.in_stages + bound.awaiting_acks + bound.fetched
    worst = memory_bound(settings)  # records of max_message_bytes, partitions unknown
    assert worst.per_record > per_record and worst.fetched == 4 << 20


def test_the_bound_uses_the_consumers_real_partition_fetch_size() -> None:
    for size in (1_000, 1 << 20, 5 << 20):
        settings = load_settings(bootstrap_servers="h:1", input_topics="t", max_message_bytes=size)
        assert max_partition_fetch_bytes(settings) == consumer_config(settings)["max_partition_fetch_bytes"]
