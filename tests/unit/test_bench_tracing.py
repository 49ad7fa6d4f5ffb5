"""The ceiling section's tracing variants: traced records, the OTEL_* environment, the stand-in collector, the
no-op tracer's cost, and the report's lines."""

from __future__ import annotations

import urllib.request

import pytest

from benchmarks import ceiling_report
from benchmarks.ceiling import VARIANTS, ratios
from benchmarks.ceiling_tracing import TRACING_VARIANTS, counting_sink, env_for, headers, null_tracer_cost
from worker.tracing.context import find_traceparent, find_tracestate
from worker.tracing.setup import tracing_asked

pytestmark = pytest.mark.unit


def test_every_traced_record_has_a_valid_distinct_traceparent() -> None:
    parents = [find_traceparent(headers(n)) for n in range(2000)]
    assert all(p is not None and p.sampled for p in parents)
    assert len({p.trace_id for p in parents if p is not None}) == 2000
    assert find_tracestate(headers(0)) == "bench=r1,other=x" and find_tracestate(headers(1)) is None


def test_only_worker_otel_asks_for_spans_and_the_sink_counts_exports() -> None:
    assert set(TRACING_VARIANTS) <= set(VARIANTS)
    with counting_sink() as sink:
        assert tracing_asked(env_for("worker_otel", sink))
        assert env_for("worker_otel", sink)["OTEL_EXPORTER_OTLP_ENDPOINT"] == sink.endpoint
        assert not tracing_asked(env_for("worker_traceparent", sink))
        request = urllib.request.Request(f"{sink.endpoint}/v1/traces", data=b"\x0a\x00", method="POST")
        with urllib.request.urlopen(request, timeout=5) as answer:
            assert answer.status == 200
        assert (sink.requests, sink.bytes) == (1, 2)
    assert not tracing_asked(env_for("worker_otel", None))


def test_null_tracer_cost_and_the_report() -> None:
    cost = null_tracer_cost(calls=2_000, repeats=2)
    assert (
        cost["batch_size"] == 64
        and cost["ns_per_batch"] > 0
        and cost["ns_per_msg"] == pytest.approx(cost["ns_per_batch"] / 64, abs=0.01)
    )
    results = {
        "worker": {"msgs_per_s": 9000.0, "cpu_us_per_msg": 120.0, "cores": 1.1},
        "worker_traceparent": {"msgs_per_s": 8800.0, "cpu_us_per_msg": 123.0, "cores": 1.1},
        "worker_otel": {"msgs_per_s": 8500.0, "cpu_us_per_msg": 130.0, "cores": 1.1},
    }
    found = ratios(results)
    assert found["worker_traceparent_over_worker_cpu_per_msg"] == pytest.approx(123 / 120, abs=0.01)
    assert found["worker_otel_over_worker_traceparent_cpu_per_msg"] == pytest.approx(130 / 123, abs=0.01)
    section = {
        "variants": results,
        "ratios": found,
        "records": 40_000,
        "partitions": 4,
        "null_tracer": cost,
        "otlp_sink": {"requests": 12, "bytes": 3456},
        "targets": {"msgs_per_s": 8000, "cpu_us_per_msg": 150.0},
    }
    text = "\n".join(ceiling_report.markdown({"pipeline_ceiling": section}))
    assert "worker_otel" in text and "no-op tracer" in text and "12 OTLP requests" in text


def test_tracing_cost_summary_takes_medians_and_per_round_ratios() -> None:
    from benchmarks.tracing_cost import markdown, summary

    def round_(worker: float, traced: float, otel: float) -> dict:
        cell = lambda cpu: {"cpu_us_per_msg": cpu, "msgs_per_s": 1e6 / cpu}  # noqa: E731
        return {
            "variants": {"worker": cell(worker), "worker_traceparent": cell(traced), "worker_otel": cell(otel)},
            "null_tracer": {"ns_per_batch": 200.0, "ns_per_msg": 3.125, "batch_size": 64},
            "otlp_sink": {"requests": 3, "bytes": 1000},
        }

    rounds = [round_(100, 104, 150), round_(110, 112, 160), round_(90, 95, 140)]
    s = summary(rounds)
    assert s["variants"]["worker"]["cpu_us_per_msg"] == 100
    assert s["cpu_ratios"]["traceparent_over_worker"]["rounds"] == [1.04, 1.018, 1.056]
    assert s["cpu_ratios"]["traceparent_over_worker"]["median"] == 1.04
    assert s["null_tracer_share_of_worker_cpu"] == pytest.approx(3.125e-3 / 100, rel=0.01)
    results = {"summary": s, "rounds": rounds, "model": {"label": "m"}, "records": 40_000, "seconds": 60.0}
    text = markdown(results)
    assert "| worker |" in text and "1.040×" in text and "3 requests" in text
