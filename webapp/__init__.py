"""The live web app (``sentiment-worker ui``; the ``[ui]`` extra: Gradio), also run as a Hugging Face Space.

``data`` (parsing and aggregates, plain Python), ``feed`` (Kafka and /metrics readers), ``classify`` (the "try it"
box), ``page`` (HTML and the Gradio layout) and ``app`` (:func:`run_ui`, the entry point of the command and of the
Space). The demo stack behind ``--demo`` (broker + worker + sample stream) is a development tool:
``devtools/demo_stack.py``, handed in by the command line and the Space.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TextIO

if TYPE_CHECKING:
    from webapp.app import UiOptions
    from worker.settings import Settings


def run_ui(make_settings: Callable[[dict[str, Any]], Settings], options: UiOptions, out: TextIO) -> int:
    """See :func:`webapp.app.run_ui` (imported lazily: the data side needs no Gradio)."""
    from webapp.page import gradio, require_ui

    require_ui()
    gradio()  # a Gradio that can't be imported is named now, before anything is started
    from webapp.app import run_ui as run

    return int(run(make_settings, options, out))
