"""Simulated device sweep (``bench --mode device``): how well the host feeds an accelerator, without one.

The worker runs as the CLI runs it (``sentiment-worker run``, a subprocess: ``benchmarks.ceiling_procs``) with
``simulate_device_rate`` set: each model call waits rows / R seconds instead of running the network
(``worker/model/simulated.py``; no GIL held, no CPU burnt), while everything else stays real (Kafka, JSON,
tokenizer, padding, encoding, producing). With the device the bottleneck, a host that overlaps its work with the
device's delivers about R msg/s; one that works in turn with it delivers 1 / (1/R + 1/C), C the host's own ceiling
(about 0.7 × R at R = 4,000 when C is about 9,000).

For each device rate R (total rows per second of one device) and each ``--processes`` N, a preloaded topic of
about ``cell_seconds`` × R tweet-like records is read by ``run --processes N``, every process simulating 1/N of
the device (N processes sharing one device of rate R). The host's own ceiling is measured in the same run for
every N, with a simulated device too fast to wait (so with the same batch sizes: an accelerator's, 1024 / 256).
Reported per cell: msg/s over the steady window, achieved ÷ R, the CPU of the whole process tree per second (the
host cores one device of rate R keeps busy) and per message, and what serial work would give.

Model: the near-free one (``benchmarks.models``, key ``free``: the real uncased tokenizer, so tweets tokenise to
their real length); its forward pass is the simulated one, so its size does not matter.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchmarks.ceiling import free_model_run, preload
from benchmarks.ceiling_procs import run_processes
from worker.observability import get_logger

log = get_logger(__name__)

RATES = (1_000, 2_000, 4_000, 8_000)  # rows (records) per second of the simulated device
PROCESSES = (1, 2)
CELL_SECONDS = 10.0  # records per cell = this × R: about this many seconds of device time
QUICK_RATES = (1_000, 4_000)
QUICK_PROCESSES = (1,)
QUICK_CELL_SECONDS = 2.0
MIN_RECORDS = 2_000
TARGET = 0.9  # achieved ÷ R, for every R below the host's own ceiling
UNLIMITED = 1e9  # the host's own ceiling: a simulated device this fast waits ~0 (same batch sizes as the cells)


def serial_estimate(rate: float, ceiling: float | None) -> float | None:
    """msg/s if host and device worked in turn: 1 / (1/R + 1/C)."""
    if not ceiling or ceiling <= 0:
        return None
    return 1.0 / (1.0 / rate + 1.0 / ceiling)


def cell_figures(rate: float, measured: dict[str, Any], ceiling: float | None) -> dict[str, Any]:
    """The derived columns of one cell: achieved ÷ R, serial work's estimate ÷ R, and whether the target holds
    (judged only where R is below the host's ceiling)."""
    out: dict[str, Any] = {}
    achieved = measured.get("msgs_per_s")
    serial = serial_estimate(rate, ceiling)
    if serial is not None:
        out["serial_estimate_msgs_per_s"] = round(serial, 1)
        out["serial_over_rate"] = round(serial / rate, 3)
    if achieved:
        out["achieved_over_rate"] = round(achieved / rate, 3)
        out["below_host_ceiling"] = bool(ceiling and rate < ceiling)
        if out["below_host_ceiling"]:
            out["target_met"] = achieved >= TARGET * rate
    return out


def sweep(
    bootstrap: list[str],
    model_dir: Path,
    texts: list[str],
    *,
    rates: tuple[int, ...] = RATES,
    processes: tuple[int, ...] = PROCESSES,
    cell_seconds: float = CELL_SECONDS,
    partitions: int = 4,
    worker_settings: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The host's ceiling per N, then every (R, N) cell, each on its own preloaded topic."""
    settings = dict(worker_settings or {})
    biggest = max(MIN_RECORDS, int(max(rates) * cell_seconds))
    ceilings: dict[int, dict[str, Any]] = {}
    topic = f"device-ceiling-{uuid.uuid4().hex[:8]}"
    preload(bootstrap, topic, texts, biggest, partitions)
    for n in processes:
        log.info("device_cell", rate=None, processes=n)
        free = {**settings, "simulate_device_rate": UNLIMITED / n}
        ceilings[n] = _guarded(run_processes, bootstrap, topic, str(model_dir), biggest, n, free)
    cells: list[dict[str, Any]] = []
    measured: dict[tuple[int, int], dict[str, Any]] = {}
    for rate in rates:
        total = max(MIN_RECORDS, int(rate * cell_seconds))
        topic = f"device-{rate}-{uuid.uuid4().hex[:8]}"
        preload(bootstrap, topic, texts, total, partitions)
        for n in processes:
            log.info("device_cell", rate=rate, processes=n)
            per_process = {**settings, "simulate_device_rate": rate / n}
            measured[rate, n] = _guarded(run_processes, bootstrap, topic, str(model_dir), total, n, per_process)
            cells.append({"rate": rate, "processes": n, "records": total, **measured[rate, n]})
    found = {
        "partitions": partitions,
        "cpus": os.cpu_count(),
        "cell_seconds": cell_seconds,
        "host_ceiling": {str(n): r for n, r in ceilings.items()},
        "cells": cells,
        "target": TARGET,
    }
    return judge(found)


def judge(section: dict[str, Any]) -> dict[str, Any]:
    """Add each cell's derived columns. The host's ceiling for N processes is the best rate they reached in the run:
    the device-free cell, or a cell with a device, which came out higher in the committed run (not explained yet; a
    guess: with no wait the inference thread takes the GIL for each batch as it comes, a wait lets batches merge)."""
    best: dict[str, float] = {}
    for n, r in (section.get("host_ceiling") or {}).items():
        best[n] = max(best.get(n, 0.0), float(r.get("msgs_per_s") or 0.0))
    for c in section["cells"]:
        n = str(c["processes"])
        best[n] = max(best.get(n, 0.0), float(c.get("msgs_per_s") or 0.0))
    section["host_ceiling_best"] = {n: v or None for n, v in best.items()}
    for c in section["cells"]:
        c.update(cell_figures(c["rate"], c, best.get(str(c["processes"])) or None))
    return section


def _guarded(measure: Callable[..., dict[str, Any]], *args: Any) -> dict[str, Any]:
    """``measure(*args)``: one failing cell costs one row, not the section."""
    try:
        return dict(measure(*args))
    except Exception as exc:
        log.warning("device_cell_failed", error=repr(exc))
        return {"error": repr(exc)}


def run_section(
    cache_dir: Path,
    *,
    starter_cache: Path | None = None,
    bootstrap: list[str] | None = None,
    quick: bool = False,
    texts: list[str] | None = None,
    partitions: int = 4,
) -> dict[str, Any]:
    """The report's "Simulated device" section."""
    return free_model_run(
        cache_dir,
        lambda servers, model_dir, records: sweep(
            servers,
            model_dir,
            records,
            rates=QUICK_RATES if quick else RATES,
            processes=QUICK_PROCESSES if quick else PROCESSES,
            cell_seconds=QUICK_CELL_SECONDS if quick else CELL_SECONDS,
            partitions=partitions,
        ),
        starter_cache=starter_cache,
        bootstrap=bootstrap,
        texts=texts,
    )


# ---- the report -------------------------------------------------------------------------------------------------
def _f(value: Any, digits: int = 1) -> str:
    if value is None:
        return "—"
    return f"{value:,.{digits}f}" if isinstance(value, float) else f"{value:,}"


def markdown(results: dict[str, Any]) -> list[str]:
    section = results.get("simulated_device") or {}
    if not section:
        return ["(not run in this mode)"]
    lines = [
        "Each model call waits rows / R seconds instead of running the network (`simulate_device_rate`; no GIL "
        "held, no CPU burnt); Kafka, JSON, the tokenizer, padding, encoding and producing are real. "
        f"`run --processes N` reads a preloaded topic of about {section.get('cell_seconds')} s × R tweet-like "
        "records, each process simulating 1/N of one device of rate R. Cores = CPU of the whole process tree ÷ wall "
        "time over the steady window (20% → 100% of the records): the host cores one device of rate R keeps busy.",
        "",
        "| R (msg/s) | processes | achieved msg/s | achieved ÷ R | serial work ÷ R | host cores | CPU µs/msg |",
        "|---|---|---|---|---|---|---|",
    ]
    for n, r in (section.get("host_ceiling") or {}).items():
        cell = f"failed: {str(r['error'])[:100]}" if "error" in r and not r.get("msgs_per_s") else None
        lines.append(
            f"| host ceiling (device free) | {n} | {cell or _f(r.get('msgs_per_s'))} | | | {_f(r.get('cores'), 2)} "
            f"| {_f(r.get('cpu_us_per_msg'))} |"
        )
    for c in section.get("cells", []):
        if "error" in c and not c.get("msgs_per_s"):
            lines.append(f"| {c['rate']:,} | {c['processes']} | failed: {str(c['error'])[:100]} | | | | |")
            continue
        ratio = _f(c.get("achieved_over_rate"), 2)
        if c.get("target_met") is not None:
            ratio = f"**{ratio}**" if c["target_met"] else f"{ratio} (below {section.get('target')})"
        lines.append(
            f"| {c['rate']:,} | {c['processes']} | {_f(c.get('msgs_per_s'))} | {ratio} | "
            f"{_f(c.get('serial_over_rate'), 2)} | {_f(c.get('cores'), 2)} | {_f(c.get('cpu_us_per_msg'))} |"
        )
    best = section.get("host_ceiling_best") or {}
    if best:
        lines += [
            "",
            "Host ceiling C (the best rate N processes reached in this run, device-free or not): "
            + ", ".join(f"N = {n}: {_f(v)} msg/s" for n, v in best.items())
            + ". Serial work ÷ R = 1 / (1/R + 1/C) ÷ R.",
        ]
    judged = [c for c in section.get("cells", []) if c.get("target_met") is not None]
    if judged:
        met = sum(1 for c in judged if c["target_met"])
        lines += [
            "",
            f"Target: achieved ≥ {section.get('target')} × R wherever R is below the host's own ceiling (same N): "
            f"**{'met' if met == len(judged) else 'not met'}** (met in {met} of {len(judged)} cells).",
        ]
    return lines
