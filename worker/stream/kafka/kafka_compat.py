"""The one place that touches kafka-python internals (private attributes), written for kafka-python 3.0.x.

Everything here has no public kafka-python equivalent (checked against 3.0.12):

* :func:`coordinator_known` — ``KafkaConsumer`` says nothing public about the group coordinator
  (``bootstrap_connected()`` is about the bootstrap connection only, ``group_metadata()`` about membership).
* :func:`io_sleep` and :func:`commit_sync_in_io_thread` — for an ``AsyncConsumerRebalanceListener``, which runs
  on the consumer's IO thread: the public ``commit()`` raises there ("Cannot block on net.run() from the IO
  thread itself"), and ``await consumer.commit_async(...)`` would neither retry retriable errors nor wait for
  the coordinator (the sync commit does both), and it would run other commits' pending callbacks on the IO
  thread. The coroutine behind ``commit()`` is awaited instead, and the wait for the pipeline to drain sleeps
  on the IO loop, so heartbeats go on meanwhile.
* :func:`producer_failed` — the idempotent producer's fatal state lives in its transaction manager only.
* :func:`abort_pending_batches` — ``KafkaProducer.close()`` flushes first and raises at the flush while
  records are pending, leaving the producer (and its IO thread) running; the pending batches have to be
  failed before ``close(timeout=0)`` can close it.
* :func:`escape_undecodable_header_keys` — kafka-python decodes record header names as strict UTF-8 while it
  parses a fetch: a record whose header name isn't UTF-8 (any client may produce one; the Java consumer reads it
  with replacement characters) raises there, and kafka-python 3.0.12 then raises ``CorruptRecordError`` from
  ``poll()`` and spins forever in the next ``poll()`` (the partition's parsed records stay stuck), so no record of
  the fetch, on any partition, comes out again. Installed, such a name is read with ``\\xNN`` escapes instead
  and the record's headers list says how many names were escaped (:func:`escaped_header_keys`).

A kafka-python outside the supported range fails loudly at import (:class:`KafkaCompatError`), and so does one
whose classes lack what is used here. Attributes that only exist on instances are checked on the objects
(:func:`check_consumer`, :func:`check_producer`, and on every use): a missing one raises
:class:`KafkaCompatError`, never a silent default.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable
from typing import Any

import kafka
from kafka import KafkaConsumer, KafkaProducer
from kafka.coordinator.base import BaseCoordinator
from kafka.coordinator.consumer import ConsumerCoordinator
from kafka.net.selector import NetworkSelector
from kafka.producer.record_accumulator import RecordAccumulator
from kafka.producer.transaction_manager import TransactionManager
from kafka.record.default_records import DefaultRecordBatch, DefaultRecordBatchBuilder
from kafka.structs import OffsetAndMetadata, TopicPartition

SUPPORTED_VERSIONS = "3.0.x"
_SUPPORTED_MAJOR_MINOR = (3, 0)


class KafkaCompatError(RuntimeError):
    """The installed kafka-python isn't what this module was written for."""


def _fail(what: str) -> KafkaCompatError:
    return KafkaCompatError(
        f"{what}: worker.stream.kafka.kafka_compat was written for kafka-python {SUPPORTED_VERSIONS}, "
        f"installed is {kafka.__version__}; check the private kafka-python use in worker/stream/kafka/kafka_compat.py"
    )


def check_version(version: str) -> None:
    """Raise :class:`KafkaCompatError` unless ``version`` is in the supported range (3.0.x)."""
    parts = version.split(".")
    try:
        major_minor = (int(parts[0]), int(parts[1]))
    except (IndexError, ValueError):
        major_minor = None
    if major_minor != _SUPPORTED_MAJOR_MINOR:
        raise KafkaCompatError(
            f"kafka-python {version} is installed, but worker.stream.kafka.kafka_compat supports only kafka-python "
            f"{SUPPORTED_VERSIONS}: it uses private kafka-python internals; check them against the new version "
            "(worker/stream/kafka/kafka_compat.py) before widening the supported range"
        )


def check_classes() -> None:
    """What can be checked without instances: methods on the classes, attributes their constructors assign."""
    methods = [
        (ConsumerCoordinator, "coordinator_unknown", False),
        (ConsumerCoordinator, "_commit_offsets_sync_async", True),
        (NetworkSelector, "sleep", False),
        (TransactionManager, "has_fatal_error", False),
        (RecordAccumulator, "abort_batches", False),
        (DefaultRecordBatch, "_read_msg", False),
    ]
    for cls, name, coroutine in methods:
        method = getattr(cls, name, None)
        if not callable(method) or (coroutine and not inspect.iscoroutinefunction(method)):
            raise _fail(f"{cls.__name__}.{name} is missing or changed")
    # instance attributes: the names a constructor stores are in its code object's names
    assigned = [
        (KafkaConsumer, "_coordinator"),
        (BaseCoordinator, "_net"),
        (KafkaProducer, "_transaction_manager"),
        (KafkaProducer, "_accumulator"),
        (DefaultRecordBatch, "_buffer"),
    ]
    for cls, name in assigned:
        if name not in cls.__init__.__code__.co_names:
            raise _fail(f"{cls.__name__}.__init__ no longer sets {name}")


def _attr(obj: Any, name: str) -> Any:
    try:
        return getattr(obj, name)
    except AttributeError:
        raise _fail(f"{type(obj).__name__} object has no attribute {name!r}") from None


def _method(obj: Any, name: str) -> Any:
    method = _attr(obj, name)
    if not callable(method):
        raise _fail(f"{type(obj).__name__}.{name} is not callable")
    return method


# -- consumer ----------------------------------------------------------------------------------------------
def _coordinator(consumer: Any) -> Any:
    return _attr(consumer, "_coordinator")


def check_consumer(consumer: Any) -> None:
    """Raise :class:`KafkaCompatError` now if ``consumer`` lacks what the functions below use."""
    coordinator = _coordinator(consumer)
    _method(coordinator, "coordinator_unknown")
    _method(coordinator, "_commit_offsets_sync_async")
    _method(_attr(coordinator, "_net"), "sleep")


def coordinator_known(consumer: Any) -> bool:
    """True while the group coordinator is known and connected (kafka-python forgets it when the broker is gone).

    Errors from kafka-python propagate (a caller may read them as "not known"), a :class:`KafkaCompatError` too.
    """
    return not _method(_coordinator(consumer), "coordinator_unknown")()


def io_sleep(consumer: Any, seconds: float) -> Awaitable[None]:
    """Awaitable on the consumer's IO loop only (e.g. in an async rebalance listener): sleep, the loop runs on."""
    return _method(_attr(_coordinator(consumer), "_net"), "sleep")(seconds)  # type: ignore[no-any-return]


async def commit_sync_in_io_thread(
    consumer: Any, offsets: dict[TopicPartition, OffsetAndMetadata], timeout_ms: int | None = None
) -> None:
    """``consumer.commit(offsets)`` for the consumer's IO thread (an async rebalance listener), awaited there.

    Same as ``commit()``: waits for the coordinator, retries retriable errors, raises the others, bounded by
    ``timeout_ms`` (kafka-python's ``request_timeout_ms`` by default); the IO loop runs on meanwhile.
    """
    if offsets:
        await _method(_coordinator(consumer), "_commit_offsets_sync_async")(offsets, timeout_ms)


# -- producer ----------------------------------------------------------------------------------------------
def check_producer(producer: Any) -> None:
    """Raise :class:`KafkaCompatError` now if ``producer`` lacks what the functions below use."""
    manager = _attr(producer, "_transaction_manager")
    if manager is not None:
        _method(manager, "has_fatal_error")
    _method(_attr(producer, "_accumulator"), "abort_batches")


def producer_failed(producer: Any) -> bool:
    """True when the producer is in a fatal state (e.g. the idempotent producer lost its producer id for good).

    A producer without idempotence (no transaction manager) has no such state: False.
    """
    manager = _attr(producer, "_transaction_manager")
    return manager is not None and _method(manager, "has_fatal_error")() is True


def abort_pending_batches(producer: Any, error: BaseException) -> None:
    """Fail every unacknowledged batch with ``error`` (their futures' errbacks run), so ``close(timeout=0)`` closes."""
    _method(_attr(producer, "_accumulator"), "abort_batches")(error)


# -- consumer: header names that aren't UTF-8 ---------------------------------------------------------------
class EscapedHeaders(list):  # type: ignore[type-arg]
    """A consumed record's headers, some of whose names were not UTF-8 (read with ``\\xNN`` escapes)."""

    escaped_keys: int = 0


def escaped_header_keys(headers: Any) -> int:
    """How many header names of a consumed record were not UTF-8 and were escaped (0 for ordinary headers)."""
    return getattr(headers, "escaped_keys", 0)  # duck-typed: a plain list (or None) has none


class _EscapingSlice(bytearray):
    counter: list[int]

    def decode(self, encoding: str = "utf-8", errors: str = "strict") -> str:
        try:
            return bytearray.decode(self, encoding, errors)
        except UnicodeDecodeError:
            self.counter[0] += 1
            return bytearray.decode(self, encoding, "backslashreplace")


class _EscapingBuffer(bytearray):
    """A copy of a record batch's buffer whose slices decode with ``backslashreplace`` (counting the escapes)."""

    counter: list[int]

    def __getitem__(self, index: Any) -> Any:
        item = bytearray.__getitem__(self, index)
        if isinstance(index, slice):
            piece = _EscapingSlice(item)
            piece.counter = self.counter
            return piece
        return item


# kafka-python's own method, also when this module is loaded a second time (e.g. a copy in a test)
_READ_MSG = getattr(DefaultRecordBatch._read_msg, "__wrapped__", DefaultRecordBatch._read_msg)


def _read_msg_escaping(self: Any, *args: Any, **kwargs: Any) -> Any:
    try:
        return _READ_MSG(self, *args, **kwargs)
    except UnicodeDecodeError:  # only header names are decoded: read this record again, escaping them
        pass
    buffer = _attr(self, "_buffer")
    escaping = _EscapingBuffer(buffer)  # the record's position (self._pos) is unchanged by the failed read
    escaping.counter = [0]
    self._buffer = escaping
    try:
        record = _READ_MSG(self, *args, **kwargs)
    finally:
        self._buffer = buffer
    headers = EscapedHeaders(record.headers)
    headers.escaped_keys = escaping.counter[0]
    return type(record)(
        record.size_in_bytes, record.offset, record.timestamp, record.timestamp_type, record.key, record.value, headers
    )


_read_msg_escaping.__wrapped__ = _READ_MSG  # type: ignore[attr-defined]


def _undecodable_key_batch() -> bytes:
    builder = DefaultRecordBatchBuilder(
        magic=2,
        compression_type=0,
        is_transactional=0,
        producer_id=-1,
        producer_epoch=-1,
        base_sequence=-1,
        batch_size=1 << 16,
    )
    builder.append(0, timestamp=1, key=None, value=b"v", headers=[("\x01\x02\x03", b"h"), ("ok", None)])
    return bytes(builder.build()).replace(b"\x01\x02\x03", b"\xff\xfe\xfd")


def escape_undecodable_header_keys() -> None:
    """Install the escaping read of header names (idempotent); checks at once that it works on this kafka-python."""
    current = DefaultRecordBatch._read_msg
    if current is not _READ_MSG and getattr(current, "__wrapped__", None) is not _READ_MSG:
        raise _fail("DefaultRecordBatch._read_msg was replaced by something else")
    DefaultRecordBatch._read_msg = _read_msg_escaping
    (record,) = DefaultRecordBatch(_undecodable_key_batch())
    if record.headers != [("\\xff\\xfe\\xfd", b"h"), ("ok", None)] or escaped_header_keys(record.headers) != 1:
        raise _fail(f"escaping undecodable header names does not work (read {record.headers!r})")


check_version(kafka.__version__)
check_classes()
