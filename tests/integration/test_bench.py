"""`sentiment-worker bench --quick` runs end to end and writes a complete report (never timing thresholds)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.ceiling import DEFAULT_VARIANTS

REPO = Path(__file__).resolve().parents[2]
SECRET = "bench-Pa55w0rd-3d9"
SECTIONS = (
    "## Summary",
    "## Targets",
    "## Machine",
    "## Matrix-multiply ceiling",
    "## Pipeline ceiling",
    "## Model-only grid",
    "## End-to-end",
    "## Baselines",
    "## HTTP API",
    "## GPU",
    "## Method and noise",
    "## Plots",
)


@pytest.mark.integration
@pytest.mark.slow
def test_bench_quick_writes_a_report(tmp_path: Path, starter_cache_dir: Path, starter_materials: object) -> None:
    output = tmp_path / "report"
    # secrets set and debug logging: neither may show them (nothing in the bench needs them)
    env = {**os.environ, "SENTIMENT_SASL_PASSWORD": SECRET, "SENTIMENT_SSL_PASSWORD": SECRET + "-ssl"}
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "worker",
            "bench",
            "--quick",
            "--models",
            "tiny",
            "--output",
            str(output),
            "--cache-dir",
            str(tmp_path / "cache"),
            # the pipeline ceiling's near-free model uses the real uncased tokenizer (MiniLM's, from the materials)
            "--starter-cache",
            str(starter_cache_dir),
            "--no-progress",
            "--log-level",
            "debug",
        ],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    assert "report:" in result.stdout
    assert SECRET not in result.stdout + result.stderr

    markdown = (output / "report.md").read_text(encoding="utf-8")
    for section in SECTIONS:
        assert section in markdown, f"missing section {section}"
    assert "tiny" in markdown

    results = json.loads((output / "results.json").read_text(encoding="utf-8"))
    # A section or a run that failed is kept as a note (the rest of the report still runs): none may have failed.
    assert not results.get("errors"), results.get("errors")
    failed = [note for note in results["notes"] if any(w in note for w in ("failed", "not measured", "skipped"))]
    assert not failed, failed
    # The pipeline ceiling (bench --mode ceiling, part of all): every variant ran and measured its rate.
    ceiling = results["pipeline_ceiling"]
    variants = ceiling["variants"]
    assert set(variants) == set(DEFAULT_VARIANTS), sorted(variants)
    broken = {name: v.get("error", "no msgs_per_s") for name, v in variants.items() if "error" in v}
    broken |= {name: "no msgs_per_s" for name, v in variants.items() if not (v.get("msgs_per_s") or 0) > 0}
    assert not broken, broken
    assert ceiling["ratios"]["worker_over_loop_msgs_per_s"] > 0
    for key in ("machine", "models", "model_only", "end_to_end", "summary", "sgemm_before"):
        assert key in results, key
    assert results["machine"]["logical_cpus"]
    cells = results["model_only"]["tiny"]["cells"]
    assert {c["padding"] for c in cells} == {"none", "pad", "bucket"}
    assert {c["precision"] for c in cells} == {"fp32", "int8"}
    runs = results["end_to_end"]["runs"]
    ours = runs["ours-tiny-fp32"]
    assert ours["phases"]["saturation"]["complete"]
    assert {"load-25", "load-50", "load-90"} <= set(ours["phases"])
    assert ours["lag_timeline"]
    assert runs["naive-tiny"]["phases"]["saturation"]["received"] > 0
    assert results["end_to_end"]["torch_eager"]["tiny"]["msgs_per_s"] > 0
    http = results["end_to_end"]["http"]["tiny"]  # HTTP API alone and beside a 50% stream, against model-only
    for phase in ("alone", "with_stream"):
        levels = http[phase]["levels"]
        assert set(levels) == {"1", "16", "64"} and all(level["requests"] > 0 for level in levels.values()), phase
    assert all(http["ratios"][c]["http_over_model_only"] for c in ("1", "16", "64"))
    summary = results["summary"]["per_model"]["tiny"]
    assert summary["ours_over_naive"] is not None
    assert summary["ours_over_model_only"] is not None
    # Latency against load (bench --mode latency, part of all): every load delivered, its percentiles and targets.
    latency = results["latency"]
    assert [p["fraction"] for p in latency["loads"]] == [0.1, 0.25, 0.5, 0.75, 0.9]
    for load in latency["loads"]:
        assert load["complete"] and load["end_to_end"]["p99_ms"] > 0 and load["in_worker"]["count"] == load["sent"]
    assert latency["saturation"]["msgs_per_s"] > 0 and latency["model_only"]["batch8_ms"] > 0
    assert all(t["met"] is not None for t in latency["targets"]), latency["targets"]
    assert "## Latency against load" in (output / "latency.md").read_text(encoding="utf-8")
    assert json.loads((output / "latency.json").read_text(encoding="utf-8"))["loads"]

    try:
        import matplotlib  # noqa: F401
    except ImportError:
        assert "no plots" in markdown
    else:
        plots = ("throughput_vs_batch.png", "latency_cdf.png", "lag_over_time.png", "padding_waste.png", "latency.png")
        for plot in plots:
            assert (output / plot).stat().st_size > 0, plot
