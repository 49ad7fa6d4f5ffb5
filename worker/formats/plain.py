"""Plain input formats: ``json`` (a JSON object holding the text somewhere) and ``text`` (the value is the text).

JSON is parsed by orjson where its result is the standard library's (no digit run of 16 or more: orjson turns
integers beyond 64 bits into floats); anything orjson refuses goes through the standard library, so a bad record gets
the same reason and message either way. :func:`parse_object` is shared with the CloudEvents format.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

import orjson

from worker.formats.base import Consumed, Decoded, RecordError
from worker.formats.fields import FieldError, TextFields
from worker.records import ErrorType

_LONG_DIGITS = re.compile(rb"\d{16}")


def fast_loads(value: bytes) -> Any:
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


def parse_json(value: bytes) -> Any:
    """Any JSON value of ``value`` (UTF-8); raises :class:`RecordError` (invalid_utf8, invalid_json)."""
    fast = fast_loads(value)
    if fast is not None:
        return fast
    try:
        decoded = value.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise RecordError(ErrorType.INVALID_UTF8, str(exc)) from None
    try:
        return json.loads(decoded, parse_constant=_reject_constant, parse_float=_finite_float)
    except RecursionError:
        raise RecordError(ErrorType.INVALID_JSON, "JSON nested too deeply") from None
    except ValueError as exc:  # JSONDecodeError, huge ints, NaN/Infinity
        raise RecordError(ErrorType.INVALID_JSON, str(exc)) from None


def parse_object(value: bytes, what: str = "JSON value") -> dict[str, Any]:
    """A JSON object of ``value``; raises :class:`RecordError` (also not_an_object)."""
    payload = parse_json(value)
    if not isinstance(payload, dict):
        raise RecordError(ErrorType.NOT_AN_OBJECT, f"{what} is a {type(payload).__name__}, not an object")
    return payload


def find_text(fields: TextFields, payload: dict[str, Any]) -> str:
    """The text of ``payload``; raises :class:`RecordError` (missing_text, invalid_text)."""
    name = fields.fast_name
    if name is not None:  # one top-level name: a dict look-up
        text = payload.get(name, payload)
        if text is payload:
            raise RecordError(ErrorType.MISSING_TEXT, f"field {name!r} is missing")
        if not isinstance(text, str):
            raise RecordError(ErrorType.INVALID_TEXT, f"field {name!r} is {type(text).__name__}, not a string")
        return text
    try:
        return fields.text(payload)
    except FieldError as exc:
        raise RecordError(ErrorType.MISSING_TEXT if exc.missing else ErrorType.INVALID_TEXT, str(exc)) from None


class JsonInput:
    """``input_format=json``: the value is a JSON object; the text is at ``text_field``."""

    def __init__(self, fields: TextFields) -> None:
        self.fields = fields

    def read(self, record: Consumed) -> Decoded:
        payload = parse_object(record.value or b"")
        return Decoded(payload, find_text(self.fields, payload))


class TextInput:
    """``input_format=text``: the value is the text (UTF-8); the output holds it as ``text``."""

    def read(self, record: Consumed) -> Decoded:
        try:
            text = (record.value or b"").decode("utf-8")
        except UnicodeDecodeError as exc:
            raise RecordError(ErrorType.INVALID_UTF8, str(exc)) from None
        return Decoded({"text": text}, text)


def dumps(payload: Any) -> bytes:
    """Compact UTF-8 JSON (non-ASCII as is), through orjson; the standard library for what orjson refuses (integers
    beyond 64 bits) and for the error a value that can't be JSON raises (e.g. a lone surrogate)."""
    try:
        return orjson.dumps(payload)
    except orjson.JSONEncodeError:
        return json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
