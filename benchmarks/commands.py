"""What ``sentiment-worker bench`` does, once the command line parsed it (``worker/cli/bench_cmds.py``: the
flags): a :class:`~benchmarks.config.BenchConfig` from the flags, :func:`benchmarks.suite.run`, a summary."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from benchmarks import suite
from benchmarks.config import BenchConfig


def _csv(value: str | None) -> list[str]:
    return [part.strip() for part in (value or "").split(",") if part.strip()]


def default_folder(mode: str, now: Any) -> str:
    """<date>-<time>; for the latency section the date and the CPU it ran on: <date>-cpu-<N>core-latency."""
    if mode == "latency":
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
        return f"{now:%Y-%m-%d}-cpu-{cores}core-latency"
    return str(now.strftime("%Y-%m-%d-%H%M%S"))


def bench_command(args: argparse.Namespace) -> int:
    """Run the benchmark sections asked for; the report's path and a line per model on stdout."""
    from datetime import datetime

    from worker.observability import configure_logging
    from worker.settings import Batching, load_settings

    settings = load_settings()  # also registers any secret settings with the log renderer (masked)
    configure_logging("console" if sys.stderr.isatty() else "json", args.log_level)
    cache_dir = args.cache_dir or settings.cache_dir
    output = args.output or Path("bench-results") / default_folder(args.mode, datetime.now())
    # the worker's batching flags given: checked as the Batching section checks them, handed to the config as built
    given = {name: getattr(args, name) for name in ("max_batch_size", "max_wait_ms", "inference_batch_size")}
    batching = Batching.model_validate({name: value for name, value in given.items() if value is not None})
    config = BenchConfig(
        output=Path(output),
        cache_dir=Path(cache_dir).expanduser(),
        starter_cache=args.starter_cache,
        mode=args.mode,
        quick=args.quick,
        models=_csv(args.models),
        e2e_models=_csv(args.e2e_models) or _csv(args.models),
        precisions=_csv(args.precisions),
        e2e_precisions=_csv(args.e2e_precisions),
        batch_sizes=[int(b) for b in _csv(args.batch_sizes)],
        lengths=_csv(args.lengths),
        o3_lengths=_csv(args.o3_lengths),
        data=args.data,
        text_field=args.text_field,
        grid_size=args.grid_size,
        repeats=args.repeats,
        e2e_length=args.e2e_length,
        loads=[float(x) for x in _csv(args.loads)],
        load_seconds=args.load_seconds,
        saturation_seconds=args.saturation_seconds,
        naive_seconds=args.naive_seconds,
        bootstrap_servers=_csv(args.bootstrap_servers) or None,
        partitions=args.partitions,
        baselines=not args.no_baselines,
        device=args.device,
        threads=args.threads,
        seed=args.seed,
        progress=not args.no_progress,
        what_if_fetch_wait_ms=args.what_if_fetch_wait_ms or None,
        http_seconds=args.http_seconds,
        http_clients=[int(c) for c in _csv(args.http_clients)],
        **batching.model_dump(include={name for name, value in given.items() if value is not None}),
    )
    from benchmarks.datasets import DatasetError

    try:
        results = suite.run(config)
    except DatasetError as exc:
        print(f"sentiment-worker bench: {exc}", file=sys.stderr)
        return 2
    summary = results.get("summary", {})
    print(f"report: {config.output / 'report.md'}")
    for key, entry in summary.get("per_model", {}).items():
        parts = [
            f"{label} {entry[field]}×"
            for field, label in (
                ("ours_over_naive", "ours/naive"),
                ("ours_over_model_only", "ours/model-only"),
                ("int8_over_fp32_e2e", "INT8/fp32 e2e"),
            )
            if entry.get(field) is not None
        ]
        if entry.get("e2e_msgs_per_s") is not None:
            parts.append(f"e2e {entry['e2e_msgs_per_s']} msg/s")
        print(f"  {key}: " + (", ".join(parts) or "model-only grid only"))
    return 0
