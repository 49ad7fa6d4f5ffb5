"""The input side: which topics, as which consumer group, how records are read and where their text is."""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import Field, field_validator, model_validator
from pydantic_settings import NoDecode

from worker.settings.base import Section, SettingsError, split_csv

_BAD_ESCAPE = re.compile(r"~(?![01])")


class Input(Section):
    """Input topics, the consumer group and its tuning, the record format, the text's place, input limits."""

    title = "Input"

    # ---- topics and group
    input_topics: Annotated[list[str], NoDecode] = Field(default=[], description="Input topics, comma-separated (or use input_pattern).")  # noqa: E501  # fmt: skip
    input_pattern: str | None = Field(default=None, description="Regex of input topics (instead of input_topics); "
        "it must not match the output or dead-letter topics, or the worker reads its own output.")  # fmt: skip
    group_id: str = Field(default="sentiment-worker", description="Consumer group id.")
    auto_offset_reset: Literal["earliest", "latest"] = Field(
        default="earliest", description="Where a new consumer group starts."
    )
    # ---- consumer tuning
    session_timeout_ms: int = Field(default=45_000, gt=0, description="Consumer group session timeout.")
    heartbeat_interval_ms: int = Field(default=3_000, gt=0, description="Consumer heartbeat interval.")
    max_poll_interval_ms: int = Field(default=300_000, gt=0, description="Max time between polls.")
    max_poll_records: int = Field(default=500, gt=0, description="Max records returned by one poll.")
    fetch_max_bytes: int = Field(default=52_428_800, gt=0, description="Max bytes fetched per request.")
    fetch_max_wait_ms: int = Field(
        default=500,
        ge=0,
        le=30_000,
        description="Longest time the broker may hold a fetch while it has no data (Kafka's fetch.max.wait.ms). "
        "Apache Kafka answers as soon as data arrives; the embedded Tansu broker holds every fetch this long, "
        "so lower it (e.g. 10) there for low latency at light load, given CPU headroom (each fetch costs Python I/O).",
    )
    commit_interval_ms: int = Field(default=1_000, gt=0, description="How often acknowledged offsets commit.")
    # ---- format and text
    input_format: Literal["json", "text", "cloudevents", "schema-registry"] = Field(
        default="json",
        description="'json': a JSON object holding text_field; 'text': raw UTF-8 text; 'cloudevents': a "
        "CloudEvent 1.0 (Kafka binding, binary or structured mode, detected per record), text_field looked up in "
        "its data; 'schema-registry': Confluent wire format (Avro, JSON Schema, Protobuf; needs "
        "schema_registry_url).",
    )
    text_field: str = Field(
        default="text",
        min_length=1,
        description="Where the text is (json, cloudevents, schema-registry input): a JSON Pointer (RFC 6901, "
        "begins with '/', e.g. /data/review/body) or a dotted path (review.body; a plain name is a top-level "
        "field); several, comma-separated (title,body), are joined by text_separator.",
    )
    text_separator: str = Field(
        default=" ", description="Joins the texts of several text_field paths into one (in their order)."
    )
    # ---- limits
    max_message_bytes: int = Field(
        default=1_048_576,
        gt=0,
        description="Larger input records (value + key + headers) are dead-lettered (reason too_large).",
    )
    max_text_chars: int = Field(default=20_000, gt=0, description="Longer texts are truncated or rejected.")
    text_overflow: Literal["truncate", "reject"] = Field(
        default="truncate",
        description="Texts over max_text_chars or max_length tokens: 'truncate' (classify the start) "
        "or 'reject' (dead-letter, reason too_long).",
    )

    @field_validator("input_topics", mode="before")
    @classmethod
    def _input_csv(cls, value: Any) -> Any:
        return split_csv(value)

    @field_validator("text_field")
    @classmethod
    def _text_paths(cls, value: str) -> str:
        for path in text_paths(value):
            if path.startswith("/"):
                if _BAD_ESCAPE.search(path):
                    raise ValueError(f"JSON Pointer {path!r}: '~' must be followed by 0 or 1 (RFC 6901)")
            elif any(not part for part in path.split(".")):
                raise ValueError(f"dotted path {path!r} has an empty part")
        if not text_paths(value):
            raise ValueError("name at least one field")
        return value

    @model_validator(mode="after")
    def _input_consistent(self) -> Any:
        if self.input_topics and self.input_pattern:
            raise ValueError("set input_topics or input_pattern, not both")
        if self.heartbeat_interval_ms >= self.session_timeout_ms:
            raise ValueError("heartbeat_interval_ms must be lower than session_timeout_ms")
        return self

    @property
    def text_paths(self) -> list[str]:
        """``text_field`` split into its paths (one or more JSON Pointers or dotted paths)."""
        return text_paths(self.text_field)

    def require_input(self) -> None:
        """The worker needs topics or a pattern; other commands don't."""
        if not self.input_topics and not self.input_pattern:
            raise SettingsError(
                "invalid setting input_topics (env SENTIMENT_INPUT_TOPICS, flag --input-topics): "
                "set input topics (comma-separated) or input_pattern"
            )


def text_paths(text_field: str) -> list[str]:
    """The comma-separated paths of a ``text_field`` value, stripped, empty ones dropped."""
    return [part.strip() for part in text_field.split(",") if part.strip()]
