"""The ack budget (records awaiting the broker's acks), the sink that charges it, and the memory bound."""

from __future__ import annotations

import threading
import time
from types import SimpleNamespace
from typing import Any

import pytest
from kafka.future import Future

from worker.records import ErrorType
from worker.settings import SettingsError, load_settings
from worker.stream.common.budget import RECORD_COPIES, AckBudget, max_partition_fetch_bytes, memory_bound
from worker.stream.sink import PRODUCER_BATCH_BYTES, Sink, producer_config
from worker.stream.source import consumer_config

pytestmark = pytest.mark.unit


class FakeProducer:
    def __init__(self) -> None:
        self.futures: list[Future] = []
        self.fail_send = False
        self.sent_headers: list[Any] = []
        self._transaction_manager = None  # what kafka_compat.producer_failed reads: not idempotent, never fatal

    def send(self, topic: str, value: Any = None, key: Any = None, headers: Any = None, partition: Any = None) -> Any:
        if self.fail_send:
            raise ValueError("refused")
        future = Future()
        self.futures.append(future)
        self.sent_headers.append(headers)
        return future

    def close(self, timeout: float | None = None) -> None:
        pass


def _sink(budget: AckBudget, done: list[Any] | None = None, stopping: threading.Event | None = None) -> Sink:
    return Sink(
        FakeProducer(),
        dlq_topic="{topic}.dlq",
        worker="w",
        on_done=lambda record, out: (done if done is not None else []).append(out),
        on_fatal=lambda exc: None,
        stopping=stopping,
        budget=budget,
    )


def _out(value: bytes, size: int | None = None) -> Any:
    record = SimpleNamespace(topic="in", partition=0, offset=0, timestamp=None, key=None, value=b"{}", headers=[])
    item = SimpleNamespace(record=record)
    return SimpleNamespace(
        topic="t", key=None, value=value, headers=[], partition=None, item=item, label="x", size=size or len(value)
    )


def test_a_send_is_charged_until_its_future_is_answered_either_way() -> None:
    budget = AckBudget(limit=10_000, per_record=100)
    assert budget.cost(b"v" * 50, b"kk", [("h", b"123")]) == RECORD_COPIES * (50 + 2 + 4) + 100
    assert budget.size_cost(56) == RECORD_COPIES * 56 + 100
    done: list[Any] = []
    sink = _sink(budget, done)
    first, second = _out(b"v" * 50), _out(b"v" * 50)
    sink.send_output(first)
    sink.send_output(second)
    cost = budget.size_cost(50)
    assert budget.used == 2 * cost
    sink.producer.futures[0].success("meta")
    assert done == [first] and budget.used == cost, "acknowledged: done, and its charge released"
    sink.producer.futures[1].failure(ValueError("not delivered"))
    deadline = time.monotonic() + 5
    while len(sink.producer.futures) < 3 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert len(sink.producer.futures) == 3, "not delivered: dead-lettered (off the IO thread)"
    assert budget.used == budget.cost(b"{}", None, sink.producer.sent_headers[-1]), "only the dead letter is charged"
    sink.producer.futures[2].success("meta")
    assert budget.used == 0 and budget.peak >= 2 * cost and done == [first, None], "the dead letter: done too"
    sink.producer.fail_send = True
    sink.send_output(_out(b"x"))
    assert budget.used == 0, "a refused send is not charged"
    sink.close(0.1)


def test_an_output_waits_for_room_and_goes_when_acks_free_it() -> None:
    budget = AckBudget(limit=1_000, per_record=0)
    sink = _sink(budget)
    out = _out(b"x" * 200)  # costs 800
    sink.send_output(out)
    assert budget.used == 800 and not sink.acks_full()
    waiter = threading.Thread(target=sink.send_output, args=(out,))
    waiter.start()
    time.sleep(0.3)
    assert len(sink.producer.futures) == 1 and waiter.is_alive(), "800 + 800 > 1000: the second output waits"
    sink.producer.futures[0].success("meta")
    waiter.join(5)
    assert len(sink.producer.futures) == 2 and budget.waits == 1
    sink.close(0.1)


def test_a_record_larger_than_the_budget_goes_alone_and_a_stop_ends_the_wait() -> None:
    budget = AckBudget(limit=100, per_record=0)
    stopping = threading.Event()
    assert budget.wait_for_room(10_000, stopping.is_set), "nothing awaits acks: it goes, whatever its size"
    budget.charge(10_000)
    assert budget.full()
    threading.Timer(0.2, stopping.set).start()
    assert budget.wait_for_room(10, stopping.is_set) is False
    sink = _sink(budget, stopping=stopping)
    sink.send_output(_out(b"x"))
    assert sink.producer.futures == [], "stopping while it waited: not sent (it stays uncommitted)"
    sink.close(0.1)


def test_dead_letters_are_charged_without_waiting_and_a_full_budget_pauses_the_consumer() -> None:
    budget = AckBudget(limit=100, per_record=0)
    sink = _sink(budget)
    record = _out(b"").item.record
    record.value = b"x" * 100
    sink.dead_letter(record, ErrorType.INVALID_JSON, "bad")  # a dead letter never waits
    sink.dead_letter(record, ErrorType.INVALID_JSON, "bad")
    assert len(sink.producer.futures) == 2 and budget.used > 800 and sink.acks_full()
    for future in sink.producer.futures:
        future.success("meta")
    assert budget.used == 0 and not sink.acks_full()
    sink.close(0.1)


def test_unbounded_budget_never_waits() -> None:
    budget = AckBudget(limit=None)
    budget.charge(10**12)
    assert not budget.full() and budget.wait_for_room(10**9, lambda: False)


def test_producer_buffer_must_hold_a_request_and_batches_never_exceed_a_request() -> None:
    with pytest.raises(SettingsError, match="producer_buffer_bytes must be at least producer_max_request_size"):
        load_settings(bootstrap_servers="h:1", producer_buffer_bytes=1_000_000, producer_max_request_size=2_000_000)
    settings = load_settings(bootstrap_servers="h:1", producer_buffer_bytes=8_000, producer_max_request_size=8_000)
    config = producer_config(settings.kafka, settings.output)
    assert config["batch_size"] == 8_000
    default = load_settings(bootstrap_servers="h:1")
    assert producer_config(default.kafka, default.output)["batch_size"] == PRODUCER_BATCH_BYTES
    assert "buffer_memory" not in config, "kafka-python 3 has no buffer_memory (it refuses it)"


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
    sections = (settings.input, settings.output, settings.batching)
    bound = memory_bound(*sections, max_length=settings.max_length, input_bytes=2_000, partitions=4)
    per_record = 4 * (2_000 + 1_024) + 4_096 + 40 * 128
    assert bound.per_record == per_record
    assert bound.records_in_stages == (2 * 2 + 4) * 32 + 100
    assert bound.in_stages == bound.records_in_stages * per_record
    assert bound.awaiting_acks == (4 << 20) + (100 + 32 + 1) * per_record
    assert bound.fetched == min(4 << 20, 4 * (1 << 20))
    assert bound.total == bound.in_stages + bound.awaiting_acks + bound.fetched
    worst = memory_bound(*sections, max_length=128)  # records of max_message_bytes, partitions unknown
    assert worst.per_record > per_record and worst.fetched == 4 << 20


def test_the_bound_uses_the_consumers_real_partition_fetch_size() -> None:
    for size in (1_000, 1 << 20, 5 << 20):
        settings = load_settings(bootstrap_servers="h:1", input_topics="t", max_message_bytes=size)
        fetch = consumer_config(settings.kafka, settings.input)["max_partition_fetch_bytes"]
        assert max_partition_fetch_bytes(settings.input) == fetch
