"""The GPU check (benchmarks/gpu/) rehearsed end to end on the CPU, as the device calls run it: prepare --smoke packs
the materials (the production export's graph without its weights, the starter stand-in and its fp32 reference) into
small parts, stage.sh copies all but the last, run.sh stages the last, checks the sums, unpacks, runs the check and
tars the logs. Real worker processes, the embedded broker, the tiny shape on the CPU provider."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.gpu.check import FP16_MEAN_DPROB_BOUND, SECTIONS
from benchmarks.gpu.report import HEADINGS

pytestmark = [pytest.mark.integration, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]


def test_rehearsal_on_cpu_writes_every_section_with_real_bounds(tmp_path: Path) -> None:
    carry, cache = tmp_path / "carry", tmp_path / "cache"  # an empty cache: no starter, the tiny stand-in
    env = {**os.environ, "CARRY": str(carry), "STAGE": str(tmp_path / "stage"), "WORK": str(tmp_path / "work"),
           "OUT": str(tmp_path / "out"), "PY": sys.executable}  # fmt: skip
    prepare = [sys.executable, "-m", "benchmarks.gpu.prepare", "--smoke", "--no-wheels", "--carry", str(carry)]
    done = subprocess.run([*prepare, "--cache-dir", str(cache), "--part-bytes", "60000"], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=600)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    parts = sorted(carry.glob("part*"), key=lambda p: int(p.name.removeprefix("part")))
    assert len(parts) >= 2, "small parts, so that staging is rehearsed too"
    for n in range(1, len(parts)):
        staged = subprocess.run(["bash", "benchmarks/gpu/stage.sh", str(n)], cwd=REPO, env=env, capture_output=True)
        assert staged.returncode == 0, staged.stderr
    run = subprocess.run(["bash", "benchmarks/gpu/run.sh", "--device", "cpu-smoke", "--smoke"], cwd=REPO, env=env,
                         capture_output=True, text=True, timeout=900)  # fmt: skip
    assert run.returncode == 0, run.stdout[-4000:]

    out = tmp_path / "out"
    files = [p.relative_to(out) for p in out.rglob("*") if p.is_file()]
    assert sorted(str(f) for f in files) == [f"cpu-smoke/{n}" for n in ("logs.tar.gz", "report.md", "results.json",
                                                                       "run.log")]  # fmt: skip
    results = json.loads((out / "cpu-smoke" / "results.json").read_text(encoding="utf-8"))
    statuses = {name: info["status"] for name, info in results["sections"].items()}
    assert statuses == dict.fromkeys(SECTIONS, "ok"), {n: results["sections"][n] for n in statuses}
    assert results["environment"]["device"] == "cpu" and results["environment"]["device_kind"] == "cpu-smoke"

    # no variant, cell or run errored
    for section in ("model_only", "variants", "end_to_end"):
        assert results[section] and not [row for row in results[section] if "error" in row], results[section]
    cells = results["model_only"]
    assert {(c["dataset"], c["batch"]) for c in cells} == {(d, b) for d in ("tweets", "reviews") for b in (1, 8)}
    assert all(c["seq_per_s"] > 20 and c["ms_per_call"] > 0 for c in cells), cells
    assert {row["variant"] for row in results["variants"]} >= {"plain (session.run, no buckets)"}

    starter, base = results["fp16_validation"]["starter"], results["fp16_validation"]["base"]
    assert starter["n"] == 300 and starter["label_agreement"] >= 0.995 and starter["passed"] is True
    assert starter["mean_abs_dprob"] <= FP16_MEAN_DPROB_BOUND and starter["max_abs_dprob"] < 0.05
    assert base["label_agreement"] >= 0.99 and base["mean_abs_dprob"] < 0.01

    e2e = results["end_to_end"]
    assert [row["processes"] for row in e2e] == [1, 2]
    for row in e2e:
        assert row["ready"] and row["committed"] == row["records"] == 3000, row
        assert row["msg_per_s"] > 50 and row["exit_codes"] and all(code == 0 for code in row["exit_codes"]), row
    latency = results["latency"]
    assert latency["received"] == latency["records"] > 0 and all(code == 0 for code in latency["exit_codes"])
    assert 0 < latency["p50_ms"] <= latency["p99_ms"] < 30_000 and latency["worker_p99_ms"] <= latency["p99_ms"] + 1
    assert set(results["targets"]) == {"e2e_msg_per_s", "gpu_busy_pct", "fp16_mean_abs_dprob", "p99_ms_at_half_load"}
    assert results["targets"]["fp16_mean_abs_dprob"]["met"] is True

    report = (out / "cpu-smoke" / "report.md").read_text(encoding="utf-8")
    for heading in HEADINGS:
        assert f"\n## {heading}\n" in report, heading
    assert report.startswith("# GPU check (smoke")
