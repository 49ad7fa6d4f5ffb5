"""Stream measurements of the GPU check, through the embedded broker: the worker end to end with 1, 4 and 8 processes,
and its latency at half the best rate.

End-to-end method, per process count: a new empty input topic; the workers start and the check waits until
``/readyz`` answers 200 (model loaded, group joined), then a few producer processes write N records as fast as they
can while the group's committed offsets are sampled (commits every 200 ms). The rate is the slope of committed
records between 10% and 90% of N, so start-up and the tail are left out; the producers' own rate is reported beside
it (if it is not well above the workers' rate, the producers were the limit).

Latency method: the same start; then producer processes write records at a steady rate (half the best end-to-end
rate), each stamped with its send time (``sent_at``, ms); a consumer of the output topic reads them all back. Latency
= the output record's timestamp (set by the worker's producer when it sent it) − ``sent_at``; the worker's own
``sentiment_meta.latency_ms`` (receipt → output) is reported beside it.
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
    return {
        "records": count,
        "producers": len(procs),
        "seconds": round(elapsed, 2),
        "msg_per_s": round(count / elapsed, 1),
        "failed_producers": failed,
    }


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


class Workers:
    """``sentiment-worker run`` for ``processes`` (one supervisor, or separate ``run`` processes) on ``topic``,
    logs under ``log_dir``; :meth:`ready` waits for every ``/readyz``; :meth:`stop` ends them (exit codes)."""

    def __init__(
        self,
        bootstrap: str,
        topic: str,
        group: str,
        model_dir: Path,
        processes: int,
        *,
        device: str,
        log_dir: Path,
        launch: str = "auto",
        extra_env: dict[str, str] | None = None,
    ) -> None:
        from devtools.ports import free_port

        self.supervised = launch == "supervisor" or (launch == "auto" and processes > 1 and supervisor_available())
        # the embedded broker holds every fetch for the whole fetch wait: 10 ms (devtools.broker)
        extra = {"SENTIMENT_COMMIT_INTERVAL_MS": "200", "SENTIMENT_FETCH_MAX_WAIT_MS": "10", **(extra_env or {})}
        # CPU: one intra-op thread per process (2 cores here); CUDA: the CPU only runs the few nodes ORT keeps there
        extra.setdefault("SENTIMENT_THREADS", "1" if device == "cpu" else "2")
        env = _worker_env(bootstrap, topic, group, model_dir, device, extra)
        self.ports = [free_port() for _ in range(1 if self.supervised else processes)]
        commands = (
            [({**env, "SENTIMENT_PROCESSES": str(processes), "SENTIMENT_METRICS_PORT": str(self.ports[0])}, "sup")]
            if self.supervised
            else [({**env, "SENTIMENT_METRICS_PORT": str(port)}, f"worker-{i}") for i, port in enumerate(self.ports)]
        )
        log_dir.mkdir(parents=True, exist_ok=True)
        self.started = time.monotonic()
        self.procs: list[subprocess.Popen[bytes]] = []
        for proc_env, name in commands:
            with (log_dir / f"{group}-{name}.log").open("wb") as log:
                self.procs.append(
                    subprocess.Popen(
                        [sys.executable, "-m", "worker", "run"],
                        env=proc_env,
                        stdout=log,
                        stderr=subprocess.STDOUT,
                        start_new_session=True,
                    )
                )
        self.launch = "supervisor (run --processes)" if self.supervised else "separate `run` processes"

    def ready(self, timeout_s: float) -> float | None:
        """Seconds from the start until every worker was ready (None: not within ``timeout_s`` or one exited)."""
        if not _wait_ready(self.ports, self.procs, timeout_s):
            return None
        return time.monotonic() - self.started

    def alive(self) -> bool:
        return all(p.poll() is None for p in self.procs)

    def stop(self) -> list[int | None]:
        return _stop(self.procs)


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

    group = f"e2e-p{processes}-{int(time.time())}"
    topic = f"{group}-in"
    create_topics(bootstrap, {topic: partitions})
    workers = Workers(
        bootstrap,
        topic,
        group,
        model_dir,
        processes,
        device=device,
        log_dir=log_dir,
        launch=launch,
        extra_env=extra_env,
    )
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    samples: list[tuple[float, int]] = []
    done = 0
    produced: dict[str, Any] = {}
    ready_s = None
    t0 = time.monotonic()
    try:
        ready_s = workers.ready(timeout_s / 2)
        if ready_s is not None:
            time.sleep(2.0)  # let the group settle after the last join
            producer = threading.Thread(
                target=lambda: produced.update(produce_backlog(bootstrap, topic, texts, total, partitions, producers))
            )
            t0 = time.monotonic()
            producer.start()
            while time.monotonic() - workers.started < timeout_s:
                time.sleep(0.1)
                try:
                    done = committed_total(admin, group, topic)
                except Exception:
                    continue
                samples.append((time.monotonic(), done))
                if done >= total or not workers.alive():
                    break
            producer.join(timeout=60)
    finally:
        admin.close()
        exit_codes = workers.stop()
    rate = steady_rate(samples, total)
    window: dict[str, Any] = {}
    if rate is not None:
        low = next(t for t, n in samples if n >= 0.1 * total)
        window = sampler.window(low, next(t for t, n in samples if n >= 0.9 * total))
    return {
        "processes": processes,
        "launch": workers.launch,
        "ready": ready_s is not None,
        "seconds_to_ready": round(ready_s, 2) if ready_s is not None else None,
        "records": total,
        "committed": done,
        "msg_per_s": round(rate, 1) if rate is not None else None,
        "seconds_to_all_committed": round(samples[-1][0] - t0, 2) if samples and done >= total else None,
        "producers_msg_per_s": produced.get("msg_per_s"),
        "exit_codes": exit_codes,
        **window,
    }


def _paced_part(bootstrap: str, topic: str, texts: Sequence[str], start: int, count: int, rate: float) -> None:
    """``count`` records at ``rate`` msg/s, sent in 10 ms slices, each stamped with its send time (``sent_at``)."""
    import orjson
    from kafka import KafkaProducer

    producer = KafkaProducer(bootstrap_servers=bootstrap, acks=1, linger_ms=2, batch_size=64 * 1024)
    began = time.monotonic()
    for i in range(count):
        due = began + i / rate
        if (delay := due - time.monotonic()) > 0.002:
            time.sleep(delay)
        value = {"id": f"l{start + i}", "text": texts[(start + i) % len(texts)], "sent_at": time.time() * 1000.0}
        producer.send(topic, key=str((start + i) % 64).encode(), value=orjson.dumps(value))
    producer.flush()
    producer.close()


def latency(
    bootstrap: str,
    texts: Sequence[str],
    model_dir: Path,
    processes: int,
    rate: float,
    *,
    seconds: float,
    device: str,
    partitions: int,
    timeout_s: float,
    log_dir: Path,
    launch: str = "auto",
    extra_env: dict[str, str] | None = None,
    per_producer: float = 8_000.0,
) -> dict[str, Any]:
    """Offer ``rate`` msg/s for ``seconds`` to ``processes`` workers; p50/p99 latency of every record."""
    import multiprocessing

    import numpy as np
    import orjson
    from kafka import KafkaConsumer, TopicPartition

    from devtools.broker import create_topics

    group = f"lat-p{processes}-{int(time.time())}"
    topic, out_topic = f"{group}-in", f"{group}-out"
    create_topics(bootstrap, {topic: partitions, out_topic: partitions})
    workers = Workers(
        bootstrap,
        topic,
        group,
        model_dir,
        processes,
        device=device,
        log_dir=log_dir,
        launch=launch,
        extra_env=extra_env,
    )
    total = max(1, int(rate * seconds))
    lat: list[float] = []
    inner: list[float] = []
    result: dict[str, Any] = {"processes": processes, "offered_msg_per_s": round(rate, 1), "records": total}
    try:
        ready_s = workers.ready(timeout_s / 2)
        result["seconds_to_ready"] = None if ready_s is None else round(ready_s, 2)
        if ready_s is None:
            raise RuntimeError("the workers did not get ready")
        time.sleep(2.0)
        consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, fetch_max_wait_ms=10)
        tps = [TopicPartition(out_topic, p) for p in range(partitions)]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        n_prod = max(1, int(np.ceil(rate / per_producer)))
        share = -(-total // n_prod)
        ctx = multiprocessing.get_context("spawn")
        procs = [
            ctx.Process(
                target=_paced_part,
                args=(bootstrap, topic, list(texts), i * share, min(share, total - i * share), rate / n_prod),
                daemon=True,
            )
            for i in range(n_prod)
            if i * share < total
        ]
        for proc in procs:
            proc.start()
        deadline = time.monotonic() + seconds + min(60.0, timeout_s)
        while len(lat) < total and time.monotonic() < deadline and workers.alive():
            for records in consumer.poll(timeout_ms=100).values():
                for record in records:
                    value = orjson.loads(record.value)
                    lat.append(record.timestamp - float(value["sent_at"]))
                    inner.append(float(value["sentiment_meta"]["latency_ms"]))
        for proc in procs:
            proc.join(timeout=30)
        consumer.close()
    finally:
        result["exit_codes"] = workers.stop()
    result["received"] = len(lat)
    if lat:
        values, worker = np.asarray(lat), np.asarray(inner)
        result.update(
            {
                "p50_ms": round(float(np.percentile(values, 50)), 1),
                "p99_ms": round(float(np.percentile(values, 99)), 1),
                "max_ms": round(float(values.max()), 1),
                "worker_p50_ms": round(float(np.percentile(worker, 50)), 1),
                "worker_p99_ms": round(float(np.percentile(worker, 99)), 1),
            }
        )
    return result


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
