"""Several worker processes per machine: ``sentiment-worker run --processes N`` (README "Several processes per
machine").

One supervisor process starts N workers (:mod:`worker.supervisor.child`, each built by :mod:`worker.app` with its
own model session and consumer-group membership), spreads them over ``devices``, restarts the ones that die
(:mod:`.policy`), passes SIGTERM/SIGINT/SIGHUP on (:mod:`.supervisor`) and serves one ``/metrics``, ``/healthz``,
``/readyz`` for all of them on ``metrics_port`` (:mod:`.observe`, prometheus-client's multiprocess mode). With one
process (``processes = 1``, or ``auto`` that comes to 1) there is no supervisor: :func:`run_processes` runs the
plain worker.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from worker.observability import get_logger
from worker.settings import Settings
from worker.supervisor.child import child_settings_data
from worker.supervisor.children import MULTIPROC_ENV, Child, ChildProcess
from worker.supervisor.plan import (
    check_http_ports,
    child_overrides,
    cpu_count,
    device_plan,
    resolve_processes,
    visible_gpus,
)

log = get_logger(__name__)

# Beyond the children's own bound (drain + final commit, leaving the group, closing): a child still loading its
# model when the stop comes stops once it has loaded.
STOP_MARGIN_S = 30.0


def run_processes(settings: Settings) -> int:
    """``run`` with ``settings.processes``: the plain worker for one process, else the supervisor over N."""
    from worker.app import run_worker

    settings.require_input()
    gpus = visible_gpus()
    processes = resolve_processes(settings.placement, settings.inference, cpus=cpu_count(), gpus=gpus)
    if processes == 1:
        if settings.processes == "auto":
            log.info("processes_auto", processes=1, action="one worker, no supervisor")
        return run_worker(settings.model_copy(update={"processes": 1}))
    check_http_ports(settings.http, settings.observability, processes)
    return run_supervisor(settings, device_plan(settings.placement, settings.inference, processes, gpus=gpus))


def run_supervisor(settings: Settings, devices: list[int]) -> int:
    """One worker process per entry of ``devices`` (its ``device_id``), supervised until stopped."""
    from prometheus_client.multiprocess import mark_process_dead

    from worker.model.resolve import resolve_model
    from worker.stream.common.timing import close_bound_s
    from worker.supervisor.observe import SupervisorServer
    from worker.supervisor.supervisor import Supervisor

    # once here: N processes must not export the same model at the same time
    exported = resolve_model(settings.inference)
    model = {"model": str(exported)} if str(exported) != settings.model else {}
    run_dir = Path(tempfile.mkdtemp(prefix="sentiment-worker-"))
    metrics_dir = Path(os.environ.get(MULTIPROC_ENV) or run_dir / "metrics")
    clean_metrics_dir(metrics_dir)

    def spawn(index: int) -> Child:
        data = child_settings_data(settings, {**child_overrides(settings.http, index, devices[index]), **model})
        return ChildProcess(index, data, run_dir, metrics_dir)

    def on_exit(child: Child) -> None:
        mark_process_dead(child.pid, str(metrics_dir))

    stop_timeout_s = settings.shutdown_timeout_s + close_bound_s(settings.input) + STOP_MARGIN_S
    supervisor = Supervisor(devices, spawn, stop_timeout_s=stop_timeout_s, on_exit=on_exit)
    server = None
    try:
        if settings.metrics_port is not None:
            server = SupervisorServer(settings.metrics_port, supervisor, metrics_dir).start()
        return supervisor.run()
    finally:
        if server is not None:
            server.stop()
        shutil.rmtree(run_dir, ignore_errors=True)


def clean_metrics_dir(path: Path) -> None:
    """Create ``path``; remove the ``*.db`` files a previous run left (their processes are gone)."""
    path.mkdir(parents=True, exist_ok=True)
    for stale in path.glob("*.db"):
        stale.unlink(missing_ok=True)


__all__ = ["run_processes", "run_supervisor"]
