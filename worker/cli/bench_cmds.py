"""``sentiment-worker bench``: model-only grid, end-to-end through Kafka, baselines, report (issue 6).

The benchmark code is the ``benchmarks`` package, installed with ``worker`` (``pip install -e .[export,dev]``).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from worker.observability import get_logger

log = get_logger(__name__)


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    bench = sub.add_parser(
        "bench",
        help="Benchmarks: model-only grid, end-to-end through Kafka, baselines; writes a Markdown/JSON/PNG report.",
        description="Model-only grid (batch sizes × precisions × length distributions × padding, with GFLOP/s "
        "against a matmul ceiling measured in the same run), end-to-end runs through an embedded (or given) Kafka "
        "broker at saturation and at fixed offered loads, and baselines (naive per-message transformers consumer, "
        "PyTorch eager batched, model-only ONNX). --quick is a smoke run (< 3 minutes): its numbers mean nothing.",
    )
    bench.add_argument("--quick", action="store_true", help="Smoke run: tiny sizes (< 3 min). Not for numbers.")
    bench.add_argument(
        "--mode",
        choices=("model", "e2e", "http", "ceiling", "device", "latency", "all"),
        default="all",
        help="What to run (default all; http: the HTTP API alone and beside a 50%% stream, against model-only; "
        "ceiling: the pipeline with a near-free model against a plain loop on the same stack; device: a simulated "
        "device of 1,000-8,000 msg/s fed by 1 and 2 processes (achieved / R, host cores); latency: p50/p99 at "
        "10-90%% of the model-only rate, latency.json/.md/.png).",
    )
    bench.add_argument(
        "--output",
        type=Path,
        default=None,
        help="Report folder (default bench-results/<date>-<time>; --mode latency: "
        "bench-results/<date>-cpu-<N>core-latency).",
    )
    bench.add_argument(
        "--data",
        default=None,
        metavar="F",
        help="Benchmark texts: a JSONL/JSON/CSV/TSV/Parquet/TXT file, registry:imdb|yelp|amazon|movies "
        "(fetched once), or a Hugging Face dataset hf:NAME[:CONFIG][@SPLIT] ([datasets] extra). Added to the "
        "grid's datasets and used for the end-to-end messages.",
    )
    bench.add_argument("--text-field", default="text", help="Field/column of the text in --data (default text).")
    bench.add_argument(
        "--models",
        default=None,
        help="Grid models, comma-separated: starter, base (random DistilBERT-base shape), tiny, or a local HF "
        "model dir as PATH or NAME=PATH (default: starter,base; --quick: starter if built, else tiny).",
    )
    bench.add_argument("--e2e-models", default=None, help="End-to-end models (default: as --models).")
    bench.add_argument("--precisions", default=None, help="Grid precisions (default fp32,o3,int8; quick fp32,int8).")
    bench.add_argument("--e2e-precisions", default=None, help="End-to-end precisions (default fp32,int8; quick fp32).")
    bench.add_argument("--batch-sizes", default=None, help="Grid batch sizes (default 1,8,32; quick 1,8).")
    bench.add_argument(
        "--lengths", default=None, help="Generated length distributions: tweet,mixed,review (quick: tweet,mixed)."
    )
    bench.add_argument(
        "--o3-lengths", default=None, help="Datasets that get o3 cells (default: the first of --lengths)."
    )
    bench.add_argument("--grid-size", type=int, default=None, help="Sequences per grid dataset (default by shape).")
    bench.add_argument("--repeats", type=int, default=0, help="Repeats of each grid cell (default 3; quick 2).")
    bench.add_argument(
        "--e2e-length", default="tweet", choices=("tweet", "review", "mixed"), help="End-to-end messages."
    )
    bench.add_argument("--loads", default="0.25,0.5,0.9", help="Offered loads as fractions of saturation.")
    bench.add_argument("--load-seconds", type=float, default=0.0, help="Seconds per offered load (default 12).")
    bench.add_argument(
        "--saturation-seconds", type=float, default=0.0, help="Size of the saturation burst in seconds (default 10)."
    )
    bench.add_argument("--naive-seconds", type=float, default=0.0, help="Size of the naive burst in seconds.")
    bench.add_argument(
        "--bootstrap-servers", default=None, help="Use this Kafka cluster instead of the embedded broker."
    )
    bench.add_argument("--partitions", type=int, default=4, help="Partitions of the benchmark topics (default 4).")
    bench.add_argument("--no-baselines", action="store_true", help="Skip the naive and PyTorch eager baselines.")
    bench.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto", help="ONNX Runtime device.")
    bench.add_argument("--threads", type=int, default=0, help="Intra-op threads (0 = automatic, as the worker).")
    bench.add_argument("--max-batch-size", type=int, default=None, help="Worker max_batch_size (default 64).")
    bench.add_argument("--max-wait-ms", type=int, default=None, help="Worker max_wait_ms (default 20).")
    bench.add_argument(
        "--inference-batch-size", type=int, default=None, help="Worker inference_batch_size (default 8)."
    )
    bench.add_argument("--cache-dir", type=Path, default=None, help="Model/export cache (default: settings).")
    bench.add_argument(
        "--starter-cache",
        type=Path,
        default=None,
        help="Cache dir holding the starter model build (default: --cache-dir); only read.",
    )
    bench.add_argument(
        "--what-if-fetch-wait-ms",
        type=int,
        default=10,
        help="Also run the worker at 50%% load with this fetch_max_wait_ms setting (0 = skip; default 10).",
    )
    bench.add_argument("--http-seconds", type=float, default=0.0, help="Seconds per HTTP client level (6; quick 1).")
    bench.add_argument("--http-clients", default="1,16,64", help="Concurrent HTTP clients per level (default 1,16,64).")
    bench.add_argument("--seed", type=int, default=0, help="Seed of the generated texts.")
    bench.add_argument("--no-progress", action="store_true", help="No progress bars.")
    bench.add_argument("--log-level", default="warning", choices=("debug", "info", "warning", "error"))
    bench.set_defaults(func=cmd_bench)


def _csv(value: str | None) -> list[str]:
    return [part.strip() for part in (value or "").split(",") if part.strip()]


def _import_benchmarks() -> Any:
    try:
        import benchmarks.suite as suite
    except ModuleNotFoundError as exc:
        if exc.name not in ("benchmarks", "benchmarks.suite"):
            raise  # a dependency of the benchmarks is missing: its own message says which
        raise SystemExit(
            "sentiment-worker bench needs the `benchmarks` package, which is not installed: reinstall from the "
            "source checkout (pip install -e .[export,dev])"
        ) from None
    return suite


def _default_folder(mode: str, now: Any) -> str:
    """<date>-<time>; for the latency section the date and the CPU it ran on: <date>-cpu-<N>core-latency."""
    if mode == "latency":
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
        return f"{now:%Y-%m-%d}-cpu-{cores}core-latency"
    return str(now.strftime("%Y-%m-%d-%H%M%S"))


def cmd_bench(args: argparse.Namespace) -> int:
    from datetime import datetime

    from worker.observability import configure_logging
    from worker.settings import Batching, load_settings

    settings = load_settings()  # also registers any secret settings with the log renderer (masked)
    configure_logging("console" if sys.stderr.isatty() else "json", args.log_level)
    suite = _import_benchmarks()
    cache_dir = args.cache_dir or settings.cache_dir
    output = args.output or Path("bench-results") / _default_folder(args.mode, datetime.now())
    # the worker's batching flags given: checked as the Batching section checks them, handed to the config as built
    given = {name: getattr(args, name) for name in ("max_batch_size", "max_wait_ms", "inference_batch_size")}
    batching = Batching.model_validate({name: value for name, value in given.items() if value is not None})
    config = suite.BenchConfig(
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
