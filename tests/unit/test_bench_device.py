"""The simulated-device sweep's arithmetic, cells and report (benchmarks/device.py; no broker, no model)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from benchmarks import device

pytestmark = pytest.mark.unit


def test_serial_work_would_give_well_under_the_rate() -> None:
    # host ceiling 9,000 msg/s, device 4,000: work in turn gives 1 / (1/4000 + 1/9000) = 2,769 = 0.69 R
    assert device.serial_estimate(4_000, 9_000) == pytest.approx(2_769.2, abs=0.1)
    assert device.serial_estimate(4_000, None) is None


def test_cells_are_judged_only_below_the_host_ceiling() -> None:
    below = device.cell_figures(4_000, {"msgs_per_s": 3_700.0}, 9_000.0)
    assert below["achieved_over_rate"] == 0.925 and below["target_met"] is True
    assert below["serial_over_rate"] == pytest.approx(0.692, abs=0.001)
    assert device.cell_figures(4_000, {"msgs_per_s": 3_500.0}, 9_000.0)["target_met"] is False
    above = device.cell_figures(8_000, {"msgs_per_s": 6_000.0}, 7_000.0)
    assert above["below_host_ceiling"] is False and "target_met" not in above
    assert "achieved_over_rate" not in device.cell_figures(1_000, {"error": "x"}, 9_000.0)


def test_sweep_splits_the_device_between_processes_and_a_failing_cell_costs_one_row(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls: list[tuple[int, int, dict[str, Any]]] = []
    monkeypatch.setattr(device, "preload", lambda *args: None)

    def run_processes(_b: Any, _t: str, _m: str, total: int, n: int, settings: dict[str, Any]) -> dict[str, Any]:
        calls.append((total, n, dict(settings)))
        rate = settings["simulate_device_rate"]
        if rate * n == device.UNLIMITED:
            return {"msgs_per_s": 9_000.0 * n, "cores": 1.2, "cpu_us_per_msg": 120.0}
        if rate * n == 2_000 and n == 2:
            raise RuntimeError("only 10 of 20000 outputs arrived in time")
        return {"msgs_per_s": 0.95 * rate * n, "cores": 0.5, "cpu_us_per_msg": 100.0}

    monkeypatch.setattr(device, "run_processes", run_processes)
    found = device.sweep(["b:1"], Path("m"), ["t"], rates=(1_000, 2_000), processes=(1, 2), cell_seconds=10.0)
    assert [(c[1], c[2]["simulate_device_rate"]) for c in calls[:2]] == [(1, 1e9), (2, 5e8)], "device free: ceiling"
    assert calls[0][0] == 20_000, "the ceiling reads as many records as the biggest cell"
    rates = [(c[0], c[1], c[2].get("simulate_device_rate")) for c in calls[2:]]
    assert rates == [(10_000, 1, 1_000.0), (10_000, 2, 500.0), (20_000, 1, 2_000.0), (20_000, 2, 1_000.0)]
    cells = found["cells"]
    assert len(cells) == 4 and "error" in cells[3] and "only 10 of 20000" in cells[3]["error"]
    assert cells[0]["achieved_over_rate"] == 0.95 and cells[0]["target_met"] is True
    text = "\n".join(device.markdown({"simulated_device": found}))
    assert "| host ceiling (device free) | 1 | 9,000.0 |" in text
    assert "| 2,000 | 2 | failed: RuntimeError" in text
    assert "**met** (met in 3 of 3 cells)" in text
    assert device.markdown({}) == ["(not run in this mode)"]


def test_the_host_ceiling_is_the_best_rate_reached_in_the_run() -> None:
    # with no wait the pipeline reached 3,100 msg/s; with a device of 8,000 it reached 4,500: C = 4,500, so
    # R = 4,000 lies below the ceiling and is judged
    section = {
        "host_ceiling": {"1": {"msgs_per_s": 3_100.0}},
        "cells": [
            {"rate": 4_000, "processes": 1, "msgs_per_s": 3_380.0},
            {"rate": 8_000, "processes": 1, "msgs_per_s": 4_500.0},
        ],
        "target": 0.9,
    }
    judged = device.judge(section)
    assert judged["host_ceiling_best"] == {"1": 4_500.0}
    four, eight = judged["cells"]
    assert four["below_host_ceiling"] is True and four["target_met"] is False and four["achieved_over_rate"] == 0.845
    assert eight["below_host_ceiling"] is False and "target_met" not in eight
    assert "N = 1: 4,500.0 msg/s" in "\n".join(device.markdown({"simulated_device": judged}))
