"""The batch tracers: the OpenTelemetry one (SDK, in-memory exporter) and the no-op default; open_tracer's choice."""

from __future__ import annotations

import time

import pytest
import structlog
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from tests.unit.stream.helpers import Rec
from worker.stream.common.ports import NullBatchTracer
from worker.stream.common.types import Item
from worker.tracing.otel import OtelBatchTracer
from worker.tracing.setup import open_tracer, tracing_asked

pytestmark = pytest.mark.unit

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
OTHER_TRACE = "0af7651916cd43dd8448eb211c80319c"
SPAN = "00f067aa0ba902b7"


def _item(offset: int, *, partition: int = 0, topic: str = "reviews", headers: list | None = None) -> Item:
    record = Rec(topic=topic, partition=partition, offset=offset, headers=headers or [])
    return Item(record=record, payload={"text": "x"}, text="x", received=0.0, ids=[1, 2])


def _tracer() -> tuple[OtelBatchTracer, InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return OtelBatchTracer(provider, consumer_group="sentiment"), exporter


class _Reply:
    def resolve(self, *args: object) -> None: ...

    def fail(self, error: str) -> None: ...


def test_one_span_per_batch_linked_to_each_traced_record_with_messaging_attributes() -> None:
    tracer, exporter = _tracer()
    items = [
        _item(10, headers=[("traceparent", f"00-{TRACE}-{SPAN}-01".encode()), ("tracestate", b"congo=t61rcWkgMzE")]),
        _item(11),  # no trace context: counted, not linked
        _item(12, headers=[("traceparent", f"00-{OTHER_TRACE}-b7ad6b7169203331-00".encode())]),
        _item(13, headers=[("traceparent", b"00-bad-bad-01")]),  # invalid: ignored
    ]
    before = time.time_ns()
    tracer.model_batch(items, 0.25)
    (span,) = exporter.get_finished_spans()
    assert span.name == "process reviews" and span.kind is SpanKind.CONSUMER
    assert span.attributes is not None
    assert dict(span.attributes) == {
        "messaging.system": "kafka",
        "messaging.operation.type": "process",
        "messaging.operation.name": "process",
        "messaging.batch.message_count": 4,
        "messaging.destination.name": "reviews",
        "messaging.destination.partition.id": "0",
        "messaging.consumer.group.name": "sentiment",
    }
    assert span.parent is None and span.context.trace_id not in (int(TRACE, 16), int(OTHER_TRACE, 16))
    assert span.end_time is not None and span.start_time is not None
    assert abs((span.end_time - span.start_time) - 250_000_000) < 1_000  # the model call's duration
    assert span.end_time >= before and span.status.status_code is StatusCode.UNSET
    first, second = span.links
    assert (first.context.trace_id, first.context.span_id) == (int(TRACE, 16), int(SPAN, 16))
    assert first.context.is_remote and first.context.trace_flags.sampled
    assert dict(first.context.trace_state) == {"congo": "t61rcWkgMzE"}
    assert dict(first.attributes or {}) == {
        "messaging.destination.name": "reviews",
        "messaging.destination.partition.id": "0",
        "messaging.kafka.offset": 10,
    }
    assert second.context.trace_id == int(OTHER_TRACE, 16) and not second.context.trace_flags.sampled
    assert (second.attributes or {})["messaging.kafka.offset"] == 12


def test_mixed_topics_and_partitions_http_inputs_and_a_single_record() -> None:
    tracer, exporter = _tracer()
    http = _item(0)
    http.reply = _Reply()
    tracer.model_batch([_item(1, partition=0), _item(5, partition=1), http], 0.01)
    tracer.model_batch([_item(1, topic="a"), _item(2, topic="b")], 0.01)
    tracer.model_batch([_item(42, partition=3)], 0.01)
    mixed, topics, single = exporter.get_finished_spans()
    assert mixed.attributes is not None and topics.attributes is not None and single.attributes is not None
    assert mixed.name == "process reviews" and mixed.attributes["messaging.batch.message_count"] == 2
    assert "messaging.destination.partition.id" not in mixed.attributes
    assert mixed.attributes["sentiment.batch.http_inputs"] == 1
    assert topics.name == "process" and "messaging.destination.name" not in topics.attributes
    assert single.attributes["messaging.kafka.offset"] == 42
    assert single.attributes["messaging.destination.partition.id"] == "3"


def test_a_failed_model_call_ends_its_span_with_an_error() -> None:
    tracer, exporter = _tracer()
    tracer.model_batch([_item(1)], 0.1, RuntimeError("session broke"))
    (span,) = exporter.get_finished_spans()
    assert span.status.status_code is StatusCode.ERROR and "session broke" in (span.status.description or "")
    assert span.attributes is not None and span.attributes["error.type"] == "RuntimeError"
    assert [event.name for event in span.events] == ["exception"]


def test_a_tracing_fault_is_logged_never_raised() -> None:
    tracer, exporter = _tracer()
    broken = _item(1)
    broken.record = None  # type: ignore[assignment]  # no .topic: making the span fails
    with structlog.testing.capture_logs() as logs:
        for _ in range(3):
            tracer.model_batch([broken], 0.1)
    assert tracer.failures == 3 and exporter.get_finished_spans() == ()
    assert [e["event"] for e in logs] == ["tracing_span_failed"]  # the first only


def test_close_flushes_the_provider() -> None:
    tracer, exporter = _tracer()
    tracer.close()
    tracer.model_batch([_item(1)], 0.1)  # after shutdown: dropped, no error
    assert exporter.get_finished_spans() == ()


class _Untouchable:
    def __getattr__(self, name: str) -> object:
        raise AssertionError(f"the no-op tracer read .{name}")

    def __iter__(self) -> object:
        raise AssertionError("the no-op tracer iterated the batch")

    def __len__(self) -> int:
        raise AssertionError("the no-op tracer measured the batch")


def test_the_no_op_tracer_costs_one_call_per_batch_whatever_its_size() -> None:
    null = NullBatchTracer()
    null.model_batch(_Untouchable(), 0.1)  # type: ignore[arg-type]  # never looks at the batch
    items = [_item(i) for i in range(64)]
    n = 200_000
    started = time.perf_counter()
    for _ in range(n):
        null.model_batch(items, 0.1)
    per_call = (time.perf_counter() - started) / n
    print(f"\nno-op tracer: {per_call * 1e9:.0f} ns per model batch ({per_call / 64 * 1e9:.1f} ns per message of 64)")
    assert per_call < 5e-6  # ~0.1 µs here; the bound only catches a tracer that does per-record work
    null.close()


def test_tracing_is_asked_for_by_an_exporter_or_an_endpoint() -> None:
    assert not tracing_asked({})
    assert not tracing_asked({"OTEL_SERVICE_NAME": "x"})
    assert not tracing_asked({"OTEL_TRACES_EXPORTER": "none"})
    assert tracing_asked({"OTEL_TRACES_EXPORTER": "console"})
    assert tracing_asked({"OTEL_TRACES_EXPORTER": "none,otlp"})
    assert tracing_asked({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"})
    assert tracing_asked({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://collector:4318/v1/traces"})
    assert not tracing_asked({"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318"})


def test_open_tracer_follows_the_otel_environment() -> None:
    with structlog.testing.capture_logs() as logs:
        assert isinstance(open_tracer(env={}), NullBatchTracer)
        assert isinstance(open_tracer(env={"OTEL_TRACES_EXPORTER": "none"}), NullBatchTracer)
        disabled = {"OTEL_SDK_DISABLED": "true", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:9"}
        assert isinstance(open_tracer(env=disabled), NullBatchTracer)
        assert isinstance(open_tracer(env={"OTEL_TRACES_EXPORTER": "zipkin-nope"}), NullBatchTracer)
        grpc = {"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_PROTOCOL": "http/json"}
        assert isinstance(open_tracer(env=grpc), NullBatchTracer)
    events = [(e["event"], e.get("reason", "")) for e in logs]
    assert events[0] == ("tracing_off", "OTEL_SDK_DISABLED is set")
    assert [e for e, _ in events].count("tracing_off") == 3  # disabled, unknown exporter, unsupported protocol
    assert ("tracing_exporter_unknown", "") in events and ("tracing_protocol_unsupported", "") in events


def test_open_tracer_builds_the_sdk_with_otlp_http_and_console(monkeypatch: pytest.MonkeyPatch) -> None:
    env = {
        "OTEL_TRACES_EXPORTER": "otlp,console",
        "OTEL_EXPORTER_OTLP_ENDPOINT": "http://user:secret@127.0.0.1:9",
        "OTEL_SERVICE_NAME": "reviews-enricher",
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)  # Resource.create() and the exporter read the process environment
    with structlog.testing.capture_logs() as logs:
        tracer = open_tracer(consumer_group="g", env=env)
    try:
        assert isinstance(tracer, OtelBatchTracer) and tracer.consumer_group == "g"
        assert tracer.provider.resource.attributes["service.name"] == "reviews-enricher"
        (on,) = [e for e in logs if e["event"] == "tracing_on"]
        assert on["exporters"] == ["otlp", "console"] and on["service"] == "reviews-enricher"
        assert on["endpoint"] == "http://127.0.0.1:9" and "secret" not in str(logs)
    finally:
        tracer.close()
    monkeypatch.delenv("OTEL_SERVICE_NAME")
    tracer = open_tracer(env={"OTEL_TRACES_EXPORTER": "console"})
    try:
        assert isinstance(tracer, OtelBatchTracer)
        assert tracer.provider.resource.attributes["service.name"] == "sentiment-worker"
    finally:
        tracer.close()


def test_without_the_extra_tracing_is_off_with_one_info_line(monkeypatch: pytest.MonkeyPatch) -> None:
    import worker.tracing.setup as tracing

    monkeypatch.setattr(tracing, "missing_distributions", lambda names: ["opentelemetry-sdk"])
    with structlog.testing.capture_logs() as logs:
        assert isinstance(open_tracer(env={"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318"}), NullBatchTracer)
        assert isinstance(open_tracer(env={}), NullBatchTracer)  # not asked: not a word
    assert [(e["event"], e["log_level"]) for e in logs] == [("tracing_off", "info")]
    assert "[otel] extra is not installed" in logs[0]["reason"] and "sentiment-worker[otel]" in logs[0]["hint"]
