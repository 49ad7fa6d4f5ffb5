"""The pipeline-ceiling section: steady-window arithmetic, ratios and the report (no broker, no model)."""

from __future__ import annotations

import pytest

from benchmarks.ceiling import ratios, steady, thread_delta
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
        "loop_plain": {"msgs_per_s": 4_000.0, "cpu_us_per_msg": 200.0},
        "processes1": {"msgs_per_s": 5_000.0, "cpu_us_per_msg": 160.0},
        "processes2": {"error": "failed"},
    }
    assert ratios(results) == {
        "worker_over_loop_msgs_per_s": 1.5,
        "worker_over_loop_cpu_per_msg": 0.8,
        "loop_over_loop_plain_msgs_per_s": 1.5,
        "loop_over_loop_plain_cpu_per_msg": 0.75,
    }


def test_the_modules_import_in_any_order_without_a_circle() -> None:
    # ceiling_procs and ceiling_loops read the window from ceiling_window, never from ceiling (which imports them)
    import subprocess
    import sys

    for first in ("benchmarks.ceiling_procs", "benchmarks.ceiling_loops", "benchmarks.ceiling"):
        code = f"import {first}, benchmarks.ceiling, benchmarks.ceiling_procs"
        subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
    import ast
    from pathlib import Path

    root = Path(__file__).resolve().parents[2] / "benchmarks"
    for name in ("ceiling_procs.py", "ceiling_loops.py", "ceiling_window.py"):
        tree = ast.parse((root / name).read_text())
        imported = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
        assert "benchmarks.ceiling" not in imported, f"{name} imports benchmarks.ceiling"


def test_the_loop_has_the_workers_speed_ups(monkeypatch) -> None:
    import json

    import kafka
    import orjson

    from benchmarks import ceiling_loops
    from worker.stream.sink import PRODUCER_BATCH_BYTES

    made: list[dict] = []
    monkeypatch.setattr(kafka, "KafkaProducer", lambda **kwargs: made.append(kwargs))
    ceiling_loops._producer({"bootstrap": ["x:1"]})
    ceiling_loops._producer({"bootstrap": ["x:1"]}, ceiling_loops.PLAIN_BATCH_BYTES)
    assert made[0]["batch_size"] == PRODUCER_BATCH_BYTES == 262_144 and made[1]["batch_size"] == 16_384
    assert made[0]["acks"] == "all" and made[0]["enable_idempotence"] is True

    calls: list[tuple] = []
    monkeypatch.setattr(ceiling_loops, "_model_transform", lambda _dir, loads, dumps: (loads, dumps))
    monkeypatch.setattr(ceiling_loops, "kafka_loop", lambda _c, t, batch_size=None: calls.append((t, batch_size)))
    ceiling_loops.loop({"model_dir": "m"})
    ceiling_loops.loop_plain({"model_dir": "m"})
    (fair, fair_batch), (plain, plain_batch) = calls
    assert fair == (orjson.loads, orjson.dumps) and fair_batch is None  # None: the worker's batch size
    assert plain[0] is json.loads and plain_batch == 16_384


def test_thread_delta_is_per_message_and_drops_idle_threads() -> None:
    before = {"MainThread": 1.0, "sentiment-infer": 2.0, "idle": 5.0}
    after = {"MainThread": 1.5, "sentiment-infer": 2.2, "idle": 5.0}
    assert thread_delta(before, after, 10_000) == {"MainThread": 50.0, "sentiment-infer": 20.0}


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
        "targets": {"msgs_per_s": 8_000, "cpu_us_per_msg": 150.0, "over_loop": 1.0, "hold_for": "a near-free model"},
    }
    text = "\n".join(markdown({"pipeline_ceiling": section}))
    assert "| worker |" in text and "8,500.0" in text and "1.21×" in text
    assert (
        "≥ 8,000 msg/s: **met**" in text and "≥ 1.0 × the single-threaded loop with the same speed-ups: **met**" in text
    )
    assert "for a near-free model" in text and "don't apply" in text
    assert "failed: only 10 of 40000" in text
    section["variants"]["worker"]["msgs_per_s"] = 6_000.0
    assert "≥ 8,000 msg/s: **not met**" in "\n".join(markdown({"pipeline_ceiling": section}))
    assert markdown({}) == ["(not run in this mode)"]
