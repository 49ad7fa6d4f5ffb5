"""A second Kafka client for tests: records that kafka-python's producer refuses but other clients produce.

- :func:`produce_any` uses confluent-kafka (librdkafka, a test-only dependency): null header values, a record with
  neither key nor value, empty and duplicate header names, anything the Kafka protocol allows.
- :func:`produce_raw_header_names` writes header names as raw bytes (e.g. not UTF-8, which the protocol's
  String type should hold but no broker checks): neither confluent-kafka (it ``str()``s bytes names and crashes on
  lone surrogates) nor kafka-python's send allow that, so kafka-python's own record builder is handed a ``str``
  whose ``encode`` gives the raw bytes.

Both return the (partition, offset) of every record, in the order given.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from kafka import KafkaProducer

# (key, value, headers, partition); headers: (name, value) with value bytes or None; partition None: partitioner's.
AnyItem = tuple[bytes | None, bytes | None, list[tuple[Any, bytes | None]] | None, int | None]


def produce_any(bootstrap: str, topic: str, items: Sequence[AnyItem], timeout_s: float = 60.0) -> list[tuple[int, int]]:
    """Produce with confluent-kafka (acks=all), wait for every delivery; raise on any failure."""
    from confluent_kafka import KafkaException, Producer

    producer = Producer(
        {
            "bootstrap.servers": bootstrap,
            "acks": "all",
            "linger.ms": 5,
            "message.max.bytes": 64 * 1024 * 1024,
            "queue.buffering.max.kbytes": 1024 * 1024,
            "enable.idempotence": False,
            "log_level": 3,
        }
    )
    placed: list[tuple[int, int] | None] = [None] * len(items)
    errors: list[str] = []

    def delivered(index: int):
        def callback(err, msg) -> None:
            if err is not None:
                errors.append(f"record {index}: {err}")
            else:
                placed[index] = (msg.partition(), msg.offset())

        return callback

    for index, (key, value, headers, partition) in enumerate(items):
        kwargs: dict[str, Any] = {"key": key, "value": value, "on_delivery": delivered(index)}
        if headers:
            kwargs["headers"] = list(headers)
        if partition is not None:
            kwargs["partition"] = partition
        while True:
            try:
                producer.produce(topic, **kwargs)
                break
            except BufferError:
                producer.poll(0.1)
        producer.poll(0)
    remaining = producer.flush(timeout_s)
    if remaining or errors:
        raise KafkaException(f"confluent-kafka: {remaining} undelivered, errors {errors[:5]}")
    assert all(p is not None for p in placed)
    return placed  # type: ignore[return-value]


class RawName(str):
    """A header name whose UTF-8 encoding, as kafka-python computes it, is the given raw bytes."""

    raw: bytes

    def __new__(cls, raw: bytes) -> RawName:
        name = super().__new__(cls, raw.decode("latin-1"))
        name.raw = raw
        return name

    def encode(self, encoding: str = "utf-8", errors: str = "strict") -> bytes:  # type: ignore[override]
        return self.raw


def produce_raw_header_names(
    bootstrap: str, topic: str, items: Sequence[AnyItem], timeout_s: float = 60.0
) -> list[tuple[int, int]]:
    """Produce with kafka-python, header names given as bytes written as they are (values: bytes, no None)."""
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5, max_request_size=64 * 1024 * 1024)
    try:
        futures = []
        for key, value, headers, partition in items:
            named = [(RawName(k) if isinstance(k, bytes) else k, v) for k, v in headers or ()]
            futures.append(producer.send(topic, key=key, value=value, headers=named, partition=partition))
        producer.flush(timeout_s)
        return [(meta.partition, meta.offset) for meta in (f.get(timeout=timeout_s) for f in futures)]
    finally:
        producer.close()


# ---- what the worker writes back -------------------------------------------------------------------------------
def as_written(headers: Sequence[tuple[Any, bytes | None]] | None) -> list[tuple[str, bytes]]:
    """A record's headers as the worker writes them to the output or the dead letter: null values empty, names
    that are not UTF-8 ``\\xNN``-escaped, order and duplicates kept."""
    return [
        (k.decode("utf-8", "backslashreplace") if isinstance(k, bytes) else k, b"" if v is None else v)
        for k, v in headers or ()
    ]


def expected_mended(headers: Sequence[tuple[Any, bytes | None]] | None) -> str | None:
    """The ``x-sentiment-headers-mended`` / ``x-dlq-headers-mended`` value the worker writes for these headers."""
    escaped = 0
    for k, _ in headers or ():
        if isinstance(k, bytes):
            try:
                k.decode("utf-8")
            except UnicodeDecodeError:
                escaped += 1
    nulls = sum(1 for _, v in headers or () if v is None)
    parts = [f"key_not_utf8={escaped}"] if escaped else []
    if nulls:
        parts.append(f"null_value={nulls}")
    return ",".join(parts) or None
