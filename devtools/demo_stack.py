"""``sentiment-worker ui --demo`` (and the Hugging Face Space): the whole demo behind the web app.

The embedded broker, the worker (assembled by :mod:`worker.app`, with its HTTP API on a free loopback port so the
"try it" box and the lag come from it) and an endless sample stream at a gentle rate, with one malformed record in
every ``bad_every`` so the dead-letter panel has something to show. The pieces are the demo's
(:mod:`devtools.demo`: topic, group, settings overrides, model choice) and the load generator's
(:mod:`devtools.loadgen`).
"""

from __future__ import annotations

import io
import itertools
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from devtools.demo import DEMO_TOPIC, demo_model, demo_overrides
from worker.observability import get_logger
from worker.settings import Settings

if TYPE_CHECKING:
    from devtools.broker import EmbeddedBroker
    from worker.app import Worker

log = get_logger(__name__)

# Malformed records the sample stream mixes in (each becomes a dead letter with its reason).
BAD_RECORDS: tuple[bytes, ...] = (b"{not json", b'{"id": "no-text-field"}', b'["not", "an", "object"]', b'{"text": ""}')


@dataclass(frozen=True)
class DemoStreamOptions:
    rate: float = 20.0  # sample messages per second
    partitions: int = 4
    bad_every: int = 25  # one malformed record in this many (0 = none)


def with_bad_records(
    messages: Iterator[tuple[bytes | None, bytes]], every: int
) -> Iterator[tuple[bytes | None, bytes]]:
    """``messages`` with one of :data:`BAD_RECORDS` in place of every ``every``-th (0: unchanged)."""
    bad = itertools.cycle(BAD_RECORDS)
    for n, (key, value) in enumerate(messages, start=1):
        yield (key, next(bad)) if every and n % every == 0 else (key, value)


def until(
    stop: threading.Event, messages: Iterator[tuple[bytes | None, bytes]]
) -> Iterator[tuple[bytes | None, bytes]]:
    for message in messages:
        if stop.is_set():
            return
        yield message


class DemoStack:
    """Broker + worker + sample stream; :meth:`start` returns once the worker's model is loaded.

    ``make_settings(overrides)``: the worker's settings with the demo's ``overrides`` (broker, topic, group, HTTP
    port) applied over the user's flags, env and config file.
    """

    def __init__(
        self, make_settings: Callable[[dict[str, Any]], Settings], options: DemoStreamOptions = DemoStreamOptions()
    ) -> None:
        self.make_settings = make_settings
        self.options = options
        self.broker: EmbeddedBroker | None = None
        self.settings: Settings | None = None
        self.worker: Worker | None = None
        self.model_dir: Path | None = None
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self.rc: int | None = None

    @property
    def bootstrap(self) -> str:
        assert self.broker is not None, "not started"
        return self.broker.bootstrap

    @property
    def output_topic(self) -> str:
        assert self.settings is not None, "not started"
        return self.settings.output_topic.format(topic=DEMO_TOPIC, label="{label}")

    @property
    def dlq_topic(self) -> str:
        assert self.settings is not None, "not started"
        return self.settings.dlq_topic.format(topic=DEMO_TOPIC)

    @property
    def worker_url(self) -> str:
        assert self.worker is not None and self.worker.servers is not None and self.worker.servers.port, "not started"
        return f"http://127.0.0.1:{self.worker.servers.port}"

    def start(self, out: Any = None, timeout_s: float = 600.0) -> DemoStack:
        from devtools.broker import EmbeddedBroker, create_topics
        from worker.app import Worker

        self.broker = EmbeddedBroker().start()
        try:
            overrides = {**demo_overrides(self.broker.bootstrap), "http_port": 0, "http_host": "127.0.0.1"}
            self.settings = settings = self.make_settings(overrides)
            if "{label}" in self.output_topic:
                raise ValueError("the web app's demo needs an output_topic template without {label}")
            self.model_dir, why = demo_model(settings, out or io.StringIO())
            log.info("ui_demo_model", path=str(self.model_dir), why=why)
            parts = self.options.partitions
            create_topics(self.broker.bootstrap, {DEMO_TOPIC: parts, self.output_topic: parts, self.dlq_topic: parts})
            self.worker = Worker(settings, model_dir=self.model_dir)
            self._spawn("ui-demo-worker", self._run_worker)
            deadline = time.monotonic() + timeout_s
            while self.worker.wait_started(0.5) is None:
                if self.rc is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"the demo worker did not start (exit code {self.rc})")
            self._spawn("ui-demo-stream", self._stream)
            return self
        except BaseException:
            self.stop()
            raise

    def _spawn(self, name: str, target: Callable[[], None]) -> None:
        thread = threading.Thread(target=target, name=name, daemon=True)
        self._threads.append(thread)
        thread.start()

    def _run_worker(self) -> None:
        assert self.worker is not None
        self.rc = self.worker.run()

    def _stream(self) -> None:
        from devtools.loadgen import generate_messages, produce

        while not self._stop.is_set():
            messages = with_bad_records(
                generate_messages(None, seed=7, length="mixed", keys=16), self.options.bad_every
            )
            try:
                produce(self.bootstrap, DEMO_TOPIC, until(self._stop, messages), rate=self.options.rate)
            except Exception as exc:  # the broker went away: try again shortly
                log.warning("ui_demo_stream_failed", error=repr(exc)[:200])
                self._stop.wait(2.0)

    def stop(self) -> None:
        self._stop.set()
        if self.worker is not None:
            self.worker.stop()
        for thread in self._threads:
            thread.join(60)
        if self.broker is not None:
            self.broker.close()
