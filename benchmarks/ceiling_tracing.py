"""Pipeline ceiling, trace context: what carrying W3C ``traceparent`` and exporting OpenTelemetry spans costs.

The ceiling section's JSON topic is written again (``benchmarks.ceiling.preload`` with :func:`headers`), record
for record, with a ``traceparent`` header on every record (a ``tracestate`` on every other one). Beside ``worker``
(no trace context, tracing off), in the same run:

- ``worker_traceparent``: the worker on the traced records, tracing off: it parses each traceparent and writes the
  child (same trace id, new span id) into its output; the Kafka client also carries the header bytes both ways;
- ``worker_otel``: the same with OpenTelemetry on (the ``[otel]`` extra, ``OTEL_TRACES_EXPORTER=otlp``): one span per
  model batch with a link per record, exported over OTLP/HTTP to a stand-in collector in the benchmark's process
  (:func:`counting_sink`: it counts the bytes and answers 200; its CPU is not the worker's).

With tracing off, what the worker adds to a model batch is one call of the no-op tracer, and to a record with headers
a scan for ``traceparent`` (and, if valid, writing the child): :func:`costs_alone` measures both alone (ns, best of
5), reported beside the worker's CPU per message.
"""

from __future__ import annotations

import time
from typing import Any

from devtools.otlp_receiver import OtlpReceiver

TRACING_VARIANTS = ("worker_traceparent", "worker_otel")


def headers(n: int) -> list[tuple[str, bytes]]:
    """The trace context of the ``n``-th record: a sampled traceparent, a tracestate on every other record."""
    out = [("traceparent", f"00-{n + 1:032x}-{(n + 1) * 7919 % (1 << 64) or 1:016x}-01".encode())]
    if n % 2 == 0:
        out.append(("tracestate", b"bench=r1,other=x"))
    return out


def counting_sink() -> OtlpReceiver:
    """A stand-in OTLP/HTTP collector that counts the export requests and their bytes and answers 200 (nothing
    decoded: its CPU is not the worker's)."""
    return OtlpReceiver(decode=False)


def env_for(variant: str, sink: OtlpReceiver | None) -> dict[str, str]:
    """The ``OTEL_*`` environment of a tracing variant's process (tracing off unless it is ``worker_otel``)."""
    if variant == "worker_otel" and sink is not None:
        return {
            "OTEL_TRACES_EXPORTER": "otlp",
            "OTEL_EXPORTER_OTLP_ENDPOINT": sink.endpoint,
            "OTEL_SERVICE_NAME": "sentiment-worker-bench",
        }
    return {"OTEL_TRACES_EXPORTER": "none"}


def costs_alone() -> dict[str, Any]:
    """What the worker's own tracing code costs, alone: the no-op tracer per batch, and writing the child
    traceparent per record (the encoder's :func:`~worker.tracing.context.propagate` on a traced record's headers)."""
    return {**null_tracer_cost(), **propagate_cost()}


def propagate_cost(records: int = 4_096, repeats: int = 5) -> dict[str, float]:
    """ns per traced record of :func:`~worker.tracing.context.propagate` (best of ``repeats``), and per record with
    headers but no traceparent (the scan alone)."""
    from worker.tracing.context import propagate

    traced = [[*headers(n), ("id", b"x")] for n in range(records)]
    plain = [[("id", b"x"), ("source", b"y")] for _ in range(records)]
    out: dict[str, float] = {}
    for name, lists in (("propagate_ns_per_traced_record", traced), ("propagate_ns_per_plain_record", plain)):
        best = float("inf")
        for _ in range(repeats):
            copies = [list(h) for h in lists]
            start = time.perf_counter_ns()
            for h in copies:
                propagate(h)
            best = min(best, (time.perf_counter_ns() - start) / records)
        out[name] = round(best, 1)
    return out


def null_tracer_cost(batch_size: int = 64, calls: int = 200_000, repeats: int = 5) -> dict[str, float]:
    """The no-op tracer's call per model batch, alone: ns per call (best of ``repeats``) and per message."""
    from worker.stream.common.ports import NullBatchTracer

    tracer = NullBatchTracer()
    items: list[Any] = [object()] * batch_size
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter_ns()
        for _ in range(calls):
            tracer.model_batch(items, 0.001)
        best = min(best, (time.perf_counter_ns() - start) / calls)
    return {"ns_per_batch": round(best, 1), "batch_size": batch_size, "ns_per_msg": round(best / batch_size, 2)}
