"""Record schemas: what comes in, what goes out, and what goes to the dead-letter topic.

These pydantic models are the contract; ``schemas/*.json`` are generated from them
(``sentiment-worker schemas``) and a test fails when the committed files are stale.
The hot path builds plain dicts of the same shape (see ``worker.stream.encode``); tests validate
produced records against these models.
"""

from __future__ import annotations

import json
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

SCHEMA_VERSION = 1

# Header names on output and dead-letter records.
HEADER_LABEL = "x-sentiment-label"
HEADER_SCORE = "x-sentiment-score"
HEADER_MODEL = "x-sentiment-model"
HEADER_REVISION = "x-sentiment-model-revision"
HEADER_HEADERS_MENDED = "x-sentiment-headers-mended"  # what was changed so the input headers could be produced
DLQ_HEADER_ERROR_TYPE = "x-dlq-error-type"
DLQ_HEADER_ERROR_MESSAGE = "x-dlq-error-message"
DLQ_HEADER_TOPIC = "x-dlq-source-topic"
DLQ_HEADER_PARTITION = "x-dlq-source-partition"
DLQ_HEADER_OFFSET = "x-dlq-source-offset"
DLQ_HEADER_TIMESTAMP = "x-dlq-source-timestamp"
DLQ_HEADER_FAILED_AT = "x-dlq-failed-at"
DLQ_HEADER_WORKER = "x-dlq-worker"
# Only when something had to be changed to produce the dead letter:
DLQ_HEADER_HEADERS_MENDED = "x-dlq-headers-mended"
DLQ_HEADER_VALUE_NULL = "x-dlq-value-null"
DLQ_HEADER_VALUE_TRUNCATED = "x-dlq-value-truncated"
DLQ_HEADER_KEY_TRUNCATED = "x-dlq-key-truncated"
DLQ_HEADER_HEADERS_DROPPED = "x-dlq-headers-dropped"


class InputRecord(BaseModel):
    """A JSON input record: an object holding the text field (default ``text``); other fields pass through.

    ``text_field`` may also point inside the object (a JSON Pointer such as ``/review/body`` or a dotted path such as
    ``review.body``) or name several fields joined by ``text_separator``; this schema shows the default.
    """

    model_config = ConfigDict(
        extra="allow",
        title="SentimentInput",
        json_schema_extra={"examples": [{"text": "Great battery life.", "id": "r-1001"}]},
    )

    text: str = Field(min_length=1, description="Text to classify (the field name is configurable).")


class Sentiment(BaseModel):
    model_config = ConfigDict(extra="forbid")

    label: str = Field(description="Predicted label, e.g. POSITIVE or NEGATIVE (from the model's id2label).")
    score: float = Field(ge=0.0, le=1.0, description="Probability of the predicted label.")
    scores: dict[str, float] = Field(description="Probability of every label.")


class ModelMeta(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str = Field(description="Hub id or local path of the source model.")
    revision: str | None = Field(description="Hub revision (None for local models).")
    onnx_sha256: str = Field(description="sha256 of the ONNX file that produced the prediction.")
    precision: str = Field(description="fp32, o3, int8 or fp16.")
    provider: str = Field(description="ONNX Runtime execution provider that ran it.")
    simulated: bool = Field(
        default=False,
        description="True when a simulated device scored it (simulate_device_rate): the forward pass was a wait, "
        "the prediction is not real. Absent otherwise.",
    )


class SourceMeta(BaseModel):
    model_config = ConfigDict(extra="forbid")

    topic: str
    partition: int = Field(ge=0)
    offset: int = Field(ge=0)
    timestamp: int | None = Field(description="Kafka record timestamp, ms since the epoch.")


class EnrichmentMeta(BaseModel):
    model_config = ConfigDict(extra="forbid")

    schema_version: int = SCHEMA_VERSION
    model: ModelMeta
    source: SourceMeta
    processed_at: datetime = Field(description="When the worker produced the record (UTC).")
    latency_ms: float = Field(ge=0.0, description="From the worker receiving the record to producing it.")
    truncated: bool = Field(default=False, description="The text was truncated to the configured limits.")
    simulated: bool = Field(
        default=False,
        description="Present (true) when a simulated device scored the record (simulate_device_rate): the "
        "prediction is not real. Absent otherwise.",
    )


class EnrichedRecord(BaseModel):
    """Output record: the input object's fields unchanged, plus ``sentiment`` and ``sentiment_meta``.

    For ``text`` input the text is put in a ``text`` field.
    """

    model_config = ConfigDict(extra="allow", title="SentimentOutput")

    sentiment: Sentiment
    sentiment_meta: EnrichmentMeta


_META_EXAMPLE: dict[str, Any] = {
    "schema_version": SCHEMA_VERSION,
    "model": {
        "id": "distilbert/distilbert-base-uncased-finetuned-sst-2-english",
        "revision": "714eb0f",
        "onnx_sha256": "3c" * 32,
        "precision": "fp32",
        "provider": "CPUExecutionProvider",
    },
    "source": {"topic": "reviews", "partition": 0, "offset": 1001, "timestamp": 1765015200000},
    "processed_at": "2026-12-06T10:00:00.123000+00:00",
    "latency_ms": 12.5,
    "truncated": False,
}
_SENTIMENT_EXAMPLE: dict[str, Any] = {
    "label": "POSITIVE",
    "score": 0.98,
    "scores": {"NEGATIVE": 0.02, "POSITIVE": 0.98},
}


class SlimRecord(BaseModel):
    """Output record with ``output_mode=slim``: the key, the chosen ``output_id_fields`` (at their input paths), the
    result and its meta; nothing else of the input."""

    model_config = ConfigDict(
        extra="allow",
        title="SentimentSlimOutput",
        json_schema_extra={
            "examples": [
                {
                    "key": "user-42",
                    "review": {"id": "r-1001"},
                    "sentiment": _SENTIMENT_EXAMPLE,
                    "sentiment_meta": _META_EXAMPLE,
                }
            ]
        },
    )

    key: str | None = Field(description="The Kafka key as UTF-8 text (undecodable bytes as \\xNN); null: no key.")
    sentiment: Sentiment
    sentiment_meta: EnrichmentMeta


class CloudEventOutput(BaseModel):
    """Output of ``input_format=cloudevents`` in structured mode (``application/cloudevents+json``); in binary mode
    the attributes are ``ce_*`` headers and the value is ``data``. Extension attributes of the input are kept."""

    model_config = ConfigDict(
        extra="allow",
        title="SentimentCloudEvent",
        json_schema_extra={
            "examples": [
                {
                    "specversion": "1.0",
                    "id": "0b9f6d4e-59a4-5c0e-8d1f-6f2b1d3c8a77",
                    "source": "sentiment-worker",
                    "type": "com.example.review.created.sentiment",
                    "time": "2026-12-06T10:00:00.123Z",
                    "datacontenttype": "application/json",
                    "subject": "review/1001",
                    "data": {
                        "review": {"id": "r-1001", "body": "Great battery life."},
                        "sentiment": _SENTIMENT_EXAMPLE,
                        "sentiment_meta": _META_EXAMPLE,
                    },
                }
            ]
        },
    )

    specversion: str = Field(pattern=r"^1\.0$", description="CloudEvents 1.0.")
    id: str = Field(min_length=1, description="A UUID derived from the input event's source and id (stable).")
    source: str = Field(min_length=1, description="The setting cloudevents_source.")
    type: str = Field(min_length=1, description="The input event's type + cloudevents_type_suffix.")
    time: datetime = Field(description="When the worker wrote the event (UTC).")
    datacontenttype: str = Field(pattern=r"^application/json$", description="Always application/json.")
    data: dict[str, Any] = Field(description="The input event's data with the result placed (see output_field).")


# The Avro record output_format=schema-registry adds to the input's schema (under output_field, default sentiment).
SENTIMENT_AVRO: dict[str, Any] = {
    "type": "record",
    "name": "Sentiment",
    "namespace": "sentiment_worker",
    "doc": "Added by sentiment-worker: the predicted label, its probability, every label's, the model's id.",
    "fields": [
        {"name": "label", "type": "string"},
        {"name": "score", "type": "double"},
        {"name": "scores", "type": {"type": "map", "values": "double"}},
        {"name": "model", "type": "string"},
    ],
}


class ErrorType(StrEnum):
    TOO_LARGE = "too_large"  # value bigger than max_message_bytes
    EMPTY_VALUE = "empty_value"  # null value (tombstone) or zero bytes
    INVALID_UTF8 = "invalid_utf8"
    INVALID_JSON = "invalid_json"
    NOT_AN_OBJECT = "not_an_object"
    MISSING_TEXT = "missing_text"
    INVALID_TEXT = "invalid_text"  # not a string, or empty / blank
    INVALID_CLOUDEVENT = "invalid_cloudevent"  # not a CloudEvent, a required attribute missing, data not JSON
    UNKNOWN_SCHEMA = "unknown_schema"  # the schema registry has no schema with the record's id
    UNDECODABLE = "undecodable"  # not the Confluent wire format, or bytes the writer's schema can't read
    TOO_LONG = "too_long"  # text over max_text_chars / max_length tokens with text_overflow=reject
    INFERENCE_FAILED = "inference_failed"
    ENCODE_FAILED = "encode_failed"
    PRODUCE_FAILED = "produce_failed"


class DeadLetter(BaseModel):
    """The dead-letter record: the value is the original bytes, unchanged; the key is the original key.

    Original headers are kept; these fields are added as ``x-dlq-*`` headers (UTF-8 strings). ``headers_mended``,
    ``value_null``, ``value_truncated``, ``key_truncated`` and ``headers_dropped`` are present only when the dead
    letter could not be produced as it was: they say what was changed.
    """

    model_config = ConfigDict(extra="forbid", title="SentimentDeadLetter")

    error_type: ErrorType = Field(description=f"Header {DLQ_HEADER_ERROR_TYPE}.")
    error_message: str = Field(description=f"Header {DLQ_HEADER_ERROR_MESSAGE} (at most 1,000 characters).")
    source_topic: str = Field(description=f"Header {DLQ_HEADER_TOPIC}.")
    source_partition: int = Field(description=f"Header {DLQ_HEADER_PARTITION}.")
    source_offset: int = Field(description=f"Header {DLQ_HEADER_OFFSET}.")
    source_timestamp: int | None = Field(description=f"Header {DLQ_HEADER_TIMESTAMP} (absent when unknown).")
    failed_at: datetime = Field(description=f"Header {DLQ_HEADER_FAILED_AT}.")
    worker: str = Field(description=f"Header {DLQ_HEADER_WORKER}: client id of the worker.")
    headers_mended: str | None = Field(
        default=None,
        description=f"Header {DLQ_HEADER_HEADERS_MENDED}: what was changed in the original headers so they could be "
        "produced, as kind=count pairs, e.g. null_value=2,key_not_utf8=1 (null_value: a null header value, sent "
        "empty; key_not_utf8: a header name that was not UTF-8, escaped as \\xNN).",
    )
    value_null: bool = Field(
        default=False,
        description=f"Header {DLQ_HEADER_VALUE_NULL} (true): the original record had neither key nor value; a "
        "record needs one, so the dead letter's value is empty.",
    )
    value_truncated: bool = Field(
        default=False,
        description=f"Header {DLQ_HEADER_VALUE_TRUNCATED} (true): the dead letter could not be written whole; its "
        "value is the first 64 KiB of the original.",
    )
    key_truncated: bool = Field(
        default=False,
        description=f"Header {DLQ_HEADER_KEY_TRUNCATED} (true): the key is the first 64 KiB of the original key.",
    )
    headers_dropped: int | None = Field(
        default=None,
        description=f"Header {DLQ_HEADER_HEADERS_DROPPED}: how many original headers were left out to write it.",
    )

    def headers(self) -> list[tuple[str, bytes]]:
        values = {
            DLQ_HEADER_ERROR_TYPE: self.error_type.value,
            DLQ_HEADER_ERROR_MESSAGE: self.error_message[:1000],
            DLQ_HEADER_TOPIC: self.source_topic,
            DLQ_HEADER_PARTITION: str(self.source_partition),
            DLQ_HEADER_OFFSET: str(self.source_offset),
            DLQ_HEADER_TIMESTAMP: "" if self.source_timestamp is None else str(self.source_timestamp),
            DLQ_HEADER_FAILED_AT: self.failed_at.isoformat(),
            DLQ_HEADER_WORKER: self.worker,
        }
        optional = {
            DLQ_HEADER_HEADERS_MENDED: self.headers_mended,
            DLQ_HEADER_VALUE_NULL: "true" if self.value_null else None,
            DLQ_HEADER_VALUE_TRUNCATED: "true" if self.value_truncated else None,
            DLQ_HEADER_KEY_TRUNCATED: "true" if self.key_truncated else None,
            DLQ_HEADER_HEADERS_DROPPED: None if self.headers_dropped is None else str(self.headers_dropped),
        }
        values.update({k: v for k, v in optional.items() if v is not None})
        return [(k, v.encode()) for k, v in values.items()]

    @classmethod
    def from_headers(cls, headers: list[tuple[str, bytes]]) -> DeadLetter:
        h = {k: v.decode() for k, v in headers if k.startswith("x-dlq-")}
        return cls(
            error_type=ErrorType(h[DLQ_HEADER_ERROR_TYPE]),
            error_message=h[DLQ_HEADER_ERROR_MESSAGE],
            source_topic=h[DLQ_HEADER_TOPIC],
            source_partition=int(h[DLQ_HEADER_PARTITION]),
            source_offset=int(h[DLQ_HEADER_OFFSET]),
            source_timestamp=int(h[DLQ_HEADER_TIMESTAMP]) if h.get(DLQ_HEADER_TIMESTAMP) else None,
            failed_at=datetime.fromisoformat(h[DLQ_HEADER_FAILED_AT]),
            worker=h[DLQ_HEADER_WORKER],
            headers_mended=h.get(DLQ_HEADER_HEADERS_MENDED),
            value_null=h.get(DLQ_HEADER_VALUE_NULL) == "true",
            value_truncated=h.get(DLQ_HEADER_VALUE_TRUNCATED) == "true",
            key_truncated=h.get(DLQ_HEADER_KEY_TRUNCATED) == "true",
            headers_dropped=int(h[DLQ_HEADER_HEADERS_DROPPED]) if DLQ_HEADER_HEADERS_DROPPED in h else None,
        )


SCHEMA_MODELS: dict[str, type[BaseModel]] = {
    "input.schema.json": InputRecord,
    "output.schema.json": EnrichedRecord,
    "output-slim.schema.json": SlimRecord,
    "output-cloudevent.schema.json": CloudEventOutput,
    "dead-letter.schema.json": DeadLetter,
}


def render_schemas() -> dict[str, str]:
    """File name → JSON Schema text, deterministic."""
    return {
        name: json.dumps(model.model_json_schema(), indent=2, sort_keys=True) + "\n"
        for name, model in SCHEMA_MODELS.items()
    }


def write_schemas(directory: Path) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, text in render_schemas().items():
        path = directory / name
        path.write_text(text, encoding="utf-8")
        written.append(path)
    return written
