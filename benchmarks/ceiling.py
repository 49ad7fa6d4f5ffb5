"""Pipeline ceiling: what the worker's own path costs, side by side with what its stack can do on one core.

Run with a near-free model (``benchmarks.models``, key ``free``: the real uncased tokenizer, dim 32, one layer),
so that the model costs almost nothing and what is measured is the pipeline: Kafka client, JSON, tokenizer,
threads. Every variant reads the same preloaded input topic (its own consumer group, its own output topic) in its
own spawned process, one after the other in one run:

- ``worker``: ``sentiment-worker run`` (``worker.app.Worker``) with its default settings; ``worker_pool`` the same
  with ``threads`` = all cores (ONNX Runtime's intra-op pool, which the default leaves out for a model this small);
- ``loop``: a single-threaded loop on the same stack: kafka-python poll → ``json.loads`` → ``encode_batch`` →
  ONNX Runtime → numpy softmax → ``json.dumps`` → ``KafkaProducer.send`` (acks=all, idempotent), same model;
- ``passthrough``: kafka-python consume + produce of the same records (no JSON, no model);
- ``passthrough_json``: the same plus ``json.loads`` and ``json.dumps`` of each record;
- ``tokenizer``: the fast tokenizer's whole-batch ``encode_batch`` on the same texts, no Kafka;
- ``processes1`` / ``processes2``: ``sentiment-worker run --processes N`` as the CLI runs it, seen from outside
  (``benchmarks.ceiling_procs``: outputs counted by a consumer, CPU of the whole process tree).

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
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from worker.observability import get_logger

log = get_logger(__name__)

STEADY_FROM = 0.2  # the steady window starts once this fraction of the records is acknowledged
SAMPLE_S = 0.1  # the sampler is a thread of the measured process: kept rare so its own CPU stays negligible
CHUNK = 64  # the loop's model batch (the worker's default max_batch_size)
TIMEOUT_S = 300.0

Counter = Callable[[], int]


def thread_cpu() -> dict[str, float]:
    """CPU seconds per thread of this process (Linux ``/proc/self/task``; empty elsewhere), by the Python thread's
    name; threads Python didn't start (ONNX Runtime's pool, the tokenizer's) are summed as ``native``."""
    tick = float(os.sysconf("SC_CLK_TCK"))
    names = {t.native_id: t.name for t in threading.enumerate()}
    out: dict[str, float] = {}
    with contextlib.suppress(OSError):
        for task in os.listdir("/proc/self/task"):
            with contextlib.suppress(OSError, ValueError, IndexError):
                name = names.get(int(task), "native")
                with open(f"/proc/self/task/{task}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
                out[name] = out.get(name, 0.0) + (int(fields[11]) + int(fields[12])) / tick
    return out


def _thread_delta(before: dict[str, float], after: dict[str, float], n: int) -> dict[str, float]:
    """CPU µs per message, by thread name, between two :func:`thread_cpu` readings (threads under 1 µs left out)."""
    per = {name: (after[name] - before.get(name, 0.0)) / n * 1e6 for name in after}
    return {name: round(us, 1) for name, us in sorted(per.items(), key=lambda kv: -kv[1]) if us >= 1.0}


# ---- sampling (in the child) --------------------------------------------------------------------------------
def _sample_until(count: Counter, total: int, timeout_s: float) -> list[tuple[float, float, int]]:
    """(wall, process CPU, acknowledged) every SAMPLE_S until ``total`` are acknowledged or the timeout."""
    samples: list[tuple[float, float, int]] = []
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        done = count()
        samples.append((time.monotonic(), time.process_time(), done))
        if done >= total:
            break
        time.sleep(SAMPLE_S)
    return samples


def steady(samples: list[tuple[float, float, int]], total: int) -> dict[str, Any]:
    """msg/s, CPU µs per message and cores over the steady window of ``samples`` (see the module's doc)."""
    if not samples or samples[-1][2] < total:
        done = samples[-1][2] if samples else 0
        return {"error": f"only {done} of {total} records were acknowledged in time"}
    start = next(s for s in samples if s[2] >= STEADY_FROM * total)
    end = samples[-1]
    wall, cpu, n = end[0] - start[0], end[1] - start[1], end[2] - start[2]
    if n <= 0 or wall <= 0:
        return {"error": "the steady window is empty"}
    return {
        "msgs_per_s": round(n / wall, 1),
        "cpu_us_per_msg": round(cpu / n * 1e6, 1),
        "cores": round(cpu / wall, 2),
        "window_records": n,
        "window_s": round(wall, 3),
    }


# ---- the variants (child processes) -------------------------------------------------------------------------
def _consumer(config: dict[str, Any]) -> Any:
    from kafka import KafkaConsumer

    return KafkaConsumer(
        config["topic"],
        bootstrap_servers=config["bootstrap"],
        group_id=config["group_id"],
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        max_poll_records=500,
        session_timeout_ms=6000,
        heartbeat_interval_ms=1000,
    )


def _producer(config: dict[str, Any]) -> Any:
    from kafka import KafkaProducer

    return KafkaProducer(
        bootstrap_servers=config["bootstrap"], acks="all", enable_idempotence=True, linger_ms=5, batch_size=16_384
    )


class _Acks:
    def __init__(self) -> None:
        self.n = 0

    def __call__(self, _metadata: Any) -> None:
        self.n += 1  # one writer: the producer's IO thread


def _kafka_loop(config: dict[str, Any], transform: Callable[[list[Any]], list[tuple[bytes | None, bytes]]]) -> Any:
    """Consume the input, ``transform`` each poll's records per partition into (key, value)s, produce them."""
    consumer, producer, acks = _consumer(config), _producer(config), _Acks()
    total, out = config["total"], config["output_topic"]
    samples: list[Any] = []
    sampler = threading.Thread(target=lambda: samples.extend(_sample_until(lambda: acks.n, total, TIMEOUT_S)))
    sampler.start()
    consumed = 0
    while consumed < total and sampler.is_alive():
        for tp, records in consumer.poll(timeout_ms=100).items():
            consumed += len(records)
            for key, value in transform(records):
                producer.send(out, key=key, value=value, partition=tp.partition).add_callback(acks)
        if consumed:
            consumer.commit_async()
    sampler.join()
    producer.close(timeout=10)
    consumer.close()
    return steady(samples, total)


def _passthrough(config: dict[str, Any]) -> Any:
    return _kafka_loop(config, lambda records: [(r.key, r.value) for r in records])


def _passthrough_json(config: dict[str, Any]) -> Any:
    def transform(records: list[Any]) -> list[tuple[bytes | None, bytes]]:
        return [(r.key, json.dumps(json.loads(r.value)).encode()) for r in records]

    return _kafka_loop(config, transform)


def _loop(config: dict[str, Any]) -> Any:
    import numpy as np

    from worker.model.runtime import SentimentModel

    model = SentimentModel.load(Path(config["model_dir"]), device="cpu", threads=1)
    labels = list(model.labels)

    def transform(records: list[Any]) -> list[tuple[bytes | None, bytes]]:
        out: list[tuple[bytes | None, bytes]] = []
        for start in range(0, len(records), CHUNK):
            chunk = records[start : start + CHUNK]
            payloads = [json.loads(r.value) for r in chunk]
            ids, _truncated = model.tokenize([p["text"] for p in payloads])
            lengths = np.fromiter((len(x) for x in ids), dtype=np.int64, count=len(ids))
            width = int(lengths.max())
            input_ids = np.zeros((len(ids), width), dtype=np.int64)
            for row, seq in enumerate(ids):
                input_ids[row, : len(seq)] = seq
            mask = (np.arange(width)[None, :] < lengths[:, None]).astype(np.int64)
            logits = model.batch_logits(input_ids, mask)
            exp = np.exp(logits - logits.max(axis=1, keepdims=True))
            probs = exp / exp.sum(axis=1, keepdims=True)
            best = probs.argmax(axis=1).tolist()
            for r, p, row, top in zip(chunk, payloads, probs.tolist(), best, strict=True):
                p["sentiment"] = {"label": labels[top], "score": row[top]}
                out.append((r.key, json.dumps(p).encode()))
        return out

    return _kafka_loop(config, transform)


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
        samples.extend(_sample_until(produced, config["total"], TIMEOUT_S))
        threads["end"] = thread_cpu()
        worker.stop()

    threading.Thread(target=watch, daemon=True).start()
    rc = worker.run()
    stats = worker.runner.stats if worker.runner is not None else None
    batching = {"avg_batch": round(stats.batch_items / max(1, stats.batches), 1)} if stats is not None else {}
    result = {**steady(samples, config["total"]), **batching, "rc": rc}
    if "start" in threads and "end" in threads:  # CPU µs per message by thread, over the steady window
        done = config["total"] - threads["at"]
        result["threads_cpu_us_per_msg"] = _thread_delta(threads["start"], threads["end"], done)
    return result


def _tokenizer(config: dict[str, Any]) -> Any:
    from worker.model.runtime import SentimentModel

    model = SentimentModel.load(Path(config["model_dir"]), device="cpu", threads=1)
    texts = config["texts"]
    best = float("inf")
    for _ in range(3):
        started_wall, started_cpu = time.perf_counter(), time.process_time()
        for start in range(0, len(texts), CHUNK):
            model.tokenize(texts[start : start + CHUNK])
        best = min(best, time.process_time() - started_cpu)
        wall = time.perf_counter() - started_wall
    return {"cpu_us_per_msg": round(best / len(texts) * 1e6, 1), "msgs_per_s": round(len(texts) / wall, 1)}


DEFAULT_VARIANTS = (
    *("worker", "worker_pool", "loop", "passthrough", "passthrough_json", "tokenizer"),
    *("processes1", "processes2"),
)
VARIANTS: dict[str, Callable[[dict[str, Any]], Any]] = {
    "worker": _worker,
    "worker_pool": _worker_pool,
    "loop": _loop,
    "passthrough": _passthrough,
    "passthrough_json": _passthrough_json,
    "tokenizer": _tokenizer,
}


def _child(name: str, config: dict[str, Any], conn: Any) -> None:
    from worker.observability import configure_logging

    configure_logging("json", "warning")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")  # as the worker runs its tokenizer, in every variant
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
def preload(bootstrap: list[str], topic: str, texts: list[str], total: int, partitions: int) -> None:
    """``total`` tweet-like JSON records (texts cycled) over ``partitions`` partitions, all acknowledged."""
    from kafka import KafkaProducer
    from kafka.admin import KafkaAdminClient, NewTopic

    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        admin.create_topics([NewTopic(topic, partitions, 1)])
    finally:
        admin.close()
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=20, batch_size=65_536)
    for n in range(total):
        value = {"id": f"c-{n}", "user": f"u{n % 997}", "lang": "en", "text": texts[n % len(texts)]}
        producer.send(topic, key=f"k{n % 64}".encode(), value=json.dumps(value).encode())
    producer.flush(timeout=120)
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
    from benchmarks.ceiling_procs import run_processes

    topic = f"ceiling-{uuid.uuid4().hex[:8]}"
    preload(bootstrap, topic, texts, total, partitions)
    results: dict[str, Any] = {}
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
        log.info("ceiling_variant", variant=name)
        results[name] = run_variant(name, config)
    return {
        "records": total,
        "partitions": partitions,
        "cpus": os.cpu_count(),
        "variants": results,
        "ratios": ratios(results),
    }


def ratios(results: dict[str, Any]) -> dict[str, float]:
    """worker ÷ loop (msg/s and CPU per message), and 2 processes ÷ 1 (msg/s, CPU per message)."""
    out: dict[str, float] = {}
    pairs = {
        "worker_over_loop": ("worker", "loop"),
        "worker_pool_over_loop": ("worker_pool", "loop"),
        "processes2_over_processes1": ("processes2", "processes1"),
    }
    for name, (a, b) in pairs.items():
        ra, rb = results.get(a) or {}, results.get(b) or {}
        if ra.get("msgs_per_s") and rb.get("msgs_per_s"):
            out[f"{name}_msgs_per_s"] = round(ra["msgs_per_s"] / rb["msgs_per_s"], 2)
            out[f"{name}_cpu_per_msg"] = round(ra["cpu_us_per_msg"] / rb["cpu_us_per_msg"], 2)
    return out


# ---- the benchmark suite's section ------------------------------------------------------------------------
TARGET_MSGS_PER_S = 8_000  # one worker process with the near-free model (issue 13)
TARGET_CPU_US = 150.0


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
    from benchmarks import datasets as ds
    from benchmarks.models import prepare_model
    from devtools.broker import EmbeddedBroker

    model = prepare_model("free", ["fp32"], cache_dir, starter_cache=starter_cache)
    total = 4_000 if quick else 40_000
    texts = texts or ds.generated("tweet", 4_096, seed=7).texts
    broker = None if bootstrap else EmbeddedBroker().start()
    try:
        found = pipeline_ceiling(
            bootstrap or [broker.bootstrap],  # type: ignore[union-attr]
            model.exports["fp32"],
            texts,
            total=total,
            partitions=partitions,
        )
    finally:
        if broker is not None:
            broker.stop()
    found["model"] = model.describe()
    found["targets"] = {"msgs_per_s": TARGET_MSGS_PER_S, "cpu_us_per_msg": TARGET_CPU_US}
    return found
