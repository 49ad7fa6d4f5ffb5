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
    KafkaError,
    KafkaTimeoutError,
    MessageSizeTooLargeError,
    OutOfOrderSequenceNumberError,
    UnknownProducerIdError,
)

from worker.observability import get_logger
from worker.records import DeadLetter, ErrorType
from worker.settings import Settings
from worker.stream import kafka_compat
from worker.stream.encode import OutRecord
from worker.stream.types import SourceRecord, headers_size

log = get_logger(__name__)

DLQ_MAX_FALLBACK_BYTES = 65_536
HEADER_DLQ_TRUNCATED = "x-dlq-value-truncated"
HEADER_DLQ_KEY_TRUNCATED = "x-dlq-key-truncated"
HEADER_DLQ_HEADERS_DROPPED = "x-dlq-headers-dropped"

DoneCallback = Callable[[SourceRecord, OutRecord | None], None]
# The idempotent producer lost its sequence state (e.g. the cluster lost its data): the record is not to blame,
# and resending it with the same producer could reorder it. The pipeline starts over with a new producer.
PRODUCER_STATE_ERRORS = (UnknownProducerIdError, OutOfOrderSequenceNumberError, InvalidProducerEpochError)


def producer_config(settings: Settings) -> dict[str, Any]:
    return {
        **settings.kafka_security(),
        "client_id": f"{settings.client_id}-producer",
        "acks": "all",
        "enable_idempotence": True,
        "compression_type": None if settings.compression_type == "none" else settings.compression_type,
        "linger_ms": settings.linger_ms,
        "max_request_size": settings.producer_max_request_size,
        "reconnect_backoff_max_ms": settings.reconnect_backoff_max_ms,
        # Bounded blocking on metadata while the cluster is unreachable; the sink retries and logs.
        "max_block_ms": 10_000,
    }


def worker_id(settings: Settings) -> str:
    return f"{settings.client_id}@{socket.gethostname()}:{os.getpid()}"


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
    ) -> None:
        self.producer = producer
        self.dlq_topic = dlq_topic
        self.worker = worker
        self.on_done = on_done
        self.on_fatal = on_fatal
        self.on_dead_letter = on_dead_letter or (lambda reason: None)
        self.stopping = stopping or threading.Event()
        self._last_outage_log = 0.0
        self._failed: BaseException | None = None
        self._closing = False
        self._errors: queue.SimpleQueue[Callable[[], None] | None] = queue.SimpleQueue()
        self._errors_thread = threading.Thread(target=self._run_errors, name="sentiment-sink-errors", daemon=True)
        self._errors_thread.start()

    @classmethod
    def create(cls, settings: Settings, **kwargs: Any) -> Sink:
        producer = KafkaProducer(**producer_config(settings))
        try:
            kafka_compat.check_producer(producer)  # now, not when a delivery fails
        except kafka_compat.KafkaCompatError:
            producer.close(timeout=0)
            raise
        return cls(producer, dlq_topic=settings.dlq_topic, worker=worker_id(settings), **kwargs)

    # -- output --------------------------------------------------------------------------------------
    def send_output(self, out: OutRecord) -> None:
        record = out.item.record
        try:
            future = self._send(out.topic, out.key, out.value, out.headers, out.partition)
        except (MessageSizeTooLargeError, KafkaError, ValueError, TypeError) as exc:
            self._output_failed(record, exc, "output record rejected by producer")
            return
        if future is None:  # stopping before it could be sent: stays uncommitted
            return
        future.add_callback(lambda _meta: self.on_done(record, out))
        future.add_errback(
            lambda exc: self._defer(lambda: self._output_failed(record, exc, "output record not delivered"))
        )

    def _output_failed(self, record: SourceRecord, exc: BaseException, what: str) -> None:
        if not self._not_the_records_fault(exc):
            self.dead_letter(record, ErrorType.PRODUCE_FAILED, f"{what}: {exc!r}")

    def _not_the_records_fault(self, exc: BaseException) -> bool:
        """A failed delivery that no record is to blame for, handled here: True.

        At close the record is given up (it stays unacknowledged, so uncommitted); a producer that can't go on
        is reported through ``on_fatal`` (the worker restarts its pipeline).
        """
        if self._closing:
            return True
        if isinstance(exc, PRODUCER_STATE_ERRORS) or self.producer_failed():
            self._producer_fatal(exc)
            return True
        return False

    def producer_failed(self) -> bool:
        """True when the producer is in a fatal state or lost its sequence state: it can't go on."""
        return self._failed is not None or kafka_compat.producer_failed(self.producer)

    def _producer_fatal(self, exc: BaseException) -> None:
        if self._failed is None:
            self._failed = exc
            log.error("producer_failed", error=repr(exc), note="the producer can't go on; no record is to blame")
        self.on_fatal(exc)

    # -- dead letters --------------------------------------------------------------------------------
    def dead_letter(self, record: SourceRecord, error_type: ErrorType, message: str) -> None:
        envelope = DeadLetter(
            error_type=error_type,
            error_message=message,
            source_topic=record.topic,
            source_partition=record.partition,
            source_offset=record.offset,
            source_timestamp=record.timestamp,
            failed_at=datetime.now(UTC),
            worker=self.worker,
        )
        original = [(k, v) for k, v in (record.headers or ()) if not k.startswith("x-dlq-")]
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
        self._send_dead_letter(topic, record, record.key, headers, error_type, record.value, truncated=False)

    def _send_dead_letter(
        self,
        topic: str,
        record: SourceRecord,
        key: bytes | None,
        headers: list[tuple[str, bytes]],
        error_type: ErrorType,
        value: bytes | None,
        *,
        truncated: bool,
    ) -> None:
        def too_large(exc: BaseException) -> None:
            if truncated:
                self.on_fatal(exc)
                return
            # Too large for the producer or the broker: keep the envelope and at most DLQ_MAX_FALLBACK_BYTES each of
            # the value, the key and the original headers, so a huge record can't stop the worker.
            log.warning("dead_letter_truncated", topic=record.topic, partition=record.partition, offset=record.offset)
            envelope = [(k, v) for k, v in headers if k.startswith("x-dlq-")]
            original = [(k, v) for k, v in headers if not k.startswith("x-dlq-")]
            marks = [(HEADER_DLQ_TRUNCATED, b"true")]
            short_key = key
            if key is not None and len(key) > DLQ_MAX_FALLBACK_BYTES:
                short_key = key[:DLQ_MAX_FALLBACK_BYTES]
                marks.append((HEADER_DLQ_KEY_TRUNCATED, b"true"))
            if headers_size(original) > DLQ_MAX_FALLBACK_BYTES:
                marks.append((HEADER_DLQ_HEADERS_DROPPED, str(len(original)).encode()))
                original = []
            self._send_dead_letter(
                topic,
                record,
                short_key,
                [*original, *envelope, *marks],
                error_type,
                (value or b"")[:DLQ_MAX_FALLBACK_BYTES],
                truncated=True,
            )

        def failed(exc: BaseException) -> None:
            if self._not_the_records_fault(exc):
                return
            if isinstance(exc, MessageSizeTooLargeError) or "TooLarge" in type(exc).__name__:
                too_large(exc)
            else:
                log.error("dead_letter_failed", error=repr(exc), topic=record.topic, offset=record.offset)
                self.on_fatal(exc)

        try:
            future = self._send(topic, key, value, headers, None)
        except MessageSizeTooLargeError as exc:
            too_large(exc)
            return
        except (KafkaError, ValueError, TypeError) as exc:
            failed(exc)
            return
        if future is None:
            return
        future.add_callback(lambda _meta: (self.on_dead_letter(error_type.value), self.on_done(record, None)))
        future.add_errback(lambda exc: self._defer(lambda: failed(exc)))

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
    ) -> Any:
        """producer.send, retrying while the cluster is unreachable (metadata timeouts) until stopping."""
        backoff = 0.5
        while True:
            try:
                return self.producer.send(topic, value=value, key=key, headers=headers, partition=partition)
            except KafkaTimeoutError as exc:
                if self.stopping.is_set():
                    return None
                now = time.monotonic()
                if now - self._last_outage_log > 10.0:
                    self._last_outage_log = now
                    log.warning("produce_blocked", topic=topic, error=str(exc), retry_in_s=backoff)
                time.sleep(backoff)
                backoff = min(backoff * 2, 5.0)

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
