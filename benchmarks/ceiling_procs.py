"""``sentiment-worker run --processes N`` on the pipeline-ceiling records, seen from outside.

The worker runs as the CLI runs it (a subprocess; with N > 1 a supervisor and N worker processes). Throughput is
counted by a consumer of the output topic in the benchmark process (its CPU is not the worker's); the worker's CPU
is the CPU time of the ``run`` process and all its descendants (Linux ``/proc``, read by ``benchmarks.machine``),
read when ``STEADY_FROM`` of the records have arrived and again at the last one. Run side by side with 1 and N
processes on the same records.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from typing import Any

from benchmarks.ceiling_window import STEADY_FROM, TIMEOUT_S
from benchmarks.machine import ours_delta, pid_jiffies, tree_pids
from devtools.ports import free_port

TICK = float(os.sysconf("SC_CLK_TCK")) if hasattr(os, "sysconf") else 100.0


def tree_jiffies(root: int) -> dict[int, float]:
    """{pid: own + reaped-children jiffies} of ``root`` and its descendants (``machine.ours_delta`` diffs two)."""
    return {pid: jiffies for pid in tree_pids(root) if (jiffies := pid_jiffies(pid)) is not None}


def _counter(bootstrap: list[str], topic: str) -> Any:
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, fetch_max_wait_ms=50)
    deadline = time.monotonic() + 120
    while not (partitions := consumer.partitions_for_topic(topic)) and time.monotonic() < deadline:
        time.sleep(0.2)
        consumer.topics()  # refresh metadata: the worker creates the topic with its first output
    if not partitions:
        consumer.close()
        raise RuntimeError(f"output topic {topic} never appeared")
    tps = [TopicPartition(topic, p) for p in sorted(partitions)]
    consumer.assign(tps)
    consumer.seek_to_beginning(*tps)
    return consumer


def run_processes(
    bootstrap: list[str], topic: str, model_dir: str, total: int, processes: int, settings: dict[str, Any] | None = None
) -> dict[str, Any]:
    """``run --processes N`` over ``topic``'s ``total`` records: msg/s, CPU µs per message and cores (steady window)."""
    out_topic = f"{topic}-p{processes}-out"
    env = {
        **os.environ,
        "SENTIMENT_BOOTSTRAP_SERVERS": ",".join(bootstrap),
        "SENTIMENT_INPUT_TOPICS": topic,
        "SENTIMENT_OUTPUT_TOPIC": out_topic,
        "SENTIMENT_GROUP_ID": f"{topic}-p{processes}",
        "SENTIMENT_MODEL": model_dir,
        "SENTIMENT_PROCESSES": str(processes),
        "SENTIMENT_METRICS_PORT": str(free_port()),
        "SENTIMENT_SESSION_TIMEOUT_MS": "6000",
        "SENTIMENT_HEARTBEAT_INTERVAL_MS": "1000",
        "SENTIMENT_LOG_LEVEL": "warning",
        "SENTIMENT_LOG_FORMAT": "json",
        **{f"SENTIMENT_{k.upper()}": str(v) for k, v in (settings or {}).items()},
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "worker", "run"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    result: dict[str, Any] = {"processes": processes}
    try:
        result.update(_measure(bootstrap, out_topic, total, proc.pid))
    except Exception as exc:
        result["error"] = repr(exc)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            _, err = proc.communicate(timeout=90)
        except subprocess.TimeoutExpired:
            proc.kill()
            _, err = proc.communicate()
        result["rc"] = proc.returncode
        if proc.returncode:
            result["stderr_tail"] = err.decode("utf-8", "replace")[-600:]
    return result


def _measure(bootstrap: list[str], out_topic: str, total: int, pid: int) -> dict[str, Any]:
    consumer = _counter(bootstrap, out_topic)
    seen = 0
    start: tuple[float, dict[int, float], int] | None = None
    deadline = time.monotonic() + TIMEOUT_S
    try:
        while seen < total and time.monotonic() < deadline:
            for records in consumer.poll(timeout_ms=100).values():
                seen += len(records)
            if start is None and seen >= STEADY_FROM * total:
                start = (time.monotonic(), tree_jiffies(pid), seen)
        end_wall, end_jiffies = time.monotonic(), tree_jiffies(pid)
    finally:
        with contextlib.suppress(Exception):
            consumer.close()
    if seen < total or start is None:
        return {"error": f"only {seen} of {total} outputs arrived in time"}
    wall, cpu, n = end_wall - start[0], ours_delta(start[1], end_jiffies) / TICK, seen - start[2]
    return {
        "msgs_per_s": round(n / wall, 1),
        "cpu_us_per_msg": round(cpu / n * 1e6, 1),
        "cores": round(cpu / wall, 2),
        "window_records": n,
        "os_processes": len(end_jiffies),
    }
