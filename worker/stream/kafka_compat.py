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
from kafka.structs import OffsetAndMetadata, TopicPartition

SUPPORTED_VERSIONS = "3.0.x"
_SUPPORTED_MAJOR_MINOR = (3, 0)


class KafkaCompatError(RuntimeError):
    """The installed kafka-python isn't what this module was written for."""


def _fail(what: str) -> KafkaCompatError:
    return KafkaCompatError(
        f"{what}: worker.stream.kafka_compat was written for kafka-python {SUPPORTED_VERSIONS}, "
        f"installed is {kafka.__version__}; check the private kafka-python use in worker/stream/kafka_compat.py"
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
            f"kafka-python {version} is installed, but worker.stream.kafka_compat supports only kafka-python "
            f"{SUPPORTED_VERSIONS}: it uses private kafka-python internals; check them against the new version "
            "(worker/stream/kafka_compat.py) before widening the supported range"
        )


def check_classes() -> None:
    """What can be checked without instances: methods on the classes, attributes their constructors assign."""
    methods = [
        (ConsumerCoordinator, "coordinator_unknown", False),
        (ConsumerCoordinator, "_commit_offsets_sync_async", True),
        (NetworkSelector, "sleep", False),
        (TransactionManager, "has_fatal_error", False),
        (RecordAccumulator, "abort_batches", False),
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


check_version(kafka.__version__)
check_classes()
