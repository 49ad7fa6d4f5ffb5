"""The latency section (benchmarks/latency.py, latency_report.py): percentiles, the saturation rate from output
timestamps, the targets judged from a run's numbers, the report and its files (no broker, no model)."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from benchmarks.latency import LOADS, percentiles, steady_rate, targets
from benchmarks.latency_report import RERUN, markdown, write

pytestmark = pytest.mark.unit


def _result(p50: float, p99: float, ratio: float | None) -> dict[str, Any]:
    loads = [
        {
            "fraction": f,
            "offered_msgs_per_s": 500 * f,
            "sent": 100,
            "received": 100,
            "end_to_end": {"p50_ms": p50 * (1 + f), "p99_ms": p99 * (1 + f)},
            "in_worker": {"p50_ms": p50, "p99_ms": p99},
            "worker": {"batches": 40, "avg_batch_size": 2.5, "ms_per_batch_mean": 5.0},
            "cores": {"worker": 1.1, "broker": 0.2},
        }
        for f in LOADS
    ]
    for load in loads:  # the 50% row carries the given figures
        if load["fraction"] == 0.5:
            load["end_to_end"] = {"p50_ms": p50, "p99_ms": p99}
    return {
        "model": "starter",
        "settings": {"max_wait_ms": 20, "max_batch_size": 64, "inference_batch_size": 8, "fetch_max_wait_ms": 10},
        "model_only": {"msgs_per_s": 500.0, "batch8_ms": 15.0, "batch1_ms": 3.0, "provider": "CPUExecutionProvider"},
        "saturation": {"sent": 5000, "msgs_per_s": None if ratio is None else 500 * ratio, "over_model_only": ratio},
        "loads": loads,
        "load_before": {"load1": 0.3, "others_cpu_share": 0.02},
        "load_after": {"load1": 0.4, "others_cpu_share": 0.03},
        "others_cpu": {"load-50": {"mean": 0.01}},
        "load_seconds": 20.0,
    }


def test_percentiles_of_latencies() -> None:
    summary = percentiles([float(v) for v in range(1, 101)])
    assert summary["count"] == 100 and summary["p50_ms"] == 50.5 and summary["p99_ms"] == 99.0
    assert summary["max_ms"] == 100.0
    assert percentiles([]) == {"count": 0}


def test_the_saturation_rate_leaves_out_the_start_of_the_drain() -> None:
    # 1,000 outputs: the first 100 trickle over 5 s (start-up), then 900 at 1 per ms
    ts = [i * 50 for i in range(100)] + [5_000 + i for i in range(900)]
    assert steady_rate(ts) == pytest.approx(1000.0, rel=0.01)
    assert steady_rate(ts[:5]) is None, "too few outputs: no figure"


def test_targets_are_judged_from_the_50_percent_row_and_the_saturation_ratio() -> None:
    met = targets(_result(p50=40.0, p99=100.0, ratio=0.96))
    assert [t["bound"] for t in met] == [110.0, 50.0, 0.95]  # 20 + 6 x 15, 20 + 2 x 15
    assert [t["measured"] for t in met] == [100.0, 40.0, 0.96]
    assert [t["met"] for t in met] == [True, True, True]
    missed = targets(_result(p50=60.0, p99=111.0, ratio=0.9))
    assert [t["met"] for t in missed] == [False, False, False]
    unmeasured = _result(p50=40.0, p99=100.0, ratio=None)
    unmeasured["model_only"].pop("batch8_ms")
    assert [t["met"] for t in targets(unmeasured)] == [None, None, None], "nothing measured: nothing claimed"


def test_the_report_states_each_target_and_whether_it_was_met() -> None:
    result = _result(p50=60.0, p99=100.0, ratio=0.97)
    result["targets"] = targets(result)
    text = markdown(result, {"cpu_model": "AMD EPYC", "usable_cpus": 2, "date": "2026-12-06"})
    assert "AMD EPYC (2 usable cores)" in text
    assert (
        "p99 at 50% of model-only ≤ max_wait_ms + 6 × 8-record batch: "
        "bound 110.0 (20 + 6 × 15.0), measured 100.0: **met**" in text
    )
    assert (
        "p50 at 50% of model-only ≤ max_wait_ms + 2 × 8-record batch: "
        "bound 50.0 (20 + 2 × 15.0), measured 60.0: **not met**" in text
    )
    assert "0.97 × model-only" in text and "| 50% | 250.0 | 100/100 | 60.0 / 100.0 |" in text
    assert RERUN in text and "--mode latency" in RERUN


def test_write_saves_the_numbers_the_report_and_a_plot(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    result = _result(p50=30.0, p99=90.0, ratio=0.96)
    result["targets"] = targets(result)
    written = write(result, tmp_path / "out", {"cpu_model": "x", "usable_cpus": 2, "date": "d"})
    assert written == ["latency.json", "latency.md", "latency.png"]
    saved = json.loads((tmp_path / "out" / "latency.json").read_text())
    assert saved["machine"]["cpu_model"] == "x" and saved["loads"][2]["end_to_end"]["p99_ms"] == 90.0
    assert (tmp_path / "out" / "latency.png").stat().st_size > 1000
    assert (tmp_path / "out" / "latency.md").read_text().startswith("# Latency benchmark")


def test_the_bench_command_has_a_latency_mode_and_names_its_folder_by_date_and_cpu() -> None:
    from benchmarks.commands import default_folder
    from benchmarks.config import MODES, BenchConfig

    assert "latency" in MODES
    config = BenchConfig(output=Path("x"), cache_dir=Path("c"), mode="latency", quick=True)
    config.resolve_defaults()
    assert config.e2e_models, "the latency section runs on the first end-to-end model"
    name = default_folder("latency", datetime(2026, 12, 6, 20, 0))
    assert name.startswith("2026-12-06-cpu-") and name.endswith("core-latency")
    assert default_folder("all", datetime(2026, 12, 6, 20, 0, 5)) == "2026-12-06-200005"
