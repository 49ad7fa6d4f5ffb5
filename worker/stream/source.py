"""Source stage: a kafka-python KafkaConsumer in a consumer group, manual commits, topics or a pattern.

Rebalances: kafka-python 3.x runs rebalance listeners on its IO thread, where a blocking ``commit()`` is
not allowed. The listener here is async: it waits (without blocking the IO loop, so heartbeats go on) for
the pipeline to drain the revoked partitions, then commits their offsets synchronously *before* the
consumer rejoins, so the next owner starts exactly after the last record we produced.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from typing import Any, Protocol

from kafka import KafkaConsumer, TopicPartition
from kafka.consumer.subscription_state import AsyncConsumerRebalanceListener
from kafka.structs import OffsetAndMetadata

from worker.observability import get_logger
from worker.settings import Input, Kafka
from worker.stream.common.budget import max_partition_fetch_bytes
from worker.stream.common.types import SourceRecord
from worker.stream.kafka import kafka_compat
from worker.stream.kafka.cluster import new_client

log = get_logger(__name__)


class RebalanceHandler(Protocol):
    def prepare_revoke(self, partitions: list[TopicPartition]) -> Callable[[], dict[Any, int]]:
        """Start draining; return a function that tells when done: () -> offsets to commit (or raises)."""
        ...

    def revoke_done(self, partitions: list[TopicPartition], offsets: dict[Any, int]) -> None: ...

    def assigned(self, partitions: list[TopicPartition]) -> None: ...

    def lost(self, partitions: list[TopicPartition]) -> None: ...


def consumer_config(kafka: Kafka, input: Input) -> dict[str, Any]:
    """The KafkaConsumer's options: the connection (``kafka``) and the consumer's part of the input section."""
    return {
        **kafka.kafka_security(),
        "client_id": f"{kafka.client_id}-consumer",
        "group_id": input.group_id,
        "enable_auto_commit": False,
        "auto_offset_reset": input.auto_offset_reset,
        "session_timeout_ms": input.session_timeout_ms,
        "heartbeat_interval_ms": input.heartbeat_interval_ms,
        "max_poll_interval_ms": input.max_poll_interval_ms,
        "max_poll_records": input.max_poll_records,
        "fetch_max_bytes": input.fetch_max_bytes,
        "fetch_max_wait_ms": input.fetch_max_wait_ms,
        "max_partition_fetch_bytes": max_partition_fetch_bytes(input),
        "reconnect_backoff_max_ms": kafka.reconnect_backoff_max_ms,
    }


class _Listener(AsyncConsumerRebalanceListener):
    def __init__(self, source: Source, handler: RebalanceHandler) -> None:
        self.source = source
        self.handler = handler

    async def on_partitions_revoked(self, revoked: Any) -> None:
        partitions = sorted(revoked)
        if not partitions:
            return
        log.info("partitions_revoked", partitions=_fmt(partitions))
        try:
            done = self.handler.prepare_revoke(partitions)
            consumer = self.source.consumer
            offsets: dict[Any, int] | None = None
            while offsets is None:
                offsets = done()
                if offsets is None:
                    await kafka_compat.io_sleep(consumer, 0.02)  # on the IO loop: heartbeats go on
            if offsets:
                # commit() raises on the IO thread: the coroutine behind it is awaited here instead
                await kafka_compat.commit_sync_in_io_thread(consumer, _to_commit(offsets))
                log.info("revoke_committed", offsets=_fmt_offsets(offsets))
            self.handler.revoke_done(partitions, offsets)
        except Exception as exc:
            log.error("revoke_commit_failed", error=repr(exc), partitions=_fmt(partitions))
            self.handler.lost(partitions)

    async def on_partitions_assigned(self, assigned: Any) -> None:
        partitions = sorted(assigned)
        log.info("partitions_assigned", partitions=_fmt(partitions))
        self.handler.assigned(partitions)

    async def on_partitions_lost(self, lost: Any) -> None:
        partitions = sorted(lost)
        log.warning("partitions_lost", partitions=_fmt(partitions))
        self.handler.lost(partitions)


class Source:
    def __init__(self, kafka: Kafka, input: Input, handler: RebalanceHandler, consumer: Any | None = None) -> None:
        kafka_compat.escape_undecodable_header_keys()  # a header name that isn't UTF-8 must not break poll()
        self._paused = False
        self._held: set[str] = set()  # topics kept paused whatever backpressure does (see hold())
        self._lock = threading.Lock()
        self.consumer = consumer or new_client(KafkaConsumer, consumer_config(kafka, input))
        try:
            kafka_compat.check_consumer(self.consumer)  # now, not at the first rebalance
            listener = _Listener(self, handler)
            if input.input_pattern:
                self.consumer.subscribe(pattern=input.input_pattern, listener=listener)
            else:
                self.consumer.subscribe(topics=list(input.input_topics), listener=listener)
        except BaseException:
            if consumer is None:  # a failed start leaves no client behind
                self.consumer.close(autocommit=False, timeout_ms=0)
            raise

    def poll(self, timeout_s: float) -> list[SourceRecord]:
        """Records in partition order (each partition's records in offset order)."""
        batches = self.consumer.poll(timeout_ms=max(0, int(timeout_s * 1000)))
        if not batches:
            return []
        records: list[SourceRecord] = []
        for tp in sorted(batches):
            records.extend(batches[tp])
        return records

    def assignment(self) -> set[TopicPartition]:
        return set(self.consumer.assignment())

    @property
    def paused(self) -> bool:
        return self._paused

    def pause_all(self) -> int:
        parts = list(self.consumer.assignment())
        if parts:
            self.consumer.pause(*parts)
        self._paused = True
        return len(parts)

    def resume_all(self) -> None:
        """Resume what backpressure paused (held topics stay paused)."""
        with self._lock:
            parts = [tp for tp in self.consumer.paused() if tp.topic not in self._held]
            if parts:
                self.consumer.resume(*parts)
            self._paused = False

    def hold(self, topics: set[str]) -> None:
        """Keep the partitions of ``topics`` paused whatever backpressure does (their output topics are not known to
        exist); resume those of topics no longer held unless backpressure paused everything."""
        with self._lock:
            self._held = set(topics)
            pause = [tp for tp in self.consumer.assignment() if tp.topic in self._held]
            resume = [] if self._paused else [tp for tp in self.consumer.paused() if tp.topic not in self._held]
            if pause:
                self.consumer.pause(*pause)
            if resume:
                self.consumer.resume(*resume)

    def ensure_paused_state(self) -> None:
        """After a rebalance, newly assigned partitions start unpaused: re-apply the pause."""
        if self._paused:
            self.pause_all()

    def seek(self, tp: Any, offset: int) -> None:
        """Read ``tp`` again from ``offset`` (if it is still assigned)."""
        partition = TopicPartition(tp[0], tp[1])
        if partition in self.consumer.assignment():
            self.consumer.seek(partition, offset)

    def commit_async(self, offsets: dict[Any, int], callback: Callable[[Any, Any], None] | None = None) -> None:
        if offsets:
            self.consumer.commit_async(offsets=_to_commit(offsets), callback=callback)

    def commit_sync(self, offsets: dict[Any, int], timeout_s: float = 10.0) -> None:
        if offsets:
            self.consumer.commit(offsets=_to_commit(offsets), timeout_ms=int(timeout_s * 1000))

    def lag(self) -> dict[tuple[str, int], int]:
        """Per assigned partition: highwater (from fetch responses) − position. Unknown ones are skipped."""
        lags: dict[tuple[str, int], int] = {}
        for tp in self.consumer.assignment():
            high = self.consumer.highwater(tp)
            if high is None:
                continue
            try:
                position = self.consumer.position(tp, timeout_ms=0)
            except Exception:
                continue
            if position is not None:
                lags[(tp.topic, tp.partition)] = max(0, high - position)
        return lags

    def broker_reachable(self) -> bool:
        """True while the group coordinator is known (kafka-python marks it unknown when the broker is gone)."""
        try:
            return kafka_compat.coordinator_known(self.consumer)
        except kafka_compat.KafkaCompatError:
            raise
        except Exception:
            return False

    def close(self, timeout_s: float | None = None) -> None:
        """Leave the group and close (bounded by ``timeout_s``; kafka-python's request timeout by default)."""
        self.consumer.close(autocommit=False, timeout_ms=None if timeout_s is None else int(timeout_s * 1000))


def _to_commit(offsets: dict[Any, int]) -> dict[TopicPartition, OffsetAndMetadata]:
    return {TopicPartition(tp[0], tp[1]): OffsetAndMetadata(offset, "", -1) for tp, offset in offsets.items()}


def _fmt(partitions: Iterable[Any]) -> list[str]:
    return [f"{tp[0]}:{tp[1]}" for tp in partitions]


def _fmt_offsets(offsets: dict[Any, int]) -> dict[str, int]:
    return {f"{tp[0]}:{tp[1]}": off for tp, off in offsets.items()}
