"""Kafka helpers for tests: create topics, produce records, read a topic back, look up committed offsets.

These work around Tansu quirks *in tests only*: ``consume_all`` never trusts
``end_offsets()`` (Tansu returns the last batch's base offset + 1) and reads until it has the expected count.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import KafkaAdminClient
from kafka.consumer.fetcher import ConsumerRecord

from devtools.broker import create_topics

Header = tuple[str, bytes]
# (key, value, headers, partition); None = no key / no headers / producer's partitioner.
Item = tuple[bytes | None, bytes, list[Header] | None, int | None]

# Group timing for tests against Tansu. Its first JoinGroup is held ~half the session timeout, so the
# session timeout sets the join time: 45 s default -> ~23 s join; 2000 ms -> ~1.2 s.
#
# FAST (2000/500) is the quickest, for tests whose consumers never stall. The streaming worker may
# stop heartbeating briefly while it drains in-flight batches in a rebalance callback; a 2 s session can
# then expire mid-drain and cause an extra rebalance. SAFER (6000/1000) joins in ~3 s and tolerates
# stalls of a few seconds: use it for tests that exercise rebalances/drains of the real worker.
FAST_GROUP_CONFIG: dict[str, int] = {"session_timeout_ms": 2000, "heartbeat_interval_ms": 500}
SAFER_GROUP_CONFIG: dict[str, int] = {"session_timeout_ms": 6000, "heartbeat_interval_ms": 1000}
# Tansu holds every fetch for the whole fetch_max_wait_ms, even when records are there; with the Kafka
# default of 500 ms each step of a test (first records after a start, a restart or a rebalance) waits that long on
# this broker only. The worker in tests fetches with 100 ms, as a Kafka broker would answer at once.
TEST_FETCH_WAIT_MS = 100


def fast_group_config() -> dict[str, int]:
    """Consumer settings for quick group joins on Tansu (~1.2 s). See SAFER_GROUP_CONFIG for the trade-off."""
    return dict(FAST_GROUP_CONFIG)


def safer_group_config() -> dict[str, int]:
    """Group settings that survive heartbeat stalls of a few seconds (joins take ~3 s on Tansu)."""
    return dict(SAFER_GROUP_CONFIG)


def create_topic(bootstrap: str, name: str, partitions: int = 4) -> str:
    """Create ``name`` (idempotent) and wait until its metadata is visible. Returns the name."""
    create_topics(bootstrap, {name: partitions})
    return name


def produce_values(
    bootstrap: str,
    topic: str,
    items: Sequence[Item | tuple[bytes | None, bytes]],
    *,
    producer_config: dict[str, Any] | None = None,
) -> list[Any]:
    """Send each (key, value[, headers[, partition]]) with acks=all; wait for all. Returns RecordMetadata."""
    config: dict[str, Any] = {"bootstrap_servers": bootstrap, "acks": "all", "linger_ms": 2}
    config.update(producer_config or {})
    producer = KafkaProducer(**config)
    try:
        futures = []
        for item in items:
            key, value = item[0], item[1]
            headers = item[2] if len(item) > 2 else None
            partition = item[3] if len(item) > 3 else None
            futures.append(producer.send(topic, key=key, value=value, headers=headers or None, partition=partition))
        producer.flush()
        return [future.get(timeout=10) for future in futures]
    finally:
        producer.close()


def _partitions(consumer: KafkaConsumer, topic: str, deadline: float) -> set[int]:
    """The topic's partitions once metadata has them; empty if it never shows up before ``deadline``."""
    while True:
        partitions = consumer.partitions_for_topic(topic)
        if partitions:
            return set(partitions)
        if time.monotonic() > deadline:
            return set()
        consumer.poll(timeout_ms=50)  # drives a metadata refresh
        time.sleep(0.05)


def consume_all(
    bootstrap: str,
    topic: str,
    expected: int,
    timeout_s: float = 10.0,
    *,
    settle_s: float = 0.0,
) -> list[ConsumerRecord]:
    """Read ``topic`` from the beginning of every partition (no group) until ``expected`` records arrived
    or ``timeout_s`` passed; returns what was read (check the length). ``settle_s`` keeps reading that
    long after reaching ``expected`` to catch extras (duplicates). Records are in per-partition order.
    A topic that does not exist (or never appears before the timeout) gives ``[]``; it is not created.
    """
    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        fetch_max_wait_ms=100,
    )
    records: list[ConsumerRecord] = []
    try:
        deadline = time.monotonic() + timeout_s
        partitions = _partitions(consumer, topic, deadline)
        if not partitions:
            return records
        tps = [TopicPartition(topic, p) for p in sorted(partitions)]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        settle_until: float | None = None
        while True:
            now = time.monotonic()
            if settle_until is None and len(records) >= expected:
                settle_until = now + settle_s
            if (settle_until is not None and now >= settle_until) or now >= deadline:
                break
            batch = consumer.poll(timeout_ms=100)
            for tp_records in batch.values():
                records.extend(tp_records)
    finally:
        consumer.close()
    return records


def committed_offsets(bootstrap: str, group: str, topic: str) -> dict[int, int]:
    """The committed offsets of ``group`` on ``topic``, as {partition: next offset to read}."""
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        offsets = admin.list_group_offsets({group: None}).get(group, {})
    finally:
        admin.close()
    return {tp.partition: meta.offset for tp, meta in offsets.items() if tp.topic == topic and meta.offset >= 0}


def topic_names(bootstrap: str) -> set[str]:
    """The names of the topics the broker has now."""
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        return set(admin.list_topics())
    finally:
        admin.close()
