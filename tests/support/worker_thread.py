"""The real worker in a thread of the test process, against the embedded broker (for integration tests).

- :func:`worker_settings`: the worker's settings for a test (a unique group, short waits, Tansu's group timing).
- :class:`WorkerThread`: the streaming stage alone (``Runner``) with a model the test loaded (or wrapped).
- :class:`AppThread`: the whole worker as ``sentiment-worker run`` assembles it (``worker.app.Worker``: model
  loading, probes and metrics server, supervision), e.g. to scrape its ``/metrics``.
"""

from __future__ import annotations

import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.support.http import get
from tests.support.kafka_utils import SAFER_GROUP_CONFIG, TEST_FETCH_WAIT_MS
from tests.support.waits import wait_for
from worker.model.runtime import SentimentModel
from worker.settings import Settings, load_settings
from worker.stream.runner import Runner


def worker_settings(bootstrap: str, topic: str | None, model_dir: Path, **overrides: Any) -> Settings:
    base: dict[str, Any] = {
        "bootstrap_servers": bootstrap,
        "input_topics": topic,
        "group_id": f"g-{uuid.uuid4().hex[:8]}",
        "model": str(model_dir),
        "commit_interval_ms": 200,
        "max_wait_ms": 10,
        "max_batch_size": 32,
        "shutdown_timeout_s": 20,
        "device": "cpu",
        "fetch_max_wait_ms": TEST_FETCH_WAIT_MS,
        **SAFER_GROUP_CONFIG,
    }
    base.update(overrides)
    return load_settings(**base)


@dataclass
class WorkerThread:
    settings: Settings
    model: SentimentModel
    runner: Runner = field(init=False)
    thread: threading.Thread = field(init=False)
    rc: int | None = None

    def __post_init__(self) -> None:
        self.runner = Runner(self.settings, self.model)
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        self.rc = self.runner.run()

    def start(self) -> WorkerThread:
        self.thread.start()
        return self

    def stop(self, timeout: float = 30) -> int | None:
        self.runner.stop()
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "worker did not stop"
        return self.rc

    @property
    def alive(self) -> bool:
        return self.thread.is_alive()


class AppThread:
    """``Worker(settings, model_dir=...).run()`` on a thread; ``rc`` and ``ended_at`` once it returned.

    As a context manager it starts the worker and stops it on the way out (the test then checks ``rc``).
    """

    def __init__(self, settings: Settings, model_dir: Path | None = None, **worker_kwargs: Any) -> None:
        from worker.app import Worker

        self.settings = settings
        self.worker = Worker(settings, model_dir=model_dir, **worker_kwargs)
        self.rc: int | None = None
        self.ended_at: float | None = None
        self.thread = threading.Thread(target=self._run, name="app-thread", daemon=True)

    def _run(self) -> None:
        self.rc = self.worker.run()
        self.ended_at = time.monotonic()

    def start(self) -> AppThread:
        self.thread.start()
        return self

    @property
    def alive(self) -> bool:
        return self.thread.is_alive()

    def wait_ready(self, metrics_port: int, timeout: float = 60) -> None:
        """Wait until the worker is assembled and its ``/readyz`` answers 200 (assigned, model loaded)."""

        def ready() -> bool:
            if not self.thread.is_alive():
                raise AssertionError(f"the worker exited (rc {self.rc}) before it was ready")
            return self.worker.runner is not None and get(metrics_port, "/readyz", timeout=2.0)[0] == 200

        wait_for(ready, timeout, 0.1, f"the worker's /readyz on port {metrics_port}")

    def wait_exit(self, timeout: float = 60) -> int | None:
        """Wait for the worker to stop by itself (a fatal fault); fails if it is still running."""
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "the worker did not stop"
        return self.rc

    def stop(self, timeout: float = 60) -> int | None:
        self.worker.stop()
        return self.wait_exit(timeout)

    def __enter__(self) -> AppThread:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        if self.thread.is_alive():
            self.stop()
