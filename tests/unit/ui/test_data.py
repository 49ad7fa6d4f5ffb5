"""The web app's data side on plain data: output records and dead letters parsed, aggregates computed."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import numpy as np
import pytest

from webapp.data import (
    LiveRecord,
    LiveStats,
    dead_letter_reason,
    label_mix,
    parse_enriched,
    parse_lag,
    percentile,
    throughput,
)
from worker.records import DLQ_HEADER_ERROR_TYPE, DeadLetter, EnrichedRecord, ErrorType

pytestmark = pytest.mark.unit

T0 = 1_760_000_000.0  # a fixed instant (epoch seconds)


def _output(text: str = "great film", label: str = "POSITIVE", *, processed_at: float = T0, produced_ms: int | None
            = int(T0 * 1000) - 250, latency_ms: float = 12.5) -> bytes:  # fmt: skip
    payload = {
        "id": "a",
        "text": text,
        "sentiment": {"label": label, "score": 0.93, "scores": {"NEGATIVE": 0.07, "POSITIVE": 0.93}},
        "sentiment_meta": {
            "schema_version": 1,
            "model": {"id": "m", "revision": None, "onnx_sha256": "0" * 64, "precision": "fp32", "provider": "cpu"},
            "source": {"topic": "reviews", "partition": 2, "offset": 7, "timestamp": produced_ms},
            "processed_at": datetime.fromtimestamp(processed_at, UTC).isoformat(),
            "latency_ms": latency_ms,
            "truncated": False,
        },
    }
    EnrichedRecord.model_validate(payload)  # the fixture is the worker's real output shape
    return json.dumps(payload).encode()


def test_an_enriched_record_is_parsed_with_its_latencies() -> None:
    record = parse_enriched("reviews.sentiment", 1, 42, _output())
    assert record == LiveRecord(
        topic="reviews.sentiment", partition=1, offset=42, text="great film", label="POSITIVE", score=0.93,
        processed_at=T0, e2e_ms=pytest.approx(250.0), worker_ms=12.5,
    )  # fmt: skip


def test_a_custom_text_field_and_a_missing_timestamp() -> None:
    value = json.loads(_output(produced_ms=None))
    value["body"] = value.pop("text")
    record = parse_enriched("o", 0, 0, json.dumps(value).encode(), text_field="body")
    assert record is not None and record.text == "great film" and record.e2e_ms is None and record.worker_ms == 12.5


@pytest.mark.parametrize(
    "value",
    [None, b"", b"{not json", b"[1, 2]", b'{"text": "no sentiment"}', b'{"sentiment": {"score": 1}}', b"\xff\xfe"],
)
def test_what_is_not_an_enriched_record_is_skipped(value: bytes | None) -> None:
    assert parse_enriched("t", 0, 0, value) is None


def test_dead_letter_reason_comes_from_the_worker_headers() -> None:
    letter = DeadLetter(
        error_type=ErrorType.INVALID_JSON, error_message="bad", source_topic="reviews", source_partition=0,
        source_offset=3, source_timestamp=None, failed_at=datetime.now(UTC), worker="w",
    )  # fmt: skip
    assert dead_letter_reason([("app", b"x"), *letter.headers()]) == "invalid_json"
    assert dead_letter_reason([(DLQ_HEADER_ERROR_TYPE, b"")]) == "unknown"
    assert dead_letter_reason([(DLQ_HEADER_ERROR_TYPE, None)]) == "unknown"
    assert dead_letter_reason([("app", b"x")]) is None
    assert dead_letter_reason(None) is None


def test_percentiles_match_numpy() -> None:
    values = [float(v) for v in np.random.default_rng(3).exponential(20.0, size=257)]
    for q in (0, 50, 90, 99, 100):
        assert percentile(values, q) == pytest.approx(float(np.percentile(values, q)))
    assert percentile([], 50) is None
    assert percentile([4.0], 99) == 4.0


def test_throughput_counts_the_window_before_now() -> None:
    times = [T0 - 0.5, T0 - 3, T0 - 9.9, T0 - 10.5, T0 + 1, None]
    assert throughput(times, T0, 10.0) == pytest.approx(0.3)
    with pytest.raises(ValueError):
        throughput(times, T0, 0)


def _rec(label: str, at: float | None, e2e: float | None = None, worker: float | None = None) -> LiveRecord:
    return LiveRecord("o", 0, 0, "t", label, 0.9, at, e2e, worker)


def test_label_mix_buckets_complete_intervals_by_label() -> None:
    now = 999.8
    records = [_rec("POSITIVE", 990.1), _rec("POSITIVE", 991.9), _rec("NEGATIVE", 991.0), _rec("POSITIVE", 994.5),
               _rec("NEGATIVE", 999.5), _rec("POSITIVE", 900.0), _rec("POSITIVE", None)]  # fmt: skip
    assert label_mix(records, now, window_s=60, bucket_s=2) == [
        (990.0, "NEGATIVE", 1),
        (990.0, "POSITIVE", 2),
        (994.0, "POSITIVE", 1),
    ]  # fmt: skip  (998–1000 is still filling at 999.8; 900 is out of the window)


def test_stats_snapshot_aggregates_records_and_dead_letters() -> None:
    stats = LiveStats(history=100)
    for i in range(10):
        stats.add(_rec("POSITIVE" if i % 3 else "NEGATIVE", T0 - i, e2e=float(10 * (i + 1)), worker=float(i)))
    stats.add(_rec("POSITIVE", None))
    for reason in ("invalid_json", "missing_text", "invalid_json"):
        stats.add_dead_letter(reason)
    snap = stats.snapshot(T0, latest=3)
    assert snap.records == 11 and snap.dead_letters == 3
    assert snap.reasons == {"invalid_json": 2, "missing_text": 1}
    assert [r.processed_at for r in snap.latest] == [None, T0 - 9, T0 - 8]  # newest first
    assert snap.labels == {"POSITIVE": 7, "NEGATIVE": 4}
    assert snap.per_s == pytest.approx(1.0)  # T0-9 .. T0 in the 10 s window
    assert snap.e2e_p50 == pytest.approx(55.0) and snap.e2e_p99 == pytest.approx(99.1)
    assert snap.worker_p50 == pytest.approx(4.5)


def test_stats_history_is_bounded_but_the_count_is_not() -> None:
    stats = LiveStats(history=5)
    for i in range(12):
        stats.add(_rec("POSITIVE", T0 - i))
    snap = stats.snapshot(T0)
    assert snap.records == 12 and len(snap.latest) == 5


METRICS = """# HELP sentiment_consumer_lag High-water mark - position, per owned partition.
# TYPE sentiment_consumer_lag gauge
sentiment_consumer_lag{partition="0",topic="reviews"} 12.0
sentiment_consumer_lag{partition="3",topic="reviews"} 0.0
sentiment_consumer_lag{partition="1",topic="orders"} 5.0
# HELP sentiment_messages_consumed_total Records taken from the input topics.
# TYPE sentiment_messages_consumed_total counter
sentiment_messages_consumed_total{topic="reviews"} 40.0
"""


def test_lag_is_read_from_prometheus_text() -> None:
    assert parse_lag(METRICS) == {("reviews", 0): 12, ("reviews", 3): 0, ("orders", 1): 5}
    assert parse_lag("# nothing here\n") == {}


def test_lag_of_a_real_worker_registry() -> None:
    from prometheus_client import generate_latest

    from worker.metrics import WorkerMetrics

    metrics = WorkerMetrics()
    metrics.set_lag({("reviews", 0): 7, ("reviews", 1): 0})
    assert parse_lag(generate_latest(metrics.registry).decode()) == {("reviews", 0): 7, ("reviews", 1): 0}


def test_text_that_is_not_prometheus_is_refused() -> None:
    with pytest.raises(ValueError):
        parse_lag("<html><body>not metrics</body></html>\n")
