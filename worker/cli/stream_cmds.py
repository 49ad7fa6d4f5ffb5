"""Streaming commands: ``run`` (the worker) and ``demo`` (embedded broker + offline model + sample stream)."""

from __future__ import annotations

import argparse
import os
import sys

from worker.cli.common import add_common_flags, add_settings_flags, settings_from_args
from worker.settings import Settings


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    run = sub.add_parser(
        "run",
        help="Run the streaming worker (consumer group → batcher → ONNX model → producers).",
        description="Run the worker until SIGINT/SIGTERM. The first signal stops polling, drains in-flight "
        "batches, produces, commits and exits 0; a second one forces exit without committing unacknowledged "
        "work (exit 1). --processes N runs N worker processes under a supervisor (docs/operating.md 'Several "
        "processes per machine'). Every setting is a flag, an env var (SENTIMENT_*) or a TOML config entry.",
    )
    add_common_flags(run)
    add_settings_flags(run)
    run.set_defaults(func=cmd_run)

    demo = sub.add_parser(
        "demo",
        help="Self-contained demo: embedded broker, offline model, sample stream, enriched output, summary.",
        description="Starts the embedded Kafka broker, uses the offline starter model (building it once if "
        "needed, about 4 minutes on 2 cores) unless --model is given, runs the worker, streams sample "
        "messages, prints enriched records live and a summary, then stops everything.",
    )
    add_common_flags(demo)
    demo.add_argument(
        "--count",
        type=int,
        default=400,
        help="Sample messages streamed once the worker is ready (default 400); the stream also flows while it "
        "starts (at most as many again): the summary reports that start-up backlog apart from the steady state.",
    )
    demo.add_argument("--rate", type=float, default=40.0, help="Messages per second (0 = as fast as possible).")
    demo.add_argument("--partitions", type=int, default=4, help="Partitions of the demo topic (default 4).")
    demo.add_argument("--show", type=int, default=12, help="Enriched records to print in full (default 12).")
    demo.add_argument("--timeout", type=float, default=300.0, help="Give up after this many seconds.")
    add_settings_flags(demo, ["model", "precision", "device", "max_batch_size", "max_wait_ms", "cache_dir"])
    demo.set_defaults(func=cmd_demo)


# ---- run ------------------------------------------------------------------------------------------------
def cmd_run(args: argparse.Namespace) -> int:
    from worker.app import run_worker

    settings = settings_from_args(args)
    if settings.processes != 1:  # several processes per machine (worker/supervisor/)
        from worker.supervisor import run_processes

        return run_processes(settings)
    return run_worker(settings)


# ---- demo -----------------------------------------------------------------------------------------------
def cmd_demo(args: argparse.Namespace) -> int:
    from devtools.demo import DemoOptions, demo_overrides, run_demo

    def make_settings(bootstrap: str) -> Settings:
        return settings_from_args(
            args,
            **demo_overrides(bootstrap),
            log_format=None if "SENTIMENT_LOG_FORMAT" in os.environ else "console",
            log_level=None if "SENTIMENT_LOG_LEVEL" in os.environ else "warning",
        )

    options = DemoOptions(
        count=args.count, rate=args.rate, partitions=args.partitions, show=args.show, timeout_s=args.timeout
    )
    return run_demo(make_settings, options, sys.stdout)
