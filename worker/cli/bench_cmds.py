"""``sentiment-worker bench``: model-only grid, end-to-end through Kafka, baselines, report: its flags; what it does
is ``benchmarks/commands.py`` (the ``benchmarks`` package, imported when the command runs).
"""

from __future__ import annotations

import argparse
from pathlib import Path


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


def cmd_bench(args: argparse.Namespace) -> int:
    from benchmarks.commands import bench_command

    return bench_command(args)
