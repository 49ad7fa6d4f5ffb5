"""The worker's health: liveness and readiness facts, and the verdicts ``/healthz`` and ``/readyz`` answer.

``/healthz``: the main loop is not stuck and no stage thread died; ``/readyz``: the model is loaded and working, the
broker reachable, partitions assigned or pending, no output topic missing, the input readable. Set by the pipeline
from any thread (it sees this through ``worker.stream.common.ports.HealthReporter``).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from typing import Any


class HealthState:
    """Liveness and readiness facts, set by the runner from any thread."""

    def __init__(self, stuck_after_s: float = 60.0, clock: Callable[[], float] = time.monotonic) -> None:
        if stuck_after_s <= 0:
            raise ValueError("stuck_after_s must be positive")
        self.stuck_after_s = float(stuck_after_s)
        self._clock = clock
        self._lock = threading.Lock()
        self._started = clock()
        self._last_beat: float | None = None
        self._model_loaded = False
        self._broker_reachable = False
        self._partitions = 0
        self._waiting = False
        self._inference_ok = True
        self._failed_stage: str | None = None
        self._topics_missing: list[str] = []
        self._input_unavailable: str | None = None

    def beat(self) -> None:
        """The main loop ran an iteration now."""
        now = self._clock()
        with self._lock:
            self._last_beat = now

    def set_model_loaded(self, ok: bool) -> None:
        with self._lock:
            self._model_loaded = bool(ok)

    def set_broker_reachable(self, ok: bool) -> None:
        with self._lock:
            self._broker_reachable = bool(ok)

    def set_assignment(self, partitions: int, waiting: bool) -> None:
        """``waiting``: joined (or rejoining) the group and waiting for an assignment."""
        with self._lock:
            self._partitions = int(partitions)
            self._waiting = bool(waiting)

    def set_inference_ok(self, ok: bool) -> None:  # False while the model's session fails and is being rebuilt
        with self._lock:
            self._inference_ok = bool(ok)

    def set_stage_failed(self, name: str) -> None:  # a stage thread died: not alive any more (exiting 1)
        with self._lock:
            self._failed_stage = name

    def set_topics_missing(self, topics: Sequence[str]) -> None:  # output/dead-letter topics: not ready while any
        with self._lock:
            self._topics_missing = sorted(topics)

    def set_input_unavailable(self, reason: str | None) -> None:  # the schema registry is unreachable: not ready
        with self._lock:
            self._input_unavailable = reason

    def liveness(self) -> tuple[bool, dict[str, Any]]:
        """Alive while the last loop iteration is younger than ``stuck_after_s`` and no stage thread died.

        Before the first iteration (model loading) the process counts as alive for ``stuck_after_s``.
        """
        now = self._clock()
        with self._lock:
            last, failed_stage = self._last_beat, self._failed_stage
        uptime = now - self._started
        age = None if last is None else now - last
        alive = failed_stage is None and ((uptime < self.stuck_after_s) if age is None else (age < self.stuck_after_s))
        return alive, {
            "alive": alive,
            "failed_stage": failed_stage,
            "loop_started": last is not None,
            "last_beat_age_s": None if age is None else round(age, 3),
            "uptime_s": round(uptime, 3),
            "stuck_after_s": self.stuck_after_s,
        }

    def readiness(self) -> tuple[bool, dict[str, Any]]:
        """Ready when the model is loaded (its session works), the broker answers, partitions are owned/pending."""
        with self._lock:
            model, broker, topics_missing = self._model_loaded, self._broker_reachable, list(self._topics_missing)
            partitions, waiting, inference = self._partitions, self._waiting, self._inference_ok
            input_unavailable = self._input_unavailable
        ready = model and inference and broker and (partitions > 0 or waiting) and not topics_missing
        ready = ready and input_unavailable is None
        return ready, {
            "ready": ready,
            "model_loaded": model,
            "inference_ok": inference,
            "broker_reachable": broker,
            "assigned_partitions": partitions,
            "waiting_for_assignment": waiting,
            "topics_missing": topics_missing,
            "input_unavailable": input_unavailable,
        }
