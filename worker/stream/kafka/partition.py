"""The output partitioner: kafka-python's default key hashing (murmur2, as the Java client), computed once per key.

kafka-python's ``DefaultPartitioner`` hashes every record's key in pure Python (murmur2) and sorts the topic's
partitions for every record: about a tenth of the worker's CPU per message. This partitioner gives every record
the same partition the default one would (same hash, same formula over the sorted partitions; a record without a
key goes to a random available partition) and remembers it per (key, partition count). It is plugged in through
the producer's public ``partitioner`` setting (``kafka.partitioner.Partitioner``).

The sorted partition list of a topic is re-read from the producer's metadata at most every ``REFRESH_S`` seconds,
so a topic that gains partitions is seen within that time (on top of the producer's own metadata refresh); until
then keyed records go to the partitions that existed before, which are all still valid.
"""

from __future__ import annotations

import random
import threading
import time
from typing import Any

from kafka.partitioner import Partitioner
from kafka.partitioner.default import murmur2

REFRESH_S = 1.0
MAX_KEYS = 200_000  # remembered hashes; the cache starts over beyond (a hash is ~1 µs-10 µs to recompute)


class CachingPartitioner(Partitioner):  # type: ignore[misc]
    def __init__(self, clock: Any = time.monotonic) -> None:
        self._clock = clock
        self._topics: dict[str, tuple[float, list[int]]] = {}
        self._hashes: dict[bytes, int] = {}
        self._lock = threading.Lock()  # guards the refresh only: dict reads and single writes are atomic

    def partition(
        self, topic: str, key: Any, serialized_key: bytes | None, value: Any, serialized_value: Any, cluster: Any
    ) -> int:
        cached = self._topics.get(topic)
        now = self._clock()
        if cached is None or now >= cached[0]:
            cached = self._refresh(topic, cluster, now)
        partitions = cached[1]
        if serialized_key is None:
            available = list(cluster.available_partitions_for_topic(topic))
            return random.choice(available or partitions)
        hashed = self._hashes.get(serialized_key)
        if hashed is None:
            if len(self._hashes) >= MAX_KEYS:
                self._hashes = {}
            hashed = self._hashes[serialized_key] = murmur2(serialized_key) & 0x7FFFFFFF
        return partitions[hashed % len(partitions)]

    def _refresh(self, topic: str, cluster: Any, now: float) -> tuple[float, list[int]]:
        if topic not in cluster.topics():
            raise ValueError(f"Topic {topic} not found in ClusterMetadata")
        with self._lock:
            entry = (now + REFRESH_S, sorted(cluster.partitions_for_topic(topic)))
            self._topics[topic] = entry
        return entry
