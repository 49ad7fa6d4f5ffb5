"""The pipeline-ceiling section: steady-window arithmetic, ratios and the report (no broker, no model)."""

from __future__ import annotations

import pytest

from benchmarks.ceiling import _thread_delta, ratios, steady
from benchmarks.ceiling_report import markdown

pytestmark = pytest.mark.unit


def test_steady_window_starts_at_a_fifth_of_the_records_and_counts_cpu_in_it() -> None:
    # (wall s, process CPU s, acknowledged): start-up is slow, then 1,000 msg/s on 0.5 cores
    samples = [(0.0, 0.0, 0), (5.0, 2.0, 0), (6.0, 2.5, 1_000), (7.0, 3.0, 2_000), (11.0, 5.0, 6_000)]
    result = steady(samples, 6_000)
    assert result["msgs_per_s"] == 1_000.0 and result["window_records"] == 4_000  # from the first sample >= 1,200
    assert result["cpu_us_per_msg"] == 500.0 and result["cores"] == 0.5
    assert "error" in steady(samples[:-1], 6_000), "not all acknowledged: no figure"


def test_ratios_compare_runs_of_the_same_records() -> None:
    results = {
        "worker": {"msgs_per_s": 9_000.0, "cpu_us_per_msg": 120.0},
        "loop": {"msgs_per_s": 6_000.0, "cpu_us_per_msg": 150.0},
        "processes1": {"msgs_per_s": 5_000.0, "cpu_us_per_msg": 160.0},
        "processes2": {"error": "failed"},
    }
    assert ratios(results) == {"worker_over_loop_msgs_per_s": 1.5, "worker_over_loop_cpu_per_msg": 0.8}


def test_thread_delta_is_per_message_and_drops_idle_threads() -> None:
    before = {"MainThread": 1.0, "sentiment-infer": 2.0, "idle": 5.0}
    after = {"MainThread": 1.5, "sentiment-infer": 2.2, "idle": 5.0}
    assert _thread_delta(before, after, 10_000) == {"MainThread": 50.0, "sentiment-infer": 20.0}


def test_report_section_states_targets_and_failures() -> None:
    section = {
        "records": 40_000,
        "partitions": 4,
        "cpus": 2,
        "variants": {
            "worker": {"msgs_per_s": 8_500.0, "cpu_us_per_msg": 140.0, "cores": 1.19},
            "loop": {"msgs_per_s": 7_000.0, "cpu_us_per_msg": 140.0, "cores": 0.98},
            "processes2": {"error": "only 10 of 40000 outputs arrived in time"},
        },
        "ratios": {"worker_over_loop_msgs_per_s": 1.21},
        "targets": {"msgs_per_s": 8_000, "cpu_us_per_msg": 150.0},
    }
    text = "\n".join(markdown({"pipeline_ceiling": section}))
    assert "| worker |" in text and "8,500.0" in text and "1.21×" in text
    assert "≥ 8,000 msg/s: **met**" in text and "≥ 1.0 × the single-threaded loop: **met**" in text
    assert "failed: only 10 of 40000" in text
    section["variants"]["worker"]["msgs_per_s"] = 6_000.0
    assert "≥ 8,000 msg/s: **not met**" in "\n".join(markdown({"pipeline_ceiling": section}))
    assert markdown({}) == ["(not run in this mode)"]
