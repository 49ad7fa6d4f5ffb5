"""Assemble the web app: readers (Kafka topics, a worker's /metrics), the "try it" classifier, the Gradio page.

:func:`run_ui` is the one entry point: ``sentiment-worker ui`` and the Hugging Face Space (``deploy/space/app.py``)
both call it; given a demo stack (``UiOptions.demo``: :class:`~devtools.demo_stack.DemoStack`, passed in by the
command line and the Space, never imported here) it first starts it (embedded broker, worker, sample stream) and points
the app at it.
"""

from __future__ import annotations

import signal
import threading
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol, Self, TextIO

from webapp.classify import Classifier, HttpClassifier, LocalClassifier, classify_text
from webapp.data import LiveStats
from webapp.feed import LagFeed, Status, TopicFeed
from webapp.page import build_blocks, gradio, render, try_it_html
from worker.observability import get_logger, redact_secrets
from worker.settings import Settings

log = get_logger(__name__)

DEFAULT_PORT = 7860  # Gradio's (and Hugging Face Spaces') port


class DemoBackend(Protocol):
    """What the web app needs of a demo stack (``devtools.demo_stack.DemoStack``)."""

    settings: Settings | None  # the worker's, once started

    @property
    def bootstrap(self) -> str: ...

    @property
    def output_topic(self) -> str: ...

    @property
    def dlq_topic(self) -> str: ...

    @property
    def worker_url(self) -> str: ...

    def start(self, out: Any = None) -> Self: ...

    def stop(self) -> None: ...


@dataclass
class UiOptions:
    topics: list[str] = field(default_factory=list)  # output and/or dead-letter topics to show
    worker_url: str | None = None  # a worker's HTTP API: "try it" goes there
    metrics_url: str | None = None  # a worker's /metrics: consumer lag
    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    backlog: int = 100  # records per partition read back at start
    refresh_s: float = 1.0
    demo: DemoBackend | None = None  # started first, the app points at it (``sentiment-worker ui --demo``)
    title: str = "sentiment-worker — live"


class LiveApp:
    """The readers, the classifier and the page; :meth:`launch` serves it, :meth:`close` stops everything."""

    def __init__(self, settings: Settings, options: UiOptions, classifier: Classifier | None = None) -> None:
        self.settings = settings
        self.options = options
        redact_secrets(settings.secret_values())  # SASL/TLS passwords, the API key: masked in every log line
        self.stats = LiveStats()
        self.feed = TopicFeed(
            settings.kafka, options.topics, self.stats, backlog=options.backlog, text_field=settings.text_field
        )
        self.lag = LagFeed(options.metrics_url) if options.metrics_url else None
        if classifier is None:
            key = settings.http_api_key.get_secret_value() if settings.http_api_key else None
            classifier = HttpClassifier(options.worker_url, api_key=key) if options.worker_url else None
        self.classifier = classifier or LocalClassifier(settings.inference)
        self.blocks: Any = None
        self.url: str | None = None

    def statuses(self) -> list[Status]:
        return [self.feed.status] + ([self.lag.status] if self.lag is not None else [])

    def refresh(self) -> tuple[Any, ...]:
        from webapp.page import gradio

        lags = self.lag.lags if self.lag is not None else None
        now = time.time()
        snap = self.stats.snapshot(now)
        return render(snap, self.statuses(), lags, self.options.metrics_url, now, unchanged=gradio().skip())

    def try_it(self, text: str) -> str:
        return try_it_html(lambda t: classify_text(self.classifier, t), text)

    def launch(self, note: str = "") -> str:
        """Serve the page and start the readers (returns at once); the page's URL."""
        self.blocks = build_blocks(self.options.title, self.refresh, self.try_it, every_s=self.options.refresh_s,
                                   note=note)  # fmt: skip
        port = self.options.port or None  # Gradio takes no port 0; None: the first free one from 7860 up
        with warnings.catch_warnings():  # show_api: Gradio 6.0 renames it; 5.50 has only this name
            warnings.filterwarnings("ignore", message="The 'show_api' parameter", category=DeprecationWarning)
            self._launch(port)
        self.feed.start()
        if self.lag is not None:
            self.lag.start()
        host = "127.0.0.1" if self.options.host in ("0.0.0.0", "::") else self.options.host
        self.url = f"http://{host}:{self.blocks.server_port}/"
        log.info("ui_listening", url=self.url, topics=self.options.topics)
        return self.url

    def _launch(self, port: int) -> None:
        from starlette.middleware import Middleware

        from webapp.offline import NoExternalResources

        self.blocks.launch(
            server_name=self.options.host,
            server_port=port,
            share=False,  # no tunnel: nothing leaves this machine
            prevent_thread_lock=True,
            quiet=True,
            show_api=False,
            inbrowser=False,
            app_kwargs={"middleware": [Middleware(NoExternalResources)]},
        )

    def close(self) -> None:
        if self.blocks is not None:
            self.blocks.close()
        self.feed.stop()
        if self.lag is not None:
            self.lag.stop()


def start_ui(
    make_settings: Callable[[dict[str, Any]], Settings], options: UiOptions, out: TextIO
) -> tuple[LiveApp, Callable[[], None]]:
    """Start the app (and with ``options.demo`` the demo stack first); the app and a function that stops all."""
    stack = options.demo
    # Gradio first, before any thread starts: importing it parses source with `ast` (its component metaclass), and
    # CPython 3.11 fails that ("AST constructor recursion depth mismatch") when another thread parses at the same
    # time; a failed import leaves gradio half-imported for the whole process.
    gradio()
    if stack is not None:
        print("starting the demo: embedded broker, worker, sample stream ...", file=out, flush=True)
        stack.start(out)
        settings = stack.settings
        assert settings is not None
        options.topics = [*options.topics, stack.output_topic, stack.dlq_topic]
        options.worker_url = options.worker_url or stack.worker_url
        options.metrics_url = options.metrics_url or f"{stack.worker_url}/metrics"
        print(f"embedded Kafka broker at {stack.bootstrap}; worker HTTP API at {stack.worker_url}", file=out)
    else:
        settings = make_settings({})
    app = LiveApp(settings, options)
    note = "Demo: embedded broker, the worker and a sample stream, all in this process." if options.demo else ""
    try:
        url = app.launch(note)
    except BaseException:
        app.close()
        if stack is not None:
            stack.stop()
        raise
    print(f"web app at {url}", file=out, flush=True)

    def stop() -> None:
        app.close()
        if stack is not None:
            stack.stop()

    return app, stop


def run_ui(make_settings: Callable[[dict[str, Any]], Settings], options: UiOptions, out: TextIO) -> int:
    """Serve the app until SIGINT/SIGTERM (Ctrl-C), then stop everything; the exit code."""
    if not options.demo and not options.topics:
        raise ValueError("give the topics to show (--topics), or --demo")
    _app, stop = start_ui(make_settings, options, out)
    done = threading.Event()
    previous = None
    if threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGTERM, lambda *_: done.set())
    try:
        while not done.wait(0.5):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
        print("stopping ...", file=out, flush=True)
        stop()
    return 0
