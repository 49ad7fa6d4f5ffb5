"""Headers of a consumed record made producible: what kafka-python's producer refuses, mended and described.

Any Kafka client may produce a record whose headers kafka-python's ``KafkaProducer.send`` won't take back:
``send`` accepts only ``(str, bytes)`` pairs (a ``None`` value raises ``TypeError``), and it encodes names as
strict UTF-8. So the output and the dead letter carry a copy in which

* a null header value is an empty value (``null_value``),
* a header name that was not UTF-8 is its ``\\xNN``-escaped form (``key_not_utf8``; kafka_compat escapes it
  while the fetch is parsed, so ``poll()`` never fails on it),
* a name or value of another type (not from kafka-python; defensive) is converted (``not_str_or_bytes``),

and a description of what was changed, e.g. ``null_value=2,key_not_utf8=1``, goes into a header of its own
(``x-sentiment-headers-mended`` on the output, ``x-dlq-headers-mended`` on the dead letter). Empty and duplicate
names, hundreds of headers and large values are producible as they are and kept unchanged.

A write that fails anyway is told apart here: this record can't be written as it is (:func:`is_record_error`: the
sink dead-letters it, or cuts the dead letter down), or the cluster refuses the worker (:data:`CLUSTER_REFUSALS`,
a topic name that can't exist: :class:`ClusterRefusedError`, the worker stops).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from kafka.errors import (
    AuthorizationError,
    CorruptRecordError,
    InvalidRecordError,
    InvalidTopicError,
    KafkaError,
    MessageSizeTooLargeError,
    RecordListTooLargeError,
    UnsupportedForMessageFormatError,
)

from worker.stream.kafka import kafka_compat

NULL_VALUE = "null_value"
KEY_NOT_UTF8 = "key_not_utf8"
NOT_STR_OR_BYTES = "not_str_or_bytes"

Headers = list[tuple[str, bytes]]


def _name(key: Any) -> tuple[str, str | None]:
    """A name kafka-python can encode, and the kind of change (None: unchanged)."""
    if isinstance(key, str):
        if key.isascii():
            return key, None
        try:
            key.encode("utf-8")
            return key, None
        except UnicodeEncodeError:  # lone surrogates (e.g. surrogateescape'd bytes)
            return key.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace"), KEY_NOT_UTF8
    if isinstance(key, bytes | bytearray | memoryview):
        return bytes(key).decode("utf-8", "backslashreplace"), NOT_STR_OR_BYTES
    return str(key), NOT_STR_OR_BYTES


def producible_headers(headers: Sequence[tuple[Any, Any]] | None, drop_prefix: str) -> tuple[Headers, str | None]:
    """``headers`` as ``KafkaProducer.send`` takes them, without names starting with ``drop_prefix`` (the worker's
    own headers are set afresh), and what was changed (``None`` when nothing was)."""
    if not headers:
        return [], None
    changes: dict[str, int] = {}
    escaped = kafka_compat.escaped_header_keys(headers)
    if escaped:
        changes[KEY_NOT_UTF8] = escaped
    out: Headers = []
    for key, value in headers or ():
        if type(key) is not str or not key.isascii():
            key, change = _name(key)
            if change:
                changes[change] = changes.get(change, 0) + 1
        if key.startswith(drop_prefix):
            continue
        if type(value) is not bytes:
            if value is None:
                value, change = b"", NULL_VALUE
            elif isinstance(value, bytearray | memoryview):
                value, change = bytes(value), None
            else:
                value, change = str(value).encode("utf-8", "backslashreplace"), NOT_STR_OR_BYTES
            if change:
                changes[change] = changes.get(change, 0) + 1
        out.append((key, value))
    return out, describe(changes)


def describe(changes: dict[str, int]) -> str | None:
    return ",".join(f"{kind}={count}" for kind, count in changes.items()) or None


# -- a write that failed anyway: the record's fault, or the cluster's -----------------------------------------
# The cluster refuses the worker's records for a topic: no record is to blame and no retry or restart helps.
CLUSTER_REFUSALS = (AuthorizationError, InvalidTopicError)
# This record can't be written as it is (by the producer: TypeError/ValueError/too large; by the broker): the
# output is dead-lettered, a dead letter is written cut down.
RECORD_ERRORS = (
    MessageSizeTooLargeError,
    RecordListTooLargeError,
    InvalidRecordError,
    CorruptRecordError,
    UnsupportedForMessageFormatError,
    TypeError,
    ValueError,
)
TOPIC_MAX_LENGTH = 249
_TOPIC_NAME = re.compile(r"[A-Za-z0-9._-]+")


class ClusterRefusedError(KafkaError):
    """The cluster refuses the worker's records for a topic; the message says which and what to do."""

    retriable = False


def topic_name_problem(topic: str) -> str | None:
    """Why ``topic`` can't be a Kafka topic name, or None (Kafka's rule: 1-249 of [A-Za-z0-9._-], not . or ..)."""
    if not _TOPIC_NAME.fullmatch(topic):
        return "a topic name is 1 to 249 ASCII letters, digits, '.', '_' and '-'"
    if len(topic) > TOPIC_MAX_LENGTH:
        return f"it is {len(topic)} characters long, over Kafka's {TOPIC_MAX_LENGTH}"
    if topic in (".", ".."):
        return "'.' and '..' are not topic names"
    return None


def is_record_error(exc: BaseException) -> bool:
    return isinstance(exc, RECORD_ERRORS) or "TooLarge" in type(exc).__name__


def refusal_hint(exc: BaseException) -> str:
    if isinstance(exc, AuthorizationError):
        return "grant the worker's principal WRITE and DESCRIBE on the topic (IDEMPOTENT_WRITE on the cluster)"
    if isinstance(exc, InvalidTopicError):
        return "fix the output_topic / dlq_topic template (or the input topic it is made from)"
    return "check the topic's configuration (max.message.bytes, cleanup.policy, message format)"
