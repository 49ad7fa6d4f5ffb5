"""The supervisor's ``/metrics``, ``/healthz`` and ``/readyz`` on ``metrics_port``, over every worker process.

- ``/metrics``: the children's counters, histograms and gauges merged by prometheus-client's multiprocess mode
  (counters and histograms summed over every process that ever ran, restarted ones included; the gauges by their
  ``multiprocess_mode``); ``sentiment_ready``/``sentiment_alive`` are the supervisor's verdicts below,
  ``sentiment_main_loop_age_seconds`` the oldest child's; info metrics (``sentiment_model_info``, ...) and the
  ``process_*`` metrics come from each child's internal ``/metrics`` with a ``process`` label; plus
  ``sentiment_worker_processes{state}`` and ``sentiment_worker_process_restarts_total{process}``.
- ``/healthz``: 200 while every process is alive (its own ``/healthz``), starting, or waiting to be restarted
  within the crash budget; ``/readyz``: 200 when every process answers 200 on its own ``/readyz``. Both give each
  process's answer in JSON.
"""

from __future__ import annotations

import glob
import json
import os
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, InfoMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from worker import __version__
from worker.observability import get_logger
from worker.probes import probe_handler
from worker.supervisor.supervisor import Supervisor

log = get_logger(__name__)

PREFIX = "sentiment"
# Set by the supervisor from its children's answers, not merged from their files.
OWN = {f"{PREFIX}_ready", f"{PREFIX}_alive", f"{PREFIX}_main_loop_age_seconds", f"{PREFIX}_worker"}
PROBE_TIMEOUT_S = 2.0


class Probe:
    """Asks each running child (its internal port) and folds the answers into one verdict."""

    def __init__(self, supervisor: Supervisor, timeout_s: float = PROBE_TIMEOUT_S) -> None:
        self.supervisor = supervisor
        self.timeout_s = timeout_s

    def ask(self, path: str) -> list[tuple[dict[str, Any], int | None, bytes]]:
        """(snapshot, status, body) per process; status None: not running, not listening yet or no answer."""
        slots = list(self.supervisor.slots)
        snapshots = self.supervisor.snapshot()

        def one(i: int) -> tuple[dict[str, Any], int | None, bytes]:
            child = slots[i].child
            if child is None:
                return snapshots[i], None, b""
            return (snapshots[i], *child.get(path, self.timeout_s))

        with ThreadPoolExecutor(max_workers=min(16, max(1, len(slots)))) as pool:
            return list(pool.map(one, range(len(slots))))

    def verdict(self, path: str) -> tuple[bool, dict[str, Any]]:
        """``/healthz`` or ``/readyz`` over all processes: (ok, details)."""
        live = path == "/healthz"
        processes = []
        for snap, status, body in self.ask(path):
            processes.append({**snap, "ok": self._ok(snap, status, live), "answer": _json(body)})
        ok = bool(processes) and all(p["ok"] for p in processes) and self.supervisor.gave_up is None
        key = "alive" if live else "ready"
        return ok, {key: ok, "stopping": self.supervisor.stopping, "processes": processes}

    def _ok(self, snap: dict[str, Any], status: int | None, live: bool) -> bool:
        if not live:
            return status == 200
        if snap["state"] == "restarting":
            return True  # within the crash budget (past it the supervisor gives up)
        if snap["state"] != "running":
            return self.supervisor.gave_up is None
        if status is None:  # starting (no port yet) is alive; a known port that doesn't answer is not
            child = self.supervisor.slots[snap["process"]].child
            return child is not None and child.port() is None
        return status == 200


def _json(body: bytes) -> Any:
    try:
        return json.loads(body) if body else None
    except ValueError:
        return None


class SupervisorCollector:
    """The merged children's metrics (without the supervisor's own) and the supervisor's own."""

    def __init__(self, supervisor: Supervisor, probe: Probe, metrics_dir: Path) -> None:
        self.supervisor = supervisor
        self.probe = probe
        self.metrics_dir = metrics_dir

    def collect(self) -> Iterator[Metric]:
        files = glob.glob(os.path.join(self.metrics_dir, "*.db"))
        for metric in MultiProcessCollector.merge(files, accumulate=True):
            if metric.name not in OWN:
                yield metric
        answers = self.probe.ask("/metrics")
        yield from self._from_children(answers)
        alive, _ = self.probe.verdict("/healthz")
        ready = all(status == 200 and _sample(body, f"{PREFIX}_ready") == 1.0 for _, status, body in answers)
        ready = ready and bool(answers) and self.supervisor.gave_up is None
        yield _gauge(f"{PREFIX}_ready", "1 when /readyz answers 200 (every process ready).", 1 if ready else 0)
        yield _gauge(f"{PREFIX}_alive", "1 when /healthz answers 200 (every process alive).", 1 if alive else 0)
        ages = [_sample(body, f"{PREFIX}_main_loop_age_seconds") for _, status, body in answers if status == 200]
        age = max((a for a in ages if a is not None), default=-1.0)
        yield _gauge(f"{PREFIX}_main_loop_age_seconds", "Seconds since the oldest main loop iterated.", age)
        info = InfoMetricFamily(f"{PREFIX}_worker", "Worker build information.")
        info.add_metric([], {"version": __version__})
        yield info
        states = GaugeMetricFamily(f"{PREFIX}_worker_processes", "Worker processes by state.", labels=["state"])
        snapshot = self.supervisor.snapshot()
        for state in ("running", "restarting", "stopped"):
            states.add_metric([state], sum(1 for s in snapshot if s["state"] == state))
        yield states
        restarts = CounterMetricFamily(
            f"{PREFIX}_worker_process_restarts", "Restarts of each worker process.", labels=["process"]
        )
        for s in snapshot:
            restarts.add_metric([str(s["process"])], s["restarts"])
        yield restarts

    def _from_children(self, answers: list[tuple[dict[str, Any], int | None, bytes]]) -> Iterator[Metric]:
        """Info metrics and process_* of each child, with a ``process`` label (multiprocess mode has neither)."""
        families: dict[str, Metric] = {}
        for snap, status, body in answers:
            if status != 200:
                continue
            for family in _parse(body):
                name = family.name
                wanted = name.startswith("process_") or (
                    name.startswith(f"{PREFIX}_") and family.type == "info" and name not in OWN
                )
                if not wanted:
                    continue
                merged = families.setdefault(name, Metric(name, family.documentation, family.type))
                for sample in family.samples:
                    labels = {**sample.labels, "process": str(snap["process"])}
                    merged.samples.append(Sample(sample.name, labels, sample.value))
        yield from families.values()


def _parse(body: bytes) -> list[Metric]:
    try:
        families = list(text_string_to_metric_families(body.decode("utf-8", "replace")))
    except ValueError:
        return []
    for family in families:  # the text format shows an Info as a gauge named <name>_info
        gauge_info = family.type == "gauge" and family.name.endswith("_info") and family.samples
        if gauge_info and all(s.value == 1.0 and s.name == family.name for s in family.samples):
            family.type, family.name = "info", family.name.removesuffix("_info")
    return families


def _sample(body: bytes, name: str) -> float | None:
    for family in _parse(body):
        for sample in family.samples:
            if sample.name == name:
                return float(sample.value)
    return None


def _gauge(name: str, doc: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, doc, value=value)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True


class SupervisorServer:
    """``/metrics``, ``/healthz``, ``/readyz`` of all processes on ``port``, on a daemon thread."""

    def __init__(self, port: int, supervisor: Supervisor, metrics_dir: Path, host: str = "0.0.0.0") -> None:
        self.probe = Probe(supervisor)
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(SupervisorCollector(supervisor, self.probe, metrics_dir))
        self._server = _Server((host, port), self._handler())
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.2}, name="supervisor-metrics", daemon=True
        )

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def start(self) -> SupervisorServer:
        self._thread.start()
        log.info("metrics_listening", port=self.port, processes="all")
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        registry, probe = self.registry, self.probe
        return probe_handler(lambda: generate_latest(registry), probe.verdict)
