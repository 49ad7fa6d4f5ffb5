"""CloudEvents 1.0 over Kafka (the CloudEvents Kafka protocol binding), both content modes, detected per record.

- **Structured mode**: the ``content-type`` header is ``application/cloudevents+json`` (parameters such as
  ``; charset=UTF-8`` allowed); the value is the event as a JSON object: its attributes and ``data``.
- **Binary mode**: the attributes are ``ce_<name>`` headers (UTF-8 values), ``datacontenttype`` is the
  ``content-type`` header and the value is the data.

A record with neither (no ``ce_specversion`` header, no CloudEvents content type) is not a CloudEvent. Required:
``specversion`` (``1.0``), ``id``, ``source``, ``type``, non-empty strings; an event that lacks one is dead-lettered
(``invalid_cloudevent``). The data must be JSON (``datacontenttype`` absent, ``application/json``, ``text/json`` or
``*+json``; ``data_base64`` is not read) and an object: the text is looked up inside it.

The output event is written in the input's mode: ``id`` a UUID derived from the input's ``source`` and ``id`` (the
same input event always gives the same output id, so a redelivered record can be told from a new one), ``type`` the
input's + ``cloudevents_type_suffix``, ``source`` = ``cloudevents_source``, ``time`` = now, ``datacontenttype``
``application/json``; ``subject`` and extension attributes are kept; ``dataschema`` is dropped (the data changed).
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from worker.formats.base import Consumed, Decoded, Headers, RecordError
from worker.formats.fields import TextFields
from worker.formats.plain import dumps, find_text, parse_json, parse_object
from worker.records import ErrorType

SPECVERSION = "1.0"
REQUIRED = ("specversion", "id", "source", "type")
STRUCTURED_TYPE = "application/cloudevents"  # + "+json": the JSON event format
HEADER_PREFIX = "ce_"
CONTENT_TYPE = "content-type"
_OUTPUT_NAMESPACE = uuid.UUID("5b0c1f7e-7f3a-4d43-9a55-2c3c8f1c6a10")  # for the output ids (uuid5)


@dataclass(slots=True)
class CloudEvent:
    """An input event's attributes (all but ``data``) and its mode: the context of its output event."""

    structured: bool
    attributes: dict[str, Any]


def _is_json(content_type: str | None) -> bool:
    if content_type is None:
        return True
    media = content_type.split(";", 1)[0].strip().lower()
    return media in ("application/json", "text/json") or media.endswith("+json")


_KINDS: dict[str | None, str] = {}  # content-type → its kind, for the few values a topic uses


def _kind(content_type: str | None) -> str:
    """structured (application/cloudevents+json), other-structured, json (binary mode, JSON data) or other."""
    media = (content_type or "").split(";", 1)[0].strip().lower()
    if media.startswith(STRUCTURED_TYPE):
        kind = "structured" if media == STRUCTURED_TYPE + "+json" else "other-structured"
    else:
        kind = "json" if _is_json(content_type) else "other"
    if len(_KINDS) < 256:
        _KINDS[content_type] = kind
    return kind


def _invalid(message: str) -> RecordError:
    return RecordError(ErrorType.INVALID_CLOUDEVENT, message)


def _check(attributes: dict[str, Any], mode: str) -> None:
    get = attributes.get
    id_, source, type_ = get("id"), get("source"), get("type")
    strings = type(id_) is str and type(source) is str and type(type_) is str
    if strings and id_ and source and type_ and get("specversion") == SPECVERSION:
        return  # the common case, checked without building lists
    missing = [name for name in REQUIRED if not attributes.get(name)]
    if missing:
        raise _invalid(f"{mode} CloudEvent without required attribute(s) {', '.join(missing)}")
    bad = [name for name in REQUIRED if not isinstance(attributes[name], str)]
    if bad:
        raise _invalid(f"{mode} CloudEvent attribute(s) {', '.join(bad)} not a string")
    if attributes["specversion"] != SPECVERSION:
        raise _invalid(f"specversion {str(attributes['specversion'])[:40]!r} is not {SPECVERSION}")


class CloudEventsInput:
    """``input_format=cloudevents``: reads either mode; the text is at ``text_field`` inside ``data``."""

    def __init__(self, fields: TextFields, output: CloudEventsOutput) -> None:
        self.fields = fields
        self.output = output

    def read(self, record: Consumed) -> Decoded:
        content_type: str | None = None
        attributes: dict[str, Any] = {}
        for name, raw in record.headers or ():
            if name[:3] == HEADER_PREFIX:  # the binding's names are lower case: ce_id, ce_type, ...
                attributes[name[3:]] = _header_text(name, raw)
            elif name.lower() == CONTENT_TYPE:
                content_type = _header_text(name, raw)
        kind = _KINDS.get(content_type) or _kind(content_type)
        if kind == "structured":
            return self._structured(record.value or b"")
        if kind == "other-structured":
            raise _invalid(f"structured event format {content_type!r} is not read (only {STRUCTURED_TYPE}+json)")
        if "specversion" not in attributes:
            raise _invalid(
                "not a CloudEvent: no ce_specversion header (binary mode) and content-type is not "
                f"{STRUCTURED_TYPE}+json (structured mode)"
            )
        _check(attributes, "binary-mode")
        if kind != "json":
            raise _invalid(f"content-type {content_type!r}: the worker reads JSON data")
        if content_type is not None:
            attributes["datacontenttype"] = content_type
        data = parse_object(record.value or b"", "CloudEvent data")
        return Decoded(data, find_text(self.fields, data), self.output, CloudEvent(False, attributes))

    def _structured(self, value: bytes) -> Decoded:
        envelope = parse_json(value)
        if not isinstance(envelope, dict):
            raise _invalid(f"structured-mode CloudEvent is a {type(envelope).__name__}, not a JSON object")
        _check(envelope, "structured-mode")
        if "data_base64" in envelope:
            raise _invalid("data_base64 (binary data) is not read: the worker reads JSON data")
        if not _is_json(envelope.get("datacontenttype")):
            raise _invalid(f"datacontenttype {envelope['datacontenttype']!r}: the worker reads JSON data")
        if "data" not in envelope:
            raise RecordError(ErrorType.MISSING_TEXT, "CloudEvent has no data")
        data = envelope.pop("data")
        if not isinstance(data, dict):
            raise RecordError(ErrorType.NOT_AN_OBJECT, f"CloudEvent data is a {type(data).__name__}, not an object")
        return Decoded(data, find_text(self.fields, data), self.output, CloudEvent(True, envelope))


def _header_text(name: str, raw: bytes | None) -> str:
    try:
        return raw.decode("utf-8") if raw else ""
    except UnicodeDecodeError:
        raise _invalid(f"header {name!r} is not UTF-8") from None


class CloudEventsOutput:
    """Writes the enriched data as a CloudEvent in the input event's mode (see the module's doc)."""

    def __init__(self, type_suffix: str = ".sentiment", source: str = "sentiment-worker") -> None:
        self.type_suffix = type_suffix
        self.source = source
        self._clock: tuple[int, str] = (-1, "")  # (ms since the epoch, its RFC 3339 text): one format per ms

    def _now(self) -> str:
        ms = time.time_ns() // 1_000_000
        if ms != self._clock[0]:
            self._clock = (ms, _rfc3339(datetime.fromtimestamp(ms / 1000, UTC)))
        return self._clock[1]

    def attributes(self, event: CloudEvent, now: datetime | None = None) -> dict[str, Any]:
        """The output event's attributes for input ``event``."""
        attrs = event.attributes
        out = {k: v for k, v in attrs.items() if k != "dataschema"}
        out["specversion"] = SPECVERSION
        out["id"] = str(uuid.uuid5(_OUTPUT_NAMESPACE, f"{attrs['source']}\x00{attrs['id']}"))
        out["source"] = self.source
        out["type"] = attrs["type"] + self.type_suffix
        out["time"] = _rfc3339(now) if now is not None else self._now()
        out["datacontenttype"] = "application/json"
        return out

    def write(self, payload: dict[str, Any], context: CloudEvent, headers: Headers) -> tuple[bytes, Headers]:
        attrs = self.attributes(context)
        if context.structured:
            return dumps({**attrs, "data": payload}), headers
        kept = [(k, v) for k, v in headers if not (k.lower().startswith(HEADER_PREFIX) or k.lower() == CONTENT_TYPE)]
        content_type = attrs.pop("datacontenttype")
        kept.extend((HEADER_PREFIX + name, _attribute_bytes(value)) for name, value in attrs.items())
        kept.append((CONTENT_TYPE, content_type.encode()))
        return dumps(payload), kept


def _rfc3339(moment: datetime) -> str:
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _attribute_bytes(value: Any) -> bytes:
    return (value if isinstance(value, str) else str(value)).encode("utf-8")
