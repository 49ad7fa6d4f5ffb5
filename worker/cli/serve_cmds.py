"""``sentiment-worker serve``: the HTTP inference API alone, no Kafka (``run --http-port P``: with the stream)."""

from __future__ import annotations

import argparse
import sys

from worker.cli.common import add_common_flags, add_settings_flags, settings_from_args


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    serve = sub.add_parser(
        "serve",
        help="HTTP inference API only (TEI-compatible POST /predict, /info, /health, /metrics); no Kafka.",
        description="Serve the model over HTTP until SIGINT/SIGTERM: POST /predict (Text Embeddings Inference's "
        "classifier route), GET /info, GET /health, /metrics, /healthz, /readyz, /openapi.json on --http-port "
        "(default 8080). Requests that arrive while the model is busy are batched together (max_batch_size, "
        "max_batch_tokens). The first signal stops accepting, answers the requests in flight and exits 0; a second "
        "exits 1 at once. `run --http-port P` serves the same API from the streaming worker, sharing its model and "
        "batches. Needs the [http] extra.",
    )
    add_common_flags(serve)
    add_settings_flags(serve)
    serve.set_defaults(func=cmd_serve)


def cmd_serve(args: argparse.Namespace) -> int:
    from worker.app import run_http_only

    settings = settings_from_args(args)
    try:
        return run_http_only(settings)
    except OSError as exc:  # the port is taken, the model dir is missing, ...
        print(f"sentiment-worker serve: {exc}", file=sys.stderr)
        return 1
