"""How many worker processes, on which device, with which settings: pure functions of the settings and the machine.

``processes = "auto"``: one process per GPU when ``device`` is ``cuda`` or ``auto`` and GPUs are found (the
``devices`` setting, else ``CUDA_VISIBLE_DEVICES``, else the NVIDIA driver's list in ``/proc/driver/nvidia/gpus``);
otherwise ``CPU cores // threads`` (``threads = 0`` means all cores, so 1), at least 1.

Each process ``i`` gets ``device_id = ids[i % len(ids)]`` (round-robin; several processes may share a GPU), where
``ids`` is ``devices``, else the GPU ordinals ``auto`` counted, else ``[device_id]``; an internal metrics port (0: a
free one, polled by the supervisor); ``http_port + i`` when the HTTP API is on.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from worker.settings import Http, Inference, Observability, Placement, SettingsError

NVIDIA_GPUS = Path("/proc/driver/nvidia/gpus")


def cpu_count() -> int:
    """CPU cores this process may run on (the affinity mask: a container's CPU set), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def visible_gpus(environ: Mapping[str, str] | None = None, driver_dir: Path = NVIDIA_GPUS) -> int:
    """GPUs this process may use: ``CUDA_VISIBLE_DEVICES`` when set, else the driver's list (0 without a driver)."""
    env = os.environ if environ is None else environ
    visible = env.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return len([part for part in visible.split(",") if part.strip() and part.strip() != "-1"])
    try:
        return sum(1 for _ in driver_dir.iterdir())
    except OSError:
        return 0


def gpu_ids(placement: Placement, inference: Inference, gpus: int) -> list[int]:
    """The CUDA device ids ``auto`` spreads processes over: ``devices``, else ``range(gpus)``; [] off CUDA."""
    if inference.device == "cpu":
        return []
    return list(placement.devices) or list(range(gpus))


def resolve_processes(placement: Placement, inference: Inference, *, cpus: int, gpus: int) -> int:
    """The number of worker processes ``placement.processes`` asks for on a machine with ``cpus`` and ``gpus``."""
    if placement.processes != "auto":
        return int(placement.processes)
    ids = gpu_ids(placement, inference, gpus)
    if ids:
        return len(ids)
    threads = inference.threads or cpus
    return max(1, cpus // max(1, threads))


def device_plan(placement: Placement, inference: Inference, processes: int, *, gpus: int) -> list[int]:
    """``device_id`` of each process: round-robin over ``devices`` (or the GPUs ``auto`` found), else device_id."""
    ids = list(placement.devices)
    if not ids and placement.processes == "auto":
        ids = gpu_ids(placement, inference, gpus)
    if not ids:
        ids = [inference.device_id]
    return [ids[i % len(ids)] for i in range(processes)]


def child_overrides(http: Http, index: int, device_id: int) -> dict[str, Any]:
    """What process ``index`` changes in the settings: one process, its device, an internal metrics port, its
    HTTP port (``http_port + index``; 0 stays 0: each picks a free one)."""
    http_port = http.http_port
    if http_port:
        http_port += index
    return {"processes": 1, "device_id": device_id, "metrics_port": 0, "http_port": http_port}


def check_http_ports(http: Http, observability: Observability, processes: int) -> None:
    """``http_port + i`` must stay a port number, and must not be ``metrics_port`` (the supervisor's)."""
    base = http.http_port
    if not base:
        return
    ports: Sequence[int] = range(base, base + processes)
    if ports[-1] > 65535:
        raise SettingsError(f"http_port {base} + {processes} processes passes 65535: lower http_port")
    metrics_port = observability.metrics_port
    if metrics_port is not None and metrics_port in ports:
        raise SettingsError(
            f"metrics_port {metrics_port} is one of the processes' HTTP ports "
            f"({base}..{ports[-1]}): with several processes the supervisor serves metrics_port; pick another"
        )
