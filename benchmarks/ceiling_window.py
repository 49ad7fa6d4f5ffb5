"""The pipeline ceiling's measuring window: samples of (wall, CPU, count), the steady window, CPU by thread.

Shared by the in-process variants (``benchmarks.ceiling``, ``benchmarks.ceiling_loops``) and the ones seen from
outside (``benchmarks.ceiling_procs``); imports nothing of theirs.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Callable
from typing import Any

STEADY_FROM = 0.2  # the steady window starts once this fraction of the records is acknowledged
SAMPLE_S = 0.1  # the sampler is a thread of the measured process: kept rare so its own CPU stays negligible
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


def thread_delta(before: dict[str, float], after: dict[str, float], n: int) -> dict[str, float]:
    """CPU µs per message, by thread name, between two :func:`thread_cpu` readings (threads under 1 µs left out)."""
    per = {name: (after[name] - before.get(name, 0.0)) / n * 1e6 for name in after}
    return {name: round(us, 1) for name, us in sorted(per.items(), key=lambda kv: -kv[1]) if us >= 1.0}


def sample_until(count: Counter, total: int, timeout_s: float) -> list[tuple[float, float, int]]:
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
    """msg/s, CPU µs per message and cores over the steady window of ``samples`` (from ``STEADY_FROM`` of the
    records to the last one: process start, model load and the group join are left out)."""
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
