"""Decode/validate stage: Kafka record bytes → a valid :class:`Item` with token ids, or a :class:`Rejected`.

Per message: size check (value + key + headers), then the input format (``worker/formats``: JSON, text,
CloudEvents, Schema Registry) reads the record and finds its text, then the text checks (blank, lone surrogates,
``max_text_chars``). A record the format can't read is rejected with the format's reason.
Per poll batch: one tokenizer call for all valid texts of the poll (fast tokenizer, ``encode_batch``).

A fault that isn't the record's (the schema registry unreachable: :class:`~worker.formats.Unavailable`) rejects
nothing: the record and every later record of its partition in the poll are *deferred*. :meth:`Decoder.take_deferred`
says from which offset each partition is to be read again (:meth:`Decoder.read_again` rewinds there); the runner
keeps the consumer paused until :meth:`Decoder.waiting` ends (a back-off that doubles, 1 s to 30 s), and reports not
ready meanwhile (``on_unavailable``). Nothing is dead-lettered or committed past a deferred record.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

from worker.formats import InputFormat, RecordError, Unavailable, build_input
from worker.formats.plain import JsonInput, TextInput, fast_loads
from worker.observability import get_logger
from worker.records import ErrorType
from worker.settings import Input
from worker.stream.common.types import Item, Rejected, SourceRecord, record_size

log = get_logger(__name__)

# (ids, truncated) or (ids, truncated, vocab): ``vocab`` names the tokenizer (``swap.ModelSlot.tokenize``)
Tokenize = Callable[[Sequence[str]], tuple[Any, ...]]
TP = tuple[str, int]

_fast_loads = fast_loads  # the JSON fast path (tests reach it here)
RETRY_FIRST_S = 1.0
RETRY_MAX_S = 30.0


class Decoder:
    def __init__(
        self,
        *,
        input_format: str | InputFormat,
        text_field: str = "text",
        max_message_bytes: int,
        max_text_chars: int,
        text_overflow: str,
        tokenize: Tokenize,
        text_separator: str = " ",
        on_unavailable: Callable[[str | None], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if isinstance(input_format, str):
            from worker.formats.fields import TextFields

            input_format = TextInput() if input_format == "text" else JsonInput(TextFields(text_field, text_separator))
        self.format: InputFormat = input_format
        self.max_message_bytes = max_message_bytes
        self.max_text_chars = max_text_chars
        self.reject_overflow = text_overflow == "reject"
        self.tokenize = tokenize
        self.on_unavailable = on_unavailable  # called with the reason when a service goes away, None when back
        self._clock = clock
        self._deferred: dict[TP, int] = {}  # partition → first offset to read again
        self.unavailable: str | None = None  # why records are being deferred (None: all is well)
        self._retry_at = 0.0
        self._pause_s = RETRY_FIRST_S
        self.deferrals = 0  # polls deferred since the service went away (0 while all is well)

    @classmethod
    def from_settings(
        cls,
        input: Input,
        tokenize: Tokenize,
        *,
        output: Any = None,
        registry: Any = None,
        labels: Sequence[str] = (),
        on_unavailable: Callable[[str | None], None] | None = None,
    ) -> Decoder:
        """A decoder configured by the input section (``output``/``registry``: the Output and SchemaRegistry sections,
        for the CloudEvents and Schema Registry formats; ``labels``: the model's, for an Avro output)."""
        return cls(
            input_format=build_input(input, output=output, registry=registry, labels=labels),
            max_message_bytes=input.max_message_bytes,
            max_text_chars=input.max_text_chars,
            text_overflow=input.text_overflow,
            tokenize=tokenize,
            on_unavailable=on_unavailable,
        )

    # ---- deferral: a fault that isn't the records' ------------------------------------------------------
    def waiting(self) -> bool:
        """True while deferred records should not be read again yet (keep the consumer paused)."""
        return self.unavailable is not None and self._clock() < self._retry_at

    def take_deferred(self) -> dict[TP, int]:
        """Per partition, the offset to read again from (records of the last ``decode`` that were deferred)."""
        deferred, self._deferred = self._deferred, {}
        return deferred

    def read_again(self, tracker: Any, source: Any) -> int:
        """After ``decode``: forget the deferred records (``tracker.untrack_from``) and rewind their partitions to
        them (``source.seek``), so they are polled again once :meth:`waiting` ends. How many partitions."""
        deferred = self.take_deferred()
        for tp, offset in deferred.items():
            tracker.untrack_from(tp, offset)
            source.seek(tp, offset)
        return len(deferred)

    def _defer(self, record: SourceRecord) -> None:
        self._deferred.setdefault((record.topic, record.partition), record.offset)

    def _went_away(self, reason: str) -> None:
        first = self.unavailable is None
        self.unavailable = reason
        self.deferrals += 1
        self._retry_at = self._clock() + self._pause_s
        log.warning("input_unavailable", reason=reason, retry_in_s=self._pause_s, deferred=len(self._deferred))
        self._pause_s = min(RETRY_MAX_S, self._pause_s * 2)
        if first and self.on_unavailable is not None:
            self.on_unavailable(reason)

    def _came_back(self) -> None:
        log.info("input_available", was=self.unavailable)
        self.unavailable = None
        self._pause_s = RETRY_FIRST_S
        self.deferrals = 0
        if self.on_unavailable is not None:
            self.on_unavailable(None)

    # ---- decode ------------------------------------------------------------------------------------------
    def decode(
        self, records: Sequence[SourceRecord], received: float | None = None
    ) -> tuple[list[Item], list[Rejected]]:
        """Validate every record, then tokenise all valid texts in one call. Order of items is kept."""
        received = time.time() if received is None else received
        items: list[Item] = []
        rejected: list[Rejected] = []
        down: str | None = "still waiting" if self.waiting() else None
        deferred = self._deferred
        for record in records:
            if down is not None or (deferred and (record.topic, record.partition) in deferred):
                self._defer(record)
                continue
            try:
                result = self._decode_one(record, received)
            except Unavailable as exc:
                down = str(exc)
                self._defer(record)
                continue
            (items if isinstance(result, Item) else rejected).append(result)  # type: ignore[arg-type]
        if down is not None and down != "still waiting":
            self._went_away(down)
        elif self.unavailable is not None and down is None and records:
            self._came_back()
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
        try:
            decoded = self.format.read(record)
        except RecordError as exc:
            return Rejected(record, exc.error_type, exc.message)
        text = decoded.text
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
            record=record,
            payload=decoded.payload,
            text=text,
            received=received,
            truncated=truncated,
            header_bytes=header_bytes,
            context=None if decoded.output is None else (decoded.output, decoded.context),
        )
