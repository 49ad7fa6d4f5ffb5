"""The live web app (``sentiment-worker ui``; the ``[ui]`` extra: Gradio), also run as a Hugging Face Space.

``data`` (parsing and aggregates, plain Python), ``feed`` (Kafka and /metrics readers), ``classify`` (the "try it"
box), ``page`` (HTML and the Gradio layout) and ``app`` (:func:`run_ui`, the entry point of the command and of the
Space). The demo stack behind ``--demo`` (broker + worker + sample stream) is a development tool:
``devtools/demo_stack.py``, handed in by the command line and the Space.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TextIO

UI_EXTRA = "ui"
# The distributions of pyproject.toml's [ui] extra besides [http] (a unit test keeps the lists equal).
UI_PACKAGES: tuple[str, ...] = ("gradio",)

if TYPE_CHECKING:
    from worker.settings import Settings
    from worker.ui.app import UiOptions


def require_ui() -> None:
    """Raise ``ExtraNotInstalledError`` naming the [ui] extra unless Gradio (and the [http] packages) are there."""
    from worker.model.errors import require_extra
    from worker.serve.front import HTTP_PACKAGES

    require_extra(UI_EXTRA, (*UI_PACKAGES, *HTTP_PACKAGES), "the web app (sentiment-worker ui)")


def run_ui(make_settings: Callable[[dict[str, Any]], Settings], options: UiOptions, out: TextIO) -> int:
    """See :func:`worker.ui.app.run_ui` (imported lazily: the data side needs no Gradio)."""
    require_ui()
    from worker.ui.page import gradio

    gradio()  # a Gradio that can't be imported is named now, before anything is started
    from worker.ui.app import run_ui as run

    return int(run(make_settings, options, out))
