"""Where the benchmark run is: each section timed and logged, and the CPU monitor told which section (or run) the
samples of others' CPU belong to (``results.others_cpu.by_section``)."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator

from benchmarks import machine
from worker.observability import get_logger

log = get_logger(__name__)

MONITOR: machine.CpuMonitor | None = None


def mark(section: str) -> None:
    if MONITOR is not None:
        MONITOR.section = section


@contextlib.contextmanager
def section(name: str, timings: dict[str, float]) -> Iterator[None]:
    mark(name)
    log.info("bench.section_started", section=name, **machine.load_snapshot())
    started = time.perf_counter()
    try:
        yield
    finally:
        timings[name] = round(time.perf_counter() - started, 1)
        log.info("bench.section_done", section=name, seconds=timings[name])
