"""Sink stage: produce output and dead-letter records with kafka-python's KafkaProducer.

acks=all, idempotent, async sends with delivery callbacks. A record is *done* only when the broker
acknowledged it (``on_done`` is called from the producer's IO thread). If an output record can't be
delivered it is dead-lettered (reason ``produce_failed``); if a dead-letter can't be delivered either, the
worker can't make progress without losing data, so ``on_fatal`` is called and the offset is never committed.

Work that a failed delivery triggers (the dead letter, its truncated retry) never runs on the producer's IO
thread: ``producer.send`` may block there waiting for topic metadata or buffer space that only that thread
can provide (a deadlock until ``max_block_ms``, retried forever). It is handed to the sink's own
``sentiment-sink-errors`` thread instead.

If the producer itself is in a fatal state (e.g. the idempotent producer lost its producer id when the
cluster lost its state and could not get a new epoch), no record is to blame: nothing is dead-lettered,
``on_fatal`` is called and :meth:`producer_failed` says so, so the worker can start over with a new producer.

A failed write is one of three things (:meth:`Sink._not_the_records_fault`, ``mend.is_record_error``):

* this record can't be written as it is (too large, refused as invalid by the producer or the broker): the output
  is dead-lettered (``produce_failed``); a dead letter is written cut down (value and key to 64 KiB, original
  headers dropped; the ``x-dlq-*`` headers say so). What kafka-python's producer refuses outright (null header
  values, header names that aren't UTF-8, a record with neither key nor value) is mended before the first try
  (``mend.py``). A record is never a reason to stop;
* the cluster refuses the worker (not authorised, a topic that can't exist such as an invalid name made by a
  template, a dead-letter topic that won't take even the cut-down dead letter): :class:`ClusterRefusedError`
  goes to ``on_fatal`` (one message; the worker exits 1 without committing the record; no restart helps);
* the producer can't go on (above), or any other failure of a dead letter: ``on_fatal``.
"""

from __future__ import annotations

import os
import queue
import socket
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from kafka import KafkaProducer
from kafka.errors import (
    InvalidProducerEpochError,
    InvalidTopicError,
    KafkaError,
    KafkaTimeoutError,
    OutOfOrderSequenceNumberError,
    UnknownProducerIdError,
)

from worker.observability import get_logger
from worker.records import (
    DLQ_HEADER_HEADERS_DROPPED,
    DLQ_HEADER_KEY_TRUNCATED,
    DLQ_HEADER_VALUE_TRUNCATED,
    DeadLetter,
    ErrorType,
)
from worker.settings import Kafka, Output
from worker.stream.common.budget import AckBudget
from worker.stream.common.types import SourceRecord, headers_size
from worker.stream.encode import OutRecord
from worker.stream.kafka import kafka_compat
from worker.stream.kafka.cluster import new_client
from worker.stream.kafka.mend import (
    CLUSTER_REFUSALS,
    ClusterRefusedError,
    is_record_error,
    producible_headers,
    refusal_hint,
    topic_name_problem,
)
from worker.stream.kafka.partition import CachingPartitioner

log = get_logger(__name__)

DLQ_MAX_FALLBACK_BYTES = 65_536
HEADER_DLQ_TRUNCATED = DLQ_HEADER_VALUE_TRUNCATED
HEADER_DLQ_KEY_TRUNCATED = DLQ_HEADER_KEY_TRUNCATED
HEADER_DLQ_HEADERS_DROPPED = DLQ_HEADER_HEADERS_DROPPED

# Bytes per producer batch (per output partition). Measured with the near-free model (benchmarks/ceiling.py, per-thread
# CPU): the producer's IO thread took 40 µs per message at kafka-python's default of 16 KiB (~27 outputs a batch),
# 19 µs at 64 KiB and 16 µs at 256 KiB: fewer, larger produce requests. A batch grows as records arrive (nothing is
# allocated up front) and is sent at linger_ms anyway, so a light load sees no difference.
PRODUCER_BATCH_BYTES = 262_144
DoneCallback = Callable[[SourceRecord, OutRecord | None], None]
# The idempotent producer lost its sequence state (e.g. the cluster lost its data): the record is not to blame,
# and resending it with the same producer could reorder it. The pipeline starts over with a new producer.
PRODUCER_STATE_ERRORS = (UnknownProducerIdError, OutOfOrderSequenceNumberError, InvalidProducerEpochError)


def producer_config(kafka: Kafka, output: Output) -> dict[str, Any]:
    """The KafkaProducer's options: the connection (``kafka``) and the producer's part of the output section."""
    return {
        **kafka.kafka_security(),
        "client_id": f"{kafka.client_id}-producer",
        "acks": "all",
        "enable_idempotence": True,
        "compression_type": None if output.compression_type == "none" else output.compression_type,
        "linger_ms": output.linger_ms,
        "max_request_size": output.producer_max_request_size,
        "batch_size": min(PRODUCER_BATCH_BYTES, output.producer_max_request_size),  # never above a request
        # the default key hashing (murmur2), computed once per key: kafka-python's hashes every record in Python
        "partitioner": CachingPartitioner(),
        "reconnect_backoff_max_ms": kafka.reconnect_backoff_max_ms,
        # Bounded blocking on metadata (a missing topic, an unreachable cluster); the sink retries and logs.
        "max_block_ms": output.producer_max_block_ms,
    }


def worker_id(kafka: Kafka) -> str:
    return f"{kafka.client_id}@{socket.gethostname()}:{os.getpid()}"


class Sink:
    def __init__(
        self,
        producer: Any,
        *,
        dlq_topic: str,
        worker: str,
        on_done: DoneCallback,
        on_fatal: Callable[[BaseException], None],
        on_dead_letter: Callable[[str], None] | None = None,
        stopping: threading.Event | None = None,
        budget: AckBudget | None = None,
    ) -> None:
        self.producer = producer
        self.budget = budget or AckBudget(None)  # bytes awaiting acks (budget.py); unbounded: counted only
        self.dlq_topic = dlq_topic
        self.worker = worker
        self.on_done = on_done
        self.on_fatal = on_fatal
        self.on_dead_letter = on_dead_letter or (lambda reason: None)
        self.stopping = stopping or threading.Event()
        self._last_outage_log = 0.0
        self._failed: BaseException | None = None
        self._refused: ClusterRefusedError | None = None
        self._topic_problems: dict[str, str | None] = {}
        self._closing = False
        self._errors: queue.SimpleQueue[Callable[[], None] | None] = queue.SimpleQueue()
        self._errors_thread = threading.Thread(target=self._run_errors, name="sentiment-sink-errors", daemon=True)
        self._errors_thread.start()

    @classmethod
    def create(cls, kafka: Kafka, output: Output, *, max_length: int, **kwargs: Any) -> Sink:
        """A sink with a new producer; ``max_length`` (the model's, in tokens) sizes the per-record ack charge."""
        producer = new_client(KafkaProducer, producer_config(kafka, output))
        try:
            kafka_compat.check_producer(producer)  # now, not when a delivery fails
            return cls(
                producer,
                dlq_topic=output.dlq_topic,
                worker=worker_id(kafka),
                budget=AckBudget.from_settings(output, max_length=max_length),
                **kwargs,
            )
        except BaseException:
            producer.close(timeout=0)
            raise

    # -- output --------------------------------------------------------------------------------------
    def send_output(self, out: OutRecord) -> None:
        """Send one output once the ack budget has room for it (not at all if stopping meanwhile: the record stays
        uncommitted); ``on_done`` when the broker acknowledged it, dead-lettered if it can't be written."""
        cost = self.budget.size_cost(out.size)
        if not self.budget.wait_for_room(cost, self.stopping.is_set):
            return
        try:
            future = self._send(out.topic, out.key, out.value, out.headers, out.partition, cost)
        except (KafkaError, ValueError, TypeError) as exc:
            self._output_failed(out.item.record, out.topic, exc, "output record rejected by producer")
            return
        if future is not None:  # None: stopping before it could be sent, stays uncommitted
            future.add_both(self._output_answered, out, cost)  # one callback per record, both ways

    def _output_answered(self, out: OutRecord, cost: int, result: Any) -> None:
        """The broker's answer for an output (producer IO thread): metadata, or the exception it failed with."""
        self.budget.release(cost)
        if isinstance(result, BaseException):
            record = out.item.record
            self._defer(lambda: self._output_failed(record, out.topic, result, "output record not delivered"))
        else:
            self.on_done(out.item.record, out)

    def acks_full(self) -> bool:
        """True while the ack budget is spent (the poll loop pauses the consumer)."""
        return self.budget.full()

    def _output_failed(self, record: SourceRecord, topic: str, exc: BaseException, what: str) -> None:
        if not self._not_the_records_fault(exc, topic):
            self.dead_letter(record, ErrorType.PRODUCE_FAILED, f"{what}: {exc!r}")

    def _not_the_records_fault(self, exc: BaseException, topic: str) -> bool:
        """A failed delivery that no record is to blame for, handled here: True.

        At close the record is given up (it stays unacknowledged, so uncommitted); a cluster that refuses the
        worker stops it (``on_fatal`` with a :class:`ClusterRefusedError`); a producer that can't go on is reported
        through ``on_fatal`` (the worker restarts its pipeline).
        """
        if self._closing:
            return True
        if isinstance(exc, (*CLUSTER_REFUSALS, ClusterRefusedError)):
            self._cluster_refused(topic, exc)
            return True
        if isinstance(exc, PRODUCER_STATE_ERRORS) or self.producer_failed():
            self._producer_fatal(exc)
            return True
        return False

    def _cluster_refused(self, topic: str, exc: BaseException, what: str = "") -> None:
        """Stop the worker with one message (the runner logs it): not committed past this record, no restart."""
        if isinstance(exc, ClusterRefusedError):
            refusal = exc
        else:
            detail = str(exc) if type(exc).__name__ in str(exc) else f"{type(exc).__name__}: {exc}"
            refusal = ClusterRefusedError(
                f"the cluster refuses the worker's records for topic {topic!r}{what}: {detail}; {refusal_hint(exc)}"
            )
        if self._refused is None:
            self._refused = refusal
        self.on_fatal(refusal)

    def producer_failed(self) -> bool:
        """True when the producer is in a fatal state or lost its sequence state: it can't go on.

        False once the cluster refused the worker (e.g. not authorised for its producer id): a new producer
        would be refused alike, so the worker stops instead of restarting.
        """
        if self._refused is not None:
            return False
        return self._failed is not None or kafka_compat.producer_failed(self.producer)

    def _producer_fatal(self, exc: BaseException) -> None:
        if self._failed is None:
            self._failed = exc
            log.error("producer_failed", error=repr(exc), note="the producer can't go on; no record is to blame")
        self.on_fatal(exc)

    # -- dead letters --------------------------------------------------------------------------------
    def dead_letter(self, record: SourceRecord, error_type: ErrorType, message: str) -> None:
        original, mended = producible_headers(record.headers, "x-dlq-")
        value_null = record.key is None and record.value is None  # kafka-python sends a record with one of them
        envelope = DeadLetter(
            error_type=error_type,
            error_message=message,
            source_topic=record.topic,
            source_partition=record.partition,
            source_offset=record.offset,
            source_timestamp=record.timestamp,
            failed_at=datetime.now(UTC),
            worker=self.worker,
            headers_mended=mended,
            value_null=value_null,
        )
        headers = [*original, *envelope.headers()]
        topic = self.dlq_topic.format(topic=record.topic)
        log.warning(
            "dead_letter",
            reason=error_type.value,
            error=message[:300],
            topic=record.topic,
            partition=record.partition,
            offset=record.offset,
            dlq_topic=topic,
        )
        value = b"" if value_null else record.value
        self._send_dead_letter(topic, record, record.key, headers, error_type, value, cut_down=False)

    def _send_dead_letter(
        self,
        topic: str,
        record: SourceRecord,
        key: bytes | None,
        headers: list[tuple[str, bytes]],
        error_type: ErrorType,
        value: bytes | None,
        *,
        cut_down: bool,
    ) -> None:
        def failed(exc: BaseException) -> None:
            if self._not_the_records_fault(exc, topic):
                return
            if not is_record_error(exc):
                log.error("dead_letter_failed", error=repr(exc), topic=record.topic, offset=record.offset)
                self.on_fatal(exc)
            elif not cut_down:
                self._cut_down(topic, record, key, headers, error_type, value, exc)
            else:  # even the cut-down dead letter: the dead-letter topic won't take this record in any form
                self._cluster_refused(topic, exc, " (a dead letter cut down to 64 KiB was refused too)")

        cost = self.budget.cost(value, key, headers)  # charged, never waits: dead letters come from the poll loop
        try:
            future = self._send(topic, key, value, headers, None, cost)
        except (KafkaError, ValueError, TypeError) as exc:
            failed(exc)
            return
        if future is None:
            return

        def answered(result: Any) -> None:
            self.budget.release(cost)
            if isinstance(result, BaseException):
                self._defer(lambda: failed(result))
            else:
                self.on_dead_letter(error_type.value)
                self.on_done(record, None)

        future.add_both(answered)

    def _cut_down(
        self,
        topic: str,
        record: SourceRecord,
        key: bytes | None,
        headers: list[tuple[str, bytes]],
        error_type: ErrorType,
        value: bytes | None,
        exc: BaseException,
    ) -> None:
        """The dead letter can't be written as it is (too large, or refused as invalid): write the envelope with at
        most DLQ_MAX_FALLBACK_BYTES each of the value and the key, and the original headers only when the record
        was merely too large and they are small; ``x-dlq-*`` headers say what was cut. A record never stops the
        worker."""
        too_large = "TooLarge" in type(exc).__name__  # MessageSizeTooLarge, RecordListTooLarge, RecordTooLarge
        log.warning(
            "dead_letter_cut_down",
            error=repr(exc)[:300],
            topic=record.topic,
            partition=record.partition,
            offset=record.offset,
        )
        envelope = [(k, v) for k, v in headers if k.startswith("x-dlq-")]
        original = [(k, v) for k, v in headers if not k.startswith("x-dlq-")]
        marks: list[tuple[str, bytes]] = []
        if value is not None and len(value) > DLQ_MAX_FALLBACK_BYTES:
            value = value[:DLQ_MAX_FALLBACK_BYTES]
            marks.append((HEADER_DLQ_TRUNCATED, b"true"))
        if key is not None and len(key) > DLQ_MAX_FALLBACK_BYTES:
            key = key[:DLQ_MAX_FALLBACK_BYTES]
            marks.append((HEADER_DLQ_KEY_TRUNCATED, b"true"))
        if original and (not too_large or headers_size(original) > DLQ_MAX_FALLBACK_BYTES):
            marks.append((HEADER_DLQ_HEADERS_DROPPED, str(len(original)).encode()))
            original = []
        self._send_dead_letter(topic, record, key, [*original, *envelope, *marks], error_type, value, cut_down=True)

    # -- failed deliveries, off the producer's IO thread ----------------------------------------------
    def _defer(self, work: Callable[[], None]) -> None:
        self._errors.put(work)

    def _run_errors(self) -> None:
        while True:
            work = self._errors.get()
            if work is None:
                return
            try:
                work()
            except Exception as exc:  # never lose the signal: unhandled means the record can't be finished
                log.exception("delivery_failure_handling_failed", error=repr(exc))
                self.on_fatal(exc)

    # -- plumbing ------------------------------------------------------------------------------------
    def _send(
        self,
        topic: str,
        key: bytes | None,
        value: bytes | None,
        headers: list[tuple[str, bytes]],
        partition: int | None,
        cost: int,
    ) -> Any:
        """producer.send, retrying while the cluster is unreachable (metadata timeouts) until stopping; the record
        is charged ``cost`` to the ack budget once sent (the caller's callback releases it). None: stopping.

        A topic name that can't exist raises :class:`InvalidTopicError` (kafka-python would raise a ValueError that
        looks like any record's).
        """
        if topic not in self._topic_problems:
            self._topic_problems[topic] = topic_name_problem(topic)
        problem = self._topic_problems[topic]
        if problem is not None:
            raise InvalidTopicError(f"not a valid topic name: {problem}")
        backoff = 0.5
        while True:
            self.budget.charge(cost)
            try:
                return self.producer.send(topic, value=value, key=key, headers=headers, partition=partition)
            except KafkaTimeoutError as exc:
                self.budget.release(cost)
                if self.stopping.is_set():
                    return None
                now = time.monotonic()
                if now - self._last_outage_log > 10.0:
                    self._last_outage_log = now
                    log.warning("produce_blocked", topic=topic, error=str(exc), retry_in_s=backoff)
                time.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
            except BaseException:
                self.budget.release(cost)
                raise

    def flush(self, timeout_s: float | None = None) -> bool:
        try:
            self.producer.flush(timeout=timeout_s)
            return True
        except KafkaTimeoutError:
            return False
        except Exception as exc:  # a closed or failed producer: nothing more will be acknowledged
            log.warning("producer_flush_failed", error=repr(exc))
            return False

    def close(self, timeout_s: float = 5.0) -> None:
        """Close within ``timeout_s``; records still unacknowledged then are given up (they stay uncommitted)."""
        self._closing = True
        try:
            try:
                self.producer.close(timeout=timeout_s)
            except KafkaTimeoutError:
                # kafka-python's close() raises at its flush when records are still pending and leaves the producer
                # (and its IO thread) running: fail those records and close for real.
                log.warning("producer_close_gave_up", timeout_s=timeout_s, note="unacknowledged: stay uncommitted")
                kafka_compat.abort_pending_batches(self.producer, KafkaTimeoutError("producer closed"))
                self.producer.close(timeout=0)
        finally:
            self._errors.put(None)
            self._errors_thread.join(timeout=max(0.1, timeout_s))
