"""Run the real worker (Runner) in a thread against the embedded broker, for integration tests."""

from __future__ import annotations

import threading
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.support.kafka_utils import SAFER_GROUP_CONFIG
from worker.model.runtime import SentimentModel
from worker.settings import Settings, load_settings
from worker.stream.runner import Runner


def worker_settings(bootstrap: str, topic: str, model_dir: Path, **overrides: Any) -> Settings:
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
