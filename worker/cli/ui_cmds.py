"""``sentiment-worker ui``: the live web app (Gradio, the [ui] extra); ``--demo`` runs the whole demo behind it."""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from worker.cli.common import KAFKA_CONNECTION, LOGGING, add_common_flags, add_settings_flags, settings_from_args
from worker.settings import Settings

UI_SETTINGS = [
    *KAFKA_CONNECTION,
    "text_field",
    "http_api_key",
    *("model", "precision", "device", "threads", "max_length", "cache_dir"),
    *LOGGING,
]


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    ui = sub.add_parser(
        "ui",
        help="Live web app: enriched records, label mix, throughput, latency, dead letters, lag; try a text.",
        description="Serve a web page (Gradio) that follows output and dead-letter topics live, refreshing every "
        "second: the latest enriched records, the label mix over time, throughput, end-to-end latency p50/p99, "
        "dead letters by reason and (with --metrics-url) the worker's consumer lag; and a box that classifies a "
        "typed text through the worker's HTTP API (--worker-url) or, without it, the model loaded here (--model). "
        "It reads Kafka without a consumer group and commits nothing. --demo starts the embedded broker, the "
        "worker and a sample stream first. Ctrl-C stops it. --http-api-key is the worker's key: the box sends it "
        "as the bearer token. Needs the [ui] extra.",
    )
    add_common_flags(ui)
    ui.add_argument("--topics", default="", metavar="T1,T2", help="Output and/or dead-letter topics to show.")
    ui.add_argument("--worker-url", default=None, metavar="URL", help="A worker's HTTP API, e.g. http://host:8080.")
    ui.add_argument(
        "--metrics-url", default=None, metavar="URL", help="A worker's /metrics URL (consumer lag); default: "
        "WORKER_URL/metrics when --worker-url is given.",
    )  # fmt: skip
    ui.add_argument("--demo", action="store_true", help="Start the embedded broker, the worker and a sample stream.")
    ui.add_argument("--host", default="127.0.0.1", help="Address to listen on (default 127.0.0.1).")
    ui.add_argument("--port", type=int, default=7860, help="Port to listen on (default 7860; 0 = a free one).")
    ui.add_argument("--backlog", type=int, default=100, help="Records per partition read back at start.")
    add_settings_flags(ui, UI_SETTINGS)
    ui.set_defaults(func=cmd_ui)


def cmd_ui(args: argparse.Namespace) -> int:
    from webapp import run_ui
    from webapp.app import UiOptions

    def make_settings(overrides: dict[str, Any]) -> Settings:
        quiet = {} if not args.demo else {
            "log_format": None if "SENTIMENT_LOG_FORMAT" in os.environ else "console",
            "log_level": None if "SENTIMENT_LOG_LEVEL" in os.environ else "error",  # dead letters log warnings
        }  # fmt: skip
        return settings_from_args(args, **{**quiet, **overrides})

    topics = [t.strip() for t in args.topics.split(",") if t.strip()]
    if not topics and not args.demo:
        print("sentiment-worker ui: give the topics to show (--topics T1,T2) or --demo", file=sys.stderr)
        return 2
    metrics_url = args.metrics_url or (f"{args.worker_url.rstrip('/')}/metrics" if args.worker_url else None)
    errors: tuple[type[Exception], ...] = (OSError,)  # the port is taken, ...
    demo = None
    if args.demo:  # a development tool (devtools/): the embedded broker, the worker and a sample stream
        from devtools.broker import BrokerError
        from devtools.demo_stack import DemoStack

        demo, errors = DemoStack(make_settings), (OSError, BrokerError)  # ..., the embedded broker can't start
    options = UiOptions(topics=topics, worker_url=args.worker_url, metrics_url=metrics_url, host=args.host,
                        port=args.port, backlog=args.backlog, demo=demo)  # fmt: skip
    try:
        return run_ui(make_settings, options, sys.stdout)
    except errors as exc:
        print(f"sentiment-worker ui: {exc}", file=sys.stderr)
        return 1
