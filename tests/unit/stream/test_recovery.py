"""Failure handling in the sink and the offset tracker's rewind (no broker: a fake producer, kafka-python futures)."""

from __future__ import annotations

import threading
import time
from types import SimpleNamespace

import pytest
from kafka.errors import KafkaTimeoutError, OutOfOrderSequenceNumberError, RequestTimedOutError
from kafka.future import Future

from worker.records import ErrorType
from worker.stream.offsets import OffsetTracker
from worker.stream.sink import Sink

from .helpers import Rec, item

pytestmark = pytest.mark.unit


class FakeProducer:
    """Records sends; futures are resolved by the test, from a thread standing in for the producer's IO thread."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes | None, str]] = []  # topic, value, sending thread
        self.futures: list[Future] = []
        self.closed: list[float] = []
        self.raise_on_close = False
        # the kafka-python internals worker.stream.kafka.kafka_compat reads (no idempotence: no transaction manager)
        self._transaction_manager = None
        self.aborted: list[BaseException] = []
        self._accumulator = SimpleNamespace(abort_batches=self._abort_batches)

    def send(self, topic, value=None, key=None, headers=None, partition=None):
        self.sent.append((topic, value, threading.current_thread().name))
        future = Future()
        self.futures.append(future)
        return future

    def _abort_batches(self, error: BaseException) -> None:
        """Like kafka-python's RecordAccumulator.abort_batches: fails every pending future, on the caller's thread."""
        self.aborted.append(error)
        for future in self.futures:
            if not future.is_done:
                future.failure(error)

    def close(self, timeout=None):
        self.closed.append(timeout)
        if self.raise_on_close and timeout:
            raise KafkaTimeoutError("Timeout waiting for future")


def _sink(producer: FakeProducer):
    calls: dict[str, list] = {"done": [], "fatal": [], "dlq": []}
    sink = Sink(
        producer,
        dlq_topic="{topic}.dlq",
        worker="w",
        on_done=lambda record, out: calls["done"].append(record.offset),
        on_fatal=lambda exc: calls["fatal"].append(exc),
        on_dead_letter=lambda reason: calls["dlq"].append(reason),
    )
    return sink, calls


def _out(offset: int):
    from worker.stream.encode import OutRecord

    it = item(offset)
    return OutRecord(topic="in.sentiment", key=b"k", value=b"{}", headers=[], partition=None, item=it, label="POSITIVE")


def _fail_from_io_thread(future: Future, exc: BaseException) -> None:
    thread = threading.Thread(target=future.failure, args=(exc,), name="fake-producer-io")
    thread.start()
    thread.join()


def _wait(predicate, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def test_a_failed_delivery_is_dead_lettered_off_the_producer_io_thread() -> None:
    producer = FakeProducer()
    sink, calls = _sink(producer)
    sink.send_output(_out(7))
    _fail_from_io_thread(producer.futures[0], RequestTimedOutError("x"))
    _wait(lambda: len(producer.sent) == 2)
    topic, _value, thread = producer.sent[1]
    assert topic == "in.dlq"
    # producer.send on the IO thread can block on metadata/buffer space only that thread provides (a deadlock)
    assert thread == "sentiment-sink-errors"
    producer.futures[1].success(None)
    assert calls["dlq"] == [ErrorType.PRODUCE_FAILED.value] and calls["done"] == [7]
    sink.close(1.0)


def test_a_lost_producer_state_is_fatal_for_the_producer_not_a_dead_letter() -> None:
    producer = FakeProducer()
    sink, calls = _sink(producer)
    sink.send_output(_out(1))
    _fail_from_io_thread(producer.futures[0], OutOfOrderSequenceNumberError())
    _wait(lambda: calls["fatal"])
    assert len(producer.sent) == 1, "no dead letter: the record is not to blame"
    assert sink.producer_failed()
    assert isinstance(calls["fatal"][0], OutOfOrderSequenceNumberError)
    sink.close(1.0)


def test_close_that_times_out_gives_up_pending_records_quietly() -> None:
    producer = FakeProducer()
    producer.raise_on_close = True
    sink, calls = _sink(producer)
    sink.send_output(_out(3))
    sink.close(2.0)  # kafka-python's close raises at its flush; the sink closes for real
    assert producer.closed == [2.0, 0]
    assert [type(exc) for exc in producer.aborted] == [KafkaTimeoutError], "pending batches failed before close(0)"
    # the aborted delivery failed while the sink was closing (close() waits for its failure handling): no dead
    # letter, nothing fatal, not done
    assert producer.futures[0].failed()
    assert len(producer.sent) == 1 and not calls["fatal"] and not calls["done"], "given up: stays uncommitted"


def test_dead_letter_send_failure_is_fatal() -> None:
    producer = FakeProducer()
    sink, calls = _sink(producer)
    sink.dead_letter(Rec(offset=4), ErrorType.INVALID_JSON, "bad")
    _fail_from_io_thread(producer.futures[0], RequestTimedOutError("x"))
    _wait(lambda: calls["fatal"])
    assert not sink.producer_failed()
    sink.close(1.0)


def test_rewind_returns_first_unfinished_offsets_and_keeps_what_is_committable() -> None:
    tracker = OffsetTracker()
    tp0, tp1, tp2 = ("t", 0), ("t", 1), ("t", 2)
    tracker.assign([tp0, tp1, tp2])
    tracker.track(tp0, [10, 11, 12, 13])
    tracker.track(tp1, [5, 6])
    tracker.ack(tp0, 10)
    tracker.ack(tp0, 12)  # out of order: done behind the unfinished 11
    tracker.ack(tp1, 5)
    tracker.ack(tp1, 6)
    assert tracker.rewind() == {tp0: 11}
    assert tracker.pending_count() == 0
    assert tracker.committable() == {tp0: 11, tp1: 7}
    # the re-read records are tracked again from the rewound offset
    assert tracker.track(tp0, [11, 12, 13])
    tracker.ack(tp0, 11)
    assert tracker.committable() == {tp0: 12, tp1: 7}
