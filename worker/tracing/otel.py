"""OpenTelemetry spans for the inference stage: one span per model batch, linked to each record's trace context.

Needs the ``[otel]`` extra (opentelemetry-sdk and the OTLP/HTTP exporter); :func:`worker.tracing.open_tracer`
builds it from the standard ``OTEL_*`` environment. The span follows the messaging semantic conventions for a
batch being processed: kind ``CONSUMER``, name ``process <topic>``, ``messaging.system=kafka``,
``messaging.operation.type=process``, ``messaging.batch.message_count``, the topic and partition when the whole
batch shares them, ``messaging.consumer.group.name``; one link per record that carried a valid ``traceparent``
(its ``tracestate`` included) with that record's ``messaging.destination.name``,
``messaging.destination.partition.id`` and ``messaging.kafka.offset``. A failed model call ends the span with an
error status and the exception recorded. HTTP inputs merged into the batch are counted
(``sentiment.batch.http_inputs``), never linked.

The span is made after the model call, with its real start and end times (so nothing wraps the call itself).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from opentelemetry.context import Context
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.trace import Link, SpanContext, SpanKind, Status, StatusCode, TraceFlags, TraceState

from worker import __version__
from worker.observability import get_logger
from worker.stream.common.types import Item
from worker.tracing.context import find_traceparent, find_tracestate, parse_tracestate

log = get_logger(__name__)

SCOPE = "worker.stream.infer"
SYSTEM = "kafka"


class OtelBatchTracer:
    """:class:`~worker.stream.common.ports.BatchTracer` on an OpenTelemetry SDK ``TracerProvider`` (its processors and
    exporters decide where spans go). :meth:`close` flushes and shuts the provider down."""

    def __init__(self, provider: TracerProvider, *, consumer_group: str | None = None) -> None:
        self.provider = provider
        self.tracer = provider.get_tracer(SCOPE, __version__)
        self.consumer_group = consumer_group
        self._root = Context()  # a batch span starts its own trace: the records' contexts are links, not parents
        self.failures = 0

    def model_batch(self, items: Sequence[Item], seconds: float, error: BaseException | None = None) -> None:
        """The batch's span; a failure to make it is logged (the first, then every 1,000th) and never raised: a
        tracing fault must not stop the inference stage."""
        try:
            self._span(items, seconds, error)
        except Exception as exc:
            self.failures += 1
            if self.failures % 1000 == 1:
                log.warning("tracing_span_failed", error=repr(exc), failures=self.failures)

    def _span(self, items: Sequence[Item], seconds: float, error: BaseException | None) -> None:
        end = time.time_ns()
        links: list[Link] = []
        topics: set[str] = set()
        partitions: set[int] = set()
        http = 0
        for item in items:
            if item.reply is not None:
                http += 1
                continue
            record = item.record
            topics.add(record.topic)
            partitions.add(record.partition)
            if record.headers and (link := _link(record)) is not None:
                links.append(link)
        count = len(items) - http
        topic = next(iter(topics)) if len(topics) == 1 else None
        attributes: dict[str, Any] = {
            "messaging.system": SYSTEM,
            "messaging.operation.type": "process",
            "messaging.operation.name": "process",
            "messaging.batch.message_count": count,
        }
        if topic is not None:
            attributes["messaging.destination.name"] = topic
            if len(partitions) == 1:
                attributes["messaging.destination.partition.id"] = str(next(iter(partitions)))
        if count == 1:
            record = next(item.record for item in items if item.reply is None)
            attributes["messaging.kafka.offset"] = record.offset
        if self.consumer_group:
            attributes["messaging.consumer.group.name"] = self.consumer_group
        if http:
            attributes["sentiment.batch.http_inputs"] = http
        span = self.tracer.start_span(
            f"process {topic}" if topic is not None else "process",
            context=self._root,
            kind=SpanKind.CONSUMER,
            attributes=attributes,
            links=links,
            start_time=end - int(seconds * 1e9),
            record_exception=False,
            set_status_on_exception=False,
        )
        if error is not None:
            span.record_exception(error)
            span.set_status(Status(StatusCode.ERROR, f"{type(error).__name__}: {error}"))
            span.set_attribute("error.type", type(error).__qualname__)
        span.end(end_time=end)

    def close(self) -> None:
        """Export what is buffered and stop the exporters."""
        self.provider.shutdown()


def _link(record: Any) -> Link | None:
    """A link to the record's trace context (its valid traceparent, and tracestate), with its position."""
    parent = find_traceparent(record.headers)
    if parent is None:
        return None
    pairs = parse_tracestate(find_tracestate(record.headers))
    context = SpanContext(
        trace_id=int(parent.trace_id, 16),
        span_id=int(parent.span_id, 16),
        is_remote=True,
        trace_flags=TraceFlags(parent.flags & 0xFF),
        trace_state=TraceState(pairs) if pairs else None,
    )
    return Link(
        context,
        {
            "messaging.destination.name": record.topic,
            "messaging.destination.partition.id": str(record.partition),
            "messaging.kafka.offset": record.offset,
        },
    )
