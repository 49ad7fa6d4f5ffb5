"""Decode/validate stage: Kafka record bytes → a valid :class:`Item` with token ids, or a :class:`Rejected`.

Per message: size check (value + key + headers), UTF-8 decode, JSON parse and field checks (that work is per
message by nature). JSON is parsed by orjson where its result is the standard library's (no digit run of 16 or more:
orjson turns integers beyond 64 bits into floats); anything orjson refuses goes through the standard library, so a
bad record gets the same reason and message either way.
Per poll batch: one tokenizer call for all valid texts of the poll (fast tokenizer, ``encode_batch``).
"""

from __future__ import annotations

import json
import math
import re
import time
from collections.abc import Callable, Sequence
from typing import Any

import orjson

from worker.records import ErrorType
from worker.settings import Input
from worker.stream.types import Item, Rejected, SourceRecord, record_size

# (ids, truncated) or (ids, truncated, vocab): ``vocab`` names the tokenizer (``swap.ModelSlot.tokenize``)
Tokenize = Callable[[Sequence[str]], tuple[Any, ...]]


_LONG_DIGITS = re.compile(rb"\d{16}")


def _fast_loads(value: bytes) -> Any:
    """orjson's parse of ``value`` when it equals the standard library's, else ``None`` (then the stdlib decides)."""
    if _LONG_DIGITS.search(value) is not None:
        return None
    try:
        return orjson.loads(value)
    except orjson.JSONDecodeError:
        return None


def _reject_constant(name: str) -> float:
    raise ValueError(f"non-standard JSON constant {name}")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):  # e.g. 1e400: Python makes it inf, which JSON can't carry to the output
        raise ValueError(f"number {text[:40]} is out of range")
    return value


class Decoder:
    def __init__(
        self,
        *,
        input_format: str,
        text_field: str,
        max_message_bytes: int,
        max_text_chars: int,
        text_overflow: str,
        tokenize: Tokenize,
    ) -> None:
        self.input_format = input_format
        self.text_field = text_field
        self.max_message_bytes = max_message_bytes
        self.max_text_chars = max_text_chars
        self.reject_overflow = text_overflow == "reject"
        self.tokenize = tokenize

    @classmethod
    def from_settings(cls, input: Input, tokenize: Tokenize) -> Decoder:
        """A decoder configured by the input section."""
        return cls(
            input_format=input.input_format,
            text_field=input.text_field,
            max_message_bytes=input.max_message_bytes,
            max_text_chars=input.max_text_chars,
            text_overflow=input.text_overflow,
            tokenize=tokenize,
        )

    def decode(
        self, records: Sequence[SourceRecord], received: float | None = None
    ) -> tuple[list[Item], list[Rejected]]:
        """Validate every record, then tokenise all valid texts in one call. Order of items is kept."""
        received = time.time() if received is None else received
        items: list[Item] = []
        rejected: list[Rejected] = []
        for record in records:
            result = self._decode_one(record, received)
            (items if isinstance(result, Item) else rejected).append(result)  # type: ignore[arg-type]
        if items:
            try:
                ids, truncated, *vocab = self.tokenize([item.text for item in items])
            except Exception:
                # A batch tokenizer failure: isolate the bad text(s) one by one.
                return self._tokenize_each(items, rejected)
            kept: list[Item] = []
            for item, item_ids, was_truncated in zip(items, ids, truncated, strict=True):
                if was_truncated and self.reject_overflow:
                    rejected.append(Rejected(item.record, ErrorType.TOO_LONG, "text exceeds max_length tokens"))
                    continue
                item.ids = item_ids
                item.truncated = item.truncated or was_truncated
                item.vocab = vocab[0] if vocab else ""
                kept.append(item)
            items = kept
        return items, rejected

    def _tokenize_each(self, items: list[Item], rejected: list[Rejected]) -> tuple[list[Item], list[Rejected]]:
        kept: list[Item] = []
        for item in items:
            try:
                (ids,), (was_truncated,), *vocab = self.tokenize([item.text])
            except Exception as exc:
                rejected.append(Rejected(item.record, ErrorType.INVALID_TEXT, f"tokenizer failed: {exc!r}"))
                continue
            if was_truncated and self.reject_overflow:
                rejected.append(Rejected(item.record, ErrorType.TOO_LONG, "text exceeds max_length tokens"))
                continue
            item.ids = ids
            item.truncated = item.truncated or was_truncated
            item.vocab = vocab[0] if vocab else ""
            kept.append(item)
        return kept, rejected

    def _decode_one(self, record: SourceRecord, received: float) -> Item | Rejected:
        value = record.value
        value_bytes, key_bytes, header_bytes = record_size(record)
        if value_bytes + key_bytes + header_bytes > self.max_message_bytes:
            return Rejected(
                record,
                ErrorType.TOO_LARGE,
                f"record is {value_bytes + key_bytes + header_bytes} bytes (value {value_bytes}, key {key_bytes}, "
                f"headers {header_bytes}), over max_message_bytes={self.max_message_bytes}",
            )
        if not value:
            return Rejected(record, ErrorType.EMPTY_VALUE, "record value is null or empty")
        fast = None if self.input_format == "text" else _fast_loads(value)
        if fast is None:
            try:
                decoded = value.decode("utf-8")
            except UnicodeDecodeError as exc:
                return Rejected(record, ErrorType.INVALID_UTF8, str(exc))
        if self.input_format == "text":
            payload: dict[str, Any] = {"text": decoded}
            text: Any = decoded
        else:
            try:
                payload = (
                    fast
                    if fast is not None
                    else json.loads(decoded, parse_constant=_reject_constant, parse_float=_finite_float)
                )
            except RecursionError:
                return Rejected(record, ErrorType.INVALID_JSON, "JSON nested too deeply")
            except ValueError as exc:  # JSONDecodeError, huge ints, NaN/Infinity
                return Rejected(record, ErrorType.INVALID_JSON, str(exc))
            if not isinstance(payload, dict):
                return Rejected(
                    record, ErrorType.NOT_AN_OBJECT, f"JSON value is a {type(payload).__name__}, not an object"
                )
            if self.text_field not in payload:
                return Rejected(record, ErrorType.MISSING_TEXT, f"field {self.text_field!r} is missing")
            text = payload[self.text_field]
            if not isinstance(text, str):
                return Rejected(
                    record,
                    ErrorType.INVALID_TEXT,
                    f"field {self.text_field!r} is {type(text).__name__}, not a string",
                )
        if not text.strip():
            return Rejected(record, ErrorType.INVALID_TEXT, "text is empty or blank")
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            return Rejected(record, ErrorType.INVALID_TEXT, "text holds lone surrogates (not valid Unicode)")
        truncated = False
        if len(text) > self.max_text_chars:
            if self.reject_overflow:
                return Rejected(
                    record,
                    ErrorType.TOO_LONG,
                    f"text is {len(text)} characters, over max_text_chars={self.max_text_chars}",
                )
            text = text[: self.max_text_chars]
            truncated = True
        return Item(
            record=record, payload=payload, text=text, received=received, truncated=truncated, header_bytes=header_bytes
        )
