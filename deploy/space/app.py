"""Hugging Face Space entry point: the same as `sentiment-worker ui --demo`.

The Space runs `python app.py`; this starts the embedded Kafka-compatible broker, the worker, a sample stream and the
web app on the port Spaces expect (7860, or GRADIO_SERVER_PORT), all in this one container. Settings come from the
Space's variables (SENTIMENT_*, e.g. SENTIMENT_MODEL), as for the command.
"""

from __future__ import annotations

import os
import sys
from typing import Any

from devtools.demo_stack import DemoStack
from webapp import run_ui
from webapp.app import UiOptions
from worker.observability import configure_logging
from worker.settings import Settings, load_settings


def make_settings(overrides: dict[str, Any]) -> Settings:
    quiet = {"log_format": os.environ.get("SENTIMENT_LOG_FORMAT", "console"),
             "log_level": os.environ.get("SENTIMENT_LOG_LEVEL", "error")}  # fmt: skip
    settings = load_settings(**{**quiet, **overrides})
    configure_logging(settings.log_format, settings.log_level)
    return settings


def main() -> int:
    options = UiOptions(
        demo=DemoStack(make_settings),
        host=os.environ.get("GRADIO_SERVER_NAME", "0.0.0.0"),
        port=int(os.environ.get("GRADIO_SERVER_PORT", "7860")),
    )
    return run_ui(make_settings, options, sys.stdout)


if __name__ == "__main__":
    sys.exit(main())
