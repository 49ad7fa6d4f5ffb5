"""WorkerMetrics, HealthState and MetricsServer without a broker or a model."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any

import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from worker.health import HealthState
from worker.metrics import LATENCY_BUCKETS, WorkerMetrics
from worker.probes import MetricsServer

pytestmark = pytest.mark.unit


def value(m: WorkerMetrics, name: str, **labels: str) -> float | None:
    return m.registry.get_sample_value(name, labels or None)


class FakeClock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


# ---- WorkerMetrics ----------------------------------------------------------------------------------
def test_each_instance_has_its_own_registry() -> None:
    a, b = WorkerMetrics(), WorkerMetrics()
    a.record_consumed("in", 3)
    assert value(a, "sentiment_messages_consumed_total", topic="in") == 3
    assert value(b, "sentiment_messages_consumed_total", topic="in") is None


def test_given_registry_is_used() -> None:
    registry = CollectorRegistry()
    m = WorkerMetrics(registry)
    assert m.registry is registry
    m.record_produced("out", 1)
    assert registry.get_sample_value("sentiment_messages_produced_total", {"topic": "out"}) == 1


def test_counters_move() -> None:
    m = WorkerMetrics()
    m.record_consumed("in", 5)
    m.record_consumed("in", 2)
    m.record_consumed("other", 1)
    m.record_produced("in.sentiment", 6)
    m.record_dead_letter("bad_json")
    m.record_dead_letter("too_large", 3)
    assert value(m, "sentiment_messages_consumed_total", topic="in") == 7
    assert value(m, "sentiment_messages_consumed_total", topic="other") == 1
    assert value(m, "sentiment_messages_produced_total", topic="in.sentiment") == 6
    assert value(m, "sentiment_dead_letters_total", reason="bad_json") == 1
    assert value(m, "sentiment_dead_letters_total", reason="too_large") == 3


def test_negative_counts_are_refused() -> None:
    with pytest.raises(ValueError, match="negative"):
        WorkerMetrics().record_consumed("in", -1)


def test_record_batch() -> None:
    m = WorkerMetrics()
    m.record_batch(size=16, real_tokens=400, padded_tokens=500, infer_seconds=0.2)
    m.record_batch(size=3, real_tokens=30, padded_tokens=30, infer_seconds=0.004)
    assert value(m, "sentiment_batches_total") == 2
    assert value(m, "sentiment_batch_size_count") == 2
    assert value(m, "sentiment_batch_size_sum") == 19
    assert value(m, "sentiment_batch_size_bucket", le="16.0") == 2
    assert value(m, "sentiment_batch_size_bucket", le="8.0") == 1
    assert value(m, "sentiment_padding_ratio") == pytest.approx(1.0)  # the last batch
    assert value(m, "sentiment_batch_padding_ratio_count") == 2
    assert value(m, "sentiment_batch_padding_ratio_bucket", le="1.0") == 1
    assert value(m, "sentiment_batch_padding_ratio_bucket", le="1.25") == 2
    assert value(m, "sentiment_tokens_real_total") == 430
    assert value(m, "sentiment_tokens_padded_total") == 530
    assert value(m, "sentiment_inference_seconds_count") == 2
    assert value(m, "sentiment_inference_seconds_sum") == pytest.approx(0.204)
    assert value(m, "sentiment_inference_seconds_bucket", le="0.005") == 1


def test_empty_batch_leaves_ratio_alone() -> None:
    m = WorkerMetrics()
    m.record_batch(size=4, real_tokens=100, padded_tokens=150, infer_seconds=0.01)
    m.record_batch(size=0, real_tokens=0, padded_tokens=0, infer_seconds=0.0)
    assert value(m, "sentiment_padding_ratio") == pytest.approx(1.5)
    assert value(m, "sentiment_batch_padding_ratio_count") == 1


def test_latency_buckets_cover_gpu_and_cpu() -> None:
    assert LATENCY_BUCKETS[0] == 0.001 and LATENCY_BUCKETS[-1] == 30.0
    assert list(LATENCY_BUCKETS) == sorted(LATENCY_BUCKETS)
    m = WorkerMetrics()
    # a GPU record (~2 ms), a CPU record (~300 ms), a slow one (~12 s), one past every bucket
    m.observe_latencies([0.002, 0.3, 12.0, 45.0])
    assert value(m, "sentiment_end_to_end_latency_seconds_bucket", le="0.001") == 0
    assert value(m, "sentiment_end_to_end_latency_seconds_bucket", le="0.0025") == 1
    assert value(m, "sentiment_end_to_end_latency_seconds_bucket", le="0.5") == 2
    assert value(m, "sentiment_end_to_end_latency_seconds_bucket", le="30.0") == 3
    assert value(m, "sentiment_end_to_end_latency_seconds_bucket", le="+Inf") == 4
    assert value(m, "sentiment_end_to_end_latency_seconds_count") == 4
    m.observe_latencies([])
    assert value(m, "sentiment_end_to_end_latency_seconds_count") == 4


def test_gauges() -> None:
    m = WorkerMetrics()
    m.set_queue_depth(3)
    m.set_paused_partitions(2)
    m.set_assigned_partitions(4)
    assert value(m, "sentiment_queue_depth_batches") == 3
    assert value(m, "sentiment_paused_partitions") == 2
    assert value(m, "sentiment_assigned_partitions") == 4
    m.set_queue_depth(0)
    assert value(m, "sentiment_queue_depth_batches") == 0


def test_commits_and_offsets() -> None:
    m = WorkerMetrics()
    m.record_commit({("in", 0): 10, ("in", 1): 7})
    m.record_commit({("in", 0): 25})
    assert value(m, "sentiment_commits_total") == 2
    assert value(m, "sentiment_committed_offset", topic="in", partition="0") == 25
    assert value(m, "sentiment_committed_offset", topic="in", partition="1") == 7


def test_lag_drops_partitions_no_longer_reported() -> None:
    m = WorkerMetrics()
    m.set_lag({("in", 0): 5, ("in", 1): 9, ("in", 2): 0})
    assert value(m, "sentiment_consumer_lag", topic="in", partition="1") == 9
    m.set_lag({("in", 0): 2})
    assert value(m, "sentiment_consumer_lag", topic="in", partition="0") == 2
    assert value(m, "sentiment_consumer_lag", topic="in", partition="1") is None
    assert value(m, "sentiment_consumer_lag", topic="in", partition="2") is None
    m.set_lag({})
    assert value(m, "sentiment_consumer_lag", topic="in", partition="0") is None


def test_forget_partitions() -> None:
    m = WorkerMetrics()
    m.set_lag({("in", 0): 1, ("in", 1): 2})
    m.record_commit({("in", 0): 3, ("in", 1): 4})
    m.forget_partitions([("in", 1), ("in", 9)])
    assert value(m, "sentiment_consumer_lag", topic="in", partition="1") is None
    assert value(m, "sentiment_committed_offset", topic="in", partition="1") is None
    assert value(m, "sentiment_consumer_lag", topic="in", partition="0") == 1
    assert value(m, "sentiment_committed_offset", topic="in", partition="0") == 3


def test_model_info_is_replaced() -> None:
    m = WorkerMetrics()
    m.set_model_info(model_id="a", revision=None, provider="CPUExecutionProvider", precision="fp32", sha256="x")
    m.set_model_info(model_id="b", revision="714eb0f", provider="CUDAExecutionProvider", precision="fp16", sha256="y")
    labels = {
        "model_id": "b",
        "revision": "714eb0f",
        "provider": "CUDAExecutionProvider",
        "precision": "fp16",
        "sha256": "y",
    }
    assert value(m, "sentiment_model_info", **labels) == 1
    text = m.render().decode()
    assert 'model_id="a"' not in text
    assert 'sentiment_worker_info{version="' in text


def test_exposition_parses() -> None:
    m = WorkerMetrics()
    m.record_consumed("in", 1)
    m.record_batch(1, 10, 12, 0.01)
    names = {family.name for family in text_string_to_metric_families(m.render().decode())}
    expected = {
        "sentiment_messages_consumed",
        "sentiment_messages_produced",
        "sentiment_dead_letters",
        "sentiment_batches",
        "sentiment_batch_size",
        "sentiment_padding_ratio",
        "sentiment_batch_padding_ratio",
        "sentiment_inference_seconds",
        "sentiment_end_to_end_latency_seconds",
        "sentiment_queue_depth_batches",
        "sentiment_paused_partitions",
        "sentiment_assigned_partitions",
        "sentiment_commits",
        "sentiment_committed_offset",
        "sentiment_consumer_lag",
        "sentiment_model_info",
        "sentiment_worker_info",
        "sentiment_ready",
        "sentiment_alive",
        "sentiment_main_loop_age_seconds",
        "process_resident_memory_bytes",
    }
    assert expected <= names


def test_set_health_copies_the_verdicts() -> None:
    m, clock = WorkerMetrics(), FakeClock()
    h = HealthState(stuck_after_s=5, clock=clock)
    m.set_health(h)
    assert (value(m, "sentiment_alive"), value(m, "sentiment_ready")) == (1, 0)
    assert value(m, "sentiment_main_loop_age_seconds") == -1
    h.set_model_loaded(True)
    h.set_broker_reachable(True)
    h.set_assignment(1, waiting=False)
    h.beat()
    clock.now += 6
    m.set_health(h)
    assert (value(m, "sentiment_alive"), value(m, "sentiment_ready")) == (0, 1)
    assert value(m, "sentiment_main_loop_age_seconds") == 6


# ---- HealthState ------------------------------------------------------------------------------------
def test_liveness_before_first_beat_has_a_grace_period() -> None:
    clock = FakeClock()
    h = HealthState(stuck_after_s=60, clock=clock)
    alive, details = h.liveness()
    assert alive and details["loop_started"] is False
    clock.now += 61
    alive, details = h.liveness()
    assert not alive and details["last_beat_age_s"] is None


def test_liveness_stuck_loop() -> None:
    clock = FakeClock()
    h = HealthState(stuck_after_s=10, clock=clock)
    h.beat()
    clock.now += 9.5
    assert h.liveness()[0]
    clock.now += 1
    alive, details = h.liveness()
    assert not alive and details["last_beat_age_s"] == pytest.approx(10.5)
    h.beat()
    assert h.liveness()[0]


def test_readiness_needs_model_broker_and_assignment() -> None:
    h = HealthState()
    assert h.readiness()[0] is False
    h.set_model_loaded(True)
    assert h.readiness()[0] is False
    h.set_broker_reachable(True)
    assert h.readiness()[0] is False  # joined nothing yet
    h.set_assignment(0, waiting=True)
    assert h.readiness()[0] is True
    h.set_assignment(3, waiting=False)
    ready, details = h.readiness()
    assert ready and details["assigned_partitions"] == 3
    h.set_assignment(0, waiting=False)  # idle member: more workers than partitions
    assert h.readiness()[0] is False
    h.set_assignment(2, waiting=False)
    h.set_broker_reachable(False)
    ready, details = h.readiness()
    assert not ready and details == {
        "ready": False,
        "model_loaded": True,
        "inference_ok": True,
        "broker_reachable": False,
        "assigned_partitions": 2,
        "waiting_for_assignment": False,
        "topics_missing": [],
        "input_unavailable": None,
    }
    h.set_broker_reachable(True)
    h.set_inference_ok(False)  # the model's session is failing and being rebuilt
    ready, details = h.readiness()
    assert not ready and details["inference_ok"] is False
    h.set_inference_ok(True)
    assert h.readiness()[0] is True
    h.set_topics_missing(["in.dlq"])  # an input topic is held until its output topics exist
    ready, details = h.readiness()
    assert not ready and details["topics_missing"] == ["in.dlq"]
    h.set_topics_missing([])
    assert h.readiness()[0] is True
    h.set_input_unavailable("schema registry down")  # records are read again once it answers
    ready, details = h.readiness()
    assert not ready and details["input_unavailable"] == "schema registry down"
    h.set_input_unavailable(None)
    assert h.readiness()[0] is True


def test_a_dead_stage_thread_fails_liveness_for_good() -> None:
    h = HealthState()
    h.beat()
    h.set_stage_failed("sentiment-infer")
    alive, details = h.liveness()
    assert not alive and details["failed_stage"] == "sentiment-infer"
    h.beat()
    assert not h.liveness()[0], "the loop still beats, but a stage is gone"


def test_stuck_after_must_be_positive() -> None:
    with pytest.raises(ValueError):
        HealthState(stuck_after_s=0)


# ---- MetricsServer over real HTTP --------------------------------------------------------------------
def get(port: int, path: str) -> tuple[int, str, dict[str, str]]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as resp:
            return resp.status, resp.read().decode(), dict(resp.headers)
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode(), dict(err.headers)


@pytest.fixture
def served() -> Any:
    metrics = WorkerMetrics()
    clock = FakeClock()
    health = HealthState(stuck_after_s=30, clock=clock)
    server = MetricsServer(0, metrics, health, host="127.0.0.1")
    server.start()
    try:
        yield server, metrics, health, clock
    finally:
        server.stop()


def test_http_round_trip(served: Any) -> None:
    server, metrics, health, clock = served
    assert server.port > 0

    metrics.record_consumed("in", 4)
    status, body, headers = get(server.port, "/metrics")
    assert status == 200 and headers["Content-Type"].startswith("text/plain")
    assert 'sentiment_messages_consumed_total{topic="in"} 4.0' in body
    metrics.record_consumed("in", 6)
    body = get(server.port, "/metrics")[1]
    assert 'sentiment_messages_consumed_total{topic="in"} 10.0' in body
    assert "sentiment_ready 0.0" in body and "sentiment_alive 1.0" in body
    assert "sentiment_main_loop_age_seconds -1.0" in body

    # alive in the start-up grace period, not ready
    status, body, _ = get(server.port, "/healthz")
    assert status == 200 and json.loads(body)["alive"] is True
    status, body, headers = get(server.port, "/readyz")
    assert status == 503 and headers["Content-Type"] == "application/json"
    assert json.loads(body)["model_loaded"] is False

    health.set_model_loaded(True)
    health.set_broker_reachable(True)
    health.set_assignment(2, waiting=False)
    status, body, _ = get(server.port, "/readyz?verbose=1")
    assert status == 200 and json.loads(body)["assigned_partitions"] == 2

    # the loop stops beating: liveness fails
    health.beat()
    clock.now += 31
    status, body, _ = get(server.port, "/healthz")
    assert status == 503 and json.loads(body)["last_beat_age_s"] == pytest.approx(31)
    body = get(server.port, "/metrics")[1]
    assert "sentiment_alive 0.0" in body and "sentiment_main_loop_age_seconds 31.0" in body
    assert "sentiment_ready 1.0" in body
    health.beat()
    assert get(server.port, "/healthz")[0] == 200

    assert get(server.port, "/nope")[0] == 404
    assert get(server.port, "/")[0] == 404


def test_stop_frees_the_port_and_is_idempotent() -> None:
    server = MetricsServer(0, WorkerMetrics(), HealthState(), host="127.0.0.1")
    server.start()
    port = server.port
    assert get(port, "/metrics")[0] == 200
    server.stop()
    server.stop()
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2)
    # the same port can be bound again right away
    again = MetricsServer(port, WorkerMetrics(), HealthState(), host="127.0.0.1")
    with again:
        assert again.port == port
        assert get(port, "/healthz")[0] == 200
