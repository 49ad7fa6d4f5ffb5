"""The prepared GPU check (benchmarks/gpu/) end to end in its --smoke mode: tiny model, CPU provider, the embedded
broker, real worker processes. It checks that the run completes and writes the report and the JSON with every
section; it asserts no measured figure."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.gpu.check import SECTIONS
from benchmarks.gpu.report import HEADINGS

pytestmark = [pytest.mark.integration, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]


def test_smoke_run_writes_report_and_results(tmp_path: Path) -> None:
    out = tmp_path / "out"
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.gpu.check", "--smoke", "--out", str(out), "--work", str(tmp_path / "w")],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads((out / "results.json").read_text(encoding="utf-8"))
    statuses = {name: info["status"] for name, info in results["sections"].items()}
    assert statuses == dict.fromkeys(SECTIONS, "ok"), {n: results["sections"][n] for n in statuses}
    assert results["environment"]["device"] == "cpu"

    cells = results["model_only"]
    assert {(c["dataset"], c["batch"]) for c in cells} == {(d, b) for d in ("tweets", "reviews") for b in (1, 8)}
    assert all(c["seq_per_s"] > 0 for c in cells)
    assert {row["variant"] for row in results["variants"]} >= {"plain (session.run, no buckets)"}

    base = results["fp16_validation"]["base"]
    assert base["n"] == 300 and 0 <= base["label_agreement"] <= 1 and base["max_abs_dprob"] >= 0
    assert "n" in results["fp16_validation"]["starter"] or "skipped" in results["fp16_validation"]["starter"]

    assert results["naive"]["processed"] > 0 and results["naive"]["msg_per_s"] > 0
    e2e = results["end_to_end"]
    assert [row["processes"] for row in e2e] == [1, 2]
    for row in e2e:
        assert row["ready"] and row["committed"] == row["records"], row
        assert row["msg_per_s"] and row["exit_codes"] and all(code == 0 for code in row["exit_codes"]), row
    assert set(results["targets"]) == {"e2e_msg_per_s", "vs_naive", "gpu_busy_pct"}

    report = (out / "report.md").read_text(encoding="utf-8")
    for heading in HEADINGS:
        assert f"\n## {heading}\n" in report, heading
    assert report.startswith("# GPU check (smoke")
