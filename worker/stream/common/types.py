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


class Reply(Protocol):
    """Where the result of a directly requested item goes (an HTTP request, ``worker/serve/lane.py``): the inference
    stage answers it and never hands the item to the encoder, so it never reaches Kafka nor the offsets."""

    def resolve(
        self, probs: np.ndarray, logits: np.ndarray | None, stream_in_batch: int, labels: Sequence[str] = ()
    ) -> None: ...  # ``labels``: the columns of ``probs`` (the labels of the model that scored it)

    def fail(self, error: str) -> None: ...


@dataclass(slots=True)
class Item:
    """A valid record on its way through batcher → infer → encode → sink (or, with a ``reply``, batcher-less:
    an HTTP input, answered by the inference stage)."""

    record: SourceRecord
    payload: dict[str, Any]
    text: str
    received: float  # time.time() when polled
    ids: list[int] = field(default_factory=list)
    truncated: bool = False
    reply: Reply | None = None
    vocab: str = ""  # the tokenizer that made ``ids`` (a model's ``vocab``); "": not known, never re-tokenised
    header_bytes: int = 0  # bytes of the record's headers (names + values)
    context: Any = None  # (output format, its context) the input format left (worker/formats); None: plain JSON

    @property
    def tokens(self) -> int:
        return len(self.ids)


@dataclass(frozen=True, slots=True, eq=False)
class Scorer:
    """The model that scored a batch, as the encoder writes it: its labels (the columns of the probabilities) and
    its meta (id, revision, onnx_sha256, precision, provider: ``sentiment_meta.model``): ``swap.scorer_of``."""

    labels: tuple[str, ...]
    meta: dict[str, Any]


# What the inference stage hands to the encode stage: items, their probabilities (one row per item) and the model
# that computed them (a swap happens between two batches: every batch is scored by exactly one model).
Scored = tuple[list[Item], np.ndarray, Scorer]


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
