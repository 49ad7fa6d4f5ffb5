"""The benchmark report renders from ``results.json`` alone and prints only what the run measured."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest

from benchmarks import report
from benchmarks.end_to_end import RUNNER_COUNTERS, _stats_delta, runner_counters
from benchmarks.harness import drain_rate

pytestmark = pytest.mark.unit

REFERENCE = Path(__file__).resolve().parents[2] / "benchmarks" / "results" / "2026-11-24-cpu-2core" / "results.json"


def test_the_reference_run_renders_every_section_in_order_from_its_own_numbers() -> None:
    results = json.loads(REFERENCE.read_text(encoding="utf-8"))
    text = report.markdown(results)
    positions = [text.index(f"\n{title}\n") for title in report.SECTIONS]
    assert positions == sorted(positions)
    ceiling = results["summary"]["sgemm_ceiling_gflops"]
    assert f"({report._fmt(ceiling)} GFLOP/s, the better median of before/after)" in text
    assert "FMA" not in text  # no peak from outside the run: the sgemm ceiling above is the measured one


@pytest.mark.parametrize("missing", ["end_to_end", "model_only"])
def test_a_partial_run_still_has_every_section(missing: str) -> None:
    results = json.loads(REFERENCE.read_text(encoding="utf-8"))
    del results[missing]
    text = report.markdown(results)
    assert all(title in text for title in report.SECTIONS)
    assert "(not run in this mode)" in text


def test_runner_counters_read_the_runner_stats_and_say_when_they_cannot() -> None:
    stats = SimpleNamespace(**{name: 3 for name in RUNNER_COUNTERS})
    runner = SimpleNamespace(stats=stats, model=SimpleNamespace(provider="CPUExecutionProvider"))
    assert runner_counters(runner) == {**{name: 3 for name in RUNNER_COUNTERS}, "provider": "CPUExecutionProvider"}
    del stats.infer_seconds
    broken = runner_counters(runner)
    assert "error" in broken
    assert _stats_delta(broken, broken) == {}  # no phase numbers rather than zeros


def test_drain_rate_leaves_out_the_first_arriving_group() -> None:
    # a group of 3 at t=0 (its work started before the clock), then 4 more over 2 s
    assert drain_rate([0.0, 0.0, 0.0, 500.0, 1000.0, 1500.0, 2000.0]) == pytest.approx(2.0)
