"""The whole benchmark run: machine, models, model-only grid, the near-free model's sections, end-to-end runs and
baselines (``benchmarks.suite_e2e``), latency, ratios, report."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

from benchmarks import datasets as ds
from benchmarks import machine, sections
from benchmarks.config import (
    DATA_GRID_SIZE,
    FULL_GRID_SIZES,
    QUICK_GRID_SIZE,
    BenchConfig,
)
from benchmarks.models import BenchModel, ModelUnavailable, prepare_model
from benchmarks.suite_e2e import run_e2e
from benchmarks.summary import summarize
from worker.observability import get_logger

log = get_logger(__name__)


def _grid_datasets(config: BenchConfig, model: BenchModel) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for length in config.lengths:
        size = config.grid_size or (QUICK_GRID_SIZE if config.quick else FULL_GRID_SIZES[length])
        out[length] = ds.generated(length, size, seed=config.seed).texts
    if config.data:
        data = ds.resolve(config.data, text_field=config.text_field, cache_dir=config.cache_dir)
        size = config.grid_size or (QUICK_GRID_SIZE if config.quick else DATA_GRID_SIZE)
        out[data.name] = data.texts[:size]
    return out


def run(config: BenchConfig) -> dict[str, Any]:
    """Run the benchmark described by ``config``; write the report; return the results."""
    from benchmarks import report

    config.resolve_defaults()
    if config.data:  # fail fast on a bad --data before any model work
        ds.resolve(config.data, text_field=config.text_field, cache_dir=config.cache_dir)
    config.output.mkdir(parents=True, exist_ok=True)
    sections.MONITOR = monitor = machine.CpuMonitor(interval=2.0 if config.quick else 5.0).start()
    started = time.perf_counter()
    timings: dict[str, float] = {}
    results: dict[str, Any] = {
        "config": {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(config).items()},
        "timings_s": timings,
        "notes": [],
    }
    with sections.section("machine", timings):
        results["machine"] = machine.describe()
        results["load_before"] = {**machine.load_snapshot(), "others_cpu_share": machine.others_cpu_share(1.0)}
    if not results["machine"]["gpus"]:
        results["notes"].append(
            "No GPU on this machine: the GPU rows (CUDA fp32/fp16) are left empty; no number is estimated."
        )
    results["notes"].append(
        "ONNX Runtime sessions (model-only grid, baseline (c) and the worker) run with the worker's defaults: "
        "intra-op threads automatic (`threads=0`: one for a model under 1 MFLOP per token, else all cores), intra-op "
        "spinning off (`intra_op_spinning=false`)."
    )
    if not ds.parquet_supported():
        results["notes"].append("pyarrow is not installed: Parquet input is unavailable (JSONL/CSV/TXT work).")

    # ---- models ----------------------------------------------------------------------------------------------
    wanted = list(
        dict.fromkeys(
            [
                *(config.models if config.mode not in ("e2e", "ceiling", "device", "latency") else []),
                *(config.e2e_models if config.mode not in ("model", "ceiling", "device", "latency") else []),
            ]
        )
    )
    models: dict[str, BenchModel] = {}
    with sections.section("prepare_models", timings):
        for key in wanted:
            precisions = sorted(set(config.precisions) | set(config.e2e_precisions) | {"fp32"})
            try:
                models[key] = prepare_model(key, precisions, config.cache_dir, starter_cache=config.starter_cache)
            except ModelUnavailable as exc:
                results["notes"].append(f"model {key} skipped: {exc}")
                log.warning("bench.model_unavailable", model=key, error=str(exc))
    results["models"] = {m.key: m.describe() for m in models.values()}

    # ---- model-only grid ---------------------------------------------------------------------------------------
    if config.mode in ("model", "all"):
        from benchmarks.model_only import GridConfig, run_grid

        with sections.section("model_only", timings):
            results["sgemm_before"] = machine.sgemm_ceiling(threads=2, repeats=5 if config.quick else 7)
            grid: dict[str, Any] = {}
            for key in config.models:
                if key not in models:
                    continue
                grid_config = GridConfig(
                    batch_sizes=config.batch_sizes,
                    precisions=[p for p in config.precisions if p != "fp16"],
                    repeats=config.repeats,
                    threads=config.threads,
                    max_length=config.max_length,
                    seed=config.seed,
                    o3_datasets=config.o3_lengths or None,
                    bucket_window=config.max_batch_size,
                )
                sections.mark(f"model_only:{models[key].key}")
                grid[models[key].key] = run_grid(
                    models[key], _grid_datasets(config, models[key]), grid_config, progress=config.progress
                )
            results["model_only"] = grid
            results["sgemm_after"] = machine.sgemm_ceiling(threads=2, repeats=5 if config.quick else 7)

    # ---- pipeline ceiling: the near-free model (benchmarks/ceiling.py) -----------------------------------------------
    if config.mode in ("ceiling", "all"):
        from benchmarks.ceiling import run_section

        with sections.section("pipeline_ceiling", timings):
            _guarded(results, "pipeline_ceiling", "pipeline ceiling", lambda: _free_model_section(run_section, config))

    # ---- simulated device: how well the host feeds an accelerator (benchmarks/device.py) ---------------------------
    if config.mode in ("device", "all"):
        from benchmarks.device import run_section as device_section

        with sections.section("simulated_device", timings):
            _guarded(
                results, "simulated_device", "simulated device", lambda: _free_model_section(device_section, config)
            )

    # ---- end to end + baselines ----------------------------------------------------------------------------------
    if config.mode in ("e2e", "http", "all"):
        with sections.section("end_to_end", timings):
            results["end_to_end"] = run_e2e(config, models, results["notes"])

    # ---- latency against load (benchmarks/latency.py) -------------------------------------------------------------
    if config.mode in ("latency", "all"):
        with sections.section("latency", timings):
            _latency(config, results)

    results["load_after"] = {**machine.load_snapshot(), "others_cpu_share": machine.others_cpu_share(1.0)}
    monitor.stop()
    results["others_cpu"] = {"by_section": monitor.by_section(), "samples": monitor.samples}
    sections.MONITOR = None
    results["summary"] = summarize(results, config)
    timings["total"] = round(time.perf_counter() - started, 1)
    report.write(results, config.output)
    return results


def _latency(config: BenchConfig, results: dict[str, Any]) -> None:
    """p50/p99 at 10-90% of the model-only rate, on the first end-to-end model; latency.json/.md/.png written."""
    from benchmarks.latency import run_section
    from benchmarks.latency_report import write

    def measure() -> dict[str, Any]:
        found = run_section(
            config.cache_dir,
            model_key=config.e2e_models[0],
            starter_cache=config.starter_cache,
            bootstrap=config.bootstrap_servers,
            quick=config.quick,
            partitions=config.partitions,
            max_batch_size=config.max_batch_size,
            inference_batch_size=config.inference_batch_size,
            max_wait_ms=config.max_wait_ms,
            max_length=config.max_length,
            threads=config.threads,
            device=config.device,
            seed=config.seed,
        )
        write(found, config.output, results.get("machine"))
        return found

    _guarded(results, "latency", "latency", measure)


def _free_model_section(run_section: Callable[..., dict[str, Any]], config: BenchConfig) -> dict[str, Any]:
    """A near-free-model section (``benchmarks.ceiling`` or ``benchmarks.device``) with the run's settings."""
    return run_section(
        config.cache_dir,
        starter_cache=config.starter_cache,
        bootstrap=config.bootstrap_servers,
        quick=config.quick,
        partitions=config.partitions,
    )


def _guarded(results: dict[str, Any], key: str, what: str, measure: Callable[[], dict[str, Any]]) -> None:
    """``results[key] = measure()``; a failure is recorded in the results (``errors``) and noted in the report, and
    the other sections still run."""
    try:
        results[key] = measure()
    except Exception as exc:
        results.setdefault("errors", {})[key] = repr(exc)
        results["notes"].append(f"{what} not measured: {exc!r}")
        log.exception("bench.section_failed", section=key)
