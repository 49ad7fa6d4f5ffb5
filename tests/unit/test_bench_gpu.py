"""Pieces of the GPU check (benchmarks/gpu/) that need neither GPU nor broker."""

from __future__ import annotations

import time

import pytest

from benchmarks.gpu.check import Run, targets
from benchmarks.gpu.report import HEADINGS, render
from benchmarks.gpu.stream import steady_rate

pytestmark = pytest.mark.unit


def test_steady_rate_is_the_slope_between_10_and_90_percent() -> None:
    samples = [(0.0, 0), (1.0, 0), (2.0, 100), (3.0, 500), (4.0, 900), (5.0, 1000)]
    assert steady_rate(samples, 1000) == pytest.approx((900 - 100) / (4.0 - 2.0))
    assert steady_rate([(0.0, 0), (1.0, 1000)], 1000) is None  # one jump: no slope to measure
    assert steady_rate([(0.0, 0), (1.0, 500)], 1000) is None  # never reached 90%


def test_targets_compare_the_best_run_with_the_naive_consumer() -> None:
    results = {
        "end_to_end": [
            {"processes": 1, "msg_per_s": 12_000.0, "gpu_util_mean": 40.0},
            {"processes": 4, "msg_per_s": 31_000.0, "gpu_util_mean": 55.0},
            {"processes": 8, "skipped": "time budget"},
        ],
        "naive": {"msg_per_s": 400.0},
    }
    rows = targets(results)
    assert rows["e2e_msg_per_s"] == {"target": 30_000.0, "value": 31_000.0, "met": True}
    assert rows["vs_naive"]["value"] == pytest.approx(77.5) and rows["vs_naive"]["met"] is True
    assert rows["gpu_busy_pct"] == {"target": 50.0, "value": 55.0, "met": True}
    empty = targets({})
    assert all(row["value"] is None and row["met"] is None for row in empty.values())


def test_sections_record_errors_and_the_budget() -> None:
    run = Run(budget_s=60)
    assert run.section("ok", lambda: {"a": 1}) == {"a": 1}

    def fail() -> None:
        raise RuntimeError("no CUDA here")

    assert run.section("broken", fail) is None
    assert run.section("late", lambda: 1, min_left_s=120) is None
    sections = run.results["sections"]
    assert sections["ok"]["status"] == "ok" and run.results["ok"] == {"a": 1}
    assert sections["broken"]["status"] == "error" and "no CUDA here" in sections["broken"]["error"]
    assert sections["late"]["status"].startswith("skipped")
    run.deadline = time.monotonic() - 1
    assert run.section("after", lambda: 1) is None


def test_report_has_every_heading_even_for_an_empty_run() -> None:
    text = render({"mode": "gpu", "sections": {"models": {"status": "error", "error": "boom", "seconds": 1}}})
    for heading in HEADINGS:
        assert f"\n## {heading}\n" in text
    assert "error — boom" in text
