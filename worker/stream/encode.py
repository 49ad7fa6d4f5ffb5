"""Encode stage: (items, probabilities) → output records (topic, key, value, headers, partition).

Output value: the input JSON object's fields unchanged, plus ``sentiment`` and ``sentiment_meta``
(schema: ``worker.records.EnrichedRecord``); ``output_field`` and ``output_mode`` move or slim them
(``worker/formats/output.py``). An item the input format left an output format for (CloudEvents, Avro:
``Item.context``) is written by that format; others are JSON. Key and headers of the input are kept, plus
``x-sentiment-*``; headers kafka-python's producer would refuse are mended (``mend.py``) and
``x-sentiment-headers-mended`` says how.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np

from worker.formats import OutputShape, build_shape
from worker.formats.plain import dumps
from worker.records import (
    HEADER_HEADERS_MENDED,
    HEADER_LABEL,
    HEADER_MODEL,
    HEADER_REVISION,
    HEADER_SCORE,
    SCHEMA_VERSION,
)
from worker.settings import Output
from worker.stream.common.types import Item, Scored, Scorer, headers_size
from worker.stream.kafka.mend import producible_headers
from worker.tracing.context import propagate

__all__ = ["EncodeStage", "Encoder", "OutRecord", "dumps"]


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
        shape: OutputShape | None = None,
    ) -> None:
        self.labels = tuple(labels)
        self.model_meta = dict(model_meta)
        self.output_topic = output_topic
        self.by_source_partition = partitioning == "source"
        self._topics: dict[tuple[str, str], str] = {}
        self._static_headers = _model_headers(self.model_meta)
        self._scorer: tuple[Scorer, list[tuple[str, bytes]]] | None = None  # the last batch's model, its headers
        self.shape = shape or OutputShape()
        # copy mode with a top-level output_field: two keys added to a copy of the payload (the common case)
        self._fast: tuple[str, str] | None = (
            (self.shape.name, self.shape.meta_name) if self.shape.name is not None else None
        )

    @classmethod
    def from_settings(cls, output: Output, *, labels: Sequence[str], model_meta: dict[str, Any]) -> Encoder:
        """An encoder configured by the output section (topic template, partitioning, output_field/mode)."""
        return cls(
            labels=labels,
            model_meta=model_meta,
            output_topic=output.output_topic,
            partitioning=output.output_partitioning,
            shape=build_shape(output),
        )

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
        simulated = bool(model_meta.get("simulated"))  # a simulated device scored it: every output says so
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
        fast, place = self._fast, self.shape.place
        out: list[OutRecord] = []
        columns = zip(items, rows, label_names, top_scores, score_headers, strict=True)
        for item, row, label, score, score_header in columns:
            record = item.record
            sentiment = {"label": label, "score": score, "scores": dict(zip(labels, row, strict=True))}
            meta = {
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
            if simulated:
                meta["simulated"] = True
            key = record.key
            if fast is not None:
                payload = dict(item.payload)
                payload[fast[0]] = sentiment
                payload[fast[1]] = meta
            else:
                payload = place(item.payload, key, sentiment, meta)
            if record.headers:
                headers, mended = producible_headers(record.headers, "x-sentiment-")
                if mended:
                    headers.append((HEADER_HEADERS_MENDED, mended.encode()))
                propagate(headers)  # a valid W3C traceparent: same trace, a new span id (worker/tracing/context.py)
            else:
                headers = []
            header_bytes = item.header_bytes
            if item.context is None:
                value = dumps(payload)
            else:  # the input format's output format (CloudEvents, Avro) writes it, and may change headers
                output_format, context = item.context
                value, headers = output_format.write(payload, context, headers)
                header_bytes = headers_size(headers)
            headers.append((HEADER_LABEL, label_bytes[label]))
            headers.append((HEADER_SCORE, score_header))  # own_header_bytes counts 8 bytes for it: 0.xxxxxx
            headers.extend(model_headers)
            out.append(
                OutRecord(
                    topic=topic_for(record.topic, label),
                    key=key,
                    value=value,
                    headers=headers,
                    partition=record.partition if by_source else None,
                    item=item,
                    label=label,
                    size=len(value) + (len(key) if key else 0) + header_bytes + own_header_bytes[label] + 8,
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
