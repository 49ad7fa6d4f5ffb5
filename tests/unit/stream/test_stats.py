"""The pipeline's counters and its seams to the metrics and the health state (no broker, a fake model)."""

from __future__ import annotations

import inspect

import pytest

from tests.unit.stream.helpers import FakeModel, Rec
from worker.health import HealthState
from worker.metrics import WorkerMetrics
from worker.settings import load_settings
from worker.stream.common.ports import HealthReporter, NullHealth, NullMetrics, PipelineMetrics
from worker.stream.common.stats import RunStats
from worker.stream.runner import Runner

pytestmark = pytest.mark.unit


class NoSink:
    def dead_letter(self, *args: object) -> None:
        raise AssertionError("nothing to dead-letter here")


def test_a_poll_spanning_several_topics_counts_consumed_records_per_topic() -> None:
    settings = load_settings(bootstrap_servers="127.0.0.1:9092", input_pattern="in-.*")
    metrics = WorkerMetrics()
    runner = Runner(settings, FakeModel(), metrics=metrics)  # type: ignore[arg-type]
    runner.sink = NoSink()  # type: ignore[assignment]
    runner.assigned([("in-a", 0), ("in-b", 0), ("in-b", 1)])
    poll = [
        Rec(topic="in-a", partition=0, offset=0),
        Rec(topic="in-a", partition=0, offset=1),
        Rec(topic="in-b", partition=0, offset=5),
        Rec(topic="in-b", partition=1, offset=9),
        Rec(topic="in-b", partition=1, offset=10),
    ]
    runner._ingest(poll)
    consumed = "sentiment_messages_consumed_total"
    assert metrics.registry.get_sample_value(consumed, {"topic": "in-a"}) == 2
    assert metrics.registry.get_sample_value(consumed, {"topic": "in-b"}) == 3
    assert runner.stats.consumed == 5


def test_each_event_is_counted_once_for_the_summary_and_the_metrics_alike() -> None:
    metrics = WorkerMetrics()
    stats = RunStats(metrics)
    stats.count_consumed([Rec(topic="in"), Rec(topic="in", offset=1), Rec(topic="in", offset=2)])
    stats.count_batch(2, real_tokens=10, padded_tokens=12, seconds=0.02)
    stats.count_produced("in.sentiment", "POSITIVE", 0.5)
    stats.count_produced("in.sentiment", "NEGATIVE", 1.5)
    stats.count_dead_letter("invalid_json")
    snap = stats.snapshot()
    value = metrics.registry.get_sample_value
    assert snap["consumed"] == value("sentiment_messages_consumed_total", {"topic": "in"}) == 3
    assert snap["produced"] == value("sentiment_messages_produced_total", {"topic": "in.sentiment"}) == 2
    assert snap["dead_lettered"] == value("sentiment_dead_letters_total", {"reason": "invalid_json"}) == 1
    assert snap["batches"] == value("sentiment_batches_total") == 1
    assert stats.real_tokens == value("sentiment_tokens_real_total") == 10
    assert stats.padded_tokens == value("sentiment_tokens_padded_total") == 12
    assert value("sentiment_end_to_end_latency_seconds_count") == 2
    assert snap["labels"] == {"POSITIVE": 1, "NEGATIVE": 1}
    assert snap["dlq_reasons"] == {"invalid_json": 1}
    assert snap["padding_ratio"] == 1.2 and snap["avg_batch_size"] == 2.0
    assert snap["latency_p50_ms"] == 1000.0


def _members(protocol: type) -> list[str]:
    return [name for name in vars(protocol) if not name.startswith("_")]


def _shape(function: object) -> list[tuple[str, object, object]]:
    return [(p.name, p.kind, p.default) for p in inspect.signature(function).parameters.values()]  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("protocol", "implementations"),
    [(PipelineMetrics, [WorkerMetrics, NullMetrics]), (HealthReporter, [HealthState, NullHealth])],
)
def test_the_metrics_and_health_seams_match_their_implementations(protocol, implementations) -> None:
    members = _members(protocol)
    assert members
    for cls in implementations:
        for name in members:
            assert _shape(getattr(cls, name)) == _shape(getattr(protocol, name)), (cls.__name__, name)
