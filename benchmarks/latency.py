"""Latency against load (``bench --mode latency``, also part of ``all``): p50/p99 at 10–90% of the model-only rate.

One run, side by side, on one model (the starter by default) with tweet-like records:

1. **model-only** (no Kafka, this process, the worker's batching): tokenise + infer the records in micro-batches of
   ``max_batch_size`` run in chunks of ``inference_batch_size`` (:func:`benchmarks.model_only.pipeline_ceiling`):
   the rate the loads are fractions of; and the model-only time of one 8-record batch (the unit of the targets);
2. the **worker** (``worker.app.Worker``, its own spawned process, default settings but ``fetch_max_wait_ms=10``:
   the embedded Tansu broker holds every fetch that long) behind the embedded broker (or ``--bootstrap-servers``);
3. an **external client** (:mod:`benchmarks.latency_client`, confluent-kafka) produces a warm-up, a saturation burst
   (end-to-end msg/s over the steady part of its drain, output timestamps), then a steady rate of 10, 25, 50, 75 and
   90% of the model-only rate for ``load_seconds`` each, lowest first;
4. per load: end-to-end latency (output record timestamp − input record timestamp) and in-worker latency
   (``sentiment_meta.latency_ms``) p50/p99 over every record of the load, the worker's batches (count, mean size,
   model ms per batch) and the CPU cores used by the worker, the broker and this process.

Targets (issue 21), judged on end-to-end latency at 50% load: p99 ≤ ``max_wait_ms`` + 6 × the 8-record batch time,
p50 ≤ ``max_wait_ms`` + 2 × it; end to end at saturation ≥ 0.95 × model-only. They are reported, never asserted.
"""

from __future__ import annotations

import os
import statistics
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from worker.observability import get_logger

log = get_logger(__name__)

LOADS = (0.1, 0.25, 0.5, 0.75, 0.9)
TARGET_LOAD = 0.5
TARGET_P99_BATCHES = 6  # p99 at 50% ≤ max_wait_ms + 6 × the model-only time of one 8-record batch
TARGET_P50_BATCHES = 2
TARGET_SATURATION = 0.95  # end to end at saturation ≥ 0.95 × model-only
FETCH_MAX_WAIT_MS = 10
STEADY_FROM = 0.1  # the saturation rate is taken from this fraction of the burst's outputs on
WARMUP = 32
MODEL_ONLY_SECONDS = 8.0  # records per model-only repeat: about this long at the rate a first probe measures


@dataclass
class LatencySpec:
    model_key: str
    model_dir: Path
    texts: list[str]
    max_batch_size: int
    inference_batch_size: int
    max_wait_ms: int
    max_length: int = 128
    threads: int = 0
    device: str = "auto"
    partitions: int = 4
    loads: tuple[float, ...] = LOADS
    load_seconds: float = 20.0
    saturation_seconds: float = 10.0
    model_only_repeats: int = 3
    bootstrap: list[str] | None = None
    cache_dir: str | None = None
    worker_settings: dict[str, Any] = field(default_factory=dict)


# ---- numbers ----------------------------------------------------------------------------------------------
def percentiles(values: list[float]) -> dict[str, Any]:
    if not values:
        return {"count": 0}
    a = np.asarray(values, dtype=float)
    return {
        "count": len(values),
        "p50_ms": round(float(np.percentile(a, 50)), 1),
        "p90_ms": round(float(np.percentile(a, 90)), 1),
        "p99_ms": round(float(np.percentile(a, 99)), 1),
        "max_ms": round(float(a.max()), 1),
        "mean_ms": round(float(a.mean()), 1),
    }


def steady_rate(out_ts_ms: list[int], steady_from: float = STEADY_FROM) -> float | None:
    """msg/s of a drained burst from its outputs' timestamps: the outputs after the first ``steady_from`` of them ÷
    the time they took (start-up of the drain left out)."""
    if len(out_ts_ms) < 10:
        return None
    ts = np.sort(np.asarray(out_ts_ms, dtype=float))
    start = int(len(ts) * steady_from)
    span = (ts[-1] - ts[start]) / 1000.0
    return float((len(ts) - 1 - start) / span) if span > 0 else None


def targets(result: dict[str, Any]) -> list[dict[str, Any]]:
    """The issue's targets, each with its bound, the measured value and whether it was met (None: not measured)."""
    batch8 = result.get("model_only", {}).get("batch8_ms")
    wait = result["settings"]["max_wait_ms"]
    at = next((p for p in result.get("loads", []) if p.get("fraction") == TARGET_LOAD), None)
    e2e = (at or {}).get("end_to_end", {})
    out: list[dict[str, Any]] = []
    for name, key, batches in (("p99", "p99_ms", TARGET_P99_BATCHES), ("p50", "p50_ms", TARGET_P50_BATCHES)):
        bound = round(wait + batches * batch8, 1) if batch8 else None
        measured = e2e.get(key)
        out.append(
            {
                "target": f"end-to-end {name} at 50% of model-only ≤ max_wait_ms + {batches} × 8-record batch",
                "bound": bound,
                "bound_ms_formula": f"{wait} + {batches} × {batch8}",
                "measured": measured,
                "met": None if bound is None or measured is None else measured <= bound,
            }
        )
    ratio = result.get("saturation", {}).get("over_model_only")
    out.append(
        {
            "target": f"end to end at saturation ≥ {TARGET_SATURATION} × model-only",
            "bound": TARGET_SATURATION,
            "measured": ratio,
            "met": None if ratio is None else ratio >= TARGET_SATURATION,
        }
    )
    return out


# ---- model-only ------------------------------------------------------------------------------------------------
def model_only(spec: LatencySpec) -> dict[str, Any]:
    """The model-only rate (tokenise + infer, batched like the worker) and the time of one 8-record batch."""
    from benchmarks.model_only import pipeline_ceiling
    from worker.model.runtime import SentimentModel

    model = SentimentModel.load(spec.model_dir, device=spec.device, threads=spec.threads, max_length=spec.max_length)
    batching = {"max_batch_size": spec.max_batch_size, "inference_batch_size": spec.inference_batch_size}
    probe = pipeline_ceiling(model, spec.texts[: 2 * spec.max_batch_size], repeats=1, **batching)["msgs_per_s"]
    # about MODEL_ONLY_SECONDS of records per repeat (a slow machine or model gets fewer, never under 4 batches)
    count = max(4 * spec.max_batch_size, min(len(spec.texts), round(probe * MODEL_ONLY_SECONDS)))
    out = pipeline_ceiling(model, spec.texts[:count], repeats=spec.model_only_repeats, **batching)
    for size in (1, 8):
        ids, _ = model.tokenize(spec.texts[:size])
        for _ in range(3):
            model.infer_ids(ids, chunk_size=spec.inference_batch_size)
        times = []
        for _ in range(10 if size == 1 else 30):
            started = time.perf_counter()
            model.infer_ids(ids, chunk_size=spec.inference_batch_size)
            times.append((time.perf_counter() - started) * 1000)
        out[f"batch{size}_ms"] = round(statistics.median(times), 2)
    out["provider"] = model.provider
    return out


# ---- through Kafka ---------------------------------------------------------------------------------------------
def run(spec: LatencySpec) -> dict[str, Any]:
    """Model-only, then the worker through Kafka at saturation and at each load (see the module's doc)."""
    from benchmarks import machine
    from benchmarks.end_to_end import Child, _stats_delta, _worker_child
    from benchmarks.harness import CpuAccount
    from benchmarks.latency_client import OutputReader, PacedProducer
    from devtools.broker import EmbeddedBroker, create_topics

    result: dict[str, Any] = {
        "model": spec.model_key,
        "settings": {
            "max_batch_size": spec.max_batch_size,
            "inference_batch_size": spec.inference_batch_size,
            "max_wait_ms": spec.max_wait_ms,
            "fetch_max_wait_ms": FETCH_MAX_WAIT_MS,
            "partitions": spec.partitions,
            "threads": spec.threads or "automatic (0)",
            **spec.worker_settings,
        },
        "load_seconds": spec.load_seconds,
        "load_before": {**machine.load_snapshot(), "others_cpu_share": machine.others_cpu_share(1.0)},
    }
    monitor = machine.CpuMonitor(interval=2.0).start()
    monitor.section = "sgemm"
    result["sgemm"] = machine.sgemm_ceiling(threads=2, repeats=3)  # how fast the CPU is right now (a noise gauge)
    monitor.section = "model_only"
    result["model_only"] = rate = model_only(spec)
    broker = None if spec.bootstrap else EmbeddedBroker().start()
    bootstrap = spec.bootstrap or [broker.bootstrap]  # type: ignore[union-attr]
    run_id = uuid.uuid4().hex[:8]
    topic, output_topic = f"latency.{run_id}", f"latency.{run_id}.sentiment"
    create_topics(bootstrap, {topic: spec.partitions, output_topic: spec.partitions})
    reader = OutputReader(bootstrap[0], output_topic, spec.partitions)
    reader.start()
    producer = PacedProducer(",".join(bootstrap), topic)
    overrides = {
        "bootstrap_servers": ",".join(bootstrap),
        "input_topics": topic,
        "group_id": f"latency-{run_id}",
        "model": str(spec.model_dir),
        "device": spec.device,
        "threads": spec.threads,
        "max_length": spec.max_length,
        "max_batch_size": spec.max_batch_size,
        "max_wait_ms": spec.max_wait_ms,
        "inference_batch_size": spec.inference_batch_size,
        "fetch_max_wait_ms": FETCH_MAX_WAIT_MS,
        "session_timeout_ms": 6000,
        "heartbeat_interval_ms": 1000,
        "log_format": "json",
        "log_level": "warning",
        **({"cache_dir": spec.cache_dir} if spec.cache_dir else {}),
        **spec.worker_settings,
    }
    child = Child(_worker_child, (overrides, str(spec.model_dir)), name=f"latency-worker-{run_id}").start()
    cpu = CpuAccount({"worker": child.process.pid, "bench": os.getpid(), "broker": broker.pid if broker else None})
    started = time.monotonic()
    try:
        monitor.section = "warmup"
        sent = producer.send("warmup", spec.texts[:WARMUP])
        if not reader.wait_for("warmup", sent["sent"], timeout=180):
            raise RuntimeError(f"no outputs for the warm-up within 180 s (reader error: {reader.error})")
        result["startup_s"] = round(time.monotonic() - started, 1)
        monitor.section = "saturation"
        result["saturation"] = _saturation(spec, producer, reader, child, cpu, rate["msgs_per_s"], _stats_delta)
        result["loads"] = []
        for fraction in spec.loads:
            monitor.section = f"load-{round(fraction * 100)}"
            phase = _load(spec, producer, reader, child, cpu, fraction, rate["msgs_per_s"], _stats_delta)
            result["loads"].append(phase)
            time.sleep(1.0)  # the worker idles between loads: each starts from an empty pipeline
    finally:
        result["worker_exit"] = child.stop()
        reader.stop()
        producer.close()
        if broker is not None:
            broker.stop()
        monitor.stop()
    result["duplicates"] = reader.duplicates
    result["broker"] = "external: " + ",".join(bootstrap) if spec.bootstrap else "embedded Tansu"
    result["others_cpu"] = monitor.by_section()
    result["load_after"] = {**machine.load_snapshot(), "others_cpu_share": machine.others_cpu_share(1.0)}
    result["wall_s"] = round(time.monotonic() - started, 1)
    result["targets"] = targets(result)
    return result


def _saturation(
    spec: LatencySpec, producer: Any, reader: Any, child: Any, cpu: Any, model_rate: float, delta: Any
) -> dict[str, Any]:
    count = max(4 * spec.max_batch_size, round(spec.saturation_seconds * model_rate))
    texts = [spec.texts[i % len(spec.texts)] for i in range(count)]
    before, cpu_before = child.request_stats(), cpu.snapshot()
    sent = producer.send("saturation", texts)
    complete = reader.wait_for("saturation", sent["sent"], timeout=60 + 3 * count / max(model_rate, 1.0))
    outputs = reader.take("saturation")
    rate = steady_rate([ts for _e, _w, ts in outputs])
    return {
        "sent": sent["sent"],
        "received": len(outputs),
        "complete": complete,
        "msgs_per_s": round(rate, 1) if rate else None,
        "over_model_only": round(rate / model_rate, 3) if rate and model_rate else None,
        "worker": delta(before, child.request_stats()),
        "cores": cpu.cores(cpu_before),
    }


def _load(
    spec: LatencySpec,
    producer: Any,
    reader: Any,
    child: Any,
    cpu: Any,
    fraction: float,
    model_rate: float,
    delta: Any,
) -> dict[str, Any]:
    name = f"load-{round(fraction * 100)}"
    offered = fraction * model_rate
    before, cpu_before = child.request_stats(), cpu.snapshot()
    sent = producer.send(name, spec.texts, rate=offered, seconds=spec.load_seconds)
    complete = reader.wait_for(name, sent["sent"], timeout=30 + 2 * spec.load_seconds)
    outputs = reader.take(name)
    log.info("bench.latency_load", load=name, offered=round(offered, 1), received=len(outputs))
    return {
        "fraction": fraction,
        "offered_msgs_per_s": round(offered, 1),
        "sent": sent["sent"],
        "producer_seconds": sent["seconds"],
        "producer_max_behind_s": sent["max_behind_s"],
        "received": len(outputs),
        "complete": complete,
        "end_to_end": percentiles([e for e, _w, _t in outputs]),
        "in_worker": percentiles([w for _e, w, _t in outputs]),
        "worker": delta(before, child.request_stats()),
        "cores": cpu.cores(cpu_before),
    }


# ---- the section -------------------------------------------------------------------------------------------
def run_section(
    cache_dir: Path,
    *,
    model_key: str = "starter",
    starter_cache: Path | None = None,
    bootstrap: list[str] | None = None,
    quick: bool = False,
    loads: tuple[float, ...] = LOADS,
    load_seconds: float | None = None,
    partitions: int = 4,
    max_batch_size: int = 64,
    inference_batch_size: int = 8,
    max_wait_ms: int = 20,
    max_length: int = 128,
    threads: int = 0,
    device: str = "auto",
    seed: int = 0,
) -> dict[str, Any]:
    """The latency section: its model prepared, tweets generated, :func:`run`; ``quick``: seconds, not minutes."""
    from benchmarks import datasets as ds
    from benchmarks.models import prepare_model

    model = prepare_model(model_key, ["fp32"], cache_dir, starter_cache=starter_cache)
    spec = LatencySpec(
        model_key=model.key,
        model_dir=model.exports["fp32"],
        texts=ds.generated("tweet", 512 if quick else 4_096, seed=seed + 11).texts,
        max_batch_size=max_batch_size,
        inference_batch_size=inference_batch_size,
        max_wait_ms=max_wait_ms,
        max_length=max_length,
        threads=threads,
        device=device,
        partitions=partitions,
        loads=tuple(loads),
        load_seconds=load_seconds or (1.0 if quick else 20.0),
        saturation_seconds=0.5 if quick else 10.0,
        model_only_repeats=1 if quick else 3,
        bootstrap=bootstrap,
        cache_dir=str(cache_dir),
    )
    result = run(spec)
    result["model_info"] = model.describe()
    result["quick"] = quick
    return result
