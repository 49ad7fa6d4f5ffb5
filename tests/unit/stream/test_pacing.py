"""Pacing (worker/stream/pacing.py): the learned arrival rate and model time per batch size, and the decision to run
a partial batch now or wait for company."""

from __future__ import annotations

import pytest

from worker.stream.pacing import BUCKETS, Pacer, bucket

pytestmark = pytest.mark.unit


def steady(pacer: Pacer, rate: float, seconds: float, start: float = 0.0, step: float = 0.01) -> float:
    """Feed arrivals at ``rate`` records/s in polls every ``step`` s; the time at the end."""
    t = start
    for _ in range(round(seconds / step)):
        t += step
        pacer.arrived(round(rate * step), t)
    return t


def test_buckets_cover_every_size() -> None:
    assert [bucket(n) for n in (0, 1, 2, 3, 4, 5, 7, 8, 9, 64, 65, 4096, 10_000)] == [
        1, 1, 2, 3, 4, 4, 6, 8, 8, 64, 64, 4096, 4096
    ]  # fmt: skip
    assert list(BUCKETS) == sorted(set(BUCKETS))


def test_the_arrival_rate_settles_at_the_offered_rate_and_decays_when_nothing_arrives() -> None:
    pacer = Pacer(rate_window_s=1.0)
    t = steady(pacer, 200, 5.0)
    assert pacer.rate(t) == pytest.approx(200, rel=0.05)
    assert pacer.rate(t + 3.0) < 200 * 0.06, "three windows later: ~e^-3 of it"


def test_batch_times_are_learned_per_bucket_and_borrowed_by_the_nearest_size() -> None:
    pacer = Pacer(alpha=0.5)
    assert pacer.per_record_s(8) is None and pacer.batch_s(8) is None
    pacer.observe(8, 0.016)
    assert pacer.batch_s(8) == pytest.approx(0.016)
    assert pacer.batch_s(16) == pytest.approx(0.032), "an unlearned size: the nearest bucket's time per record"
    pacer.observe(8, 0.024)
    assert pacer.batch_s(8) == pytest.approx(0.020), "EWMA, alpha 0.5"
    pacer.observe(1, 0.004)
    assert pacer.batch_s(1) == pytest.approx(0.004) and pacer.batch_s(2) == pytest.approx(0.008)
    assert set(pacer.learned()) == {1, 8}
    pacer.observe(0, 1.0)
    assert set(pacer.learned()) == {1, 8}, "an empty call teaches nothing"


def test_with_no_model_time_learned_the_configured_wait_applies() -> None:
    pacer = Pacer()
    assert not pacer.run_now(1, 0.02, 1.0, 64)
    assert not pacer.run_now(1, 600.0, 1.0, 64), "even when no record is expected: nothing says waiting can't pay"


def test_at_moderate_load_a_partial_batch_runs_now_and_waits_when_the_model_would_fall_behind() -> None:
    pacer = Pacer()
    pacer.observe(1, 0.004)  # 4 ms for one record
    pacer.observe(8, 0.016)  # 2 ms per record in batches of 8: ~500 records/s at most
    pacer.observe(32, 0.032)  # 1 ms per record in batches of 32
    t = steady(pacer, 100, 3.0)
    assert pacer.run_now(1, 0.02, t, 64), "100/s x 4 ms = 0.4 of the model: no point waiting"
    t = steady(pacer, 300, 3.0, start=t)
    assert not pacer.run_now(1, 0.02, t, 64), "300/s x 4 ms per record alone: the model would fall behind"
    assert pacer.run_now(8, 0.02, t, 64), "300/s x 2 ms = 0.6 of the model in batches of 8: run"
    t = steady(pacer, 600, 3.0, start=t)
    assert not pacer.run_now(8, 0.05, t, 64), "600/s x 2 ms: more than the model at 8; ~38 by max_wait, 1 ms each"
    assert pacer.run_now(8, 0.05, t, 8), "no fuller batch than 8 may run: waiting buys nothing"
    assert pacer.run_now(1, 0.001, t, 64), "no record expected before max_wait is up: waiting can't pay"


def test_a_fuller_batch_that_costs_the_model_as_much_per_record_is_not_waited_for() -> None:
    pacer = Pacer()
    for size in (1, 8, 64):  # a CPU transformer on short texts: ~3.5 ms per record at any batch size
        pacer.observe(size, 0.0035 * size)
    t = steady(pacer, 280, 3.0)  # ~0.98 of the model
    assert pacer.run_now(1, 0.02, t, 64), "a fuller batch would save nothing per record: run now"
    pacer.observe(64, 0.0035 * 64 * 0.3)  # EWMA: the 64-record bucket gets ~14% cheaper per record
    assert not pacer.run_now(4, 0.2, t, 64), "~60 expected by max_wait, cheaper per record: wait"


def test_bad_parameters_are_refused() -> None:
    for kwargs in ({"rate_window_s": 0}, {"alpha": 0}, {"alpha": 1.5}, {"keep_up": 0}, {"min_gain": 1.0}):
        with pytest.raises(ValueError):
            Pacer(**kwargs)  # type: ignore[arg-type]
