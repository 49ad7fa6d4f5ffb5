"""The caching partitioner gives every record the partition kafka-python's default partitioner gives it."""

from __future__ import annotations

import random

import pytest
from kafka.partitioner import DefaultPartitioner

from worker.stream.kafka.partition import REFRESH_S, CachingPartitioner

pytestmark = pytest.mark.unit


class Cluster:
    def __init__(self, partitions: dict[str, set[int]], available: set[int] | None = None) -> None:
        self.partitions = partitions
        self.available = available

    def topics(self) -> set[str]:
        return set(self.partitions)

    def partitions_for_topic(self, topic: str) -> set[int]:
        return set(self.partitions[topic])

    def available_partitions_for_topic(self, topic: str) -> set[int]:
        return set(self.partitions[topic] if self.available is None else self.available)


def test_same_partition_as_the_default_partitioner_for_every_key() -> None:
    rng = random.Random(3)
    cluster = Cluster({"out": set(range(7)), "other": {0, 2, 5}})
    ours, default = CachingPartitioner(), DefaultPartitioner()
    keys = [bytes(rng.randrange(256) for _ in range(rng.randrange(0, 40))) for _ in range(2_000)]
    for key in keys * 2:  # the second round comes from the cache
        for topic in ("out", "other"):
            expected = default.partition(topic, key, key, None, None, cluster)
            assert ours.partition(topic, key, key, None, None, cluster) == expected


def test_no_key_goes_to_an_available_partition_and_an_unknown_topic_is_refused() -> None:
    cluster = Cluster({"out": set(range(4))}, available={1, 3})
    ours = CachingPartitioner()
    assert {ours.partition("out", None, None, None, None, cluster) for _ in range(200)} == {1, 3}
    with pytest.raises(ValueError, match="not found"):
        ours.partition("nope", b"k", b"k", None, None, cluster)


def test_a_topic_that_gains_partitions_is_seen_after_the_refresh_interval() -> None:
    now = [0.0]
    cluster = Cluster({"out": {0, 1}})
    ours, default = CachingPartitioner(clock=lambda: now[0]), DefaultPartitioner()
    keys = [f"key-{n}".encode() for n in range(200)]
    before = [ours.partition("out", k, k, None, None, cluster) for k in keys]
    cluster.partitions["out"] = set(range(8))
    assert [ours.partition("out", k, k, None, None, cluster) for k in keys] == before, "within the interval"
    now[0] += REFRESH_S
    after = [ours.partition("out", k, k, None, None, cluster) for k in keys]
    assert after == [default.partition("out", k, k, None, None, cluster) for k in keys]
    assert max(after) > 1
