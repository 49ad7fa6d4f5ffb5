"""Pipeline ceiling: what the worker's own path costs, side by side with what its stack can do on one core.

Run with a near-free model (``benchmarks.models``, key ``free``: the real uncased tokenizer, dim 32, one layer),
so that the model costs almost nothing and what is measured is the pipeline: Kafka client, JSON, tokenizer,
threads. Every variant reads the same preloaded input topic (its own consumer group, its own output topic) in its
own spawned process, one after the other in one run:

- ``worker``: ``sentiment-worker run`` (``worker.app.Worker``) with its default settings; ``worker_pool`` the same
  with ``threads`` = all cores (ONNX Runtime's intra-op pool, which the default leaves out for a model this small);
- ``loop``: a single-threaded loop on the same stack with the worker's speed-ups (orjson, 256 KiB producer
  batches, ``encode_batch_fast``, one ONNX Runtime thread), same model; ``loop_plain`` the same loop with the
  standard library's json and 16 KiB batches; ``passthrough`` / ``passthrough_json``: kafka-python consume +
  produce alone, and with orjson decode/encode; ``tokenizer``: the tokenizer alone (``benchmarks.ceiling_loops``);
- ``processes1`` / ``processes2``: ``sentiment-worker run --processes N`` as the CLI runs it, seen from outside
  (``benchmarks.ceiling_procs``: outputs counted by a consumer, CPU of the whole process tree);
- ``worker_cloudevents`` / ``worker_avro``: ``worker`` on the same records as CloudEvents (binary mode) and as Avro
  through the stand-in schema registry, Avro out (``benchmarks.ceiling_formats``), with the decode stage's cost per
  record and format alone;
- ``worker_traceparent`` / ``worker_otel``: ``worker`` on the same records with a W3C ``traceparent`` each, tracing
  off, and with OpenTelemetry spans exported over OTLP/HTTP to a stand-in collector (``benchmarks.ceiling_tracing``),
  with the no-op tracer's cost per model batch alone.

The targets hold for a near-free model (under 1 MFLOP per token: the worker then runs ONNX Runtime on one thread,
as the loop does). A real model (the starter: 21 MFLOP per token) keeps ONNX Runtime's thread pool and is bound by
the model, not by this pipeline: its figures are the end-to-end section's.

Each child counts the outputs the broker acknowledged and samples (wall time, the process's CPU time, count)
every 100 ms. The steady window runs from ``STEADY_FROM`` of the records to the last one (it leaves out process
start, model load and the group join): msg/s = records in the window ÷ its wall time, CPU µs/msg = the process's
CPU time (all its threads) in the window ÷ its records, cores = CPU seconds ÷ wall seconds.
"""

from __future__ import annotations

import contextlib
import json
import multiprocessing as mp
import os
import threading
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchmarks import ceiling_formats as formats
from benchmarks import ceiling_loops as loops
from benchmarks import ceiling_tracing as tracing
from benchmarks.ceiling_window import (
    STEADY_FROM,
    TIMEOUT_S,
    sample_until,
    steady,
    thread_cpu,
    thread_delta,
)
from worker.observability import get_logger

log = get_logger(__name__)

__all__ = ["STEADY_FROM", "TIMEOUT_S", "pipeline_ceiling", "ratios", "run_section", "steady", "thread_delta"]


# ---- the worker variants (child processes; the single-threaded ones are benchmarks.ceiling_loops) -------------
def _worker_pool(config: dict[str, Any]) -> Any:
    return _worker({**config, "settings": {**config.get("settings", {}), "threads": os.cpu_count() or 1}})


def _worker(config: dict[str, Any]) -> Any:
    from worker.app import Worker
    from worker.settings import load_settings

    settings = load_settings(
        bootstrap_servers=",".join(config["bootstrap"]),
        input_topics=config["topic"],
        output_topic=config["output_topic"],
        group_id=config["group_id"],
        model=config["model_dir"],
        session_timeout_ms=6000,
        heartbeat_interval_ms=1000,
        metrics_port=0,
        log_format="json",
        log_level="warning",
        **config.get("settings", {}),
    )
    worker = Worker(settings, model_dir=Path(config["model_dir"]))
    samples: list[Any] = []
    threads: dict[str, Any] = {}

    def produced() -> int:
        runner = worker.runner
        done = 0 if runner is None else int(runner.stats.produced)
        if "start" not in threads and done >= STEADY_FROM * config["total"]:
            threads["start"], threads["at"] = thread_cpu(), done
        return done

    def watch() -> None:
        samples.extend(sample_until(produced, config["total"], TIMEOUT_S))
        threads["end"] = thread_cpu()
        worker.stop()

    threading.Thread(target=watch, daemon=True).start()
    rc = worker.run()
    stats = worker.runner.stats if worker.runner is not None else None
    batching = {"avg_batch": round(stats.batch_items / max(1, stats.batches), 1)} if stats is not None else {}
    result = {**steady(samples, config["total"]), **batching, "rc": rc}
    if "start" in threads and "end" in threads:  # CPU µs per message by thread, over the steady window
        done = config["total"] - threads["at"]
        result["threads_cpu_us_per_msg"] = thread_delta(threads["start"], threads["end"], done)
    return result


DEFAULT_VARIANTS = (
    *("worker", "worker_pool", "loop", "loop_plain", "passthrough", "passthrough_json", "tokenizer"),
    *formats.FORMAT_VARIANTS,
    *tracing.TRACING_VARIANTS,
    *("processes1", "processes2"),
)
VARIANTS: dict[str, Callable[[dict[str, Any]], Any]] = {
    "worker": _worker,
    "worker_pool": _worker_pool,
    "worker_cloudevents": _worker,  # the format's topic and settings come in the config (pipeline_ceiling)
    "worker_avro": _worker,
    "worker_traceparent": _worker,  # the traced topic and the OTEL_* environment come in the config
    "worker_otel": _worker,
    "loop": loops.loop,
    "loop_plain": loops.loop_plain,
    "passthrough": loops.passthrough,
    "passthrough_json": loops.passthrough_json,
    "tokenizer": loops.tokenizer,
}


def _child(name: str, config: dict[str, Any], conn: Any) -> None:
    from worker.observability import configure_logging

    configure_logging("json", "warning")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")  # as the worker runs its tokenizer, in every variant
    os.environ.update(config.get("env", {}))  # a variant's own environment (the tracing variants' OTEL_*)
    try:
        conn.send(VARIANTS[name](config))
    except BaseException as exc:  # reported, not raised: the run goes on with the next variant
        conn.send({"error": repr(exc)})


def run_variant(name: str, config: dict[str, Any], timeout_s: float = TIMEOUT_S + 60) -> dict[str, Any]:
    ctx = mp.get_context("spawn")
    here, there = ctx.Pipe()
    process = ctx.Process(target=_child, args=(name, config, there), name=f"ceiling-{name}", daemon=True)
    process.start()
    there.close()  # the child's end: a child that dies without an answer then reads as EOF here
    result: dict[str, Any] = {"error": "no result (timed out)"}
    if here.poll(timeout_s):
        with contextlib.suppress(EOFError):
            result = dict(here.recv())
    process.join(30)
    if process.is_alive():
        process.kill()
    return result


# ---- the section ------------------------------------------------------------------------------------------
def preload(
    bootstrap: list[str],
    topic: str,
    texts: list[str],
    total: int,
    partitions: int,
    headers: Callable[[int], list[tuple[str, bytes]]] | None = None,
) -> None:
    """``total`` tweet-like JSON records (texts cycled, :func:`~benchmarks.ceiling_formats.record`) over
    ``partitions`` partitions, all acknowledged; ``headers(n)``: the ``n``-th record's headers (none if not given)."""
    from kafka import KafkaProducer
    from kafka.admin import KafkaAdminClient, NewTopic

    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        admin.create_topics([NewTopic(topic, partitions, 1)])
    finally:
        admin.close()
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=20, batch_size=65_536)
    for n in range(total):
        value = json.dumps(formats.record(n, texts)).encode()
        producer.send(topic, key=f"k{n % 64}".encode(), value=value, headers=headers(n) if headers else None)
    producer.flush(timeout=180)
    producer.close()


def pipeline_ceiling(
    bootstrap: list[str],
    model_dir: Path,
    texts: list[str],
    *,
    total: int = 40_000,
    partitions: int = 4,
    variants: tuple[str, ...] = DEFAULT_VARIANTS,
    worker_settings: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Every variant on the same ``total`` records, one after the other; ratios worker/loop and worker/stack."""
    topic = f"ceiling-{uuid.uuid4().hex[:8]}"
    preload(bootstrap, topic, texts, total, partitions)
    results: dict[str, Any] = {}
    found: dict[str, Any] = {}
    format_topics: dict[str, str] = {}
    with contextlib.ExitStack() as stack:
        registry_url = None
        if set(variants) & set(formats.FORMAT_VARIANTS):  # the same records as CloudEvents and Avro
            from devtools.schema_registry_standin import SchemaRegistryStandIn

            registry_url = stack.enter_context(SchemaRegistryStandIn()).url if "worker_avro" in variants else None
            try:
                format_topics = formats.preload(bootstrap, topic, texts, total, partitions, registry_url)
                found["decode_us_per_record"] = formats.decode_costs(texts[:4096])
            except ImportError as exc:  # no [schema-registry] extra: those variants say so, the others run
                log.warning("ceiling_formats_skipped", error=repr(exc))
                format_topics = {}
        traced: dict[str, dict[str, Any]] = {}
        sink = None
        if set(variants) & set(tracing.TRACING_VARIANTS):  # the same records with a traceparent each
            sink = stack.enter_context(tracing.counting_sink())
            traced_topic = f"{topic}-traced"
            preload(bootstrap, traced_topic, texts, total, partitions, headers=tracing.headers)
            traced = {
                name: {"topic": traced_topic, "env": tracing.env_for(name, sink)} for name in tracing.TRACING_VARIANTS
            }
            found["null_tracer"] = tracing.costs_alone()
        _run_variants(bootstrap, topic, model_dir, texts, total, variants, worker_settings, results,
                      format_topics, registry_url, traced)  # fmt: skip
        if sink is not None:  # what worker_otel exported
            found["otlp_sink"] = {"requests": sink.requests, "bytes": sink.bytes}
    return {
        "records": total,
        "partitions": partitions,
        "cpus": os.cpu_count(),
        "variants": results,
        "ratios": ratios(results),
        **found,
    }


def _run_variants(
    bootstrap: list[str],
    topic: str,
    model_dir: Path,
    texts: list[str],
    total: int,
    variants: tuple[str, ...],
    worker_settings: dict[str, Any] | None,
    results: dict[str, Any],
    format_topics: dict[str, str],
    registry_url: str | None,
    traced: dict[str, dict[str, Any]] | None = None,
) -> None:
    from benchmarks.ceiling_procs import run_processes

    for name in variants:
        if name.startswith("processes"):
            n = int(name.removeprefix("processes"))
            log.info("ceiling_variant", variant=name)
            results[name] = run_processes(bootstrap, topic, str(model_dir), total, n, worker_settings)
            continue
        config = {
            "bootstrap": bootstrap,
            "topic": topic,
            "output_topic": f"{topic}-{name}-out",
            "group_id": f"{topic}-{name}",
            "model_dir": str(model_dir),
            "total": total,
            "texts": texts[: min(len(texts), 4096)],
            "settings": worker_settings or {},
        }
        if name in formats.FORMAT_VARIANTS:
            if name not in format_topics:
                results[name] = {"error": "not prepared (the [schema-registry] extra is missing)"}
                continue
            config["topic"] = format_topics[name]
            config["settings"] = {**config["settings"], **formats.settings_for(name, registry_url)}
        config.update((traced or {}).get(name, {}))  # a tracing variant: its topic and OTEL_* environment
        log.info("ceiling_variant", variant=name)
        results[name] = run_variant(name, config)


def ratios(results: dict[str, Any]) -> dict[str, float]:
    """worker ÷ loop, the loop with the speed-ups ÷ without, 2 processes ÷ 1 (msg/s and CPU per message each)."""
    out: dict[str, float] = {}
    pairs = {
        "worker_over_loop": ("worker", "loop"),
        "worker_pool_over_loop": ("worker_pool", "loop"),
        "loop_over_loop_plain": ("loop", "loop_plain"),
        "processes2_over_processes1": ("processes2", "processes1"),
        "worker_cloudevents_over_worker": ("worker_cloudevents", "worker"),  # the same records as JSON
        "worker_avro_over_worker": ("worker_avro", "worker"),
        "worker_traceparent_over_worker": ("worker_traceparent", "worker"),  # the same records with a traceparent
        "worker_otel_over_worker_traceparent": ("worker_otel", "worker_traceparent"),  # spans on vs off
    }
    for name, (a, b) in pairs.items():
        ra, rb = results.get(a) or {}, results.get(b) or {}
        if ra.get("msgs_per_s") and rb.get("msgs_per_s"):
            out[f"{name}_msgs_per_s"] = round(ra["msgs_per_s"] / rb["msgs_per_s"], 2)
            out[f"{name}_cpu_per_msg"] = round(ra["cpu_us_per_msg"] / rb["cpu_us_per_msg"], 2)
    return out


# ---- the benchmark suite's section ------------------------------------------------------------------------
# One worker process with the worker's defaults, for a near-free model only: under 1 MFLOP per token, where the
# worker runs ONNX Runtime on one thread as the loop does (worker/model/threads.py). A real model keeps the thread
# pool and is bound by the model: its targets are end to end against model-only (benchmarks/end_to_end.py).
TARGET_MSGS_PER_S = 8_000
TARGET_CPU_US = 150.0
TARGET_OVER_LOOP = 1.0  # worker msg/s ÷ the single-threaded loop with the same speed-ups
TARGETS_HOLD_FOR = "a near-free model (under 1 MFLOP per token: one ONNX Runtime thread, as in the loop)"


def free_model_run(
    cache_dir: Path,
    measure: Callable[[list[str], Path, list[str]], dict[str, Any]],
    *,
    starter_cache: Path | None = None,
    bootstrap: list[str] | None = None,
    texts: list[str] | None = None,
) -> dict[str, Any]:
    """``measure(bootstrap, model_dir, texts)`` on the near-free model (fp32), 4,096 tweet-like texts unless given and
    a broker (an embedded one unless ``bootstrap``); its results with the model's description added."""
    from benchmarks import datasets as ds
    from benchmarks.models import prepare_model
    from devtools.broker import EmbeddedBroker

    model = prepare_model("free", ["fp32"], cache_dir, starter_cache=starter_cache)
    texts = texts or ds.generated("tweet", 4_096, seed=7).texts
    broker = None if bootstrap else EmbeddedBroker().start()
    try:
        found = measure(bootstrap or [broker.bootstrap], model.exports["fp32"], texts)  # type: ignore[union-attr]
    finally:
        if broker is not None:
            broker.stop()
    found["model"] = model.describe()
    return found


def run_section(
    cache_dir: Path,
    *,
    starter_cache: Path | None = None,
    bootstrap: list[str] | None = None,
    quick: bool = False,
    texts: list[str] | None = None,
    partitions: int = 4,
) -> dict[str, Any]:
    """The report's "Pipeline ceiling" section: the near-free model, every variant on the same records."""
    found = free_model_run(
        cache_dir,
        lambda servers, model_dir, records: pipeline_ceiling(
            servers, model_dir, records, total=4_000 if quick else 40_000, partitions=partitions
        ),
        starter_cache=starter_cache,
        bootstrap=bootstrap,
        texts=texts,
    )
    found["targets"] = {
        "msgs_per_s": TARGET_MSGS_PER_S,
        "cpu_us_per_msg": TARGET_CPU_US,
        "over_loop": TARGET_OVER_LOOP,
        "hold_for": TARGETS_HOLD_FOR,
    }
    return found
