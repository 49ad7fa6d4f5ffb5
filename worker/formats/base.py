"""The seams of a record format: an input format reads a consumed record, an output format writes the result.

- :class:`InputFormat`: record → :class:`Decoded` (the payload the output copies, the text to classify, and the
  output format + context that write the result back in the same shape), or it raises :class:`RecordError` (the
  record is bad: dead-lettered with that reason) or :class:`Unavailable` (a fault that isn't the record's, e.g. the
  schema registry is unreachable: the worker pauses, reports not ready and reads the record again later).
- :class:`OutputFormat`: the enriched payload + the context the input format left → value bytes + headers.

``worker/stream/decode.py`` and ``encode.py`` call these; plain JSON output (the default) needs no output format.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from worker.records import ErrorType

Headers = list[tuple[str, bytes]]


class RecordError(Exception):
    """The record can't be read: dead-letter it with ``error_type`` and ``message``."""

    def __init__(self, error_type: ErrorType, message: str) -> None:
        super().__init__(message)
        self.error_type = error_type
        self.message = message


class Unavailable(Exception):
    """A service the format needs (the schema registry) can't be reached: not the record's fault."""


class OutputFormat(Protocol):
    def write(self, payload: dict[str, Any], context: Any, headers: Headers) -> tuple[bytes, Headers]:
        """The output value for ``payload`` (the input's payload with the result placed) and its headers (``headers``:
        the input's, producible; the format may replace some). ``context``: what the input format left for it."""
        ...


@dataclass(slots=True)
class Decoded:
    """What an input format read from a record."""

    payload: dict[str, Any]  # what the output copies (JSON: the object; CloudEvents: its data; registry: the record)
    text: str  # the text to classify (not yet checked for blank, surrogates or length)
    output: OutputFormat | None = None  # None: plain JSON output
    context: Any = None  # for ``output``


class Consumed(Protocol):
    """What an input format reads of a consumed record (``worker.stream.common.types.SourceRecord`` has it)."""

    @property
    def topic(self) -> str: ...

    @property
    def value(self) -> bytes | None: ...

    @property
    def headers(self) -> Any: ...


class InputFormat(Protocol):
    def read(self, record: Consumed) -> Decoded:
        """Read one record (its value is not empty). Raises :class:`RecordError` or :class:`Unavailable`."""
        ...
