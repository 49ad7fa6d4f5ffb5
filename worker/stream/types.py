"""Types every stage shares: a consumed record, a valid item on its way through, a rejected record, record sizes.

Below all stages (source → decode → batcher → infer → encode → sink → commit): it imports none of them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from worker.records import ErrorType


class SourceRecord(Protocol):
    """What the pipeline needs of a consumed record (kafka-python's ConsumerRecord has these)."""

    topic: str
    partition: int
    offset: int
    timestamp: int | None
    key: bytes | None
    value: bytes | None
    headers: Sequence[tuple[str, bytes]] | None


@dataclass(slots=True)
class Item:
    """A valid record on its way through batcher → infer → encode → sink."""

    record: SourceRecord
    payload: dict[str, Any]
    text: str
    received: float  # time.time() when polled
    ids: list[int] = field(default_factory=list)
    truncated: bool = False

    @property
    def tokens(self) -> int:
        return len(self.ids)


# What the inference stage hands to the encode stage: items and their probabilities (one row per item).
Scored = tuple[list[Item], np.ndarray]


@dataclass(slots=True)
class Rejected:
    """A record that goes to the dead-letter topic, with the reason."""

    record: SourceRecord
    error_type: ErrorType
    message: str


def headers_size(headers: Sequence[tuple[str, bytes | None]] | None) -> int:
    """Bytes of Kafka record headers: UTF-8 names + values."""
    return sum(len(k.encode("utf-8", "surrogatepass")) + len(v or b"") for k, v in headers or ())


def record_size(record: SourceRecord) -> tuple[int, int, int]:
    """Bytes of the value, the key and the headers (names + values) of a record."""
    return len(record.value or b""), len(record.key or b""), headers_size(record.headers)
