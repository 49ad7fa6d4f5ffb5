"""Keyed JSON records for the reliability tests: a continuous feed into a topic and a continuous reader of one.

Everything here talks to the real embedded broker (Tansu) with kafka-python; nothing is mocked. Tansu quirks
are handled here, in tests only: ``end_offsets()`` is never trusted (on Tansu it returns the last batch's base
offset + 1; the reader uses the fetch high-water mark).
"""

from __future__ import annotations

import json
import os
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.errors import KafkaTimeoutError

from tests.support.kafka_utils import create_topic
from tests.support.waits import wait_for
from worker.stream.kafka import kafka_compat

WORDS = [
    *("good", "great", "awful", "bad", "movie", "service", "food", "fine", "terrible", "love", "hate", "the"),
    *("a", "plot", "acting", "staff", "price", "delivery", "quality", "never", "best", "worst", "really"),
    *("very", "not", "slow", "nice", "boring"),
]


def text_for(i: int) -> str:
    rng = random.Random(i)
    return " ".join(rng.choice(WORDS) for _ in range(rng.randint(1, 14)))


def message(i: int, **extra: Any) -> bytes:
    return json.dumps({"id": i, "text": text_for(i), **extra}).encode()


# ---- a continuous keyed feed ---------------------------------------------------------------------------------
@dataclass(eq=False)
class Feeder(threading.Thread):
    """Produce ``count`` keyed JSON messages (ids ``start``..) at about ``rate`` per second, in chunks.

    Keys are drawn with a seeded RNG; the ids of one key rise, so per-key order is checkable downstream.
    ``keys[id]`` and ``placed[id] = (partition, offset)`` record what was acknowledged. :meth:`stop` ends it
    early (what is still unacknowledged is dropped).
    """

    bootstrap: str
    topic: str
    count: int
    rate: float
    seed: int = 5
    n_keys: int = 100
    start_id: int = 0
    chunk: int = 25
    value_for: Callable[[int], bytes] = message
    keys: dict[int, bytes] = field(default_factory=dict)
    placed: dict[int, tuple[int, int]] = field(default_factory=dict)
    error: BaseException | None = None
    flush_timeout_s: float = 60.0

    def __post_init__(self) -> None:
        threading.Thread.__init__(self, name=f"feeder-{self.topic}", daemon=True)
        self._halt = threading.Event()

    def stop(self, timeout: float = 30) -> None:
        self._halt.set()
        self.join(timeout)

    def run(self) -> None:
        rng = random.Random(self.seed)
        producer = KafkaProducer(bootstrap_servers=self.bootstrap, acks="all", linger_ms=5, retries=10)
        try:
            started = time.monotonic()
            sent = 0
            while sent < self.count and not self._halt.is_set():
                futures = []
                for i in range(self.start_id + sent, self.start_id + min(self.count, sent + self.chunk)):
                    key = f"key-{rng.randrange(self.n_keys)}".encode()
                    self.keys[i] = key
                    futures.append((i, producer.send(self.topic, key=key, value=self.value_for(i))))
                producer.flush(timeout=self.flush_timeout_s)
                for i, future in futures:
                    meta = future.get(timeout=30)
                    self.placed[i] = (meta.partition, meta.offset)
                sent += len(futures)
                if self.rate > 0:
                    ahead = started + sent / self.rate - time.monotonic()
                    if ahead > 0:
                        time.sleep(ahead)
        except BaseException as exc:  # reported by the test
            self.error = exc
        finally:
            if self._halt.is_set() or self.error:  # give up on what is unacknowledged (close() raises otherwise)
                kafka_compat.abort_pending_batches(producer, KafkaTimeoutError("feeder stopped"))
                producer.close(timeout=0)
            else:
                producer.close()


# ---- a continuous reader of output topics ---------------------------------------------------------------------
@dataclass
class Seen:
    index: int  # arrival order over all partitions
    at: float  # monotonic time the reader got it
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes]]

    def json(self) -> dict[str, Any]:
        return json.loads(self.value or b"null")


class OutputReader(threading.Thread):
    """Reads every partition of ``topic`` from the beginning (no group) into ``records``, continuously.

    ``lag`` is the fetch high-water mark minus the position, summed over partitions (Tansu's ``end_offsets()``
    is wrong; the high-water mark of fetch responses is right), refreshed after every poll.
    """

    def __init__(self, bootstrap: str, topic: str, partitions: int, **consumer_config: Any) -> None:
        super().__init__(name=f"reader-{topic}", daemon=True)
        self.bootstrap = bootstrap
        self.topic = topic
        self.partitions = partitions
        self.consumer_config = consumer_config
        self.records: list[Seen] = []
        self.lock = threading.Lock()
        self.lag: int | None = None
        self.last_poll_started = 0.0
        self.last_poll_ended = 0.0
        self._stop_event = threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        config: dict[str, Any] = {
            "bootstrap_servers": self.bootstrap,
            "group_id": None,
            "enable_auto_commit": False,
            "auto_offset_reset": "earliest",
            "fetch_max_wait_ms": 50,
            **self.consumer_config,
        }
        try:
            consumer = KafkaConsumer(**config)
        except BaseException as exc:
            self.error = exc
            return
        try:
            tps = [TopicPartition(self.topic, p) for p in range(self.partitions)]
            consumer.assign(tps)
            consumer.seek_to_beginning(*tps)
            while not self._stop_event.is_set():
                started = time.monotonic()
                batch = consumer.poll(timeout_ms=100)
                now = time.monotonic()
                with self.lock:
                    for tp in sorted(batch):
                        for rec in batch[tp]:
                            self.records.append(
                                Seen(
                                    len(self.records),
                                    now,
                                    rec.partition,
                                    rec.offset,
                                    rec.key,
                                    rec.value,
                                    list(rec.headers or []),
                                )
                            )
                    lag: int | None = 0
                    for tp in tps:
                        high = consumer.highwater(tp)
                        if high is None:  # no fetch response for it yet
                            lag = None
                            break
                        lag += max(0, high - consumer.position(tp))
                    self.lag = lag
                    self.last_poll_started = started
                    self.last_poll_ended = now
        except BaseException as exc:
            self.error = exc
        finally:
            consumer.close()

    def __len__(self) -> int:
        with self.lock:
            return len(self.records)

    def snapshot(self) -> list[Seen]:
        with self.lock:
            return list(self.records)

    def caught_up_since(self, moment: float) -> bool:
        """A poll that started after ``moment`` found nothing left to read."""
        with self.lock:
            return self.last_poll_started > moment and self.lag == 0

    def wait_caught_up(self, moment: float, timeout: float = 60) -> int:
        """Wait until everything written before ``moment`` has been read; returns the record count."""
        wait_for(lambda: self.caught_up_since(moment), timeout, 0.05, f"reader of {self.topic} to catch up")
        return len(self)

    def wait_count(self, count: int, timeout: float) -> int:
        wait_for(lambda: len(self) >= count, timeout, 0.2, f"{count} records on {self.topic} (have {len(self)})")
        return len(self)

    def stop(self) -> None:
        self._stop_event.set()
        self.join(10)


def group_ids(count: int, prefix: str) -> list[str]:
    tag = os.urandom(4).hex()
    return [f"{prefix}-{tag}-{i}" for i in range(count)]


def create_input_and_output(bootstrap: str, topic: str, partitions: int) -> str:
    """Create the input topic and the worker's output topic (``<topic>.sentiment``); returns the output topic."""
    create_topic(bootstrap, topic, partitions)
    return create_topic(bootstrap, f"{topic}.sentiment", partitions)
