"""Encode stage: (items, probabilities) → output records (topic, key, value, headers, partition).

Output value: the input JSON object's fields unchanged, plus ``sentiment`` and ``sentiment_meta``
(schema: ``worker.records.EnrichedRecord``). Key and headers of the input are kept, plus ``x-sentiment-*``;
headers kafka-python's producer would refuse are mended (``mend.py``) and ``x-sentiment-headers-mended`` says how.
"""

from __future__ import annotations

import json
import queue
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np

from worker.records import (
    HEADER_HEADERS_MENDED,
    HEADER_LABEL,
    HEADER_MODEL,
    HEADER_REVISION,
    HEADER_SCORE,
    SCHEMA_VERSION,
)
from worker.stream.mend import producible_headers
from worker.stream.types import Item, Scored, Scorer


@dataclass(slots=True)
class OutRecord:
    topic: str
    key: bytes | None
    value: bytes
    headers: list[tuple[str, bytes]]
    partition: int | None
    item: Item
    label: str


class Encoder:
    def __init__(
        self,
        *,
        labels: Sequence[str],
        model_meta: dict[str, Any],
        output_topic: str,
        partitioning: str = "key",
    ) -> None:
        self.labels = tuple(labels)
        self.model_meta = dict(model_meta)
        self.output_topic = output_topic
        self.by_source_partition = partitioning == "source"
        self._topics: dict[tuple[str, str], str] = {}
        self._static_headers = _model_headers(self.model_meta)
        self._scorer: tuple[Scorer, list[tuple[str, bytes]]] | None = None  # the last batch's model, its headers

    def topic_for(self, source_topic: str, label: str) -> str:
        key = (source_topic, label)
        topic = self._topics.get(key)
        if topic is None:
            topic = self._topics[key] = self.output_topic.format(topic=source_topic, label=label.lower())
        return topic

    def _model(self, scorer: Scorer | None) -> tuple[Sequence[str], dict[str, Any], list[tuple[str, bytes]]]:
        """Labels, meta and model headers of the model that scored a batch (the encoder's own without one)."""
        if scorer is None:
            return self.labels, self.model_meta, self._static_headers
        if self._scorer is None or self._scorer[0] is not scorer:
            self._scorer = (scorer, _model_headers(scorer.meta))
        return scorer.labels, scorer.meta, self._scorer[1]

    def encode(self, items: Sequence[Item], probs: np.ndarray, scorer: Scorer | None = None) -> list[OutRecord]:
        """One output record per item, in item order; ``sentiment_meta.model`` names ``scorer``, the model that
        computed ``probs`` (a hot swap changes it between two batches)."""
        if len(items) != len(probs):
            raise ValueError(f"{len(items)} items but {len(probs)} predictions")
        labels, model_meta, model_headers = self._model(scorer)
        now = time.time()
        processed_at = datetime.fromtimestamp(now, UTC).isoformat()
        best = probs.argmax(axis=1).tolist()
        rows = probs.tolist()
        out: list[OutRecord] = []
        for item, row, top in zip(items, rows, best, strict=True):
            record = item.record
            label = labels[top]
            score = row[top]
            payload = dict(item.payload)
            payload["sentiment"] = {
                "label": label,
                "score": score,
                "scores": dict(zip(labels, row, strict=True)),
            }
            payload["sentiment_meta"] = {
                "schema_version": SCHEMA_VERSION,
                "model": model_meta,
                "source": {
                    "topic": record.topic,
                    "partition": record.partition,
                    "offset": record.offset,
                    "timestamp": record.timestamp,
                },
                "processed_at": processed_at,
                "latency_ms": round(max(0.0, now - item.received) * 1000.0, 3),
                "truncated": item.truncated,
            }
            headers, mended = producible_headers(record.headers, "x-sentiment-")
            if mended:
                headers.append((HEADER_HEADERS_MENDED, mended.encode()))
            headers.append((HEADER_LABEL, label.encode()))
            headers.append((HEADER_SCORE, f"{score:.6f}".encode()))
            headers.extend(model_headers)
            out.append(
                OutRecord(
                    topic=self.topic_for(record.topic, label),
                    key=record.key,
                    value=json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode("utf-8"),
                    headers=headers,
                    partition=record.partition if self.by_source_partition else None,
                    item=item,
                    label=label,
                )
            )
        return out


class EncodeStage:
    """The loop of the ``sentiment-sink`` thread: (items, probabilities) → output records → ``send``.

    A batch that fails to encode is encoded record by record; a record that still fails goes to ``on_failed``
    (the runner dead-letters it). A ``None`` in the inbox ends the stage; while ``drop`` is set, what arrives is
    discarded.
    """

    def __init__(
        self,
        encoder: Encoder,
        inbox: queue.Queue[Scored | None],
        *,
        send: Callable[[OutRecord], None],
        on_failed: Callable[[Item, str], None],
    ) -> None:
        self.encoder = encoder
        self.inbox = inbox
        self.send = send
        self.on_failed = on_failed

    def run(self, drop: threading.Event) -> None:
        while (scored := self.inbox.get()) is not None:
            if drop.is_set():
                continue
            for out in self._encode(*scored):
                if drop.is_set():
                    break
                self.send(out)

    def _encode(self, items: list[Item], probs: np.ndarray, scorer: Scorer | None = None) -> list[OutRecord]:
        try:
            return self.encoder.encode(items, probs, scorer)
        except Exception:
            outs: list[OutRecord] = []
            for item, row in zip(items, probs, strict=True):
                try:
                    outs.extend(self.encoder.encode([item], row[None, :], scorer))
                except Exception as exc:
                    self.on_failed(item, repr(exc))
            return outs


def _model_headers(meta: dict[str, Any]) -> list[tuple[str, bytes]]:
    return [
        (HEADER_MODEL, str(meta.get("id", "")).encode()),
        (HEADER_REVISION, str(meta.get("revision") or "").encode()),
    ]
