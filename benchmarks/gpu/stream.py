"""Stream measurements of the GPU check, through the embedded broker: the naive per-message ``pipeline()``
consumer, and the worker end to end with 1, 4 and 8 processes.

End-to-end method, per process count: a new empty input topic; the workers start and the check waits until
``/readyz`` answers 200 (model loaded, group joined), then a few producer processes write N records as fast as they
can while the group's committed offsets are sampled (commits every 200 ms). The rate is the slope of committed
records between 10% and 90% of N, so start-up and the tail are left out; the producers' own rate is reported beside
it (if it is not well above the workers' rate, the producers were the limit).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchmarks.gpu.measure import GpuSampler

GROUP = {"session_timeout_ms": 2000, "heartbeat_interval_ms": 500}  # quick joins on the embedded broker


def _produce_part(bootstrap: str, topic: str, texts: Sequence[str], start: int, count: int) -> None:
    from kafka import KafkaProducer

    producer = KafkaProducer(bootstrap_servers=bootstrap, acks=1, linger_ms=20, batch_size=256 * 1024)
    for i in range(start, start + count):
        value = json.dumps({"id": f"m{i}", "text": texts[i % len(texts)]}).encode()
        producer.send(topic, key=str(i % 64).encode(), value=value)
    producer.flush()
    producer.close()


def produce_backlog(
    bootstrap: str, topic: str, texts: Sequence[str], count: int, partitions: int, producers: int = 1
) -> dict[str, Any]:
    """Write ``count`` JSON records with ``producers`` processes (kafka-python, ~20-35k msg/s each)."""
    import multiprocessing

    from devtools.broker import create_topics

    create_topics(bootstrap, {topic: partitions})
    started = time.perf_counter()
    share = -(-count // producers)
    parts = [(i * share, min(share, count - i * share)) for i in range(producers) if i * share < count]
    procs = [
        multiprocessing.get_context("spawn").Process(
            target=_produce_part, args=(bootstrap, topic, list(texts), start, n), daemon=True
        )
        for start, n in parts
    ]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join()
    elapsed = time.perf_counter() - started
    failed = [proc.exitcode for proc in procs if proc.exitcode != 0]
    return {"records": count, "producers": len(procs), "seconds": round(elapsed, 2),
            "msg_per_s": round(count / elapsed, 1), "failed_producers": failed}  # fmt: skip


def committed_total(admin: Any, group: str, topic: str) -> int:
    offsets = admin.list_group_offsets({group: None}).get(group, {})
    return sum(meta.offset for tp, meta in offsets.items() if tp.topic == topic and meta.offset >= 0)


def steady_rate(samples: list[tuple[float, int]], total: int, low: float = 0.1, high: float = 0.9) -> float | None:
    """records/s between the first samples at ≥ ``low`` and ≥ ``high`` of ``total`` (None: not reached)."""
    first = next(((t, n) for t, n in samples if n >= low * total), None)
    last = next(((t, n) for t, n in samples if n >= high * total), None)
    if first is None or last is None or last[0] <= first[0]:
        return None
    return (last[1] - first[1]) / (last[0] - first[0])


def naive_consumer(
    bootstrap: str, topic: str, hf_dir: Path, *, device: str, seconds: float, sampler: GpuSampler
) -> dict[str, Any]:
    """transformers ``pipeline()`` one message at a time: poll → json → classify → produce (PyTorch, fp32)."""
    import torch
    from kafka import KafkaConsumer, KafkaProducer
    from transformers import pipeline

    classifier = pipeline("text-classification", model=str(hf_dir), device=0 if device == "cuda" else -1)
    consumer = KafkaConsumer(
        topic, bootstrap_servers=bootstrap, group_id="naive", auto_offset_reset="earliest", **GROUP
    )
    producer = KafkaProducer(bootstrap_servers=bootstrap)
    processed = 0
    started: float | None = None
    try:
        while started is None or time.monotonic() - started < seconds:
            records = [r for batch in consumer.poll(timeout_ms=200, max_records=1).values() for r in batch]
            for record in records:  # one message at a time
                value = json.loads(record.value)
                result = classifier(value["text"], truncation=True, max_length=128)[0]
                value["sentiment"] = {"label": result["label"], "score": result["score"]}
                producer.send(f"{topic}-out", key=record.key, value=json.dumps(value).encode())
                if started is None:  # the first message pays for CUDA start-up: timed from the second
                    started = time.monotonic()
                else:
                    processed += 1
        producer.flush()
    finally:
        consumer.close()
        producer.close()
    elapsed = time.monotonic() - (started or time.monotonic())
    return {
        "msg_per_s": round(processed / elapsed, 1) if elapsed > 0 else None,
        "processed": processed,
        "seconds": round(elapsed, 2),
        "torch": torch.__version__,
        "device": device,
        **sampler.window(started or 0.0, time.monotonic()),
    }


def supervisor_available() -> bool:
    """Whether `sentiment-worker run --processes N` is implemented in this tree (worker/supervisor)."""
    try:
        from worker.supervisor import run_processes  # noqa: F401
    except Exception:
        return False
    return True


def _worker_env(bootstrap: str, topic: str, group: str, model_dir: Path, device: str, extra: dict[str, str]) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SENTIMENT_")}
    env.update(
        {
            "SENTIMENT_BOOTSTRAP_SERVERS": bootstrap,
            "SENTIMENT_INPUT_TOPICS": topic,
            "SENTIMENT_OUTPUT_TOPIC": f"{group}-out",
            "SENTIMENT_DLQ_TOPIC": f"{group}-dlq",
            "SENTIMENT_GROUP_ID": group,
            "SENTIMENT_MODEL": str(model_dir),
            "SENTIMENT_DEVICE": device,
            "SENTIMENT_AUTO_OFFSET_RESET": "earliest",
            "SENTIMENT_SESSION_TIMEOUT_MS": str(GROUP["session_timeout_ms"]),
            "SENTIMENT_HEARTBEAT_INTERVAL_MS": str(GROUP["heartbeat_interval_ms"]),
            "SENTIMENT_LOG_FORMAT": "json",
            "SENTIMENT_LOG_LEVEL": "warning",
            **extra,
        }
    )
    return env


def _wait_ready(ports: list[int], procs: list[subprocess.Popen[bytes]], timeout_s: float) -> bool:
    import urllib.request

    deadline = time.monotonic() + timeout_s
    pending = set(ports)
    while pending and time.monotonic() < deadline:
        if any(p.poll() is not None for p in procs):
            return False
        for port in list(pending):
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=1) as answer:
                    if answer.status == 200:
                        pending.discard(port)
            except Exception:
                pass
        time.sleep(0.25)
    return not pending


def end_to_end(
    bootstrap: str,
    texts: Sequence[str],
    total: int,
    model_dir: Path,
    processes: int,
    *,
    device: str,
    partitions: int,
    producers: int,
    timeout_s: float,
    sampler: GpuSampler,
    log_dir: Path,
    launch: str = "auto",
    extra_env: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Start ``processes`` workers, wait until ready, produce ``total`` records, measure the steady msg/s."""
    import threading

    from kafka.admin import KafkaAdminClient

    from devtools.broker import create_topics
    from devtools.ports import free_port

    group = f"e2e-p{processes}-{int(time.time())}"
    topic = f"{group}-in"
    create_topics(bootstrap, {topic: partitions})
    use_supervisor = launch == "supervisor" or (launch == "auto" and processes > 1 and supervisor_available())
    extra = {"SENTIMENT_COMMIT_INTERVAL_MS": "200", **(extra_env or {})}
    # CPU: one intra-op thread per process (2 cores here); CUDA: the CPU only runs the few nodes ORT keeps there
    extra.setdefault("SENTIMENT_THREADS", "1" if device == "cpu" else "2")
    env = _worker_env(bootstrap, topic, group, model_dir, device, extra)
    ports = [free_port() for _ in range(1 if use_supervisor else processes)]
    commands = (
        [({**env, "SENTIMENT_PROCESSES": str(processes), "SENTIMENT_METRICS_PORT": str(ports[0])}, "supervisor")]
        if use_supervisor
        else [({**env, "SENTIMENT_METRICS_PORT": str(port)}, f"worker-{i}") for i, port in enumerate(ports)]
    )
    procs: list[subprocess.Popen[bytes]] = []
    log_dir.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    for proc_env, name in commands:
        log = (log_dir / f"{group}-{name}.log").open("wb")
        procs.append(
            subprocess.Popen(
                [sys.executable, "-m", "worker", "run"],
                env=proc_env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        )
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    samples: list[tuple[float, int]] = []
    done = 0
    produced: dict[str, Any] = {}
    ready = False
    try:
        ready = _wait_ready(ports, procs, timeout_s / 2)
        ready_s = time.monotonic() - started
        if ready:
            time.sleep(2.0)  # let the group settle after the last join
            producer = threading.Thread(
                target=lambda: produced.update(produce_backlog(bootstrap, topic, texts, total, partitions, producers))
            )
            t0 = time.monotonic()
            producer.start()
            while time.monotonic() - started < timeout_s:
                time.sleep(0.1)
                try:
                    done = committed_total(admin, group, topic)
                except Exception:
                    continue
                samples.append((time.monotonic(), done))
                if done >= total or any(p.poll() is not None for p in procs):
                    break
            producer.join(timeout=60)
    finally:
        admin.close()
        exit_codes = _stop(procs)
    rate = steady_rate(samples, total)
    window: dict[str, Any] = {}
    if rate is not None:
        low = next(t for t, n in samples if n >= 0.1 * total)
        window = sampler.window(low, next(t for t, n in samples if n >= 0.9 * total))
    return {
        "processes": processes,
        "launch": "supervisor (run --processes)" if use_supervisor else "separate `run` processes",
        "ready": ready,
        "seconds_to_ready": round(ready_s, 2) if ready else None,
        "records": total,
        "committed": done,
        "msg_per_s": round(rate, 1) if rate is not None else None,
        "seconds_to_all_committed": round(samples[-1][0] - t0, 2) if samples and done >= total else None,
        "producers_msg_per_s": produced.get("msg_per_s"),
        "exit_codes": exit_codes,
        **window,
    }


def _stop(procs: list[subprocess.Popen[bytes]], grace_s: float = 20.0) -> list[int | None]:
    """SIGTERM every process group at once, SIGKILL what is left after ``grace_s`` (shared by all)."""
    for proc in procs:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    for proc in procs:
        try:
            proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
    return [proc.returncode for proc in procs]
