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
import orjson

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
    size: int = 0  # bytes of value + key + headers (what the ack budget charges for)


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
        model_header_bytes = sum(len(k) + len(v) for k, v in model_headers)
        now = time.time()
        processed_at = datetime.fromtimestamp(now, UTC).isoformat()
        # per batch: the winning column, its label, its score and the score header, for every row at once
        best = probs.argmax(axis=1)
        top_scores = probs[np.arange(len(best)), best].tolist()
        rows = probs.tolist()
        score_headers = [f"{score:.6f}".encode() for score in top_scores]
        label_names = [labels[i] for i in best.tolist()]
        label_bytes = {label: label.encode() for label in labels}
        # bytes of the headers every output gets: the model's, the label's and the score's (names + values)
        own_header_bytes = {
            label: model_header_bytes + len(HEADER_LABEL) + len(value) + len(HEADER_SCORE)
            for label, value in label_bytes.items()
        }
        topic_for = self.topic_for
        by_source = self.by_source_partition
        out: list[OutRecord] = []
        columns = zip(items, rows, label_names, top_scores, score_headers, strict=True)
        for item, row, label, score, score_header in columns:
            record = item.record
            payload = dict(item.payload)
            payload["sentiment"] = {"label": label, "score": score, "scores": dict(zip(labels, row, strict=True))}
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
            if record.headers:
                headers, mended = producible_headers(record.headers, "x-sentiment-")
                if mended:
                    headers.append((HEADER_HEADERS_MENDED, mended.encode()))
            else:
                headers = []
            headers.append((HEADER_LABEL, label_bytes[label]))
            headers.append((HEADER_SCORE, score_header))  # own_header_bytes counts 8 bytes for it: 0.xxxxxx
            headers.extend(model_headers)
            value = dumps(payload)
            key = record.key
            out.append(
                OutRecord(
                    topic=topic_for(record.topic, label),
                    key=key,
                    value=value,
                    headers=headers,
                    partition=record.partition if by_source else None,
                    item=item,
                    label=label,
                    size=len(value) + (len(key) if key else 0) + item.header_bytes + own_header_bytes[label] + 8,
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


def dumps(payload: dict[str, Any]) -> bytes:
    """Compact UTF-8 JSON (non-ASCII as is), through orjson; the standard library for what orjson refuses (integers
    beyond 64 bits) and for the error a value that can't be JSON raises (e.g. a lone surrogate)."""
    try:
        return orjson.dumps(payload)
    except orjson.JSONEncodeError:
        return json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def _model_headers(meta: dict[str, Any]) -> list[tuple[str, bytes]]:
    return [
        (HEADER_MODEL, str(meta.get("id", "")).encode()),
        (HEADER_REVISION, str(meta.get("revision") or "").encode()),
    ]
