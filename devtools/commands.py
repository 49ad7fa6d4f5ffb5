"""What ``sentiment-worker broker`` and ``produce`` do, once the command line parsed them
(``worker/cli/broker_cmds.py``: the flags)."""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from types import FrameType

from worker.settings import Settings


def examples(bootstrap: str) -> str:
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


def run_broker(port: int | None) -> int:
    """``sentiment-worker broker``: the embedded broker in the foreground until SIGINT/SIGTERM; its address on
    stdout, how to use it on stderr."""
    from devtools.broker import BrokerError, EmbeddedBroker
    from worker.observability import get_logger

    log = get_logger("worker.cli.broker")
    stop = threading.Event()
    received: list[int] = []

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        received.append(signum)
        stop.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    broker = EmbeddedBroker(port=port)
    try:
        try:
            broker.start()
        except BrokerError as exc:
            print(f"sentiment-worker broker: {exc}", file=sys.stderr)
            return 1
        print(broker.bootstrap, flush=True)
        print(examples(broker.bootstrap), file=sys.stderr, flush=True)
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


def produce(args: argparse.Namespace, settings: Settings) -> int:
    """``sentiment-worker produce``: generated messages or a file's lines to a topic, at a steady rate."""
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
