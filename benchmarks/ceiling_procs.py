"""``sentiment-worker run --processes N`` on the pipeline-ceiling records, seen from outside.

The worker runs as the CLI runs it (a subprocess; with N > 1 a supervisor and N worker processes). Throughput is
counted by a consumer of the output topic in the benchmark process (its CPU is not the worker's); the worker's CPU
is the CPU time of the ``run`` process and all its descendants (Linux ``/proc``), read when ``STEADY_FROM`` of the
records have arrived and again at the last one. Run side by side with 1 and N processes on the same records.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from typing import Any

from benchmarks.ceiling import STEADY_FROM, TIMEOUT_S

TICK = float(os.sysconf("SC_CLK_TCK")) if hasattr(os, "sysconf") else 100.0


def _stat(pid: int) -> tuple[int, float] | None:
    """(parent pid, CPU seconds) of a live process; None if it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return int(fields[1]), (int(fields[11]) + int(fields[12])) / TICK


def tree_cpu(root: int) -> tuple[float, int]:
    """CPU seconds of ``root`` and its live descendants, and how many processes that is."""
    parents: dict[int, int] = {}
    cpu: dict[int, float] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit() and (stat := _stat(int(entry))) is not None:
            parents[int(entry)], cpu[int(entry)] = stat
    tree = {root}
    grew = True
    while grew:
        found = {pid for pid, parent in parents.items() if parent in tree} - tree
        grew = bool(found)
        tree |= found
    return sum(cpu.get(pid, 0.0) for pid in tree), len(tree)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


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
        "SENTIMENT_METRICS_PORT": str(_free_port()),
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
    start: tuple[float, float, int] | None = None
    deadline = time.monotonic() + TIMEOUT_S
    try:
        while seen < total and time.monotonic() < deadline:
            for records in consumer.poll(timeout_ms=100).values():
                seen += len(records)
            if start is None and seen >= STEADY_FROM * total:
                cpu, procs = tree_cpu(pid)
                start = (time.monotonic(), cpu, seen)
        end_wall = time.monotonic()
        end_cpu, procs = tree_cpu(pid)
    finally:
        with contextlib.suppress(Exception):
            consumer.close()
    if seen < total or start is None:
        return {"error": f"only {seen} of {total} outputs arrived in time"}
    wall, cpu, n = end_wall - start[0], end_cpu - start[1], seen - start[2]
    return {
        "msgs_per_s": round(n / wall, 1),
        "cpu_us_per_msg": round(cpu / n * 1e6, 1),
        "cores": round(cpu / wall, 2),
        "window_records": n,
        "os_processes": procs,
    }
