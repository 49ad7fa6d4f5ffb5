"""Command line: ``sentiment-worker <command>``. Each command module registers its sub-commands."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from importlib import import_module

from worker import __version__
from worker.model.errors import ExtraNotInstalledError
from worker.settings import SettingsError

COMMAND_MODULES = (
    "worker.cli.model_cmds",  # export, classify, schemas
    "worker.cli.stream_cmds",  # run, produce, demo
    "worker.cli.serve_cmds",  # serve
    "worker.cli.broker_cmds",  # broker
    "worker.cli.starter_cmds",  # model build-starter, finetune, eval
    "worker.cli.bench_cmds",  # bench
    "worker.cli.info_cmds",  # settings
    "worker.cli.ui_cmds",  # ui (the web app)
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sentiment-worker",
        description="Enrich Kafka event streams with sentiment: Kafka consumer group → micro-batcher → "
        "ONNX DistilBERT (ONNX Runtime, CUDA or CPU) → producers, at-least-once, with a dead-letter topic.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name in COMMAND_MODULES:
        import_module(name).register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except SettingsError as exc:
        print(f"sentiment-worker: {exc}", file=sys.stderr)
        return 2
    except ExtraNotInstalledError as exc:
        print(f"sentiment-worker: {exc}", file=sys.stderr)
        return 2
    except ModuleNotFoundError as exc:  # the Docker images hold the runtime package alone
        package = (exc.name or "").partition(".")[0]
        if package not in ("training", "webapp", "devtools", "benchmarks"):
            raise
        why = f"this command needs the {package} package, which this installation lacks (an image holds worker/ only)"
        print(f"sentiment-worker: {why}: pip install sentiment-worker", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
