"""sentiment_backlog_seconds (worker/backlog_metrics.py): lag ÷ committed records per busy second, on a fake clock."""

from __future__ import annotations

import math
import random

import pytest
from prometheus_client import CollectorRegistry

from worker.backlog_metrics import ALL, MIN_SPAN_S, STALLED_S, WINDOW_S, BacklogEstimator
from worker.metrics import WorkerMetrics

pytestmark = pytest.mark.unit

T = "reviews"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Sim:
    """Drives an estimator like the worker does: a tick (set_lag) every second, commits in between."""

    def __init__(self, **kwargs: float) -> None:
        self.clock = Clock()
        self.est = BacklogEstimator(clock=self.clock, **kwargs)
        self.committed: dict[tuple[str, int], int] = {}

    def run(self, seconds: int, *, lags: dict[int, int], rates: dict[int, int] | None = None) -> None:
        """``seconds`` ticks with these lags; each partition in ``rates`` commits that many records per second."""
        for _ in range(seconds):
            self.clock.now += 0.5
            moved = {}
            for p, per_s in (rates or {}).items():
                if per_s:
                    tp = (T, p)
                    self.committed[tp] = self.committed.get(tp, 0) + per_s
                    moved[tp] = self.committed[tp]
            if moved:
                self.est.record_commit(moved)
            self.clock.now += 0.5
            self.est.set_lag({(T, p): lag for p, lag in lags.items()})

    def values(self) -> dict[tuple[str, str], float]:
        return self.est.estimate()


def test_steady_drain_is_lag_over_rate() -> None:
    sim = Sim()
    sim.run(30, lags={0: 1000, 1: 300}, rates={0: 100, 1: 50})
    values = sim.values()
    assert values[(T, "0")] == pytest.approx(10.0)
    assert values[(T, "1")] == pytest.approx(6.0)
    assert values[(T, ALL)] == pytest.approx(1300 / 150)  # the topic: total lag over the summed rates


def test_the_window_slides() -> None:
    sim = Sim()
    sim.run(int(WINDOW_S) + 10, lags={0: 1000}, rates={0: 200})
    sim.run(int(WINDOW_S) + 10, lags={0: 1000}, rates={0: 50})  # slowed down: the old rate has left the window
    assert sim.values()[(T, "0")] == pytest.approx(20.0)
    assert sim.est.rate((T, 0)).busy <= WINDOW_S + 1


def test_lag_zero_is_zero_even_before_any_commit() -> None:
    sim = Sim()
    sim.run(1, lags={0: 0, 1: 0})
    assert sim.values() == {(T, "0"): 0.0, (T, "1"): 0.0, (T, ALL): 0.0}


def test_no_value_until_measurable() -> None:
    sim = Sim()
    sim.run(1, lags={0: 500})
    assert sim.values() == {}, "nothing committed yet: no value rather than a guess"
    sim.run(int(MIN_SPAN_S) - 2, lags={0: 500}, rates={0: 10})
    assert (T, "0") not in sim.values(), "less than MIN_SPAN_S of busy time behind the first commit"
    sim.run(3, lags={0: 500}, rates={0: 10})
    assert sim.values()[(T, "0")] == pytest.approx(50.0)


def test_stalled_after_a_whole_busy_window_without_commits() -> None:
    sim = Sim()
    sim.run(int(WINDOW_S) - 1, lags={0: 500})
    assert sim.values() == {}, "busy for less than a window: not yet called stalled"
    sim.run(2, lags={0: 500})
    assert sim.values() == {(T, "0"): STALLED_S, (T, ALL): STALLED_S}
    assert sim.est.rate((T, 0)).per_s == 0.0


def test_progress_that_stops_becomes_stalled() -> None:
    sim = Sim()
    sim.run(20, lags={0: 500}, rates={0: 50})
    assert sim.values()[(T, "0")] == pytest.approx(10.0)
    sim.run(int(WINDOW_S) + 2, lags={0: 500})
    assert sim.values()[(T, "0")] == STALLED_S


def test_idle_time_does_not_count() -> None:
    """A burst after an idle stretch is divided by the busy seconds, not by the idle window."""
    sim = Sim()
    sim.run(10, lags={0: 100}, rates={0: 100})
    sim.run(45, lags={0: 0})  # idle: nothing to do, nothing committed
    assert sim.values()[(T, "0")] == 0.0
    sim.run(6, lags={0: 600}, rates={0: 100})
    assert sim.values()[(T, "0")] == pytest.approx(6.0, rel=0.25)  # wall-clock over the window would say ~20
    assert sim.values()[(T, ALL)] == pytest.approx(6.0, rel=0.25)


def test_topic_total_uses_time_any_partition_was_busy() -> None:
    """Two partitions served one after the other at 100/s each: the worker's rate is 100/s, not 200/s."""
    sim = Sim()
    sim.run(10, lags={0: 500, 1: 0}, rates={0: 100})
    sim.run(10, lags={0: 0, 1: 500}, rates={1: 100})
    sim.run(1, lags={0: 400, 1: 400}, rates={0: 50, 1: 50})
    assert sim.values()[(T, ALL)] == pytest.approx(8.0, rel=0.1)


def test_the_value_is_capped() -> None:
    sim = Sim()
    sim.run(20, lags={0: 10**12}, rates={0: 1})
    assert sim.values()[(T, "0")] == STALLED_S


def test_values_are_always_finite_and_in_range() -> None:
    rng = random.Random(7)
    sim = Sim()
    for _ in range(300):
        lags = {p: rng.choice([0, 0, rng.randint(1, 10**6)]) for p in range(3)}
        rates = {p: rng.choice([0, rng.randint(1, 500)]) for p in range(3)}
        sim.run(rng.randint(1, 5), lags=lags, rates=rates)
        for key, value in sim.values().items():
            assert math.isfinite(value) and 0.0 <= value <= STALLED_S, (key, value)


def test_forget_drops_the_history() -> None:
    sim = Sim()
    sim.run(10, lags={0: 100, 1: 100}, rates={0: 10, 1: 10})
    sim.est.forget([(T, 0)])
    sim.run(1, lags={1: 100}, rates={1: 10})
    assert set(sim.values()) == {(T, "1"), (T, ALL)}
    sim.est.forget([(T, 1)])
    assert sim.values() == {}


def test_bad_windows_are_refused() -> None:
    with pytest.raises(ValueError):
        BacklogEstimator(window_s=5, min_span_s=10)


# ---- the gauge and WorkerMetrics --------------------------------------------------------------------------
def test_gauge_publishes_and_removes_series() -> None:
    clock = Clock()
    registry = CollectorRegistry()
    gauge = WorkerMetrics(registry).backlog  # the gauge as the worker's metrics declare it
    gauge.estimator = BacklogEstimator(clock=clock)
    gauge.set_lag({(T, 0): 0, (T, 1): 7})

    def sample(partition: str) -> float | None:
        return registry.get_sample_value("sentiment_backlog_seconds", {"topic": T, "partition": partition})

    assert sample("0") == 0.0 and sample("1") is None and sample(ALL) is None
    for _ in range(10):
        clock.now += 1
        gauge.record_commit({(T, 1): 100 + int(clock.now)})
        gauge.set_lag({(T, 0): 0, (T, 1): 7})
    assert sample("1") == pytest.approx(7.0) and sample(ALL) == pytest.approx(7.0)
    gauge.set_lag({(T, 1): 7})  # partition 0's lag is no longer known: its series goes
    assert sample("0") is None and sample("1") == pytest.approx(7.0)
    gauge.forget([(T, 1)])
    assert sample("1") is None and sample(ALL) is None


def test_worker_metrics_feed_the_backlog() -> None:
    clock = Clock()
    m = WorkerMetrics()
    m.backlog.estimator = BacklogEstimator(clock=clock)
    for i in range(10):
        clock.now += 1
        m.record_commit({(T, 3): 50 * (i + 1)})
        m.set_lag({(T, 3): 250})
    assert m.registry.get_sample_value("sentiment_backlog_seconds", {"topic": T, "partition": "3"}) == 5.0
    assert "sentiment_backlog_seconds{" in m.render().decode()
    m.forget_partitions(iter([(T, 3)]))  # any iterable: the lag series and the backlog both go
    assert m.registry.get_sample_value("sentiment_backlog_seconds", {"topic": T, "partition": "3"}) is None
    assert m.registry.get_sample_value("sentiment_consumer_lag", {"topic": T, "partition": "3"}) is None
