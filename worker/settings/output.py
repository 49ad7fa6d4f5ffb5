"""The output side: topic templates, partitioning, missing topics, the output record's shape, the producer."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, field_validator, model_validator
from pydantic_settings import NoDecode

from worker.settings.base import Section, check_template, split_csv


class Output(Section):
    """Output and dead-letter topics, what an output record holds, and the producer's tuning."""

    title = "Output"

    # ---- topics
    output_topic: str = Field(
        default="{topic}.sentiment",
        description="Output topic template; placeholders {topic} (input topic) and {label} (predicted label).",
    )
    dlq_topic: str = Field(
        default="{topic}.dlq", description="Dead-letter topic template; placeholder {topic} (input topic)."
    )
    output_partitioning: Literal["key", "source"] = Field(
        default="key",
        description="'key': the producer partitions by the (kept) input key; 'source': output partition = "
        "input partition (output topic needs at least as many partitions).",
    )
    missing_topics: Literal["auto", "create", "wait"] = Field(
        default="auto",
        description="Output and dead-letter topics that don't exist yet (checked before an input topic's records "
        "are consumed; until they exist its partitions stay paused and /readyz answers 503): 'auto' asks for them "
        "as a send does (a cluster that auto-creates topics creates them), 'create' creates them "
        "(topic_partitions, topic_replication_factor), 'wait' only waits for them.",
    )
    topic_partitions: int = Field(
        default=0, ge=0, description="Partitions of a topic missing_topics=create creates (0 = as the input topic)."
    )
    topic_replication_factor: int = Field(
        default=-1,
        ge=-1,
        description="Replication factor of a topic missing_topics=create creates (-1 = the broker's default).",
    )
    # ---- the output record
    output_format: Literal["json", "schema-registry"] = Field(
        default="json",
        description="'json': a JSON record (a CloudEvent in the input's mode for input_format cloudevents); "
        "'schema-registry': Avro with the input's schema plus a sentiment record, registered under "
        "<output topic>-value (needs schema_registry_url; JSON Schema and Protobuf inputs give JSON).",
    )
    output_field: str = Field(
        default="sentiment",
        min_length=1,
        description="Where the result goes in the output record: a JSON Pointer (RFC 6901, begins with '/') "
        "or a dotted path.",
    )
    output_mode: Literal["copy", "slim"] = Field(
        default="copy",
        description="'copy': the input record with the result added; 'slim': a small record (key, "
        "output_id_fields, the result, its meta) for high-volume topics.",
    )
    output_id_fields: Annotated[list[str], NoDecode] = Field(
        default=[],
        description="output_mode slim: input fields copied into the output record (comma-separated JSON Pointers "
        "or dotted paths).",
    )
    cloudevents_type_suffix: str = Field(
        default=".sentiment", description="input_format cloudevents: the output event's type = input type + this."
    )
    cloudevents_source: str = Field(
        default="sentiment-worker", min_length=1, description="input_format cloudevents: the output event's source."
    )
    # ---- producer
    compression_type: Literal["none", "gzip", "snappy", "lz4", "zstd"] = Field(
        default="none", description="Producer compression (snappy/lz4/zstd need their Python packages)."
    )
    linger_ms: int = Field(default=5, ge=0, description="Producer linger (batching of sends).")
    producer_max_request_size: int = Field(
        default=16_777_216, gt=0, description="Largest produce request (bounds output record size)."
    )
    producer_buffer_bytes: int = Field(
        default=33_554_432,
        gt=0,
        description="Memory for records awaiting the broker's acks (kafka-python 3 has no buffer_memory: the worker "
        "enforces it). Each record sent is charged 4 x its size + a per-record overhead until answered; when full, "
        "outputs wait and the consumer pauses. At least producer_max_request_size. See docs/guarantees.md "
        "'Bounded memory and limits'.",
    )
    producer_max_block_ms: int = Field(
        default=10_000,
        gt=0,
        description="Longest a send blocks waiting for topic metadata (a missing topic, an unreachable cluster); "
        "the send is then retried, logged (produce_blocked) and ends at a forced stop.",
    )

    @field_validator("output_id_fields", mode="before")
    @classmethod
    def _output_csv(cls, value: Any) -> Any:
        return split_csv(value)

    @field_validator("output_topic")
    @classmethod
    def _output_template(cls, value: str) -> str:
        check_template(value, {"topic", "label"})
        return value

    @field_validator("dlq_topic")
    @classmethod
    def _dlq_template(cls, value: str) -> str:
        check_template(value, {"topic"})
        return value

    @field_validator("topic_replication_factor")
    @classmethod
    def _replication(cls, value: int) -> int:
        if value == 0:
            raise ValueError("must be -1 (the broker's default) or at least 1")
        return value

    @field_validator("output_field")
    @classmethod
    def _output_path(cls, value: str) -> str:
        if not value.startswith("/") and any(not part for part in value.split(".")):
            raise ValueError(f"dotted path {value!r} has an empty part")
        if value == "/":
            raise ValueError("'/' names no field (the whole record can't be replaced)")
        return value

    @model_validator(mode="after")
    def _output_consistent(self) -> Any:
        if self.producer_buffer_bytes < self.producer_max_request_size:
            raise ValueError("producer_buffer_bytes must be at least producer_max_request_size (a request must fit)")
        return self
