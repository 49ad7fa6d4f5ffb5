"""worker.stream.kafka.kafka_compat on the real broker: the IO-thread commit in a rebalance listener, aborting
batches."""

from __future__ import annotations

import time
import uuid
from typing import Any

import pytest
from kafka import AsyncConsumerRebalanceListener, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.errors import KafkaTimeoutError
from kafka.structs import OffsetAndMetadata

from devtools.broker import EmbeddedBroker
from tests.support.kafka_utils import committed_offsets, create_topic, fast_group_config
from worker.stream.kafka import kafka_compat

pytestmark = pytest.mark.integration


class _CommitOnRevoke(AsyncConsumerRebalanceListener):
    """On revoke (on the consumer's IO thread): try the public commit(), then sleep and commit via kafka_compat."""

    def __init__(self, offsets: dict[TopicPartition, OffsetAndMetadata]) -> None:
        self.consumer: KafkaConsumer | None = None
        self.offsets = offsets
        self.public_commit_error: BaseException | None = None
        self.committed = False

    async def on_partitions_revoked(self, revoked: Any) -> None:
        assert self.consumer is not None
        if not revoked:  # the first join revokes nothing
            return
        try:
            self.consumer.commit(offsets=self.offsets)
        except RuntimeError as exc:
            self.public_commit_error = exc
        await kafka_compat.io_sleep(self.consumer, 0.05)
        await kafka_compat.commit_sync_in_io_thread(self.consumer, self.offsets)
        self.committed = True

    async def on_partitions_assigned(self, assigned: Any) -> None:
        pass


def test_commit_from_the_io_thread_in_a_rebalance_listener(bootstrap: str, topic_name: str) -> None:
    topic = create_topic(bootstrap, topic_name, partitions=1)
    group = f"g-{uuid.uuid4().hex[:8]}"
    tp = TopicPartition(topic, 0)
    listener = _CommitOnRevoke({tp: OffsetAndMetadata(3, "", -1)})
    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False, **fast_group_config()
    )
    listener.consumer = consumer
    try:
        kafka_compat.check_consumer(consumer)
        consumer.subscribe(topics=[topic], listener=listener)
        deadline = time.monotonic() + 30
        while not consumer.assignment():
            assert time.monotonic() < deadline, "never assigned"
            consumer.poll(timeout_ms=100)
        assert kafka_compat.coordinator_known(consumer)
    finally:
        consumer.close(autocommit=False)  # revokes the partition: the listener runs on the IO thread
    assert isinstance(listener.public_commit_error, RuntimeError), "commit() works on the IO thread now?"
    assert "IO thread" in str(listener.public_commit_error)
    assert listener.committed
    assert committed_offsets(bootstrap, group, topic) == {0: 3}


def test_aborting_pending_batches_lets_close_finish(fresh_broker: EmbeddedBroker, topic_name: str) -> None:
    topic = create_topic(fresh_broker.bootstrap, topic_name, partitions=1)
    producer = KafkaProducer(bootstrap_servers=fresh_broker.bootstrap, acks="all", enable_idempotence=True)
    try:
        kafka_compat.check_producer(producer)
        producer.send(topic, value=b"first").get(timeout=30)  # metadata known: later sends don't block
        fresh_broker.stop()
        pending = producer.send(topic, value=b"never acknowledged")
        with pytest.raises(KafkaTimeoutError):
            producer.close(timeout=1)  # raises at its flush, the producer still running
        kafka_compat.abort_pending_batches(producer, KafkaTimeoutError("producer closed"))
        assert pending.is_done and isinstance(pending.exception, KafkaTimeoutError)
        assert str(pending.exception).endswith("producer closed")
        assert kafka_compat.producer_failed(producer) is False
    finally:
        producer.close(timeout=0)
