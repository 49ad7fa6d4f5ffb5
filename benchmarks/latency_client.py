"""The latency benchmark's external client (confluent-kafka, librdkafka: its own threads, little of our GIL).

- :class:`PacedProducer` produces tweet-like JSON records at a steady rate (or as a burst), each tagged with its
  phase and a sequence number; the record's timestamp is set by the client when it produces it (CreateTime).
- :class:`OutputReader` reads the output topic from the beginning (partitions assigned, no consumer group) and keeps,
  per phase and once per input record, the end-to-end latency (the output record's timestamp, set by the worker's
  producer when it sends it, − the input record's timestamp, which the output carries in
  ``sentiment_meta.source.timestamp``), the in-worker latency (``sentiment_meta.latency_ms``: from the poll that
  returned the record to its encoding) and the output's timestamp.

Tansu holds a fetch for the whole ``fetch.wait.max.ms`` even when data is there, so the reader waits 10 ms; what it
measures does not depend on when it reads (record timestamps, not arrival times).
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections import defaultdict
from typing import Any

KEYS = 16


class PacedProducer:
    """Steady-rate JSON producer; counts the records the broker acknowledged."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        from confluent_kafka import Producer

        self.topic = topic
        self.producer = Producer(
            {"bootstrap.servers": bootstrap, "linger.ms": 1, "acks": "all", "enable.idempotence": True}
        )
        self.seq = 0
        self.acked = 0
        self.failed = 0

    def _delivered(self, error: Any, _message: Any) -> None:  # on the poll()/flush() caller's thread
        if error is None:
            self.acked += 1
        else:
            self.failed += 1

    def send(self, phase: str, texts: list[str], *, rate: float = 0.0, seconds: float | None = None) -> dict[str, Any]:
        """``len(texts)`` records as fast as possible (``rate`` 0), or ``rate`` records/s for ``seconds`` (texts
        cycled). Returns what was sent, how long it took and how far the pacing fell behind at worst."""
        count = len(texts) if rate <= 0 or seconds is None else max(1, round(rate * seconds))
        started = time.monotonic()
        behind = 0.0
        for n in range(count):
            if rate > 0:
                delay = started + n / rate - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                else:
                    behind = max(behind, -delay)
            value = {"id": f"{phase}-{n}", "text": texts[n % len(texts)], "phase": phase, "seq": self.seq}
            self._produce(f"key-{self.seq % KEYS}".encode(), json.dumps(value, separators=(",", ":")).encode())
            self.seq += 1
            self.producer.poll(0)
        self.producer.flush(30)
        return {
            "phase": phase,
            "sent": count,
            "seconds": round(time.monotonic() - started, 3),
            "max_behind_s": round(behind, 4),
        }

    def _produce(self, key: bytes, value: bytes) -> None:
        while True:
            try:
                self.producer.produce(self.topic, key=key, value=value, on_delivery=self._delivered)
                return
            except BufferError:  # the client's queue is full (a burst): let it send
                self.producer.poll(0.05)

    def close(self) -> None:
        """Flush, then let the client go (librdkafka's threads end with it: no reconnect chatter after the broker
        stops)."""
        self.producer.flush(30)
        del self.producer


class OutputReader(threading.Thread):
    """Reads the output topic; per phase: (end-to-end ms, in-worker ms, output timestamp ms) once per input."""

    def __init__(self, bootstrap: str, topic: str, partitions: int) -> None:
        super().__init__(name=f"latency-reader-{topic}", daemon=True)
        self.bootstrap = bootstrap
        self.topic = topic
        self.partitions = partitions
        self.cond = threading.Condition()
        self.outputs: dict[str, list[tuple[float, float, int]]] = defaultdict(list)
        self.duplicates = 0
        self.error: str | None = None
        self._seen: set[int] = set()
        self._halt = threading.Event()

    def run(self) -> None:
        from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

        consumer = Consumer(
            {
                "bootstrap.servers": self.bootstrap,
                "group.id": f"latency-reader-{uuid.uuid4().hex[:8]}",  # required; never joined (assigned)
                "enable.auto.commit": False,
                "fetch.wait.max.ms": 10,
                "fetch.min.bytes": 1,
            }
        )
        consumer.assign([TopicPartition(self.topic, p, OFFSET_BEGINNING) for p in range(self.partitions)])
        try:
            while not self._halt.is_set():
                for message in consumer.consume(num_messages=500, timeout=0.1):
                    if message.error() is None:
                        self._add(message.value(), message.timestamp()[1])
        except Exception as exc:  # reported by the benchmark (no outputs arrive)
            self.error = repr(exc)
        finally:
            consumer.close()

    def _add(self, raw: bytes, out_ts: int) -> None:
        try:
            value = json.loads(raw)
            meta = value["sentiment_meta"]
            seq, phase = int(value["seq"]), str(value["phase"])
            in_ts = int(meta["source"]["timestamp"])
            in_worker = float(meta["latency_ms"])
        except (ValueError, KeyError, TypeError):
            return
        with self.cond:
            if seq in self._seen:  # at-least-once: a record may be output twice
                self.duplicates += 1
                return
            self._seen.add(seq)
            self.outputs[phase].append((float(out_ts - in_ts), in_worker, out_ts))
            self.cond.notify_all()

    def count(self, phase: str) -> int:
        with self.cond:
            return len(self.outputs[phase])

    def wait_for(self, phase: str, n: int, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        with self.cond:
            while len(self.outputs[phase]) < n:
                left = deadline - time.monotonic()
                if left <= 0 or self.error is not None:
                    return False
                self.cond.wait(min(left, 0.5))
        return True

    def take(self, phase: str) -> list[tuple[float, float, int]]:
        with self.cond:
            return list(self.outputs[phase])

    def stop(self) -> None:
        self._halt.set()
        self.join(timeout=10)
